"""Ways of feeding the default model, side by side: what each costs the training step.

Row 2 of performance.py compares the template's pipeline with in-memory batches. This
script asks whether another shape of pipeline would close that gap. Every variant
below serves the same examples (the training split, normalized once) in batches of the
config's size; each trains its own copy of the model from the same initial weights in
plain `fit`s of 10 epochs, the variants in alternating order, round after round. It
prints each variant's median ms per epoch, its ratio to the in-memory batches (median of
the rounds, with a 95% interval of that median) and how long its first batch takes on a
fresh iterator, which `fit` waits for at every epoch's start when it makes one an epoch
(a finite dataset); on an endless stream with `steps_per_epoch` it keeps one.

    .venv/bin/python benchmarks/pipelines.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import performance  # the sibling script: bake, load, in-memory batches, warm model, fit
import results


def variants(p) -> dict:
    """name -> (dataset, steps_per_epoch or None for a fresh iterator every epoch)."""
    import numpy as np
    import tensorflow as tf

    data, b, n = p.data, p.config.train.batch_size, len(p.data.train.y)
    x = data.normalize(data.train.x).astype(np.float32)
    y = p.data_lib.scale_targets(data, data.train.y)
    xt, yt = tf.constant(x), tf.constant(y)

    def untuned(dataset):
        options = tf.data.Options()
        options.autotune.enabled = False
        return dataset.with_options(options)

    def shuffled():
        examples = tf.data.Dataset.from_tensor_slices((x, y))
        return examples.shuffle(n, seed=0, reshuffle_each_iteration=True).batch(b)

    def gather(indices):
        return tf.gather(xt, indices), tf.gather(yt, indices)

    def permuted(seed):  # one permutation op per epoch instead of a buffer of n examples
        seed = tf.stack([seed, 0])
        return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed)

    sizes = [b] * (n // b) + [n % b] * (n % b > 0)
    memory = performance.in_memory(p.train_ds, p.steps)
    buffered = untuned(shuffled().prefetch(tf.data.AUTOTUNE))
    return {
        "in memory, one iterator (row 2's other side)": (memory.repeat(), p.steps),
        "in memory, a fresh iterator every epoch": (memory, None),
        "template: a permutation per epoch, sliced into batches, one iterator": (
            p.train_ds,
            p.steps,
        ),
        "shuffle buffer -> batch -> prefetch, a fresh iterator every epoch (the template "
        "until 2026-12-02)": (buffered, None),
        "shuffle buffer -> batch -> prefetch, repeated: one iterator": (
            buffered.repeat(),
            p.steps,
        ),
        "shuffle buffer -> batch, no prefetch": (untuned(shuffled()), None),
        "shuffle buffer -> batch -> prefetch(1)": (untuned(shuffled().prefetch(1)), None),
        "shuffled indices -> batch -> map(gather) -> prefetch": (
            untuned(
                tf.data.Dataset.range(n)
                .shuffle(n, seed=0, reshuffle_each_iteration=True)
                .batch(b)
                .map(gather)
                .prefetch(tf.data.AUTOTUNE)
            ),
            None,
        ),
        "a permutation per epoch -> gather -> rebatch, one iterator (OneDeviceStrategy "
        "drops the rebatch)": (
            untuned(
                tf.data.Dataset.random(seed=0)
                .map(lambda s: gather(permuted(s)))
                .rebatch(sizes)  # an epoch's batch sizes in turn, so epochs stay whole
                .prefetch(tf.data.AUTOTUNE)
            ),
            p.steps,
        ),
    }


def first_batch_ms(dataset) -> float:
    """The fastest of 5 x 20 fresh iterators' first batch: what an epoch's start waits for."""
    return 1000 * min(timeit.repeat(lambda: next(iter(dataset)), number=20, repeat=5)) / 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of every variant")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each fit")
    parser.add_argument("--only", default="", help="variants whose names hold this text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recipe-pipelines-") as work:
        project = results.bake("image_classification", Path(work))
        p = performance.load_project(project, [f"run.dir={Path(work) / 'runs'}"])
        feeds = {
            name: feed
            for name, feed in variants(p).items()
            if name.startswith("in memory") or args.only in name
        }
        for name, (dataset, steps) in feeds.items():  # every variant serves one split an epoch
            served = sum(len(y) for _, y in dataset.take(steps or -1))
            if served != p.examples:
                raise SystemExit(f"{name}: {served} examples an epoch, not {p.examples}")
        first = {name: first_batch_ms(dataset) for name, (dataset, _) in feeds.items()}
        models = {
            name: performance.warm_model(p, dataset, steps_per_epoch=steps)
            for name, (dataset, steps) in feeds.items()
        }
        times = {name: [] for name in feeds}
        for round_ in range(args.rounds):
            names = list(feeds) if round_ % 2 == 0 else list(feeds)[::-1]
            for name in names:
                (model, initial), (dataset, steps) = models[name], feeds[name]
                model.set_weights(initial)
                started = time.perf_counter()
                model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, verbose=0)
                times[name].append(time.perf_counter() - started)
            print(f"  round {round_ + 1} of {args.rounds}", file=sys.stderr, flush=True)
    memory = times["in memory, one iterator (row 2's other side)"]
    print(f"\n{performance.machine()}; {args.rounds} rounds of {args.epochs} epochs\n")
    print("| what `fit` is fed | ms per epoch | vs in memory (95% interval) | first batch, ms |")
    print("| --- | --- | --- | --- |")
    for name, seconds in times.items():
        ratios = [s / m for s, m in zip(seconds, memory, strict=True)]
        low, high = performance.median_interval(ratios)
        print(
            f"| {name} | {1000 * statistics.median(seconds) / args.epochs:.1f} "
            f"| {statistics.median(ratios):.3f} ({low:.3f}-{high:.3f}) | {first[name]:.2f} |"
        )


if __name__ == "__main__":
    main()
