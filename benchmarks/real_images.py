"""Real image folders: memory, start-up, input throughput and epoch time on JPEGs from disk.

Answers the issue "Real projects" on a synthetic folder of real-sized images: 256x256 RGB
JPEGs of three classes (a circle, a square or a triangle of random size, place, angle
and colour, on a blurred random background with stray lines, random brightness and
pixel noise), one sub-folder per class, made once with every core and kept under
build/real_images/<count>/ (5,000 and 25,000 images by default). Every run trains at
96x96 (data.image_size=[96,96]; --image-size 128 for 128x128) a small convnet
(model.filters=16, model.width=64).

1. `make train` for one epoch on each folder, in a fresh process: the CLI's `train`
   command run by this script's `--drive` mode, which imports the baked package, puts a
   clock callback into `train.make_callbacks` and wraps a few of its functions with
   timers, then calls the CLI as `python -m <package>` does (the real `train()` path,
   recipe checks included). Peak RSS of that process (os.wait4's rusage), the time from
   starting it to the end of the first training step, the epoch, and the time after the
   epoch (saving, the test evaluation, the linear and majority baselines). Thresholds:
   peak RSS at the largest folder <= 1.15x that at the smallest and below 3 GB; the time
   to the first step not growing with the folder (<= 1.15x); the baselines <= 10% of
   the training time, the linear one's test loss not above the majority's by more than
   noise (BASELINE_NOISE).
2. Input pipeline alone vs training, in this process, on the smallest folder: images/s
   of `pipeline.make_dataset(..., shuffle=True)` drained by a compiled loop through one
   iterator (performance.py's `make_drain`) for a fixed number of batches of 64, vs
   images/s of a plain `model.fit` of the network on that stream (steps_per_epoch
   fixed). Pairs back to back in alternating order; the median of the pairs' ratios.
   The pipeline must be clearly faster (>= 2x), or the CPU spends its time decoding.
3. Epoch time against plain Keras, on the smallest folder: the template side fits the
   network on `train.training_stream` (decoded and normalized in the pipeline); the plain
   side fits `models.with_preprocessing` of a copy of it (same initial weights; raw
   pixels in, normalized in the model) on `keras.utils.image_dataset_from_directory(
   folder, image_size=(96, 96), batch_size=64, shuffle=True, seed=0).prefetch(AUTOTUNE)`.
   This machine's speed drifts 2x within minutes, so the two sides take short turns: a
   `fit` of the same number of steps each on a fresh iterator (its start and end count,
   as in every epoch of plain Keras on a finite dataset), the side that goes first
   swapped every round, a warm-up round dropped. The result is the ratio of the two
   sides' total times, with a 95% BCa bootstrap interval over the rounds
   (performance.py's `total_interval`). At most 1.05x.
   A second row leaves out what follows the epoch's end: the iterator's end, where
   tf.data's autotuning can hold a fit idle until its optimizer thread next wakes up.

Prints the Markdown tables of docs/performance.md ("Real image folders") on stdout and
the single timings on stderr.

    .venv/bin/python benchmarks/real_images.py [--sizes 5000 25000] [--rounds 10] [--quick]
    .venv/bin/python benchmarks/real_images.py --sizes 6000 --image-size 128 --train-only
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import performance  # the sibling script: machine, drain loop, rows, intervals, table
import results  # the sibling script: bake()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUILD = results.TEMPLATE / "build" / "real_images"
CLASSES = ("circle", "square", "triangle")
SIDE = 256  # pixels a side: decoding and resizing cost what real photos' thumbnails cost
JPEG_QUALITY = 90
GENERATOR_SEED = 2026
# Everything but the data source, the image size and the run folder, as on the command line.
OVERRIDES = (
    "model.name=convnet",
    "model.filters=16",
    "model.width=64",
    "train.epochs=1",
)
BATCH = 64  # train.batch_size's default, and image_dataset_from_directory's batch here

# The thresholds: (at least or at most, limit).
RSS_GROWTH = ("<=", 1.15)
RSS_LIMIT_GB = 3.0
FIRST_STEP_GROWTH = ("<=", 1.15)
BASELINE_SHARE = ("<=", 0.10)
# The linear baseline's test loss may exceed the majority baseline's by this much (nats):
# about two standard errors of a mean log loss on a few thousand test images.
BASELINE_NOISE = 0.02
PIPELINE_SPEEDUP = (">=", 2.0)
EPOCH_RATIO = ("<=", 1.05)


# ---------------------------------------------------------------- the image folders


def make_image(index: int, side: int = SIDE):
    """Image `index` (PIL, RGB, side x side) of class index % 3: the same for every call."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([GENERATOR_SEED, index])
    coarse = rng.uniform(40, 215, size=(6, 6, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((side, side), Image.BILINEAR)
    draw = ImageDraw.Draw(image)

    def colour():
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    for _ in range(3):  # stray lines in every class: an edge alone tells nothing
        draw.line(tuple(rng.uniform(0, side, 4)), fill=colour(), width=int(rng.integers(2, 8)))
    radius = rng.uniform(0.1 * side, 0.3 * side)
    cx, cy = rng.uniform(radius, side - radius, 2)
    corners = (0, 4, 3)[index % 3]  # a circle, a square, a triangle
    if corners == 0:
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour())
    else:
        angle = rng.uniform(0, 2 * np.pi)
        turns = angle + 2 * np.pi * np.arange(corners) / corners
        draw.polygon(
            list(zip(cx + radius * np.cos(turns), cy + radius * np.sin(turns), strict=True)),
            fill=colour(),
        )
    brightness = np.float32(rng.uniform(0.6, 1.4))
    noise = 20 * rng.standard_normal((side, side, 3), dtype=np.float32)
    pixels = np.asarray(image, np.float32) * brightness + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def image_path(folder: Path, index: int) -> Path:
    return folder / CLASSES[index % 3] / f"{index:05d}.jpg"


def write_images(job: tuple[str, range]) -> int:
    """Writes the images of a range of indices into a folder; how many it wrote."""
    folder, indices = Path(job[0]), job[1]
    for index in indices:
        make_image(index).save(image_path(folder, index), quality=JPEG_QUALITY)
    return len(indices)


def generate(folder: Path, count: int, processes: int | None = None) -> Path:
    """`count` JPEGs in `folder`/<class>/, made by `processes` workers (every core), unless a
    finished set is there already (complete.json, written last, says how many)."""
    import multiprocessing
    import shutil

    marker = folder / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()).get("images") == count:
        return folder
    if folder.exists():  # an interrupted generation
        shutil.rmtree(folder)
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
    chunk = 250
    jobs = [(str(folder), range(i, min(i + chunk, count))) for i in range(0, count, chunk)]
    processes = processes or os.cpu_count()
    started, done, reported = time.perf_counter(), 0, 0
    # Spawned, not forked: a fork of a process that has loaded TensorFlow (a test run, the
    # benchmark itself) can crash in the child.
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for written in pool.imap_unordered(write_images, jobs):
            done += written
            if done - reported >= count / 10 or done == count:
                reported = done
                print(
                    f"  {folder.name}: {done:,} of {count:,} images "
                    f"({time.perf_counter() - started:.0f} s, {processes} processes)",
                    file=sys.stderr,
                    flush=True,
                )
    marker.write_text(json.dumps({"images": count, "side": SIDE, "seed": GENERATOR_SEED}) + "\n")
    return folder


