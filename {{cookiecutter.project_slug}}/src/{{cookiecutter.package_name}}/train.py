"""Training, top to bottom: config, seed, data, model, callbacks, fit, evaluate, save."""

from __future__ import annotations

import copy
import functools
import math
import shutil
import sys
import time
from pathlib import Path

import keras

from . import config as config_lib
from . import runs
from .callbacks import (
    BestCheckpoint,
    BudgetedBackupAndRestore,
    EarlyStop,
    EpochTensorBoard,
    GracefulStop,
    HistoryCSV,
    NaNGuard,
    PredictionPanel,
    SaveBudget,
    StepLog,
    WeightHistograms,
    load_seed_states,
    read_history,
    readable_backup,
    restore_backup,
    run_hparams,
    save_seed_states,
    unreadable_checkpoint,
    write_hparams,
)
from .config import Config
from .data import Data, load, scale_targets, unscale_targets
from .devices import describe, make_strategy, process_id, set_precision, stop_workers
from .environment import write_environment
from .errors import UsageError
from .evaluate import evaluate_run, headline, write_metrics
from .models import (
    build_model,
    class_weights,
    compile_model,
    expected_initial_loss,
    start_fine_tuning,
    with_preprocessing,
)
from .pipeline import fixed_batch, make_dataset, steps_per_epoch, training_stream
from .seeding import seed_everything

# The final epoch's weights and optimizer state, which run.extend continues from (R6.3, U1),
# and where its random layers (dropout) were in their sequences, which .keras files omit.
LAST = "checkpoints/last.keras"
LAST_SEEDS = "checkpoints/last_seed_states.npy"


def epochs_done(run_dir: Path) -> int:
    return max((int(row["epoch"]) for row in read_history(run_dir / "history.csv")), default=0)


def phase_losses(run_dir: Path, phase: str, done: int) -> tuple[float, ...]:
    """The val_losses of a phase's epochs up to `done`, from history.csv: a resumed run's
    early stopping goes on counting from them. A continued run (run.extend) counts afresh."""
    fine_tuning = float(phase == "fine_tune")
    return tuple(
        row["val_loss"]
        for row in read_history(run_dir / "history.csv")
        if 1 <= row["epoch"] <= done and row.get("fine_tuning", 0.0) == fine_tuning
    )


def epochs_before(run_dir: Path, state: str, backup: runs.Generation | None = None) -> int:
    """The epochs a run has done before this fit: a killed run's backup, a finished run's
    history when it is continued, 0 otherwise."""
    if state == "resume":
        return backup.epoch
    if state == "extend":
        return epochs_done(run_dir)
    return 0


def backup_to_resume(run_dir: Path, state: str) -> tuple[str, runs.Generation | None]:
    """A resumed run's state and the backup it resumes from: the newest that reads back
    whole, saying in one line which damaged ones it passed over. With none readable the
    run starts over ('fresh', its folder emptied); with none at all (killed during its first
    save) it starts again as a run killed before its first backup does."""
    if state != "resume":
        return state, None
    generation, damaged = readable_backup(run_dir / "backup")
    if generation is None:
        if damaged:
            print(f"{run_dir}: no backup reads back ({'; '.join(damaged)}): training it again")
            runs.empty(run_dir)
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
        return "fresh", None
    if damaged:
        print(
            f"{run_dir}: passed over the damaged backup ({'; '.join(damaged)}); resuming from "
            f"the one before, {generation.path.name}"
        )
    best = run_dir / "checkpoints" / "best.keras"
    problem = unreadable_checkpoint(best)
    if problem:
        print(f"{best} is damaged ({problem}): the best epoch is chosen again from here on")
        best.unlink(missing_ok=True)
        best.with_suffix(".json").unlink(missing_ok=True)
    return "resume", generation


