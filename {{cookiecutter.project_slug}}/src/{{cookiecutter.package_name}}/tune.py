"""Random search over the hyperparameters that matter (R5.1, T8), resumable, with a report.

Each trial builds a modified copy of the config and calls the same `models.build_model`,
`models.compile_model` and `data.make_dataset` that `train` uses, so the best trial's
`best.yaml` trains as-is: `make train ARGS="--config runs/<name>/best.yaml run.name=best"`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
import yaml

from . import config as config_lib
from . import models, runs
from .callbacks import NaNGuard, write_trial_hparams
from .config import Config
from .data import Data, load
from .devices import make_strategy, set_precision
from .environment import write_environment
from .errors import UsageError
from .pipeline import make_dataset, steps_per_epoch
from .seeding import seed_everything
from .tables import markdown_table


@dataclass(frozen=True)
class Range:
    """Sampled uniformly between low and high; on a log scale for rates and decays."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of a few values: ordered numbers (widths and batch sizes in multiples of 8, T9), or
    names with no order (ordered=False: optimizers), which have no edge to warn about."""

    values: tuple
    ordered: bool = True


# The search space: dotted config keys and their ranges. Edit here to change it. The
# learning rate comes first because it matters most (T8); ranges are wide because random
# search only finds what the range holds (R5.1). A best value at an edge is reported.
# optimizer.name is left out: sgd wants rates of 1e-2 to 1e-1, above this range, so its
# trials would lose to their rate rather than to sgd (docs/tuning.md: comparing optimizers).
SEARCH_SPACE: dict[str, Range | Choice] = {
    "optimizer.learning_rate": Range(1e-4, 3e-3, log=True),
    "optimizer.weight_decay": Range(1e-5, 1e-1, log=True),
    "model.width": Choice((32, 64, 128, 256)),
    "model.depth": Choice((1, 2, 3)),
    "model.filters": Choice((16, 32, 64)),
    "model.dropout_rate": Range(0.0, 0.5),
    "train.batch_size": Choice((32, 64, 128)),
}

# Keys a built-in model ignores are not searched: a value that changes nothing only adds noise.
USED_BY = {
    "model.width": ("mlp", "convnet"),
    "model.depth": ("mlp",),
    "model.filters": ("convnet", "resnet"),
    "model.dropout_rate": ("mlp", "convnet", "resnet"),
}

OBJECTIVES = {"val_loss": "min", "val_accuracy": "max", "val_mae": "min"}
EDGE_FRACTION = 0.1  # a best value this close to an edge (share of the range) says "widen it"
MAX_CONSECUTIVE_FAILURES = 3  # a broken setup stops the search instead of failing every trial


def search_space(config: Config, data: Data, space=None) -> dict[str, Range | Choice]:
    """SEARCH_SPACE without the keys this run's model ignores."""
    space = SEARCH_SPACE if space is None else space
    name = models.resolved_name(config, data)
    return {key: spec for key, spec in space.items() if name in USED_BY.get(key, (name,))}


def sample(hp: keras_tuner.HyperParameters, key: str, spec: Range | Choice):
    if isinstance(spec, Choice):
        return hp.Choice(key, list(spec.values), ordered=spec.ordered)
    sampling = "log" if spec.log else "linear"
    return hp.Float(key, spec.low, spec.high, sampling=sampling)


def with_values(config: Config, values: dict) -> Config:
    """A copy of config with dotted keys replaced (dataclasses.replace, section by section)."""
    sections: dict[str, dict] = {}
    for key, value in values.items():
        section, field = key.split(".")
        sections.setdefault(section, {})[field] = value
    changed = {s: dataclasses.replace(getattr(config, s), **f) for s, f in sections.items()}
    return dataclasses.replace(config, **changed)