# ---------------------------------------------------------------- 1. `make train` per folder


def drive(timings: str, package: str, argv: list[str]) -> int:
    """In the `train` process: the CLI as `python -m <package>` runs it, with clocks.

    Writes to `timings` (JSON) the wall-clock times (time.time(), which the parent shares)
    of: this function's start, the package imported, the fit's begin, the end of the first
    training step, the epoch's end, and the (start, end) of every call of data loading,
    the recipe checks, the test evaluation and the two baselines.
    """
    stamps = {"driver": time.time()}
    import keras

    cli = importlib.import_module(f"{package}.cli")
    train = importlib.import_module(f"{package}.train")
    evaluate = importlib.import_module(f"{package}.evaluate")
    checks = importlib.import_module(f"{package}.checks")
    stamps["imported"] = time.time()
    spans = collections.defaultdict(list)

    def timed(module, name: str, key: str) -> None:
        function = getattr(module, name)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.time()
            try:
                return function(*args, **kwargs)
            finally:
                spans[key].append((started, time.time()))

        setattr(module, name, wrapper)

    # train() calls these by the names it imported; evaluate_run and `checks` by their own.
    timed(train, "load", "load")
    timed(checks, "before_training", "checks")
    timed(train, "evaluate_run", "evaluate")
    timed(evaluate, "fit_baselines", "baselines")
    timed(evaluate, "baseline_outputs", "baselines")

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            stamps.setdefault("fit_begin", time.time())

        def on_train_batch_end(self, batch, logs=None):
            stamps.setdefault("first_step", time.time())
            stamps["steps"] = stamps.get("steps", 0) + 1

        def on_epoch_end(self, epoch, logs=None):
            stamps["epoch_end"] = time.time()

    make_callbacks = train.make_callbacks

    def with_clock(*args, **kwargs):
        callbacks, guard = make_callbacks(*args, **kwargs)
        return [*callbacks, Clock()], guard  # last: the epoch ends after every callback's work

    train.make_callbacks = with_clock
    try:
        return cli.main(argv)
    finally:
        Path(timings).write_text(json.dumps({**stamps, "spans": spans}))