def run_state(config: Config) -> str:
    """'fresh', 'resume' (a killed run's backup is there), 'extend' (run.extend=true on a
    finished run) or 'replace' (run.overwrite=true).

    Refuses to touch a finished run without one of those two, and to resume or extend a
    run with a different config. Deletes nothing: train replaces a run only once its data
    loaded.
    """
    run_dir = config.run_dir
    if (run_dir / "backup").exists():
        config_lib.refuse_changes(
            run_dir / "config.yaml",
            config,
            "resume",
            "resume it unchanged or choose another run.name",
        )
        return "resume"
    finished = (run_dir / "model.keras").exists()
    if config.run.extend:
        if not finished:
            raise UsageError(f"run.extend=true but {run_dir} holds no finished run to continue")
        config_lib.refuse_changes(
            run_dir / "config.yaml",
            config,
            "continue",
            "continue it with only train.epochs and optimizer.learning_rate changed, "
            "or choose another run.name",
        )
        done = epochs_done(run_dir)
        if config.train.epochs <= done:
            raise UsageError(
                f"{run_dir} has trained {done} epochs already; set train.epochs above {done} "
                "(the total, not the extra) to continue it"
            )
        if not (run_dir / LAST).is_file():
            raise UsageError(f"{run_dir} has no {LAST} to continue from; retrain it")
        return "extend"
    if finished:
        if not config.run.overwrite:
            raise UsageError(
                f"{run_dir} already holds a finished run; choose another run.name=..., "
                "set run.extend=true (with a larger train.epochs) to continue it, "
                "or run.overwrite=true to replace it"
            )
        return "replace"
    return "fresh"


def fit_phases(config: Config, done: int) -> list[tuple[str, int]]:
    """The fits still to run, as (phase, epoch it ends at): one "train" phase; for a pretrained
    backbone (model.name=backbone), "head" with the backbone frozen up to model.head_epochs,
    then "fine_tune" (the Keras transfer-learning guide's two phases, R4.4). The head's
    phase has a fixed length, so a resumed run knows its phase from its epoch alone."""
    m, epochs = config.model, config.train.epochs
    if m.name != "backbone" or m.fine_tune_layers == 0:
        return [("train", epochs)]
    head_end = min(m.head_epochs, epochs)
    phases = [("head", head_end)] if done < head_end else []
    return phases + ([("fine_tune", epochs)] if epochs > head_end else [])


def make_callbacks(
    config: Config,
    data: Data,
    run_dir: Path,
    initial_logs: dict,
    phase: str = "train",
    seen: tuple[float, ...] = (),
):
    """The fit's callbacks and its NaNGuard; `seen`: the val_losses early stopping counts
    from (a resumed phase's epochs before its backup)."""
    guard = NaNGuard()
    # Resumes a killed run: weights, optimizer state and epoch (T14, U1).
    backup = BudgetedBackupAndRestore(run_dir / "backup", budget := SaveBudget(), guard)
    chosen = fixed_batch(data, config.train.prediction_examples)
    raw = data.val.x[chosen]  # image files are decoded here, once
    images = None
    if data.kind == "image":
        from .pictures import to_uint8

        images = to_uint8(raw, data.value_range)
    panel = PredictionPanel(
        x=data.normalize(raw),
        labels=data.val.y[chosen],
        folder=run_dir / "predictions",
        task=data.task,
        class_names=data.class_names,
        images=images,
        to_units=functools.partial(unscale_targets, data),
        log_dir=str(run_dir / "tensorboard"),
    )
    # A backbone's rows say which phase they belong to.
    extra = {} if phase == "train" else {"fine_tuning": float(phase == "fine_tune")}
    history = HistoryCSV(run_dir / "history.csv", initial_logs, extra)
    callbacks = [GracefulStop(backup), guard, history]  # first: a stop never halves an epoch's end
    if phase != "head":  # the head's phase has a fixed length (fit_phases)
        # BestCheckpoint keeps the best weights and train() restores them after fit, across
        # resumes too, so early stopping need not copy them every epoch as well.
        callbacks.append(EarlyStop(config.train.patience, seen))
    # One 1% time budget for both savers: they save at the same epoch ends.
    callbacks.append(backup)
    if config.optimizer.ema:
        # Validation, the best checkpoint and the picture see the averaged weights (T17);
        # after the backup, so the backup keeps the raw ones training resumes from.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    callbacks += [
        # On resume, only an epoch better than the one in the file replaces it.
        BestCheckpoint(run_dir / "checkpoints" / "best.keras", "val_loss", budget),
        EpochTensorBoard(str(run_dir / "tensorboard")),
        panel,
    ]
    if config.train.log_every_steps:  # feedback per update between the epoch lines (U13)
        callbacks.append(StepLog(config.train.log_every_steps, run_dir / "tensorboard"))
    if config.train.histograms:  # the split's first batch (it is shuffled), the same each epoch
        first = slice(0, config.train.batch_size)
        x, y = data.normalize(data.train.x[first]), scale_targets(data, data.train.y[first])
        callbacks.append(WeightHistograms(x, y, run_dir / "tensorboard"))
    return callbacks, guard