class RecipeHyperModel(keras_tuner.HyperModel):
    """Samples the search space and builds, compiles and fits exactly as `train` does."""

    def __init__(self, config: Config, data: Data, space: dict[str, Range | Choice]):
        super().__init__(name="recipe")
        self.config, self.data, self.space = config, data, space

    def trial_config(self, hp: keras_tuner.HyperParameters) -> Config:
        return with_values(self.config, {key: sample(hp, key, s) for key, s in self.space.items()})

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        config = self.trial_config(hp)
        model = models.build_model(config, self.data)
        steps = steps_per_epoch(self.data.train, config.train.batch_size)
        return models.compile_model(model, config, self.data, steps)

    def fit(self, hp, model, *args, **kwargs):
        """The batch size is a hyperparameter, so the datasets are built here, per trial."""
        config = self.trial_config(hp)
        batch_size, data, augment = config.train.batch_size, self.data, config.data.augment
        cache = config.data.cache
        train_ds = make_dataset(
            data,
            data.train,
            batch_size,
            shuffle=True,
            seed=config.seed,
            augment=augment,
            augment_strength=config.data.augment_strength,
            cache=cache,
        )
        val_ds = make_dataset(data, data.val, batch_size, shuffle=False, cache=cache)
        steps = steps_per_epoch(data.train, batch_size)  # train_ds is an endless stream
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            steps_per_epoch=steps,
            shuffle=False,
            class_weight=models.class_weights(data),
            **kwargs,
        )
        for callback in kwargs.get("callbacks", []):  # the tuner's deep copy, not ours
            if isinstance(callback, NaNGuard) and callback.message:
                raise keras_tuner.errors.FailedTrialError(callback.message)
        return history


class RecipeSearch(keras_tuner.RandomSearch):
    """RandomSearch that prints one line per finished trial, and stops between trials after
    a stop signal (runs.stop_on_signals): the oracle has saved the trial, so a rerun goes on
    with the next one."""

    last_trial = None

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        print(trial_line(trial, self.oracle.objective.name), flush=True)
        # TensorBoard's HParams tab: each trial's values and objective side by side.
        write_trial_hparams(trial, self.oracle.objective.name, Path(self.directory) / "tensorboard")
        self.last_trial = trial.trial_id
        runs.stop_point()


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _error_line(trial) -> str:
    lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def trial_line(trial, objective: str) -> str:
    values = " ".join(f"{k}={_short(v)}" for k, v in trial.hyperparameters.values.items())
    if trial.status == "COMPLETED" and trial.score is not None:
        outcome = f"{objective}={trial.score:.4f}"
    elif trial.status == "COMPLETED":  # a worker's copy: the chief oracle scores the trial
        outcome = "completed (scored by the chief)"
    else:
        outcome = f"{trial.status}: {_error_line(trial)}"
    return f"trial {trial.trial_id}: {values} -> {outcome}"


def trial_rows(tuner, keys) -> list[dict]:
    """Every trial the oracle knows, in the order they were created."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: int(item[0])):
        values = trial.hyperparameters.values
        rows.append(
            {
                "trial": trial_id,
                "status": trial.status,
                **{key: values.get(key) for key in keys},
                "objective": trial.score if trial.status == "COMPLETED" else None,
                "best_epoch": None if trial.best_step is None else trial.best_step + 1,
                "error": "" if trial.status == "COMPLETED" else _error_line(trial),
            }
        )
    return rows


def write_tables(rows: list[dict], run_dir: Path) -> None:
    if not rows:
        return
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    runs.write_text(run_dir / "trials.csv", table.getvalue())
    runs.write_text(run_dir / "trials.md", markdown_table(rows, list(rows[0])) + "\n")


def edge_warnings(best: dict, space: dict[str, Range | Choice]) -> list[str]:
    """Best values at the edge of their range: the optimum may lie outside it (R5.1)."""
    warnings = []
    for key, spec in space.items():
        value = best.get(key)
        if value is None or (isinstance(spec, Choice) and not spec.ordered):
            continue
        if isinstance(spec, Choice):
            if len(spec.values) > 1 and value in (min(spec.values), max(spec.values)):
                side = "lowest" if value == min(spec.values) else "highest"
                warnings.append(
                    f"{key}={_short(value)} is the {side} choice of {list(spec.values)}: "
                    "widen the range"
                )
            continue
        scale = math.log10 if spec.log else float
        low, high, at = scale(spec.low), scale(spec.high), scale(value)
        position = (at - low) / (high - low)
        if position <= EDGE_FRACTION or position >= 1 - EDGE_FRACTION:
            side = "low" if position <= EDGE_FRACTION else "high"
            where = "log " if spec.log else ""
            warnings.append(
                f"{key}={_short(value)} is within {EDGE_FRACTION:.0%} of the {side} end of its "
                f"{where}range [{_short(spec.low)}, {_short(spec.high)}]: widen the range"
            )
    return warnings


def best_overrides(config: Config, data: Data, best: dict) -> dict:
    """Nested overrides for `--config best.yaml`: this search's data and model, the best values."""
    nested = {
        "data": {"source": config.data.source},
        "model": {"name": models.resolved_name(config, data)},
    }
    for key, value in best.items():
        section, field = key.split(".")
        nested.setdefault(section, {})[field] = value.item() if hasattr(value, "item") else value
    return nested


