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

The machine may be busy with other work, so the two sides of each comparison run back
to back, in alternating order, many times (rows 1-2: 60 pairs of 10 epochs; row 3: 15
pairs of the default run's epochs); each result is the median of the pairs' ratios,
with a 95% confidence interval of that median and the whole range of them.

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

Then one more fit with the callbacks times each callback's hooks (the training thread's
share of row 3) and the picture's drawing thread.

Prints the Markdown tables of docs/performance.md on stdout, each timing on stderr.

    .venv/bin/python benchmarks/performance.py [--quick] [--input-repeats 60] [--repeats 15]
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


def machine() -> str:
    """CPU model, cores, GPUs and versions: what the numbers depend on."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
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
        models=importlib.import_module(f"{package}.models"),
        train=importlib.import_module(f"{package}.train"),
    )
    p.config = p.config_lib.build_config([project / "configs" / "default.yaml"], overrides)
    p.train.seed_everything(p.config)  # as `train` does before loading: op determinism too
    p.data = p.data_lib.load(p.config)
    batch = p.config.train.batch_size
    p.examples = len(p.data.train.y)
    p.steps = p.data_lib.steps_per_epoch(p.data.train, batch)
    # The very pipelines `train` feeds `fit`.
    p.train_ds = p.data_lib.make_dataset(
        p.data, p.data.train, batch, shuffle=True, seed=p.config.seed, augment=False
    )
    p.val_ds = p.data_lib.make_dataset(p.data, p.data.val, batch, shuffle=False)
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
    p.train.seed_everything(p.config)
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


def measure_input(p, epochs: int, repeats: int) -> tuple[dict, dict]:
    """Pipeline alone vs plain fit (1), and plain fit on the pipeline vs in memory (2)."""
    memory_ds = in_memory(p.train_ds, p.steps).repeat()  # one iterator, as on the stream
    real, real_initial = warm_model(p, p.train_ds, steps_per_epoch=p.steps)
    memory, memory_initial = warm_model(p, memory_ds, steps_per_epoch=p.steps)
    drain = make_drain()
    pipeline_seconds(drain, p.train_ds, 1, p.steps)  # warm-up: tracing
    times = {"pipeline": [], "real": [], "memory": []}
    produced = set()
    for repeat in range(repeats):
        # Alternate the order, keeping the pipeline next to the real fit it is compared to.
        order = (
            ("pipeline", "real", "memory") if repeat % 2 == 0 else ("memory", "real", "pipeline")
        )
        for side in order:
            if side == "pipeline":
                seconds, examples = pipeline_seconds(drain, p.train_ds, epochs, p.steps)
                produced.add(examples)
            elif side == "real":
                seconds = fit_seconds(real, real_initial, p.train_ds, epochs, p.steps)
            else:
                seconds = fit_seconds(memory, memory_initial, memory_ds, epochs, p.steps)
            times[side].append(seconds)
            print(f"  {side}: {seconds:.2f} s", file=sys.stderr, flush=True)
    if produced != {p.examples * epochs}:
        raise SystemExit(f"the pipeline produced {produced} examples, not {p.examples * epochs}")
    examples = p.examples * epochs
    steps = p.steps * epochs
    pipeline_rate, fit_rate = (examples / statistics.median(times[k]) for k in ("pipeline", "real"))
    real_ms, memory_ms = (1000 * statistics.median(times[k]) / steps for k in ("real", "memory"))
    speedup = {
        "what": "input pipeline alone vs training throughput",
        "sides": f"{pipeline_rate:,.0f} vs {fit_rate:,.0f} examples/s",
        "ratios": [
            fit / alone for alone, fit in zip(times["pipeline"], times["real"], strict=True)
        ],
        "threshold": PIPELINE_SPEEDUP,
    }
    step_time = {
        "what": "step time, real pipeline vs in-memory batches",
        "sides": f"{real_ms:.2f} vs {memory_ms:.2f} ms/step",
        "ratios": [r / m for r, m in zip(times["real"], times["memory"], strict=True)],
        "threshold": STEP_TIME_RATIO,
    }
    return speedup, step_time


def measure_callbacks(p, epochs: int, repeats: int, work: Path) -> dict:
    """The template's callbacks vs a plain fit, both with validation (3)."""
    plain, plain_initial = warm_model(p, p.train_ds, p.val_ds, p.steps)
    template, template_initial = warm_model(p, p.train_ds, p.val_ds, p.steps)
    times = {"plain": [], "template": []}
    for repeat in range(repeats):
        order = ("plain", "template") if repeat % 2 == 0 else ("template", "plain")
        for side in order:
            if side == "plain":
                seconds = fit_seconds(plain, plain_initial, p.train_ds, epochs, p.steps, p.val_ds)
            else:
                run_dir = work / "runs" / f"callbacks-{repeat}"
                run_dir.mkdir(parents=True)
                callbacks, _ = p.train.make_callbacks(p.config, p.data, run_dir, {"val_loss": 0.0})
                seconds = fit_seconds(
                    template, template_initial, p.train_ds, epochs, p.steps, p.val_ds, callbacks
                )
            times[side].append(seconds)
            print(f"  {side} fit: {seconds:.2f} s", file=sys.stderr, flush=True)
    plain_s, template_s = (statistics.median(times[k]) for k in ("plain", "template"))
    return {
        "what": "`fit` with the template's callbacks vs plain `fit`",
        "sides": f"{template_s:.1f} vs {plain_s:.1f} s",
        "ratios": [t / s for s, t in zip(times["plain"], times["template"], strict=True)],
        "threshold": CALLBACK_OVERHEAD,
    }


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
        name = type(callback).__name__
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
    lines += [f"| `{name}` | {1000 * total / epochs:.2f} |" for name, total in ranked]
    on_thread = sum(total for name, total in totals.items() if "drawing" not in name)
    return lines + [f"| **on the training thread, in all** | **{1000 * on_thread / epochs:.2f}** |"]


