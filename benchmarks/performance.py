"""Where the default project's training time goes: input pipeline, steps, callbacks.

Bakes the template with its defaults (digits, convnet), imports the baked package,
builds the config from its configs/default.yaml and measures, in this one process:

1. Input pipeline vs training throughput: examples/s of the training pipeline `train`
   builds (`make_dataset(..., shuffle=True)`) with nothing consuming it, vs examples/s
   of a plain `model.fit` on that pipeline. The pipeline must be >= 10x faster.
2. Step time, real pipeline vs in-memory batches: a plain `fit` on that pipeline vs on
   the same batches held in memory, same initial weights and number of steps. At most
   1.05x: the pipeline keeps up with the steps and costs them no time.
3. The template's callbacks vs a plain `fit`: every callback `make train` uses (history
   CSV, backup, best checkpoint, early stopping set not to stop, TensorBoard, NaN guard,
   the fixed-batch prediction picture every epoch), both with validation, as many epochs
   as the default run trains. At most 1.10x.

The machine may be busy with other work, and its speed drifts by 2x within minutes, so
the two sides of a comparison run side by side:
- Row 1: 60 pairs of 10 epochs, back to back in alternating order; the result is the
  median of the pairs' ratios with a 95% confidence interval of that median.
- Rows 2 and 3: the two sides' `fit`s run at the same time in two threads that take
  turns, an epoch each (`Turns`), so every epoch of one side is timed next to the same
  epoch of the other, tens of milliseconds apart, and a drift falls on both alike. Each
  `fit` runs the default run's epochs through one iterator, as `make train`'s does; 6
  rounds, the sides' order swapped each round, after a short warm-up round. The result
  is the ratio of the two sides' total times (one-off work at a fit's start and end
  included) with a 95% bootstrap interval over the epoch pairs.

What keeps each measurement about one thing:
- The pipeline alone is drained by a compiled loop (`next(iterator)` inside a
  tf.function, as `fit`'s train step pulls its batch) through one iterator, as `fit`
  keeps one on the endless stream `train` gives it (`steps_per_epoch`). A Python
  `for batch in dataset` loop would also time the eager `next` call, about 0.3 ms a
  batch on a 2-core machine: the consumer's cost.
- "In memory" is one epoch of the pipeline's own batches, stacked once and served by
  `from_tensor_slices` (the short last batch appended), repeated, and fitted through one
  iterator like the real side: the same values, shapes and steps, and a step's input
  costs one slice, no function call and no background thread
  (tf.data's autotuning, on by default, is turned off for it: it would run a thread per
  iterator and inject a prefetch, which cost ~15% of a digits step on 2 cores).
  Not `fit` on numpy arrays: Keras turns arrays into a tf.data pipeline of its own
  (index shuffling, a gather per batch, prefetch), an input cost of its own. Not
  `from_tensors(batch).repeat(steps)`: an epoch ends with a short batch (digits: 1257 =
  19 x 64 + 41); repeating a full one would train on more examples, at another input
  shape, than the real run.
- Each side has its own model, built from the seed (the same initial weights), traced by
  a warm-up epoch and reset to those weights before every timed fit.
- Taking turns leaves each side's background work where it belongs: before the
  template side hands over, it waits for its picture to be drawn (in a run the drawing
  overlaps the next epoch, so row 3 counts it in full: an upper bound), and the real
  pipeline's prefetch thread can only fill its small buffer during the other side's
  turn (a batch or two, ~0.1 ms against ~50 ms epochs).

Then one more fit with the callbacks times each callback's hooks (the training thread's
share of row 3) and the picture's drawing thread.

`--tensorboard` measures only what TensorBoard costs an epoch of about a second (issue 14:
public APIs unless they cost more than 2% of one): the default convnet made wider
(TENSORBOARD_MODEL) on digits, three fits taking turns an epoch each, `--rounds` rounds
of `--epochs` (10) epochs: the template's EpochTensorBoard and PredictionPanel writing
through tf.summary, the same written as before issue 14 (Event protos built with
TensorBoard's internals, kept here only: `proto_tensorboard`), and the picture without
TensorBoard. Each ratio of total times has a 95% bootstrap interval; the hooks on the
training thread and the drawing thread's CPU are timed too, to the tenth of a millisecond.

Prints the Markdown tables of docs/performance.md on stdout, each timing on stderr.

    .venv/bin/python benchmarks/performance.py [--quick] [--input-repeats 60] [--rounds 6]
    .venv/bin/python benchmarks/performance.py --tensorboard [--rounds 6] [--epochs 10]
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import results  # the sibling script: the same bake and `train` command

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The thresholds: (at least or at most, limit).
PIPELINE_SPEEDUP = (">=", 10.0)
STEP_TIME_RATIO = ("<=", 1.05)
CALLBACK_OVERHEAD = ("<=", 1.10)
# Issue 14: TensorBoard through public APIs unless that costs more than 2% of a ~1 s epoch.
TENSORBOARD_COST = ("<=", 1.02)
# The default run's convnet made wider, for epochs of about a second on digits on 2 cores.
TENSORBOARD_MODEL = ("model.filters=128", "model.width=256")


def machine() -> str:
    """CPU model, cores, GPUs and versions: what the numbers depend on."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields = {}
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        # A VM's model name can be just "AMD EPYC": family and model tell the generation.
        cpu = fields.get("model name", cpu)
        if "cpu family" in fields:
            cpu += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (
        f"{cpu}, {results.machine()}, {gpus or 'no'} GPU, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )


def load_project(project: Path, overrides: list[str]) -> SimpleNamespace:
    """The baked package's modules, its default config with overrides, data and pipelines."""
    sys.path.insert(0, str(project / "src"))
    package = results.package_name(project)
    p = SimpleNamespace(
        config_lib=importlib.import_module(f"{package}.config"),
        data_lib=importlib.import_module(f"{package}.data"),
        pipeline=importlib.import_module(f"{package}.pipeline"),
        seeding=importlib.import_module(f"{package}.seeding"),
        models=importlib.import_module(f"{package}.models"),
        train=importlib.import_module(f"{package}.train"),
        callbacks=importlib.import_module(f"{package}.callbacks"),
    )
    p.config = p.config_lib.build_config([project / "configs" / "default.yaml"], overrides)
    p.seeding.seed_everything(p.config)  # as `train` does before loading: op determinism too
    p.data = p.data_lib.load(p.config)
    batch = p.config.train.batch_size
    p.examples = len(p.data.train.y)
    p.steps = p.pipeline.steps_per_epoch(p.data.train, batch)
    # The very pipelines `train` feeds `fit`.
    p.train_ds = p.pipeline.make_dataset(
        p.data, p.data.train, batch, shuffle=True, seed=p.config.seed, augment=False
    )
    p.val_ds = p.pipeline.make_dataset(p.data, p.data.val, batch, shuffle=False)
    return p


def in_memory(dataset, steps: int):
    """One epoch (`steps` batches) of `dataset`, materialized once and served as it is."""
    import tensorflow as tf

    batches = list(dataset.take(steps))
    xs, ys = zip(*batches, strict=True)
    # Every batch but the last is full, so they stack; the last may be short.
    served = tf.data.Dataset.from_tensor_slices((tf.stack(xs[:-1]), tf.stack(ys[:-1])))
    served = served.concatenate(tf.data.Dataset.from_tensors(batches[-1]))
    # tf.data's defaults would add threads of their own: an autotuning thread per iterator
    # and a prefetch injected at the end. Both off, so nothing runs beside the step.
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    return served.with_options(options)


def make_drain():
    """A compiled loop that pulls `steps` batches from an iterator and counts the examples."""
    import tensorflow as tf

    @tf.function
    def drain(iterator, steps):
        examples = tf.constant(0)
        for _ in tf.range(steps):
            x, _ = next(iterator)
            examples += tf.shape(x)[0]
        return examples

    return drain


def pipeline_seconds(drain, dataset, epochs: int, steps: int) -> tuple[float, int]:
    """Seconds to drain `epochs` epochs through one iterator, as `fit` keeps on the endless
    stream; examples."""
    examples = 0
    started = time.perf_counter()
    iterator = iter(dataset)
    for _ in range(epochs):
        examples += int(drain(iterator, steps))  # int() waits for the loop to finish
    return time.perf_counter() - started, examples


def warm_model(p, dataset, validation=None, steps_per_epoch=None):
    """A model from the seed, compiled as `train` does and traced by one epoch on `dataset`.

    Returns the model and its initial weights, which every timed fit starts from.
    """
    p.seeding.seed_everything(p.config)
    model = p.models.build_model(p.config, p.data)
    p.models.compile_model(model, p.config, p.data, p.steps)
    initial = model.get_weights()
    model.fit(
        dataset,
        validation_data=validation,
        epochs=1,
        steps_per_epoch=steps_per_epoch,
        verbose=0,
        shuffle=False,
    )
    return model, initial


def fit_seconds(model, initial, dataset, epochs, steps, validation=None, callbacks=()) -> float:
    """Seconds of `model.fit` for `epochs` epochs of `steps` steps, from the initial weights."""
    model.set_weights(initial)  # optimizer state carries over: an Adam step costs the same
    started = time.perf_counter()
    model.fit(
        dataset,
        validation_data=validation,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=list(callbacks),
        verbose=0,
        shuffle=False,  # the pipeline shuffles; fit's own flag only warns on datasets
    )
    return time.perf_counter() - started


def measure_pipeline(p, epochs: int, repeats: int) -> dict:
    """Pipeline alone vs plain fit on it (1): pairs back to back, in alternating order."""
    real, real_initial = warm_model(p, p.train_ds, steps_per_epoch=p.steps)
    drain = make_drain()
    pipeline_seconds(drain, p.train_ds, 1, p.steps)  # warm-up: tracing
    times = {"pipeline": [], "fit": []}
    produced = set()
    for repeat in range(repeats):
        for side in ("pipeline", "fit") if repeat % 2 == 0 else ("fit", "pipeline"):
            if side == "pipeline":
                seconds, examples = pipeline_seconds(drain, p.train_ds, epochs, p.steps)
                produced.add(examples)
            else:
                seconds = fit_seconds(real, real_initial, p.train_ds, epochs, p.steps)
            times[side].append(seconds)
            print(f"  {side}: {seconds:.2f} s", file=sys.stderr, flush=True)
    if produced != {p.examples * epochs}:
        raise SystemExit(f"the pipeline produced {produced} examples, not {p.examples * epochs}")
    examples = p.examples * epochs
    pipeline_rate, fit_rate = (examples / statistics.median(times[k]) for k in ("pipeline", "fit"))
    ratios = [fit / alone for alone, fit in zip(times["pipeline"], times["fit"], strict=True)]
    return median_row(
        "input pipeline alone vs training throughput",
        f"{pipeline_rate:,.0f} vs {fit_rate:,.0f} examples/s",
        ratios,
        f"{repeats} pairs of {epochs} epochs",
        PIPELINE_SPEEDUP,
    )


class Turns:
    """`fit`s, each in its own thread, that take turns an epoch each, in `order` round and
    round (two for rows 2 and 3, three for the TensorBoard comparison).

    A side's turn starts when its epoch begins and ends when the epoch's last hook has
    run; its first turn starts at on_train_begin and its last ends at on_train_end, so
    a fit's one-off work (its iterator, the picture's layout, the final save) is timed
    too. Before handing over, a side runs its `settle` (the template side waits there
    for its picture to be drawn). Nothing else runs the model while a side has its turn.
    `clock(side)` runs only during that side's turns: the time it would have seen alone.
    """

    def __init__(self, order: list[str], epochs: int, timeout: float = 600):
        self.epochs = epochs
        self.timeout = timeout
        self.go = {side: threading.Semaphore(int(i == 0)) for i, side in enumerate(order)}
        self.next = {side: order[(i + 1) % len(order)] for i, side in enumerate(order)}
        self.started = {}
        self.holder = None
        self.alone = False  # set when a side failed: the others go on without waiting
        self.seconds = {side: [] for side in order}
        self.order = []  # the sides in the order their turns ended

    def take(self, side: str) -> None:
        if not self.alone and not self.go[side].acquire(timeout=self.timeout):
            raise RuntimeError(f"{side} waited {self.timeout:.0f} s for its turn")
        self.started[side] = time.perf_counter()
        self.holder = side

    def give(self, side: str, settle=None) -> None:
        if settle is not None:
            settle()
        self.seconds[side].append(time.perf_counter() - self.started[side])
        self.order.append(side)
        self.holder = None
        self.go[self.next[side]].release()

    def abandon(self, side: str) -> None:
        """`side` failed: the other sides need not wait for it any more."""
        self.alone = True
        for other, go in self.go.items():
            if other != side:
                go.release()

    def clock(self, side: str):
        def own() -> float:
            running = time.perf_counter() - self.started[side] if self.holder == side else 0.0
            return sum(self.seconds[side]) + running

        return own

    def callbacks(self, side: str, settle=None) -> tuple:
        """The callback that takes the turn (first in the list) and the one that gives it."""
        import keras

        turns = self

        class Take(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                turns.take(side)

            def on_epoch_begin(self, epoch, logs=None):
                if epoch > 0:
                    turns.take(side)

        class Give(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch < turns.epochs - 1:
                    turns.give(side, settle)

            def on_train_end(self, logs=None):
                turns.give(side, settle)

        return Take(), Give()


def turns_fit(sides: dict, epochs: int, steps: int, swap: bool = False) -> Turns:
    """One round: every side's fit of `epochs` epochs, taking turns in the order of `sides`;
    `swap` reverses that order (with two sides, the second goes first).

    sides: name -> (model, initial weights, dataset, validation data or None,
    make_callbacks(turns, side) returning (callbacks, settle)).
    """
    order = list(sides)[::-1] if swap else list(sides)
    turns = Turns(order, epochs)
    errors = []

    def run(side):
        model, initial, dataset, validation, make_callbacks = sides[side]
        try:
            callbacks, settle = make_callbacks(turns, side)
            take, give = turns.callbacks(side, settle)
            fit_seconds(
                model, initial, dataset, epochs, steps, validation, [take, *callbacks, give]
            )
        except BaseException as error:
            errors.append(error)
            turns.abandon(side)

    threads = [threading.Thread(target=run, args=(side,)) for side in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return turns


def interleaved(sides: dict, epochs: int, steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds of every epoch of every side, over `rounds` rounds of `turns_fit`.

    A warm-up round of 2 epochs comes first and is dropped: a model's first fit in a new
    thread took up to ~0.3 s longer in its first epoch here.
    """
    turns_fit(sides, 2, steps)
    seconds = {side: [] for side in sides}
    for round_ in range(rounds):
        turns = turns_fit(sides, epochs, steps, swap=round_ % 2 == 1)
        for side in sides:
            seconds[side] += turns.seconds[side]
        totals = ", ".join(f"{side} {sum(turns.seconds[side]):.2f} s" for side in sides)
        print(f"  round {round_ + 1} of {rounds}: {totals}", file=sys.stderr, flush=True)
    return seconds


def plain_callbacks(turns, side):
    return [], None


def measure_steps(p, epochs: int, rounds: int) -> dict:
    """Plain fit on the real pipeline vs on the same batches in memory (2), taking turns."""
    memory_ds = in_memory(p.train_ds, p.steps).repeat()  # one iterator, as on the stream
    sides = {
        "real": (*warm_model(p, p.train_ds, steps_per_epoch=p.steps), p.train_ds, None),
        "memory": (*warm_model(p, memory_ds, steps_per_epoch=p.steps), memory_ds, None),
    }
    seconds = interleaved(
        {side: (*setup, plain_callbacks) for side, setup in sides.items()}, epochs, p.steps, rounds
    )
    real_ms, memory_ms = (1000 * statistics.median(seconds[k]) / p.steps for k in sides)
    return total_row(
        "step time, real pipeline vs in-memory batches",
        f"{real_ms:.2f} vs {memory_ms:.2f} ms/step",
        seconds["real"],
        seconds["memory"],
        f"{rounds} x {epochs}",
        STEP_TIME_RATIO,
    )


def measure_callbacks(p, epochs: int, rounds: int, work: Path) -> dict:
    """The template's callbacks vs a plain fit, both with validation (3), taking turns."""
    fits = []

    def template_callbacks(turns, side):
        run_dir = work / "runs" / f"callbacks-{len(fits)}"
        run_dir.mkdir(parents=True)
        callbacks, _ = p.train.make_callbacks(p.config, p.data, run_dir, {"val_loss": 0.0})
        fits.append(run_dir)
        of = {type(c): c for c in callbacks}
        # The savers spend 1% of the time they see: the side's own, not the other's turns
        # too, which would double their saves.
        of[p.callbacks.BudgetedBackupAndRestore].budget.clock = turns.clock(side)
        return callbacks, of[p.callbacks.PredictionPanel].wait  # drawing counts in the turn

    sides = {
        "template": (
            *warm_model(p, p.train_ds, p.val_ds, p.steps),
            p.train_ds,
            p.val_ds,
            template_callbacks,
        ),
        "plain": (
            *warm_model(p, p.train_ds, p.val_ds, p.steps),
            p.train_ds,
            p.val_ds,
            plain_callbacks,
        ),
    }
    seconds = interleaved(sides, epochs, p.steps, rounds)
    template_ms, plain_ms = (1000 * statistics.median(seconds[k]) for k in ("template", "plain"))
    return total_row(
        "`fit` with the template's callbacks vs plain `fit`",
        f"{template_ms:.1f} vs {plain_ms:.1f} ms/epoch",
        seconds["template"],
        seconds["plain"],
        f"{rounds} x {epochs}",
        CALLBACK_OVERHEAD,
    )


HOOKS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_epoch_end",
    "on_train_end",
)


def _timed(function, totals: dict, key: str, clock):
    @functools.wraps(function)  # keeps Keras's mark of a default hook, so async dispatch holds
    def timed(*args, **kwargs):
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += clock() - started

    return timed


def breakdown(p, epochs: int, work: Path) -> list[str]:
    """Where row 3's cost goes: ms per epoch of each callback's hooks on the training thread
    in one fit, and the CPU of the picture's drawing thread (time.thread_time)."""
    model, initial = warm_model(p, p.train_ds, p.val_ds, p.steps)
    run_dir = work / "runs" / "breakdown"
    run_dir.mkdir(parents=True)
    callbacks, _ = p.train.make_callbacks(p.config, p.data, run_dir, {"val_loss": 0.0})
    totals = collections.defaultdict(float)
    for callback in callbacks:
        name = f"`{type(callback).__name__}`"
        for hook in HOOKS:
            if not getattr(getattr(callback, hook), "_is_default", False):
                setattr(
                    callback, hook, _timed(getattr(callback, hook), totals, name, time.perf_counter)
                )
        if hasattr(callback, "draw"):
            key = f"{name}: drawing, on its own thread (CPU)"
            callback.draw = _timed(callback.draw, totals, key, time.thread_time)
    seconds = fit_seconds(model, initial, p.train_ds, epochs, p.steps, p.val_ds, callbacks)
    lines = [
        f"one fit of {epochs} epochs with the callbacks: {1000 * seconds / epochs:.0f} ms an epoch",
        "",
        "| callback (every hook it has, begin and end of the fit included) | ms per epoch |",
        "| --- | --- |",
    ]
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    lines += [f"| {name} | {1000 * total / epochs:.2f} |" for name, total in ranked]
    on_thread = sum(total for name, total in totals.items() if "drawing" not in name)
    return lines + [f"| **on the training thread, in all** | **{1000 * on_thread / epochs:.2f}** |"]


def proto_tensorboard(package_callbacks):
    """The template's TensorBoard writing before issue 14, kept here for the comparison only:
    Event protos built with TensorBoard's internals and framed by tf.io.TFRecordWriter, the
    picture as the PNG file's own bytes. Returns (ProtoTensorBoard, ProtoPanel)."""
    import itertools
    import socket

    import keras
    import numpy as np
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.image import metadata as image_metadata
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.util import tensor_util

    scalar, image = (
        m.create_summary_metadata(None, None) for m in (scalar_metadata, image_metadata)
    )
    numbers = itertools.count()

    class ProtoEventFile:
        def __init__(self, folder: Path):
            folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
            path = folder / f"{name}.{os.getpid()}.{next(numbers)}"
            self._records = tf.io.TFRecordWriter(str(path))
            self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

        def write(self, step: int, scalars=None, images=None) -> None:
            event = event_pb2.Event(wall_time=time.time(), step=step)
            for tag, value in (scalars or {}).items():
                tensor = tensor_util.make_tensor_proto(np.float32(value))
                event.summary.value.add(tag=tag, tensor=tensor, metadata=scalar)
            for tag, (png, width, height) in (images or {}).items():
                strings = np.array([b"%d" % width, b"%d" % height, png], dtype=object)
                tensor = tensor_util.make_tensor_proto(strings)
                event.summary.value.add(tag=tag, tensor=tensor, metadata=image)
            self._add(event)

        def close(self) -> None:
            self._records.close()

        def _add(self, event) -> None:
            self._records.write(event.SerializeToString())
            self._records.flush()

    class ProtoTensorBoard(keras.callbacks.Callback):
        def __init__(self, log_dir):
            super().__init__()
            self.log_dir = Path(log_dir)
            self.files = {}

        def on_train_begin(self, logs=None):
            parts = ("train", "validation")
            self.files = {part: ProtoEventFile(self.log_dir / part) for part in parts}

        def on_epoch_end(self, epoch, logs=None):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs = {**(logs or {}), "learning_rate": rate}
            train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
            val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
            self.files["train"].write(epoch, scalars=train)
            if val:
                self.files["validation"].write(epoch, scalars=val)

        def on_train_end(self, logs=None):
            for events in self.files.values():
                events.close()

    class ProtoPanel(package_callbacks.PredictionPanel):
        """The template's PredictionPanel with the picture written to TensorBoard as before:
        the bytes of the PNG file it has just written (read back: ~0.05 ms)."""

        def on_train_begin(self, logs=None):
            log_dir, self.log_dir = self.log_dir, None  # no tf.summary writer of its own
            try:
                super().on_train_begin(logs)
            finally:
                self.log_dir = log_dir
            self.protos = ProtoEventFile(Path(log_dir) / "predictions")

        def draw(self, epoch, outputs):
            panel = super().draw(epoch, outputs)
            png = (self.folder / f"epoch_{epoch:03d}.png").read_bytes()
            self.protos.write(epoch, images={"fixed_batch_predictions": (png, *panel.size)})
            return panel

        def on_train_end(self, logs=None):
            try:
                super().on_train_end(logs)
            finally:
                self.protos.close()

    return ProtoTensorBoard, ProtoPanel


def measure_tensorboard(project: Path, epochs: int, rounds: int, work: Path) -> tuple:
    """Issue 14: what TensorBoard costs an epoch of about a second, written through tf.summary
    (the template's EpochTensorBoard and PredictionPanel) and as before (protos), against no
    TensorBoard at all. Three sides take turns, an epoch each; all three draw the picture
    of every epoch and wait for it before handing over, so the picture's TensorBoard copy,
    written on the drawing thread, counts in full. The convnet of the default run, wider
    (TENSORBOARD_MODEL), on digits.

    Returns the result rows and the lines of a table of where each side's time went."""
    p = load_project(project, [*TENSORBOARD_MODEL, f"run.dir={work / 'runs'}"])
    cb = p.callbacks
    ProtoTensorBoard, ProtoPanel = proto_tensorboard(cb)
    timed = collections.defaultdict(list)  # side -> [(epochs, {what: seconds})] per fit

    def make_callbacks(kind):
        def make(turns, side):
            run_dir = work / "runs" / f"tensorboard-{kind}-{len(timed[side])}"
            made, _ = p.train.make_callbacks(p.config, p.data, run_dir, {"val_loss": 0.0})
            board = next(c for c in made if isinstance(c, cb.EpochTensorBoard))
            panel = next(c for c in made if isinstance(c, cb.PredictionPanel))
            if kind == "proto":
                board = ProtoTensorBoard(board.log_dir)
                panel = ProtoPanel(
                    panel.x,
                    panel.labels,
                    panel.folder,
                    panel.task,
                    panel.class_names,
                    panel.images,
                    panel.to_units,
                    panel.log_dir,
                )
            elif kind == "none":
                panel.log_dir = None  # the picture's file only
            chosen = [panel] if kind == "none" else [board, panel]
            totals = collections.defaultdict(float)
            for callback in chosen:
                name = "TensorBoard" if callback is board else "PredictionPanel"
                for hook in HOOKS:
                    if not getattr(getattr(callback, hook), "_is_default", False):
                        wrapped = _timed(getattr(callback, hook), totals, name, time.perf_counter)
                        setattr(callback, hook, wrapped)
            panel.draw = _timed(panel.draw, totals, "drawing", time.thread_time)
            timed[side].append((turns.epochs, totals))
            return chosen, panel.wait

        return make

    sides = {}
    for kind in ("public", "proto", "none"):
        model, initial = warm_model(p, p.train_ds, p.val_ds, p.steps)
        sides[kind] = (model, initial, p.train_ds, p.val_ds, make_callbacks(kind))
    seconds = interleaved(sides, epochs, p.steps, rounds)
    ms = {side: 1000 * statistics.median(seconds[side]) for side in sides}
    pairs = f"{rounds} x {epochs}"
    rows = [
        total_row(
            f"an epoch with TensorBoard through {how} vs without TensorBoard",
            f"{ms[side]:.0f} vs {ms['none']:.0f} ms/epoch",
            seconds[side],
            seconds["none"],
            pairs,
            TENSORBOARD_COST,
        )
        for side, how in (("public", "tf.summary"), ("proto", "protos (before)"))
    ]
    rows.append(
        total_row(
            "an epoch with TensorBoard through tf.summary vs through protos (before)",
            f"{ms['public']:.0f} vs {ms['proto']:.0f} ms/epoch",
            seconds["public"],
            seconds["proto"],
            pairs,
            TENSORBOARD_COST,
        )
    )
    lines = [
        "| side | TensorBoard callback, training thread | PredictionPanel, training thread "
        "| drawing and writing the picture, its thread's CPU | epoch (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for side in sides:
        fits = timed[side][1:]  # the warm-up round's fit dropped, as its times are
        count = sum(n for n, _ in fits)
        cost = {what: 1000 * sum(t[what] for _, t in fits) / count for what in fits[0][1]}
        board = f"{cost['TensorBoard']:.2f} ms" if "TensorBoard" in cost else "-"
        lines.append(
            f"| {side} | {board} | {cost['PredictionPanel']:.2f} ms | {cost['drawing']:.2f} ms "
            f"| {ms[side]:.0f} ms |"
        )
    described = (
        f"data: {p.config.data.source}, {p.examples} training examples, {p.steps} steps an "
        f"epoch, model {p.config.model.name} {' '.join(TENSORBOARD_MODEL)} "
        f"({model.count_params():,} parameters); {rounds} rounds of three fits of "
        f"{epochs} epochs taking turns, with validation"
    )
    return rows, described, lines


def median_interval(ratios: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics k and
    n+1-k, with k from the binomial distribution (each pair falls on either side of the
    true median with probability 1/2). No assumption about how the machine's noise is
    distributed, which on a shared 2-core VM it is not normally."""
    from scipy.stats import binom

    ordered = sorted(ratios)
    k = max(int(binom.ppf((1 - confidence) / 2, len(ordered), 0.5)), 1)
    return ordered[k - 1], ordered[len(ordered) - k]


def total_interval(
    side: list[float], other: list[float], confidence: float = 0.95
) -> tuple[float, float]:
    """A bootstrap confidence interval (BCa) of sum(side) / sum(other), resampling the
    pairs: a pair's two times share the machine's state of that moment, so they are drawn
    together. A ratio of totals, unlike a median, counts the epochs that save a model or
    lay out a picture at their full weight."""
    import numpy as np
    from scipy.stats import bootstrap

    result = bootstrap(
        (np.asarray(side), np.asarray(other)),
        lambda a, b, axis: a.sum(axis=axis) / b.sum(axis=axis),
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=4000,
        rng=np.random.default_rng(0),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _digits(threshold) -> int:
    """Decimals to print a ratio with: 22.0x for a speed-up, 1.015x near 1."""
    return 1 if threshold[1] >= 2 else 3


def median_row(what: str, sides: str, ratios: list[float], pairs: str, threshold) -> dict:
    """A result row: the median of the pairs' ratios, its interval, their range."""
    low, high, d = min(ratios), max(ratios), _digits(threshold)
    return {
        "what": what,
        "sides": sides,
        "ratio": statistics.median(ratios),
        "interval": median_interval(ratios),
        "pairs": f"median of {pairs}; all {low:.{d}f}-{high:.{d}f}",
        "threshold": threshold,
    }


def total_row(what: str, sides: str, side, other, rounds: str, threshold) -> dict:
    """A result row: the ratio of the two sides' total times over paired epochs, its
    interval, and the median of the epoch pairs' ratios beside it."""
    ratios = [a / b for a, b in zip(side, other, strict=True)]
    median, d = statistics.median(ratios), _digits(threshold)
    return {
        "what": what,
        "sides": sides,
        "ratio": sum(side) / sum(other),
        "interval": total_interval(side, other),
        "pairs": f"total of {len(ratios)} epoch pairs ({rounds}); their median {median:.{d}f}",
        "threshold": threshold,
    }


def table(rows: list[dict]) -> list[str]:
    """The results as Markdown: ratio, its 95% interval, the pairs, threshold, pass or
    fail; a result whose interval holds the threshold is marked as the noise's."""
    lines = [
        "| measurement | sides (medians) | ratio | 95% interval | pairs | threshold | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        sign, limit = row["threshold"]
        ratio, (low, high), d = row["ratio"], row["interval"], _digits(row["threshold"])
        passed = ratio >= limit if sign == ">=" else ratio <= limit
        result = "pass" if passed else "FAIL"
        if low <= limit <= high:
            result += ", within the noise"
        lines.append(
            f"| {row['what']} | {row['sides']} | **{ratio:.{d}f}x** "
            f"| {low:.{d}f}-{high:.{d}f} | {row['pairs']} | {sign} {limit:g} | {result} |"
        )
    return lines


def measure(work: Path, args) -> tuple[list[dict], str, str, list[str]]:
    """Bakes into `work`, runs `train` once unless --epochs is given, then the three rows.

    Returns the rows, a line describing the data and the runs, one on `train`, and the
    table of row 3's cost by callback.
    """
    project = results.bake("image_classification", work)
    whole = ""
    if args.epochs is None:  # the whole `train` command as `make train` runs it, for its epochs
        metrics, seconds = results.train(project, seed=0)
        args.epochs = metrics["epochs"]
        whole = (
            f"whole `train` command with defaults: {seconds:.1f} s wall "
            f"({metrics['epochs']} epochs, fit {metrics['train_seconds']:.1f} s, "
            f"test accuracy {metrics['model']['accuracy']:.4f})"
        )
    # Patience above the epoch count: every fit runs exactly the epochs asked for.
    overrides = [
        f"train.epochs={args.epochs}",
        f"train.patience={args.epochs + 1}",
        f"run.dir={work / 'runs'}",
    ]
    p = load_project(project, overrides)
    described = (
        f"data: {p.config.data.source}, {p.examples} training examples, batch "
        f"{p.config.train.batch_size} ({p.steps} steps an epoch), model "
        f"{p.config.model.name}; row 1: {args.input_repeats} pairs of {args.input_epochs} "
        f"epochs; rows 2-3: {args.rounds} rounds of two fits of {args.epochs} epochs taking "
        "turns (row 3 with validation)"
    )

    print(f"row 1: {args.input_repeats} x {args.input_epochs} epochs", file=sys.stderr)
    speedup = measure_pipeline(p, args.input_epochs, args.input_repeats)
    print(f"row 2: {args.rounds} x {args.epochs} epochs", file=sys.stderr)
    step_time = measure_steps(p, args.epochs, args.rounds)
    print(f"row 3: {args.rounds} x {args.epochs} epochs", file=sys.stderr)
    callbacks = measure_callbacks(p, args.epochs, args.rounds, work)
    return [speedup, step_time, callbacks], described, whole, breakdown(p, args.epochs, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Row 1 is cheap, so many short pairs. Rows 2-3 run as many epochs as the default run,
    # through one iterator as it does, and the callbacks' savers spend a share of the
    # elapsed time (SaveBudget); taking turns gives them one pair per epoch.
    parser.add_argument("--input-repeats", type=int, default=60, help="pairs of row 1")
    parser.add_argument("--input-epochs", type=int, default=10, help="epochs a side, row 1")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of rows 2-3")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs a fit, rows 2-3; default: the default run's",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 pairs or rounds of 3 epochs, no `train`"
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="only the TensorBoard comparison on ~1 s epochs (issue 14); --epochs default 10",
    )
    args = parser.parse_args()
    if args.quick:
        args.input_repeats = args.rounds = 2
        args.input_epochs = 2
        args.epochs = args.epochs or 3

    started = time.perf_counter()
    if args.tensorboard:
        epochs = args.epochs or 10
        with tempfile.TemporaryDirectory(prefix="recipe-perf-") as work:
            project = results.bake("image_classification", Path(work))
            rows, described, lines = measure_tensorboard(project, epochs, args.rounds, Path(work))
        print(f"\n{date.today().isoformat()}, {machine()}")
        print(described + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
        print("\n".join(["", *table(rows), "", *lines]))
        print(f"this script: {time.perf_counter() - started:.0f} s")
        return
    with tempfile.TemporaryDirectory(prefix="recipe-perf-") as work:
        rows, described, whole, hooks = measure(Path(work), args)
    print(f"\n{date.today().isoformat()}, {machine()}")
    print(described + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
    print("\n".join(["", *table(rows)]))
    print("\n".join(["", *hooks]))
    if whole:
        print(f"\n{whole}")
    print(f"this script: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
