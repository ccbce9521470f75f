"""Command line: `python -m <package> <command> [--config FILE]... [key=value ...]`.

Bad input (unknown key, missing path, unreadable file...) prints one line and exits
with status 2; a failed verdict (NaN loss, a failed check) exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys

from .config import build_config, describe
from .errors import UsageError

COMMANDS = {
    "inspect": "study the data before any model: duplicates, leaks, corrupt files, balance (R1)",
    "check": "run the recipe's sanity experiments on the configured model and data (R2, T1)",
    "train": "train the configured model, then evaluate it on the whole test set",
    "evaluate": "re-evaluate a finished run (run.name=...) on the whole test set",
    "tune": "random search over learning rate, width, depth, dropout, ... (R5); resumable",
    "ensemble": "train ensemble.members seeds on one split; score their average (R6.1)",
    "predict": "a finished run (run.name=...) predicts on predict.input: image, folder or CSV",
    "export": "a finished run as a TensorFlow SavedModel in runs/<name>/export/ (serving)",
}


def parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<10}{text}" for name, text in COMMANDS.items())
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
        help="YAML file of overrides; repeat to layer several, later ones win",
    )
    result.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return result


def run(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)  # --config may come before or after key=value
    config = build_config(args.config, args.overrides)  # every error surfaces before any work
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    command = shlex.join([sys.executable, "-m", __package__, *argv])  # recorded in the run
    if config.train.strategy == "multi_worker":
        if args.command in ("tune", "ensemble"):
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
    # Modules are imported per command: TensorFlow takes seconds to load, and neither
    # --help nor inspect (which studies the data before any model) needs it.
    if args.command == "inspect":
        from .inspection import inspect

        return inspect(config)
    if args.command in ("train", "evaluate"):
        from . import train

        if args.command == "evaluate":
            return train.evaluate(config)
        return train.train(config, command)
    if args.command == "tune":
        from .tune import tune

        return tune(config, command)
    if args.command in ("predict", "export"):
        from . import predict

        return predict.predict(config) if args.command == "predict" else predict.export(config)
    if args.command == "ensemble":
        from .ensemble import ensemble

        return ensemble(config, command)
    from .checks import check

    return check(config)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; rerun the same command to resume from the last finished epoch",
            file=sys.stderr,
        )
        return 130