def train(
    config: Config,
    command: str,
    *,
    compile_with=compile_model,
    training_data=training_stream,
) -> int:
    """Trains config's model on config's data; returns the exit status. Distillation (R6.2)
    passes its own loss (compile_with) and targets (training_data, same arguments)."""
    runs.allow_cut(True)  # a stop signal before the fit cuts at once: nothing trained is lost
    multi_worker = config.train.strategy == "multi_worker"
    if multi_worker and process_id() > 0:  # the chief (process 0) writes the run itself
        config = copy.deepcopy(config)
        config.run.dir = str(config.run_dir / "workers")
        config.run.name = f"process-{process_id()}"
    state, backup = backup_to_resume(config.run_dir, run_state(config))
    resuming = state in ("resume", "extend")
    run_dir = config.run_dir
    done = epochs_before(run_dir, state, backup)
    if state == "fresh" and (run_dir / "config.yaml").is_file():
        # Killed before its first backup (or stopped by a failed check): nothing to resume.
        print(f"{run_dir} holds an unfinished run with no backup: training it from the start")

    ## Seed (before the workers meet: every process starts from the same weights)
    seed_everything(config)

    ## Devices: the strategy's replicas share train.batch_size, the global batch (T11)
    strategy = make_strategy(config.train.strategy)
    policy = set_precision(config.train.precision)
    print(describe(config, strategy, policy))

    ## Data: errors here stop the run before anything is written
    data = load(config)
    batch_size = config.train.batch_size
    val_ds = make_dataset(
        data,
        data.val,
        batch_size,
        shuffle=False,
        whole_batches=multi_worker,
        cache=config.data.cache,
    )
    steps = steps_per_epoch(data.train, batch_size, whole_batches=multi_worker)
    print(
        f"data: {data.source} ({data.kind}, {data.task}) "
        f"train {len(data.train.y)} / val {len(data.val.y)} / test {len(data.test.y)}"
    )

    ## Model: built and compiled in the strategy's scope so its variables are mirrored
    phases = fit_phases(config, done)
    # A backbone resumed or continued after its head's epochs starts out fine-tuning.
    fine_tuning = bool(phases) and phases[0][0] == "fine_tune"
    with strategy.scope():
        model = build_model(config, data)
        compile_with(model, config, data, steps)
        if fine_tuning:
            start_fine_tuning(model, config, data, steps)
        if state == "extend":  # weights and optimizer state of the last epoch (R6.3, U1)
            model.optimizer.build(model.trainable_variables)
            _load(model, run_dir / LAST, "retrain it (run.overwrite=true, without run.extend)")
            load_seed_states(model, run_dir / LAST_SEEDS)
            # The file held the old rate; a lower one is the final drop (config.MAY_CHANGE).
            if config.optimizer.schedule == "constant" and not fine_tuning:
                model.optimizer.learning_rate = config.optimizer.learning_rate
        if backup is not None:  # weights, optimizer state and seeds of the epoch backed up
            _load(model, backup, f"delete {run_dir / 'backup'} to train it from the start")
    print(f"model: {model.name}, {model.count_params():,} parameters")

    ## Run folder: the resolved config and the command, so the run can be reproduced
    if state == "replace":  # only now: a bad data source must not cost the old run
        with runs.stop_deferred():  # half a deletion could leave the old run's backup
            runs.empty(run_dir)  # all but the lock, which this command holds
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, run_dir / "config.yaml")
    runs.write_text(run_dir / "command.txt", command + "\n")
    write_environment(run_dir)  # versions, devices, git commit

    ## Fast recipe checks first, so a broken setup never burns hours (make check runs them all)
    if multi_worker and config.check.before_train and not resuming:
        print("checks: skipped under multi_worker (they use TensorFlow); run make check first")
    elif config.check.before_train and not resuming:
        from .checks import before_training

        if before_training(config, data) != 0:
            print(
                "error: a recipe check failed (see above); fix it, or set check.before_train=false",
                file=sys.stderr,
            )
            return 1
        seed_everything(config)  # the checks drew random numbers; fit starts from the seed

    ## Loss at init, measured on the validation set before the first step (R2.4)
    initial_logs = {}
    if state == "resume":
        print(f"resuming {run_dir} after epoch {done}, its last backup")
    elif state == "extend":
        print(f"continuing {run_dir} from epoch {done} to at most {config.train.epochs}")
    else:
        # On at most check.sample validation examples: a big folder's first step need not
        # wait for the whole split to be decoded.
        init_steps = math.ceil(min(len(data.val.y), config.check.sample) / batch_size)
        measured = model.evaluate(val_ds, steps=init_steps, verbose=0, return_dict=True)
        initial_logs = {f"val_{k}": float(v) for k, v in measured.items()}
        expected = expected_initial_loss(data, config.train.loss, config.train.label_smoothing)
        print(
            f"loss at init: {initial_logs['val_loss']:.4f} (expected {expected:.4f} "
            "from the output bias)"
        )

    ## Fit: one phase; for a pretrained backbone, its new head first, then fine-tuning (R4.4)
    # From here a stop signal cuts only between an epoch's steps (GracefulStop) and never the
    # end of the run, which saves and evaluates it whole.
    runs.allow_cut(False)
    started = time.perf_counter()
    for phase, last_epoch in phases:
        if phase == "fine_tune":
            if not fine_tuning:
                with strategy.scope():
                    start_fine_tuning(model, config, data, steps)
                fine_tuning = True
            m = config.model
            print(
                f"fine-tuning from epoch {done}: the top {m.fine_tune_layers} layers of "
                f"{m.backbone} (batch norm frozen) at learning rate {m.fine_tune_learning_rate:g}"
            )
        elif phase == "head":
            print(
                f"training the new head on the frozen {config.model.backbone} "
                f"up to epoch {last_epoch}, then fine-tuning"
            )
        seen = phase_losses(run_dir, phase, done) if state == "resume" else ()
        callbacks, guard = make_callbacks(config, data, run_dir, initial_logs, phase, seen)
        try:
            model.fit(
                training_data(config, data, first_epoch=done),
                validation_data=val_ds,
                epochs=last_epoch,
                steps_per_epoch=steps,  # the stream is endless
                initial_epoch=done,  # where the model is: a backup restored, or a finished run
                callbacks=callbacks,
                shuffle=False,  # the pipeline shuffles; fit's own flag only warns on datasets
                class_weight=class_weights(data),  # None unless train.class_weight (T2)
                verbose=1 if sys.stdout.isatty() else 2,
            )
        except runs.Stopped as stop:  # cut after a step: the backup holds the epoch before
            return stopped(stop, callbacks, cut=True)
        backup = next(c for c in callbacks if isinstance(c, BudgetedBackupAndRestore))
        if backup.stopped_by is not None:  # at an epoch's end, backed up at once
            return stopped(backup.stopped_by, callbacks)
        if guard.message:
            print(f"error: {guard.message}", file=sys.stderr)
            return 1
        done, initial_logs = epochs_done(run_dir), {}
        if model.stop_training:  # early stopping ends the run, not just the phase
            break
    seconds = time.perf_counter() - started

    ## Save the last epoch (to continue from) and the best (BestCheckpoint kept it on disk)
    runs.write_whole(run_dir / LAST, model.save)
    save_seed_states(model, run_dir / LAST_SEEDS)
    best = run_dir / "checkpoints" / "best.keras"
    if best.exists():
        model.load_weights(best)
    # model.keras takes raw inputs: the normalization (and resizing) are layers of it.
    with strategy.scope():
        model = with_preprocessing(model, data)
    runs.write_whole(run_dir / "model.keras", model.save)
    write_data_description(data, config, run_dir)
    if multi_worker:
        model = stop_workers(run_dir / "model.keras")

    ## Evaluate on the whole test set, next to the dumb baselines
    report = evaluate_run(model, data, run_dir)
    history = read_history(run_dir / "history.csv")
    report["epochs"] = max((row["epoch"] for row in history), default=0)
    report["train_seconds"] = round(seconds, 2)
    report["loss_at_init"] = {
        "measured": history[0].get("val_loss") if history else None,
        "expected": expected_initial_loss(data, config.train.loss, config.train.label_smoothing),
    }
    write_metrics(report, run_dir)
    if history:
        from .pictures import history_figure

        history_figure(
            history, run_dir / "history.png", f"{run_dir.name}: {model.name} on {data.source}"
        )
    # TensorBoard's HParams tab: this run's config and results beside the other runs'.
    write_hparams(run_dir / "tensorboard", *run_hparams(config, report, history), report["epochs"])
    # Kept until now: a run killed while it saved and evaluated resumes from it and ends.
    shutil.rmtree(run_dir / "backup", ignore_errors=True)

    print(
        f"\nrun: {run_dir}/  (metrics.json, history.csv, model.keras, predictions/, tensorboard/)"
    )
    print(f"test set ({report['test_examples']} examples):\n{headline(report)}")
    return 0