def sample_rss(pid: int, samples: list, stop) -> None:
    """Appends (time, resident bytes) of process `pid` every 50 ms until `stop` is set."""
    status = Path(f"/proc/{pid}/status")
    while not stop.is_set():
        try:
            lines = status.read_text().splitlines()
        except OSError:  # gone
            return
        for line in lines:
            if line.startswith("VmRSS:"):
                samples.append((time.time(), int(line.split()[1]) * 1024))
        stop.wait(0.05)


def peak_gb(samples: list, start: float, end: float) -> float:
    return max((rss for t, rss in samples if start <= t <= end), default=0) / 1e9


def seconds_in(spans: dict, key: str) -> float:
    return sum(end - start for start, end in spans.get(key, ()))


def train_run(project: Path, folder: Path, work: Path, side: int) -> dict:
    """`train` for one epoch on `folder` in a fresh process: its peak RSS, timings, metrics."""
    package = results.package_name(project)
    run_dir, timings = work / f"runs-{folder.name}", work / f"timings-{folder.name}.json"
    log = work / f"train-{folder.name}.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--drive",
        str(timings),
        package,
        "train",
        "--config",
        "configs/default.yaml",
        f"data.source={folder}",
        f"data.image_size=[{side},{side}]",
        *OVERRIDES,
        f"run.dir={run_dir}",
        "run.name=train",
    ]
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with log.open("w") as output:
        started = time.time()
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(process.pid, samples, stop))
        sampler.start()
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over all.
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.time()
        stop.set()
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise SystemExit(f"train on {folder} exited with {process.returncode}:\n{tail}")
    t = json.loads(timings.read_text())
    spans = t["spans"]
    metrics = json.loads((run_dir / "train" / "metrics.json").read_text())
    load_end = spans["load"][0][1]
    checks = seconds_in(spans, "checks")
    checks_end = spans["checks"][0][1] if "checks" in spans else load_end
    # Where the peak is: the resident memory sampled every 50 ms, its highest in each part.
    parts = {
        "start-up and data": (started, load_end),
        "checks": (load_end, checks_end),
        "loss at init": (checks_end, t["fit_begin"]),
        "epoch": (t["fit_begin"], t["epoch_end"]),
        "after the epoch": (t["epoch_end"], ended),
    }
    rss_parts = {part: peak_gb(samples, *window) for part, window in parts.items()}
    run = {
        "folder": folder,
        "images": int(json.loads((folder / "complete.json").read_text())["images"]),
        "rss_gb": usage.ru_maxrss * 1024 / 1e9,  # ru_maxrss is in kilobytes on Linux
        "rss_parts": rss_parts,
        "wall": ended - started,
        "first_step": t["first_step"] - started,
        "start_python": t["imported"] - started,  # the interpreter, TensorFlow, the package
        "load": seconds_in(spans, "load"),
        "checks": checks,
        # From the checks to the fit: the model, the run folder, the loss at init (a pass
        # over the validation split, or a part of it).
        "to_fit": t["fit_begin"] - load_end - checks,
        "step_one": t["first_step"] - t["fit_begin"],
        "epoch": t["epoch_end"] - t["fit_begin"],
        "after": ended - t["epoch_end"],
        "evaluate": seconds_in(spans, "evaluate"),
        "baselines": seconds_in(spans, "baselines"),
        "steps": t["steps"],
        "train_seconds": metrics["train_seconds"],
        "metrics": metrics,
    }
    print(
        f"  train on {folder.name} images: {run['wall']:.1f} s, peak RSS {run['rss_gb']:.2f} GB, "
        f"first step at {run['first_step']:.1f} s, epoch {run['epoch']:.1f} s, "
        f"after it {run['after']:.1f} s (baselines {run['baselines']:.1f} s); peak RSS by part: "
        + ", ".join(f"{part} {gb:.2f}" for part, gb in rss_parts.items()),
        file=sys.stderr,
        flush=True,
    )
    return run