def write_best(nested: dict, path: Path, header: str) -> None:
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    runs.write_text(path, comments + yaml.safe_dump(nested, sort_keys=False))


def tuning_figure(rows: list[dict], space: dict, objective: str, path: Path) -> Path | None:
    """The objective against each hyperparameter, one panel each; log x for log ranges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row["objective"] is not None]
    if not done or not space:
        return None
    columns = min(3, len(space))
    rows_ = math.ceil(len(space) / columns)
    figure, axes = plt.subplots(
        rows_, columns, figsize=(3.6 * columns, 3 * rows_), squeeze=False, sharey=True
    )
    best = (min if OBJECTIVES[objective] == "min" else max)(done, key=lambda r: r["objective"])
    for axis, (key, spec) in zip(axes.flat, space.items(), strict=False):
        names = isinstance(spec, Choice) and not spec.ordered
        place = spec.values.index if names else (lambda value: value)
        axis.scatter([place(r[key]) for r in done], [r["objective"] for r in done], alpha=0.7)
        axis.scatter([place(best[key])], [best["objective"]], color="red", marker="*", s=120)
        if names:  # one column per name, in the order the space lists them
            axis.set_xticks(range(len(spec.values)), [str(v) for v in spec.values])
            axis.set_xlim(-0.5, len(spec.values) - 0.5)
        elif isinstance(spec, Range):  # shaded: the whole range, to see where trials fell
            axis.axvspan(spec.low, spec.high, color="0.93", zorder=0)
            if spec.log:
                axis.set_xscale("log")
        elif all(isinstance(v, int | float) and v > 0 for v in spec.values):
            axis.set_xscale("log", base=2)  # widths and batch sizes double from choice to choice
            axis.set_xticks(spec.values, [str(v) for v in spec.values])
            axis.minorticks_off()
        axis.set_xlabel(key)
    for axis in list(axes.flat)[len(space) :]:
        axis.set_visible(False)
    for row in axes:
        row[0].set_ylabel(objective)
    figure.suptitle(f"{len(done)} finished trials; red star: best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def is_worker() -> bool:
    """True in a distributed search's worker process (the chief writes the report)."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "chief")
    return "KERASTUNER_ORACLE_IP" in os.environ and tuner_id != "chief"


def _check_resume(config: Config, run_dir: Path) -> None:
    """A search resumed under the same run.name must search the same problem."""
    saved = run_dir / "tune_config.yaml"
    if not (run_dir / "tuner").exists() or not saved.is_file():
        return
    config_lib.refuse_changes(
        saved,
        config,
        "search",
        "resume it unchanged (only tune.max_trials and tune.epochs may change) "
        "or choose another run.name",
    )


def make_tuner(config: Config, data: Data, space=None) -> RecipeSearch:
    t = config.tune
    set_precision(config.train.precision)  # trials train as `train` would, on the same devices
    return RecipeSearch(
        RecipeHyperModel(config, data, search_space(config, data, space)),
        objective=keras_tuner.Objective(t.objective, direction=OBJECTIVES[t.objective]),
        max_trials=t.max_trials,
        seed=config.seed,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=MAX_CONSECUTIVE_FAILURES,
        directory=str(config.run_dir),
        project_name="tuner",
        distribution_strategy=make_strategy(config.train.strategy),
        overwrite=False,  # a rerun with the same run.name continues the search
    )


