"""Training callbacks the recipe needs and Keras does not ship.

Each one holds numpy arrays and plain values only (no tf.data objects), so
KerasTuner can deep-copy it for every trial.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from . import pictures, runs
from .models import softmax


class HistoryCSV(keras.callbacks.Callback):
    """Writes one row per epoch to a CSV, exactly once per epoch even across resumes.

    Row 0 holds the losses measured before the first step. When a run resumes at
    epoch k (from its backup), rows after k are dropped first: they belong to an
    epoch whose weights were never backed up.

    Each epoch appends its row in one write (the file is rewritten whole only when a new
    column appears), so an epoch costs the same on the thousandth as on the first. A
    row cut short (a power cut, a full disk) is never read back: it has no newline, and
    read_history skips it; it belongs to an epoch after the last backup anyway.

    Args:
        path: the CSV file.
        initial_logs: metrics measured before training (written as epoch 0 on a fresh run).
        extra: columns with the same value on every row this fit writes (e.g. its phase).

    Example:
        >>> model.fit(ds, epochs=5, callbacks=[HistoryCSV("history.csv", {"val_loss": 2.3})])
    """

    def __init__(self, path, initial_logs: dict | None = None, extra: dict | None = None):
        super().__init__()
        self.path = Path(path)
        self.initial_logs = initial_logs or {}
        self.extra = extra or {}
        self.rows: list[dict] | None = None
        self._columns: list[str] = []

    def on_train_begin(self, logs=None):
        self.rows = None

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch fit runs is the one it resumes at: known here whatever order the
        # callbacks (BackupAndRestore among them) ran their on_train_begin in.
        if self.rows is None:
            self.rows = [row for row in read_history(self.path) if int(row["epoch"]) <= epoch]
            if not self.rows and self.initial_logs:
                self.rows = [{"epoch": 0, **self.initial_logs}]
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}, **self.extra}
        row["learning_rate"] = _current_learning_rate(self.model)
        self.rows.append(row)
        if set(row) <= set(self._columns):
            line = io.StringIO()
            csv.DictWriter(line, fieldnames=self._columns).writerow(row)
            runs.append_line(self.path, line.getvalue())
        else:
            self._write()

    def _write(self):
        columns = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]

        def write(path):
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        runs.write_whole(self.path, write)
        self._columns = columns


def read_history(path) -> list[dict]:
    """The rows of a HistoryCSV file, values as numbers; a row cut short is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    text = text[: text.rfind("\n") + 1]  # a last row without its newline was cut short
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if None in row or None in row.values():  # more or fewer cells than columns
            continue
        try:
            rows.append(
                {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            )
        except ValueError:
            continue
    return rows


def _current_learning_rate(model) -> float:
    optimizer = model.optimizer
    rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


class EarlyStop(keras.callbacks.Callback):
    """Ends the fit `patience` epochs after its lowest val_loss (R4.11, T15), counting as
    Keras's EarlyStopping does, and across a resume: `seen` are the val_losses of the epochs
    a killed run had done before its backup, so the rerun stops at the epoch an uninterrupted
    run stops at. Keras's own callback starts counting again at every fit."""

    def __init__(self, patience: int, seen=()):
        super().__init__()
        self.patience = patience
        self.best, self.wait = math.inf, 0
        for loss in seen:
            self._count(loss)

    def _count(self, loss: float) -> None:
        if loss < self.best:
            self.best, self.wait = loss, 0
        else:  # a NaN too
            self.wait += 1

    def on_epoch_end(self, epoch, logs=None):
        self._count(float(logs["val_loss"]))
        if self.wait >= self.patience:
            self.model.stop_training = True


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss or weight and says what to try (T1).

    Keras's TerminateOnNaN stops too but only prints the batch; this keeps the
    diagnosis in `self.message` for the caller to report and exit non-zero. The
    weights are checked at every epoch's end (~0.3 ms for the digits convnet) because
    a NaN can kill a network without ever reaching the loss: on CPUs whose vector max
    returns the other operand for NaN, ReLU turns a NaN input into 0, its gradient
    makes the first kernel NaN, and from then on every ReLU outputs 0 and the loss sits
    at the priors' value, finite.

    Example:
        >>> guard = NaNGuard()
        >>> model.fit(ds, callbacks=[guard]); guard.message
    """

    # Keras (undocumented, read by its CallbackList) runs the batch hooks on a worker thread
    # only when every callback sets this or overrides no batch hook, and only on a backend
    # it holds thread-safe: JAX (multi_worker), not TensorFlow in Keras 3.15, where every
    # hook runs on the training thread anyway. Setting stop_training from that thread takes
    # effect after the next batch. A test in test_callbacks.py fails if Keras changes this.
    async_safe = True

    ADVICE = (
        "lower optimizer.learning_rate (now {rate:.3g}) by 3-10x, check the inputs for NaN "
        "or huge values (make inspect), and check a custom loss or model for log(0) or "
        "division by zero"
    )

    def __init__(self):
        super().__init__()
        self.message = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.message = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.message is None and loss is not None and not math.isfinite(float(loss)):
            self._stop(
                f"the training loss became {float(loss)} at epoch {self._epoch + 1}, "
                f"batch {batch + 1}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.message is not None:
            return
        for variable in self.model.trainable_variables:
            if not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
                self._stop(
                    f"the weights {variable.path} became NaN or infinite by the end of epoch "
                    f"{epoch + 1} while the loss stayed finite"
                )
                return

    def _stop(self, what: str) -> None:
        self.message = f"{what}: {self.ADVICE.format(rate=_current_learning_rate(self.model))}"
        self.model.stop_training = True


class PredictionPanel(keras.callbacks.Callback):
    """Draws predictions on one fixed validation batch before training and after each epoch.

    The batch is chosen once, so the pictures show how the same examples move from
    the priors towards their labels; a prediction that never moves, or moves the
    wrong way, shows up here before it shows up in any metric. Pictures go to
    `<folder>/epoch_NNN.png` and, when `log_dir` is given, to TensorBoard images.

    Args:
        x: the batch as it enters the network (normalized).
        labels: class indices, or targets in their own units.
        folder: where the PNG files go.
        task: "classification" or "regression".
        class_names: names of the classes (classification).
        images: raw images for the thumbnails (uint8), or None for tables.
        to_units: maps network outputs to target units (regression).
        log_dir: TensorBoard log folder, or None.

    Example:
        >>> panel = PredictionPanel(x[:16], y[:16], "runs/a/predictions", "classification", names)
        >>> model.fit(ds, callbacks=[panel])
    """

    def __init__(
        self, x, labels, folder, task, class_names=(), images=None, to_units=None, log_dir=None
    ):
        super().__init__()
        self.x = np.asarray(x)
        self.labels = np.asarray(labels)
        self.folder = Path(folder)
        self.task = task
        self.class_names = list(class_names)
        self.images = images
        self.to_units = to_units
        self.log_dir = log_dir
        self._events = None
        self._worker = None
        self._pending = []
        self._inputs = None
        self._draw_classes = None

    def on_train_begin(self, logs=None):
        # Drawing and writing (~2.5 ms) happen on a worker thread while the next epoch
        # trains; only the prediction (~1 ms) holds up training. Created here, not in
        # __init__, so KerasTuner can still deep-copy the callback.
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._pending = []
        # A tensor once, rather than the numpy batch converted at every prediction.
        self._inputs = keras.ops.convert_to_tensor(self.x)
        if self.task == "classification" and self._draw_classes is None:
            # The canvas and thumbnails of the fixed batch, laid out once for every epoch.
            self._draw_classes = pictures.classification_panel_drawer(
                self.labels, self.class_names, self.images
            )
        if self.log_dir:
            self._events = EventFile(Path(self.log_dir) / "predictions")

    def on_epoch_begin(self, epoch, logs=None):
        # Epoch 0 (before any step) only on a fresh run: a resumed fit begins at a later epoch.
        if epoch == 0:
            self._submit(0)

    def on_epoch_end(self, epoch, logs=None):
        self._submit(epoch + 1)

    def on_train_end(self, logs=None):
        try:
            self.wait()
        finally:
            self._worker.shutdown()
            self._worker, self._pending = None, []
            if self._events is not None:
                self._events.close()
                self._events = None

    def wait(self) -> None:
        """Blocks until every picture submitted so far is drawn and written; re-raises a
        drawing error here rather than losing it."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _submit(self, epoch: int) -> None:
        strategy = getattr(self.model, "distribute_strategy", None)  # TensorFlow backend only
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            # predict_on_batch would hand every replica the whole batch and concatenate
            # their outputs (N copies); predict splits the batch between them.
            outputs = self.model.predict(self.x, batch_size=len(self.x), verbose=0)
        else:  # the compiled predict function: ~1 ms here, against ~10 ms for model(x)
            outputs = self.model.predict_on_batch(self._inputs)
        running = []
        for future in self._pending:  # one pass: a future that finishes meanwhile stays
            if future.done():
                future.result()  # a drawing error stops the run at the next epoch
            else:
                running.append(future)
        self._pending = running
        outputs = np.asarray(outputs, dtype=np.float32)
        self._pending.append(self._worker.submit(self.draw, epoch, outputs))

    def draw(self, epoch: int, outputs: np.ndarray) -> pictures.Image.Image:
        """Draws and writes the picture of one epoch from the model's outputs on the batch."""
        if self.task == "classification":
            probabilities = softmax(outputs)
            accuracy = float((probabilities.argmax(axis=1) == self.labels).mean())
            panel = self._draw_classes(
                probabilities, f"epoch {epoch}  fixed val batch accuracy {accuracy:.2f}"
            )
        else:
            predictions = outputs[:, 0] if self.to_units is None else self.to_units(outputs[:, 0])
            error = float(np.abs(predictions - self.labels).mean())
            panel = pictures.regression_panel(
                self.labels, predictions, f"epoch {epoch}  MAE {error:.3g}"
            )
        png = pictures.encode_png(panel)  # encoded once, for the file and for TensorBoard
        path = self.folder / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        if self._events is not None:
            self._events.write(epoch, images={"fixed_batch_predictions": (png, *panel.size)})
        return panel


class EpochTensorBoard(keras.callbacks.Callback):
    """Each epoch's metrics in TensorBoard, laid out as Keras's TensorBoard callback does:
    `train/` and `validation/`, named `epoch_<metric>`, the learning rate included, the
    epoch's index as the step.

    Keras 3.15's callback, even with update_freq="epoch", calls tf.summary for every metric
    at every batch (a no-op without its batch writer, but an eager call each; and a batch
    hook keeps all of them on the training thread on JAX, see NaNGuard.async_safe), and
    writes each validation metric twice. This writes each epoch once, through tf.summary,
    and flushes it, so a running TensorBoard shows the epoch as it ends.

    Each fit writes files of its own: a resumed or extended run (whose fit starts at its
    `initial_epoch`) goes on from the epoch after its backup's. The epochs a killed run
    logged after its last backup are logged again, so TensorBoard shows those twice.

    Args:
        log_dir: the run's TensorBoard folder.

    Example:
        >>> model.fit(ds, validation_data=val, callbacks=[EpochTensorBoard("runs/a/tensorboard")])
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._files = {}

    def on_train_begin(self, logs=None):
        # Opened here, not in __init__, so KerasTuner can still deep-copy the callback.
        self._files = {part: EventFile(self.log_dir / part) for part in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = {**(logs or {}), "learning_rate": _current_learning_rate(self.model)}
        train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        self._files["train"].write(epoch, scalars=train)
        if val:
            self._files["validation"].write(epoch, scalars=val)

    def on_train_end(self, logs=None):
        for events in self._files.values():
            events.close()
        self._files = {}


class StepLog(keras.callbacks.Callback):
    """Every `every` steps, the training loss and the learning rate: printed, and written to
    TensorBoard as `train/batch_loss` and `train/batch_learning_rate` with the step (counted
    from the run's first) as the step: feedback per update (U13), between epoch lines.

    The loss is the mean of the steps since the previous line (or since the epoch began),
    taken from the running mean of the epoch that Keras hands every batch hook; exact when
    the batches are whole, as all but an epoch's last are.

    Args:
        every: steps between two lines.
        log_dir: the run's TensorBoard folder, or None to print only.

    Example:
        >>> model.fit(ds, epochs=3, callbacks=[StepLog(50, "runs/a/tensorboard")])
    """

    def __init__(self, every: int, log_dir=None):
        super().__init__()
        self.every = every
        self.log_dir = log_dir
        self._events = None
        self._epoch = 0
        self._last = (0, 0.0)  # the steps of this epoch at the previous line, their mean loss

    def on_train_begin(self, logs=None):
        if self.log_dir:  # opened here, not in __init__, so KerasTuner can deep-copy it
            self._events = EventFile(Path(self.log_dir) / "train")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._last = epoch, (0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1  # steps of this epoch; with steps_per_execution, the last of a call
        step = self._epoch * (self.params.get("steps") or 0) + done
        before = step - (done - self._last[0])
        if step // self.every == before // self.every or "loss" not in (logs or {}):
            return
        mean = float(logs["loss"])
        seen, seen_mean = self._last
        loss = (done * mean - seen * seen_mean) / (done - seen)
        self._last = (done, mean)
        rate = _current_learning_rate(self.model)
        print(f"step {step}: loss {loss:.4f}, learning rate {rate:.3g}", flush=True)
        if self._events is not None:
            self._events.write(step, scalars={"batch_loss": loss, "batch_learning_rate": rate})

    def on_train_end(self, logs=None):
        if self._events is not None:
            self._events.close()
            self._events = None


class WeightHistograms(keras.callbacks.Callback):
    """Every trainable variable's values as a TensorBoard histogram and its gradient's norm
    as a scalar (`train/gradient_norm/<variable>`), at each epoch's end (train.histograms).

    The gradients are those of one fixed training batch, chosen once, at the weights the
    epoch ended with, in inference mode (dropout off, batch norm on its moving statistics,
    which this pass leaves unchanged): the same batch every epoch, so the norms compare
    from epoch to epoch. They are not the gradients of the steps the epoch took; those need
    a custom train_step. A norm that falls to 0 marks dead layers (R4.13), one that grows
    by orders of magnitude a rate too high (U19).

    Args:
        x: the training batch as it enters the network (normalized).
        y: its targets as the loss takes them.
        log_dir: the run's TensorBoard folder.

    Example:
        >>> model.fit(ds, callbacks=[WeightHistograms(x[:64], y[:64], "runs/a/tensorboard")])
    """

    def __init__(self, x, y, log_dir):
        super().__init__()
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.log_dir = Path(log_dir)
        self._events = None

    def on_train_begin(self, logs=None):
        self._events = EventFile(self.log_dir / "train")

    def on_epoch_end(self, epoch, logs=None):
        variables = self.model.trainable_variables
        norms = {
            f"gradient_norm/{variable.path}": float(np.linalg.norm(gradient))
            for variable, gradient in zip(variables, self.gradients(), strict=True)
            if gradient is not None
        }
        values = {v.path: keras.ops.convert_to_numpy(v) for v in variables}
        self._events.write(epoch, scalars=norms, histograms=values)

    def gradients(self) -> list:
        """The gradients of the compiled loss on the fixed batch, one per trainable variable."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = self.model(self.x, training=False)
            loss = self.model.compute_loss(x=self.x, y=self.y, y_pred=outputs, training=False)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        return [None if g is None else tf.convert_to_tensor(g).numpy() for g in gradients]

    def on_train_end(self, logs=None):
        if self._events is not None:
            self._events.close()
            self._events = None


def hparam_value(value):
    """A config value as TensorBoard's HParams tab takes it: a number, a bool or a string."""
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)  # lists, mappings and null, as text


def write_hparams(log_dir, hparams: dict, metrics: dict, step: int = 0) -> None:
    """One run's hyperparameters and its final metrics in `log_dir`, where TensorBoard's
    HParams tab finds them and sets the runs side by side (tensorboard --logdir runs).

    The folder's own event files hold only these: older ones (an earlier finish of a run
    continued since, or a trial run again) are replaced, so each run shows once."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    log_dir = Path(log_dir)
    for old in log_dir.glob("events.out.tfevents.*"):
        old.unlink()
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default(step=step):
        hp.hparams({key: hparam_value(value) for key, value in hparams.items()})
        for tag, value in metrics.items():
            tf.summary.scalar(tag, float(value))
    writer.close()


def run_hparams(config, report: dict, history: list[dict]) -> tuple[dict, dict]:
    """A finished training's HParams: every config key (dotted) and, as its metrics, each
    test-set number of metrics.json (`test_<metric>`), the best val loss and the epochs."""
    from .config import iter_fields

    hparams = {key: value for key, value, _ in iter_fields(config)}
    metrics = {
        f"test_{key}": value
        for key, value in report["model"].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    losses = [row["val_loss"] for row in history if "val_loss" in row]
    if losses:
        metrics["best_val_loss"] = min(losses)
    metrics["epochs"] = report["epochs"]
    return hparams, metrics


def write_trial_hparams(trial, objective: str, log_dir) -> None:
    """A KerasTuner trial's sampled values and its objective in `<log_dir>/trial-<id>/`
    (a failed trial: its values alone)."""
    scored = trial.status == "COMPLETED" and trial.score is not None
    write_hparams(
        Path(log_dir) / f"trial-{trial.trial_id}",
        trial.hyperparameters.values,
        {objective: trial.score} if scored else {},
    )


class EventFile:
    """A TensorBoard event file written through tf.summary: scalars with tf.summary.scalar,
    pictures with tf.summary.write as tf.summary.image writes them (the strings [width,
    height, PNG] under the image plugin's name), from the PNG the picture's file already
    holds: tf.summary.image would encode the picture again on the training thread, every
    epoch, and TensorBoard would show a copy instead of the file's bytes. Flushed at
    every write, so a running TensorBoard shows each epoch as it ends. Each one opens a
    file of its own in `folder`.

    Example:
        >>> events = EventFile(Path("runs/a/tensorboard/train"))
        >>> events.write(3, scalars={"epoch_loss": 0.25}); events.close()
    """

    def __init__(self, folder: Path):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(str(folder))
        # What TensorBoard's image plugin reads a summary as (its own metadata, content empty).
        self._image = tf.compat.v1.SummaryMetadata()
        self._image.plugin_data.plugin_name = "images"

    def write(
        self,
        step: int,
        scalars: dict | None = None,
        images: dict | None = None,
        histograms: dict | None = None,
    ) -> None:
        """One step: scalars {tag: number}, images {tag: (PNG bytes, width, height)},
        histograms {tag: array}."""
        import tensorflow as tf

        with self._writer.as_default(step=step):
            for tag, value in (scalars or {}).items():
                tf.summary.scalar(tag, float(value))
            for tag, values in (histograms or {}).items():
                tf.summary.histogram(tag, values)
            for tag, (png, width, height) in (images or {}).items():
                strings = tf.constant([b"%d" % width, b"%d" % height, png])
                tf.summary.write(tag, strings, metadata=self._image)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class SaveBudget:
    """Allows saves when the time since the last ones is at least their cost / `fraction`.

    Saving a model takes ~40-100 ms whatever its size (Keras walks every object);
    on short epochs (digits: ~0.15 s) saving every epoch would add 25-60% to training.
    With fraction=0.01 saves cost at most ~1% of the time: every epoch once epochs
    are longer than ~100x a save, and every few seconds on tiny epochs, which is
    all a crash can lose then.

    One budget is shared by every saver of a fit (the backup and the best checkpoint):
    it decides once per epoch, so they save at the same epoch ends and together cost
    1%, not 1% each. After a stop signal (runs.stop_on_signals) every save is due: the
    run stops at this epoch's end and must lose none of it.

    `clock` is what the time is read from (time.monotonic): the tests give a fake one to
    step through the budget's decisions; benchmarks/performance.py sets the attribute to
    one that stands still while the other side of its comparison trains.
    """

    # Until the first saves are timed, assume a typical one; so the first save comes only
    # after cost / fraction seconds (10 s) of training, and a short run saves only at its end.
    FIRST_GUESS = 0.1

    def __init__(self, fraction: float = 0.01, clock=time.monotonic):
        self.fraction = fraction
        self.clock = clock
        self.cost = self.FIRST_GUESS
        self.restart()

    def restart(self) -> None:
        """The clock starts with training (each saver calls this in on_train_begin)."""
        self.last = self.clock()
        self._epoch = None
        self._due = False
        self._spent = 0.0

    def due(self, epoch: int) -> bool:
        if epoch != self._epoch:  # the first saver to ask this epoch decides for all
            self._epoch = epoch
            waited = self.clock() - self.last >= self.cost / self.fraction
            self._due = waited or runs.stop_requested() is not None
            self._spent = 0.0
        return self._due

    def spend(self, save) -> None:
        """Runs `save`; the epoch's saves together are the cost the next wait is based on."""
        started = self.clock()
        save()
        self.last = self.clock()
        self._spent += self.last - started
        self.cost = self._spent


def _seed_states(model) -> list:
    # model.variables, unlike model.weights (what Keras saves), also holds the states of
    # the SeedGenerators that dropout and other random layers draw from.
    saved = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in saved]


def _seed_state_values(model) -> list:
    return [keras.ops.convert_to_numpy(state) for state in _seed_states(model)]


def save_seed_states(model, path: Path) -> None:
    """Writes where the model's random layers are in their sequences, beside a checkpoint."""
    states = np.array(_seed_state_values(model), np.int64)
    runs.write_whole(Path(path), lambda partial: np.save(partial, states))


def load_seed_states(model, path: Path) -> None:
    """Puts the random layers back where save_seed_states found them, so dropout goes on
    with the masks an uninterrupted run would draw. Nothing to do without the file."""
    path = Path(path)
    if not path.is_file():
        return
    states, variables = np.load(path), _seed_states(model)
    if len(states) == len(variables):  # else another model: its layers start afresh
        for variable, state in zip(variables, states, strict=True):
            variable.assign(state.astype(variable.dtype))


# The files of one backup generation (runs.generations): the weights with the optimizer
# state, the random layers' seed states (which Keras's weights file leaves out), the epoch.
WEIGHTS = "weights.weights.h5"
SEEDS = "seed_states.npy"
EPOCH = "epoch.json"
GENERATIONS = 2  # the newest and the one before: a save that dies midway leaves the newest


class BudgetedBackupAndRestore(keras.callbacks.Callback):
    """Backs up the training state (weights, optimizer state, seed states, epoch; T14, U1) at
    the end of an epoch when the SaveBudget allows; `restore_backup` puts it back.

    Each backup is a new folder, `epoch-NNNNNN`, written beside the previous one and
    renamed into place once complete (runs.write_whole), so a kill or a full disk during a
    save leaves the previous backup whole. Keras's BackupAndRestore rewrites its files in
    place instead, and a kill mid-save leaves none that loads. The two newest generations
    are kept: the older is the fallback when the newer cannot be read.

    A killed run restarted with the same backup folder resumes after the last epoch
    backed up, which is the last finished epoch whenever epochs take more than ~100x one
    save. After a stop signal it backs up at once and ends the fit (GracefulStop).

    Args:
        backup_dir: the run's backup folder.
        budget: the SaveBudget it shares with the other savers of the fit.
        guard: the fit's NaNGuard, placed before it: weights it found NaN are never backed
            up, so a rerun resumes from the last finite ones.

    Example:
        >>> model.fit(ds, epochs=50, callbacks=[BudgetedBackupAndRestore("runs/a/backup")])
    """

    def __init__(self, backup_dir, budget: SaveBudget | None = None, guard=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.budget = budget or SaveBudget()
        self.guard = guard
        self.saved_epoch = None  # the epoch the newest backup on disk holds
        self.stopped_by = None  # the stop signal (runs.Stopped) that ended the fit, if one did

    def on_train_begin(self, logs=None):
        self.budget.restart()
        newest = runs.generations(self.backup_dir)
        self.saved_epoch = newest[0].epoch if newest else None
        self.stopped_by = None

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.message is not None:
            return  # the fit ends with the guard's message; nothing here is worth resuming
        if self.budget.due(epoch):
            self.budget.spend(lambda: self.save(epoch + 1))
        stop = runs.stop_requested()
        if stop is not None and self.saved_epoch == epoch + 1:
            self.stopped_by = stop
            self.model.stop_training = True

    def save(self, epoch: int) -> None:
        """Writes a new generation holding the model as it is after `epoch` epochs."""

        def write(folder: Path) -> None:
            folder.mkdir()
            np.save(folder / SEEDS, np.array(_seed_state_values(self.model), np.int64))
            self.model.save_weights(folder / WEIGHTS)
            (folder / EPOCH).write_text(json.dumps({"epoch": epoch}) + "\n")

        runs.write_whole(runs.generation_path(self.backup_dir, epoch), write)
        self.saved_epoch = epoch
        for old in runs.generations(self.backup_dir)[GENERATIONS:]:
            shutil.rmtree(old.path, ignore_errors=True)


def readable_backup(backup_dir) -> tuple[runs.Generation | None, list[str]]:
    """The newest backup generation that reads back whole, and why each newer one did not
    (a truncated or damaged file). Those are deleted: nothing can resume from them. So are
    the leftovers of a save that never finished."""
    backup_dir = Path(backup_dir)
    for leftover in backup_dir.glob("*.partial*"):
        shutil.rmtree(leftover, ignore_errors=True)
    skipped = []
    for generation in runs.generations(backup_dir):
        problem = _unreadable_generation(generation)
        if problem is None:
            return generation, skipped
        skipped.append(f"{generation.path.name}: {problem}")
        shutil.rmtree(generation.path, ignore_errors=True)
    return None, skipped


def _unreadable_generation(generation: runs.Generation) -> str | None:
    import h5py

    def read(name, item):  # every array, to the last byte; returns None to go on
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        saved = json.loads((generation.path / EPOCH).read_text())["epoch"]
        if saved != generation.epoch:
            raise ValueError(f"{EPOCH} says epoch {saved}")
        np.load(generation.path / SEEDS)
        with h5py.File(generation.path / WEIGHTS, "r") as weights:
            weights.visititems(read)
    except Exception as err:  # whatever the damage, this generation cannot be resumed from
        return runs.reason(err)
    return None


def restore_backup(model, generation: runs.Generation) -> None:
    """Puts a backup generation into a built, compiled model: weights, optimizer state (the
    optimizer is built first, so there is state to load into) and the random layers' seeds."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(generation.path / WEIGHTS)
    load_seed_states(model, generation.path / SEEDS)


def unreadable_checkpoint(path) -> str | None:
    """Why a BestCheckpoint file and its record (`.json` beside it) cannot be read back, or
    None when both read (or neither exists)."""
    path = Path(path)
    record = path.with_suffix(".json")
    if not path.exists() and not record.exists():
        return None
    try:
        json.loads(record.read_text())["epoch"]
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # every member against its checksum
        if damaged is not None:
            raise ValueError(f"{damaged} inside it is damaged")
    except Exception as err:  # whatever the damage, the file cannot be trusted
        return runs.reason(err)
    return None


class GracefulStop(keras.callbacks.Callback):
    """Lets a stop signal (SIGTERM, SIGINT: runs.stop_on_signals) cut an epoch after its
    current step only when the backup holds the epoch before it, so the cut loses no
    finished epoch. Otherwise (the budget skipped the last backup, which happens on short
    epochs only) the epoch runs to its end, where the backup is written at once and the
    fit ends (SaveBudget.due, BudgetedBackupAndRestore).

    First in the callback list: nothing is cut from the start of an epoch's end until the
    next epoch begins, so the history row, the backup and the best checkpoint of an epoch
    are all written or none is.

    Args:
        backup: the fit's BudgetedBackupAndRestore.
    """

    def __init__(self, backup: BudgetedBackupAndRestore):
        super().__init__()
        self.backup = backup

    def on_epoch_begin(self, epoch, logs=None):
        runs.allow_cut((self.backup.saved_epoch or 0) == epoch)

    def on_epoch_end(self, epoch, logs=None):
        runs.allow_cut(False)

    def on_train_end(self, logs=None):
        runs.allow_cut(False)


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the best model so far (lowest `monitor`) on disk as a .keras file.

    The best weights are copied in memory on every improvement (~1 ms) and written
    when the SaveBudget allows, and always at the end of training, so the file on
    disk is at most a few seconds behind the best epoch. Each write replaces the file
    whole (a kill mid-save leaves the previous one) and records its epoch and value
    beside it (best.json), which a resumed run starts from: the history's best epoch
    may never have reached the file.

    Args:
        path: the .keras file.
        monitor: the metric to minimize.
        budget: the SaveBudget it shares with the other savers of the fit.

    Example:
        >>> model.fit(ds, validation_data=val, callbacks=[BestCheckpoint("runs/a/best.keras")])
    """

    def __init__(self, path, monitor: str = "val_loss", budget: SaveBudget | None = None):
        super().__init__()
        self.path = Path(path)
        self.record = self.path.with_suffix(".json")
        self.monitor = monitor
        self.budget = budget or SaveBudget()
        self.best, self._epoch = math.inf, None
        if self.record.is_file():  # an earlier part of this run: only better replaces it
            try:
                self.best = json.loads(self.record.read_text()).get(monitor, math.inf)
            except ValueError:  # damaged: the best is chosen again from here on
                pass
        self._weights = None

    def on_train_begin(self, logs=None):
        self.budget.restart()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(
                f"BestCheckpoint monitors {self.monitor!r}, which is not in the logs; "
                f"available: {', '.join(sorted(logs or {}))}",
                stacklevel=2,
            )
            return
        if current < self.best:
            self.best, self._epoch = float(current), epoch + 1
            self._weights = self.model.get_weights()
        if self._weights is not None and self.budget.due(epoch):
            self.budget.spend(self._write)

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self._write()

    def _write(self):
        current = self.model.get_weights()
        self.model.set_weights(self._weights)
        runs.write_whole(self.path, self.model.save)
        self.model.set_weights(current)
        self._weights = None
        record = json.dumps({"epoch": self._epoch, self.monitor: self.best}) + "\n"
        runs.write_text(self.record, record)