# ---------------------------------------------------------------- 2-3. in this process


def load_project(project: Path, folder: Path, side: int) -> SimpleNamespace:
    """The baked package's modules, the config `train` would build for `folder`, its data."""
    sys.path.insert(0, str(project / "src"))
    package = results.package_name(project)
    p = SimpleNamespace(
        **{
            name: importlib.import_module(f"{package}.{name}")
            for name in ("config", "data", "pipeline", "models", "seeding", "train")
        }
    )
    p.settings = p.config.build_config(
        [project / "configs" / "default.yaml"],
        [
            f"data.source={folder}",
            f"data.image_size=[{side},{side}]",
            *OVERRIDES,
            f"run.dir={project / 'runs'}",
        ],
    )
    p.seeding.seed_everything(p.settings)  # as `train` does: op determinism too
    p.dataset = p.data.load(p.settings)
    p.steps = p.pipeline.steps_per_epoch(p.dataset.train, BATCH)
    return p


def compiled_network(p, weights=None):
    """The network `train` builds, compiled as it compiles it; with `weights` if given."""
    p.seeding.seed_everything(p.settings)
    network = p.models.build_model(p.settings, p.dataset)
    if weights is not None:
        network.set_weights(weights)
    return p.models.compile_model(network, p.settings, p.dataset, p.steps)


def examples_in(steps: int, examples: int, batch: int) -> int:
    """Examples in the first `steps` batches of an endless stream of epochs of `examples`,
    each epoch ending with its own short batch."""
    per_epoch = -(-examples // batch)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * examples + min(rest * batch, examples)


def fit_seconds(model, dataset, steps: int) -> tuple[float, float]:
    """One plain `fit` of `steps` steps on a fresh iterator of `dataset`: its seconds, and
    those up to the end of its epoch (without the iterator's end, which follows)."""
    import keras

    ends = []

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())

    started = time.perf_counter()
    model.fit(
        dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[EpochEnd()]
    )
    return time.perf_counter() - started, ends[0] - started


def measure_input(p, batches: int, steps: int, pairs: int) -> dict:
    """Images/s of the training stream drained alone vs of a plain fit on it (2)."""
    n = len(p.dataset.train.y)
    stream = p.pipeline.make_dataset(
        p.dataset, p.dataset.train, BATCH, shuffle=True, seed=p.settings.seed
    )
    drain, network = performance.make_drain(), compiled_network(p)
    performance.pipeline_seconds(drain, stream, 1, 2)  # traced
    fit_seconds(network, stream, 2)
    rates = {"pipeline": [], "fit": []}
    for pair in range(pairs):
        for side in ("pipeline", "fit") if pair % 2 == 0 else ("fit", "pipeline"):
            if side == "pipeline":
                seconds, images = performance.pipeline_seconds(drain, stream, 1, batches)
                if images != examples_in(batches, n, BATCH):
                    raise SystemExit(f"the stream gave {images} images in {batches} batches")
            else:
                seconds, images = (
                    fit_seconds(network, stream, steps)[0],
                    examples_in(steps, n, BATCH),
                )
            rates[side].append(images / seconds)
            print(f"  {side}: {images / seconds:,.0f} images/s", file=sys.stderr, flush=True)
    ratios = [a / b for a, b in zip(rates["pipeline"], rates["fit"], strict=True)]
    return performance.median_row(
        "input pipeline alone vs training throughput",
        f"{statistics.median(rates['pipeline']):,.0f} vs "
        f"{statistics.median(rates['fit']):,.0f} images/s",
        ratios,
        f"{pairs} pairs ({batches} batches alone, {steps} steps of `fit`)",
        PIPELINE_SPEEDUP,
    )


