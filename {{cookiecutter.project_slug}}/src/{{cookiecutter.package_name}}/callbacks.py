"""Training callbacks the recipe needs and Keras does not ship.

Each one holds numpy arrays and plain values only (no tf.data objects), so
KerasTuner can deep-copy it for every trial.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import keras
import numpy as np

from . import pictures


class HistoryCSV(keras.callbacks.Callback):
    """Writes one row per epoch to a CSV, exactly once per epoch even across resumes.

    Row 0 holds the losses measured before the first step. When a run resumes at
    epoch k (BackupAndRestore), rows after k are dropped first: they belong to an
    epoch whose weights were never backed up.

    Args:
        path: the CSV file.
        initial_logs: metrics measured before training (written as epoch 0 on a fresh run).

    Example:
        >>> model.fit(ds, epochs=5, callbacks=[HistoryCSV("history.csv", {"val_loss": 2.3})])
    """

    def __init__(self, path, initial_logs: dict | None = None):
        super().__init__()
        self.path = Path(path)
        self.initial_logs = initial_logs or {}
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        start = getattr(self.model, "_initial_epoch", None) or 0
        self.rows = [row for row in read_history(self.path) if int(row["epoch"]) <= start]
        if not self.rows and self.initial_logs:
            self.rows = [{"epoch": 0, **self.initial_logs}]
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row["learning_rate"] = _current_learning_rate(self.model)
        self.rows.append(row)
        self._write()

    def _write(self):
        keys = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        temporary.replace(self.path)  # a kill mid-write never leaves half a file


def read_history(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
        for row in rows
    ]


def _current_learning_rate(model) -> float:
    optimizer = model.optimizer
    rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss and says what to try (T1).

    Keras's TerminateOnNaN stops too but only prints the batch; this keeps the
    diagnosis in `self.message` for the caller to report and exit non-zero.

    Example:
        >>> guard = NaNGuard()
        >>> model.fit(ds, callbacks=[guard]); guard.message
    """

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
        if loss is None:
            return
        if not math.isfinite(float(loss)):
            rate = _current_learning_rate(self.model)
            self.message = (
                f"the training loss became {float(loss)} at epoch {self._epoch + 1}, "
                f"batch {batch + 1}: lower optimizer.learning_rate (now {rate:.3g}) by 3-10x, "
                "check the inputs for NaN or huge values (make inspect), and check a custom "
                "loss or model for log(0) or division by zero"
            )
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
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir and self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(Path(self.log_dir) / "predictions"))
        start = getattr(self.model, "_initial_epoch", None) or 0
        if start == 0:
            self.draw(0)

    def on_epoch_end(self, epoch, logs=None):
        self.draw(epoch + 1)

    def draw(self, epoch: int) -> np.ndarray:
        outputs = np.asarray(self.model(self.x, training=False), dtype=np.float32)
        if self.task == "classification":
            shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            accuracy = float((probabilities.argmax(axis=1) == self.labels).mean())
            title = f"epoch {epoch}  fixed val batch accuracy {accuracy:.2f}"
            panel = pictures.classification_panel(
                probabilities, self.labels, self.class_names, title, self.images
            )
        else:
            predictions = outputs[:, 0] if self.to_units is None else self.to_units(outputs[:, 0])
            error = float(np.abs(predictions - self.labels).mean())
            panel = pictures.regression_panel(
                self.labels, predictions, f"epoch {epoch}  MAE {error:.3g}"
            )
        pictures.save_array(panel, self.folder / f"epoch_{epoch:03d}.png")
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default():
                tf.summary.image("fixed_batch_predictions", panel[None], step=epoch)
            self._writer.flush()
        return panel