def write_data_description(data: Data, config: Config, run_dir: Path) -> Path:
    """data.json: what predict and export need to know of the data besides model.keras."""
    description = {
        "source": data.source,
        "kind": data.kind,
        "task": data.task,
        "class_names": data.class_names,
        "target_mean": data.target_mean,
        "target_std": data.target_std,
        "input_shape": list(data.input_shape),
        "feature_names": data.feature_names,
        "label_column": config.data.label_column,
        "path_column": config.data.path_column,
        "examples": {"train": len(data.train.y), "val": len(data.val.y), "test": len(data.test.y)},
        # Tables: each categorical column's vocabulary (index i + 1 for entry i, 0 = unseen)
        # and the training means that fill missing numbers.
        "vocabularies": {data.feature_names[j]: v for j, v in data.vocabularies.items()},
        "fill": [float(v) for v in data.mean] if data.kind == "tabular" else [],
    }
    path = run_dir / "data.json"
    runs.write_json(path, description)
    return path


def _load(model, source, otherwise: str) -> None:
    """Loads a checkpoint (a .keras file) or a backup generation into the model, or says in
    one line why it cannot: a damaged file, or a model whose code changed since."""
    try:
        if isinstance(source, runs.Generation):
            restore_backup(model, source)
        else:
            model.load_weights(source)
    except Exception as err:
        where = source.path if isinstance(source, runs.Generation) else source
        raise UsageError(
            f"cannot load {where} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"{otherwise}, or choose another run.name"
        ) from None


def stopped(stop: runs.Stopped, callbacks: list, cut: bool = False) -> int:
    """A fit ended by a stop signal: what it still owes the run folder, then the one line."""
    if cut:  # fit never reached on_train_end: the best weights held, the pictures drawn
        for callback in callbacks:
            if isinstance(callback, BestCheckpoint | PredictionPanel | EpochTensorBoard):
                callback.on_train_end()
    backup = next(c for c in callbacks if isinstance(c, BudgetedBackupAndRestore))
    print(
        f"stopped by {stop.name} after epoch {backup.saved_epoch or 0}; "
        "rerun the same command to resume",
        file=sys.stderr,
    )
    return stop.status