def measure_epochs(p, folder: Path, steps: int, rounds: int, side: int) -> list[dict]:
    """The template's stream and network vs plain Keras's folder dataset and raw-pixel model,
    same initial weights, `steps` steps a side in turns, `rounds` rounds (3)."""
    import keras
    import tensorflow as tf

    plain_ds = keras.utils.image_dataset_from_directory(
        folder, image_size=(side, side), batch_size=BATCH, shuffle=True, seed=0, verbose=False
    ).prefetch(tf.data.AUTOTUNE)
    network = compiled_network(p)
    twin = compiled_network(p, network.get_weights())
    plain = p.models.with_preprocessing(twin, p.dataset)
    p.models.compile_model(plain, p.settings, p.dataset, p.steps)
    sides = {
        "template": (network, lambda r: p.train.training_stream(p.settings, p.dataset, r)),
        "plain": (plain, lambda r: plain_ds),
    }
    for model, make in sides.values():  # warm-up round, dropped: tracing, autotuning
        fit_seconds(model, make(0), min(steps, 5))
    seconds = {side: [] for side in sides}
    to_epoch_end = {side: [] for side in sides}
    for round_ in range(rounds):
        order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
        for side in order:
            model, make = sides[side]
            whole, steps_only = fit_seconds(model, make(round_ + 1), steps)
            seconds[side].append(whole)
            to_epoch_end[side].append(steps_only)
        print(
            f"  round {round_ + 1} of {rounds}: "
            + ", ".join(
                f"{side} {seconds[side][-1]:.2f} s ({to_epoch_end[side][-1]:.2f} to its epoch end)"
                for side in sides
            ),
            file=sys.stderr,
            flush=True,
        )
    rows = []
    for what, times in (
        ("epoch time, template stream vs plain Keras folder dataset", seconds),
        ("the same, to the epoch's end (the iterator's end left out)", to_epoch_end),
    ):
        template_ms, plain_ms = (1000 * sum(times[s]) / (rounds * steps) for s in sides)
        rows.append(
            performance.total_row(
                what,
                f"{template_ms:.0f} vs {plain_ms:.0f} ms/step",
                times["template"],
                times["plain"],
                f"{rounds} x {steps} steps",
                EPOCH_RATIO,
            )
        )
    return rows


# ---------------------------------------------------------------- the report


def verdict(value: float, threshold) -> str:
    sign, limit = threshold
    return "pass" if (value >= limit if sign == ">=" else value <= limit) else "FAIL"