def tune(config: Config, command: str = "", space=None) -> int:
    """Runs (or resumes) the search, then writes the report; returns the exit status."""
    run_dir = config.run_dir
    t = config.tune
    _check_resume(config, run_dir)
    seed_everything(config)
    data = load(config)
    if t.objective == "val_accuracy" and data.task != "classification":
        raise UsageError("tune.objective=val_accuracy needs classification; use val_loss")
    if t.objective == "val_mae" and data.task != "regression":
        raise UsageError("tune.objective=val_mae needs regression; use val_loss")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_worker():
        config_lib.save(config, run_dir / "tune_config.yaml")
        runs.write_text(run_dir / "tune_command.txt", command + "\n")
        write_environment(run_dir, command="tune")

    tuner = make_tuner(config, data, space)
    hypermodel_space = tuner.hypermodel.space
    # A worker's oracle is a gRPC client of the chief's; only the chief knows the trials.
    trials = {} if is_worker() else tuner.oracle.trials
    finished = sum(trial.status != "RUNNING" for trial in trials.values())
    where = (
        f"worker {os.environ['KERASTUNER_TUNER_ID']} of the chief at "
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ.get('KERASTUNER_ORACLE_PORT')}"
        if is_worker()
        else f"{finished} already done in {run_dir / 'tuner'}"
    )
    print(
        f"data: {data.source} ({data.kind}, {data.task}) train {len(data.train.y)} / "
        f"val {len(data.val.y)}; model: {models.resolved_name(config, data)}\n"
        f"search: {t.max_trials} trials of at most {t.epochs} epochs, {t.objective} "
        f"({OBJECTIVES[t.objective]}); {where}"
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=t.patience),
        NaNGuard(),  # holds no dataset, so the tuner's per-trial deep copy works
    ]
    if config.optimizer.ema:  # trials are judged on the averaged weights, as train saves them
        callbacks.append(keras.callbacks.SwapEMAWeights())
    started = time.perf_counter()
    status = 0
    try:
        with runs.stop_deferred():  # a stop signal waits for the running trial's end
            tuner.search(epochs=t.epochs, callbacks=callbacks, verbose=0)
    except RuntimeError as err:  # too many consecutive failures: report what ran, then stop
        print(f"error: {err}", file=sys.stderr)
        status = 1
    except runs.Stopped as stop:
        print(
            f"stopped by {stop.name} after trial {tuner.last_trial}; rerun the same command "
            "to resume",
            file=sys.stderr,
        )
        return stop.status
    seconds = time.perf_counter() - started
    if is_worker():
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} done in {seconds:.0f} s")
        return status
    return report(config, data, tuner, hypermodel_space, seconds) or status


def report(config: Config, data: Data, tuner, space: dict, seconds: float) -> int:
    """trials.csv/.md, tuning.png, best.yaml and tuning.json in the run folder."""
    run_dir, objective = config.run_dir, config.tune.objective
    rows = trial_rows(tuner, list(space))
    write_tables(rows, run_dir)
    tuning_figure(rows, space, objective, run_dir / "tuning.png")
    done = [row for row in rows if row["objective"] is not None]
    failed = [row for row in rows if row["status"] != "COMPLETED"]
    summary = {
        "objective": objective,
        "direction": OBJECTIVES[objective],
        "trials": len(rows),
        "completed": len(done),
        "failed": len(failed),
        "search_seconds": round(seconds, 1),
        "space": {key: dataclasses.asdict(spec) for key, spec in space.items()},
    }
    if not done:
        runs.write_json(run_dir / "tuning.json", summary)
        print(f"error: no trial finished; see {run_dir / 'trials.md'}", file=sys.stderr)
        return 1
    pick = min if OBJECTIVES[objective] == "min" else max
    best_row = pick(done, key=lambda row: row["objective"])
    best = {key: best_row[key] for key in space}
    warnings = edge_warnings(best, space)
    nested = best_overrides(config, data, best)
    header = (
        f"Best of {len(done)} finished trials: trial {best_row['trial']}, "
        f"{objective}={best_row['objective']:.4f}.\n"
        f'Train it: make train ARGS="--config {run_dir / "best.yaml"} run.name=best"'
    )
    write_best(nested, run_dir / "best.yaml", header)
    summary.update(
        best_trial=best_row["trial"],
        best_objective=best_row["objective"],
        best=nested,
        warnings=warnings,
    )
    runs.write_json(run_dir / "tuning.json", summary)
    print(
        f"\nsearch: {len(done)} finished, {len(failed)} failed, {seconds:.0f} s\n"
        f"best: trial {best_row['trial']} {objective}={best_row['objective']:.4f} "
        + " ".join(f"{k}={_short(v)}" for k, v in best.items())
    )
    for warning in warnings:
        print(f"warning: {warning}")
    print(
        f"files: {run_dir}/ (trials.csv, trials.md, tuning.png, best.yaml, tuning.json)\n"
        f'next: make train ARGS="--config {run_dir / "best.yaml"} run.name=best"'
    )
    return 0