def median_interval(ratios: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics k and
    n+1-k, with k from the binomial distribution (each pair falls on either side of the
    true median with probability 1/2). No assumption about how the machine's noise is
    distributed, which on a shared 2-core VM it is not normally."""
    from scipy.stats import binom

    ordered = sorted(ratios)
    k = max(int(binom.ppf((1 - confidence) / 2, len(ordered), 0.5)), 1)
    return ordered[k - 1], ordered[len(ordered) - k]


def table(rows: list[dict]) -> list[str]:
    """The results as Markdown: median ratio, its 95% interval, the pairs' range, threshold,
    pass or fail; a result whose interval holds the threshold is marked as the noise's."""
    lines = [
        "| measurement | medians | ratio (median of pairs) | 95% interval of the median "
        "| all pairs | threshold | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratios = sorted(row["ratios"])
        median = statistics.median(ratios)
        sign, limit = row["threshold"]
        passed = median >= limit if sign == ">=" else median <= limit
        digits = 1 if limit >= 2 else 3
        low, high = median_interval(ratios)
        result = "pass" if passed else "FAIL"
        if low <= limit <= high:
            result += ", within the noise"
        lines.append(
            f"| {row['what']} | {row['sides']} | **{median:.{digits}f}x** "
            f"| {low:.{digits}f}-{high:.{digits}f} "
            f"| {ratios[0]:.{digits}f}-{ratios[-1]:.{digits}f} ({len(ratios)}) "
            f"| {sign} {limit:g} | {result} |"
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
        f"{p.config.model.name}; rows 1-2: {args.input_repeats} pairs of {args.input_epochs} "
        f"epochs, row 3: {args.repeats} pairs of {args.epochs} epochs with validation"
    )

    print(f"rows 1-2: {args.input_repeats} x {args.input_epochs} epochs", file=sys.stderr)
    speedup, step_time = measure_input(p, args.input_epochs, args.input_repeats)
    print(f"row 3: {args.repeats} x {args.epochs} epochs", file=sys.stderr)
    callbacks = measure_callbacks(p, args.epochs, args.repeats, work)
    return [speedup, step_time, callbacks], described, whole, breakdown(p, args.epochs, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Rows 1-2 are cheap, so many short pairs; row 3 runs as many epochs as the default run,
    # because the callbacks' savers spend a share of the elapsed time (SaveBudget).
    parser.add_argument("--input-repeats", type=int, default=60, help="pairs of rows 1-2")
    parser.add_argument("--input-epochs", type=int, default=10, help="epochs a side, rows 1-2")
    parser.add_argument("--repeats", type=int, default=15, help="pairs of row 3")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs a side, row 3; default: the default run's"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 pairs of 2 epochs, no `train` run"
    )
    args = parser.parse_args()
    if args.quick:
        args.input_repeats = args.input_epochs = args.repeats = 2
        args.epochs = args.epochs or 2

    started = time.perf_counter()
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