def train_tables(runs: list[dict]) -> list[str]:
    """What each `train` took, and the issue's criteria across the folders."""
    lines = [
        "| images | peak RSS | start to first step (python + TF, data, checks, to fit, "
        "step 1) | epoch (steps) | after the epoch (evaluation; baselines) | whole `train` |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r['images']:,} | {r['rss_gb']:.2f} GB | **{r['first_step']:.1f} s** "
            f"({r['start_python']:.1f} + {r['load']:.1f} + {r['checks']:.1f} + "
            f"{r['to_fit']:.1f} + {r['step_one']:.1f}) | {r['epoch']:.1f} s ({r['steps']}) "
            f"| {r['after']:.1f} s ({r['evaluate']:.1f}; {r['baselines']:.1f}) "
            f"| {r['wall']:.1f} s |"
        )
    parts = list(runs[0]["rss_parts"])
    lines += [
        "",
        "| images | peak RSS in each part: " + " | ".join(parts) + " |",
        "| --- |" + " --- |" * len(parts),
    ]
    for r in runs:
        peaks = " | ".join(f"{gb:.2f} GB" for gb in r["rss_parts"].values())
        lines.append(f"| {r['images']:,} | {peaks} |")
    lines += [
        "",
        "| images | test loss (accuracy): model | linear baseline | majority baseline |",
        "| --- | --- | --- | --- |",
    ]
    for r in runs:
        m = r["metrics"]
        lines.append(
            f"| {r['images']:,} | "
            + " | ".join(
                f"{m[k]['loss']:.4f} ({m[k]['accuracy']:.3f})"
                for k in ("model", "linear_baseline", "majority_baseline")
            )
            + " |"
        )
    small, large = runs[0], runs[-1]
    rss_growth = large["rss_gb"] / small["rss_gb"]
    step_growth = large["first_step"] / small["first_step"]
    lines += ["", "| criterion | measured | threshold | result |", "| --- | --- | --- | --- |"]
    if len(runs) > 1:  # growth needs two folders
        lines.append(
            f"| peak RSS, {large['images']:,} vs {small['images']:,} images | {rss_growth:.3f}x "
            f"| {RSS_GROWTH[0]} {RSS_GROWTH[1]:g} | {verdict(rss_growth, RSS_GROWTH)} |"
        )
    lines.append(
        f"| peak RSS, {large['images']:,} images | {large['rss_gb']:.2f} GB "
        f"| < {RSS_LIMIT_GB:g} GB | {verdict(large['rss_gb'], ('<=', RSS_LIMIT_GB))} |"
    )
    if len(runs) > 1:
        lines.append(
            f"| time to the first step, {large['images']:,} vs {small['images']:,} images "
            f"| {step_growth:.3f}x | {FIRST_STEP_GROWTH[0]} {FIRST_STEP_GROWTH[1]:g} "
            f"| {verdict(step_growth, FIRST_STEP_GROWTH)} |"
        )
    for r in runs:
        share = r["baselines"] / r["train_seconds"]
        m = r["metrics"]
        excess = m["linear_baseline"]["loss"] - m["majority_baseline"]["loss"]
        lines.append(
            f"| baselines vs training time, {r['images']:,} images | {share:.1%} "
            f"({r['baselines']:.1f} vs {r['train_seconds']:.1f} s) | "
            f"{BASELINE_SHARE[0]} {BASELINE_SHARE[1]:.0%} | {verdict(share, BASELINE_SHARE)} |"
        )
        lines.append(
            f"| linear minus majority test loss, {r['images']:,} images | {excess:+.4f} "
            f"| <= {BASELINE_NOISE:g} | {verdict(excess, ('<=', BASELINE_NOISE))} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[5000, 25000], help="images in each folder"
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the epoch-time turns")
    parser.add_argument("--steps", type=int, default=30, help="steps a side in each round")
    parser.add_argument("--pairs", type=int, default=6, help="pairs of the throughput row")
    parser.add_argument("--batches", type=int, default=100, help="batches the pipeline drains")
    parser.add_argument("--image-size", type=int, default=96, help="pixels a side when training")
    parser.add_argument(
        "--train-only", action="store_true", help="measurement 1 only (memory, start-up)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5,000 images, 2 rounds, few steps"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.steps, args.pairs, args.batches = [5000], 2, 5, 1, 10

    started = time.perf_counter()
    folders = [generate(BUILD / str(size), size) for size in sorted(args.sizes)]
    with tempfile.TemporaryDirectory(prefix="recipe-real-") as work:
        work = Path(work)
        project = results.bake("image_classification", work)
        print("1: `train` for one epoch on each folder", file=sys.stderr)
        runs = [train_run(project, folder, work, args.image_size) for folder in folders]
        rows = []
        if not args.train_only:
            p = load_project(project, folders[0], args.image_size)
            print(f"2: {args.pairs} pairs on {folders[0].name} images", file=sys.stderr)
            rows = [measure_input(p, args.batches, args.steps, args.pairs)]
            print(f"3: {args.rounds} rounds of {args.steps} steps", file=sys.stderr)
            rows += measure_epochs(p, folders[0], args.steps, args.rounds, args.image_size)
    print(f"\n{date.today().isoformat()}, {performance.machine()}")
    print(
        f"folders: {', '.join(f'{f.name} images' for f in folders)} of {SIDE}x{SIDE} JPEGs in "
        f"{BUILD}, trained at {args.image_size}x{args.image_size}"
        + ("" if args.train_only else f"; rows 2-3 on {folders[0].name} images")
        + (" (--quick: a smoke run, not a measurement)" if args.quick else "")
    )
    print("\n".join(["", *train_tables(runs)]))
    if rows:
        print("\n".join(["", *performance.table(rows)]))
    print(f"\nthis script: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:  # the `train` process of measurement 1
        raise SystemExit(drive(sys.argv[2], sys.argv[3], sys.argv[4:]))
    main()
