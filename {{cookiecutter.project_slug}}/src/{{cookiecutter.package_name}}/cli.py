"""Command line: `python -m <package> <command> [--config FILE]... [key=value ...]`.

Bad input (unknown key, missing path, unreadable file, a run folder in use) prints one
line and exits with status 2; a failed verdict (NaN loss, a failed check) or a full disk
exits with status 1; SIGTERM and SIGINT stop gracefully with 143 and 130 (runs.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path

from . import runlog, runs
from .config import Config, build_config, describe
from .errors import UsageError

# The project's own overrides: the task chosen when the project was made, not the
# built-in defaults (digits), are what a bare `python -m <package> train` should run.
DEFAULT_CONFIG = Path("configs/default.yaml")

COMMANDS = {
    "inspect": "study the data before any model: duplicates, leaks, corrupt files, balance (R1)",
    "check": "run the recipe's sanity experiments on the configured model and data (R2, T1)",
    "train": "train the configured model, then evaluate it on the whole test set",
    "evaluate": "re-evaluate a finished run (run.name=...) on the whole test set",
    "tune": "random search over learning rate, width, depth, dropout, ... (R5); resumable",
    "ensemble": "train ensemble.members seeds on one split; score their average (R6.1)",
    "distill": "train a student on distill.teacher's softened outputs, next to it alone (R6.2)",
    "learning-curve": "train on 25/50/100% of the training split: would more data help? (R4.1)",
    "compare": "finished runs side by side: differing keys, test metric, best val loss",
    "predict": "a finished run (run.name=...) predicts on predict.input: image, folder or CSV",
    "export": "a finished run as a TensorFlow SavedModel in runs/<name>/export/ (serving)",
}


def parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<16}{text}" for name, text in COMMANDS.items())
    result = argparse.ArgumentParser(
        prog=f"python -m {__package__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"commands:\n{commands}",
        epilog=f"config keys (key=value overrides; YAML files hold overrides too):\n{describe()}",
    )
    result.add_argument(
        "command", choices=list(COMMANDS), metavar="command", help="one of the commands above"
    )
    result.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help=(
            "YAML file of overrides; repeat to layer several, later ones win. Without "
            f"--config: {DEFAULT_CONFIG} of the current folder when it exists"
        ),
    )
    result.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return result


def run(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)  # --config may come before or after key=value
    files = args.config or ([str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else [])
    config = build_config(files, args.overrides)  # every error surfaces before any work
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    command = shlex.join([sys.executable, "-m", __package__, *argv])  # recorded in the run
    if config.train.strategy == "multi_worker":
        if args.command in ("tune", "ensemble", "distill", "learning-curve"):
            raise UsageError(
                f"train.strategy=multi_worker trains one model on several machines; {args.command}"
                " runs its trainings one machine each (tune spreads trials: docs/tuning.md)"
            )
        if args.command == "train":  # before Keras is imported: it reads the backend once
            if importlib.util.find_spec("jax") is None:
                raise UsageError(
                    "train.strategy=multi_worker runs on JAX: pip install -e '.[multiworker]'"
                )
            os.environ.setdefault("KERAS_BACKEND", "jax")
    # Locked before TensorFlow loads: a second writer is refused at once. Only then is what
    # the command prints copied into the run folder's train.log (runlog.py).
    folder = locked_folder(args.command, config)
    with runs.locked(folder, command), runlog.recorded(folder, command):
        return dispatch(args.command, config, command)


def locked_folder(name: str, config: Config) -> Path | None:
    """The run folder a command writes into, which it locks. A distributed job's workers
    write under their chief's lock: a training's other processes into workers/ of the run
    (devices.process_id, train.py), a search's workers into the trials the chief hands
    them (tune.is_worker)."""
    if name == "train" and config.train.strategy == "multi_worker":
        if int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "0")) > 0:
            return None
    if name == "compare":  # reads finished runs, writes beside them, not into one
        return None
    if name == "tune" and "KERASTUNER_ORACLE_IP" in os.environ:
        if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
            return None
    return config.run_dir


def dispatch(name: str, config: Config, command: str) -> int:
    # Modules are imported per command: TensorFlow takes seconds to load, and neither
    # --help nor inspect (which studies the data before any model) needs it.
    if name == "inspect":
        from .inspection import inspect

        return inspect(config)
    if name == "train":
        from .train import train

        return train(config, command)
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate(config)
    if name == "tune":
        from .tune import tune

        return tune(config, command)
    if name in ("predict", "export"):
        from . import predict

        return predict.predict(config) if name == "predict" else predict.export(config)
    if name == "ensemble":
        from .ensemble import ensemble

        return ensemble(config, command)
    if name == "distill":
        from .distill import distill

        return distill(config, command)
    if name == "compare":
        from .compare import compare

        return compare(config)
    if name == "learning-curve":
        from .learning_curve import learning_curve

        return learning_curve(config, command)
    from .checks import check

    return check(config)


def main(argv: list[str] | None = None) -> int:
    try:
        with runs.stop_on_signals():
            return run(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except runs.Stopped as stop:  # train and tune catch theirs, saying where they stopped
        print(f"stopped by {stop.name} before it finished; rerun the same command", file=sys.stderr)
        return stop.status
    except Exception as err:
        if not runs.is_disk_full(err):
            raise
        print(f"error: {runs.disk_full_message(err)}", file=sys.stderr)
        return 1
