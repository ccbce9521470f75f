"""The benchmark's statistics and its turn-taking fits: what decides a row's verdict in
docs/performance.md."""

import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import performance  # noqa: E402
import real_images  # noqa: E402


def test_the_median_interval_covers_the_true_median_95_percent_of_the_time():
    draws = random.Random(0)
    for pairs in (7, 30, 60):
        hits = 0
        for _ in range(2000):
            # Skewed noise, as on a shared machine: a slow neighbour only ever adds time.
            ratios = [1.0 + draws.expovariate(10.0) for _ in range(pairs)]
            low, high = performance.median_interval(ratios)
            hits += low <= 1.0 + 0.1 * 0.6931 <= high  # the exponential's median, ln 2 / rate
        assert 0.94 <= hits / 2000 <= 0.995, (pairs, hits)


def test_the_total_interval_covers_the_true_ratio_through_drift_and_skewed_noise():
    rng = np.random.default_rng(0)
    hits, trials = 0, 300
    for _ in range(trials):
        # Both sides of a pair share the machine's speed of that moment (a 2x drift), then
        # each gets skewed noise of its own; the true ratio of expected totals is 1.05.
        speed = np.exp(rng.uniform(0, np.log(2), 200))
        other = speed * (1 + rng.exponential(0.1, 200))
        side = 1.05 * speed * (1 + rng.exponential(0.1, 200))
        low, high = performance.total_interval(list(side), list(other))
        hits += low <= 1.05 <= high
    assert 0.92 <= hits / trials <= 0.99, hits


def test_a_verdict_inside_the_noise_says_so():
    def median(ratios):
        return performance.median_row("w", "s", ratios, "30 pairs", ("<=", 1.05))

    clear_pass, close, clear_fail = performance.table(
        [median([1.00, 1.01, 1.02] * 10), median([1.02, 1.04, 1.06, 1.08] * 8), median([1.2] * 30)]
    )[2:]
    assert clear_pass.endswith("| pass |")
    assert close.endswith("| pass, within the noise |") and "**1.050x**" in close
    assert clear_fail.endswith("| FAIL |") and "all 1.200-1.200" in clear_fail

    # A ratio of totals: the one slow epoch (a save, say) counts at its full weight, which
    # the pairs' median would not see.
    other = [0.05] * 99 + [0.05]
    side = [0.05] * 99 + [0.6]
    (total,) = performance.table(
        [performance.total_row("w", "s", side, other, "1 x 100", ("<=", 1.10))]
    )[2:]
    assert "**1.110x**" in total and "their median 1.000" in total and "| FAIL" in total


def _side(delay: float, settle_delay: float = 0.0, clocks=None):
    """A tiny model for turns_fit whose epochs end with `delay` s of work in a callback."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    examples = np.zeros((32, 4), np.float32), np.zeros((32, 1), np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(examples).batch(8).repeat()
    model.fit(dataset, steps_per_epoch=4, epochs=1, verbose=0, shuffle=False)  # traced first

    class Work(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(delay)

    def make_callbacks(turns, side):
        callbacks = [Work()]
        if clocks is not None:
            clock = turns.clock(side)

            class Read(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    clocks.append(clock())

            callbacks.append(Read())
        return callbacks, (lambda: time.sleep(settle_delay)) if settle_delay else None

    return model, model.get_weights(), dataset, None, make_callbacks


@pytest.mark.slow
def test_turns_alternate_epochs_and_time_what_one_side_adds():
    sides = {"slow": _side(0.02, settle_delay=0.01), "fast": _side(0.0)}
    turns = performance.turns_fit(sides, epochs=6, steps=4)
    assert turns.order == ["slow", "fast"] * 6
    # The planted 20 ms at each epoch's end and the 10 ms settle, each epoch, on one side.
    gaps = [s - f for s, f in zip(turns.seconds["slow"], turns.seconds["fast"], strict=True)]
    assert 0.025 < statistics.median(gaps) < 0.06, gaps

    swapped = performance.turns_fit(sides, epochs=3, steps=4, swap=True)
    assert swapped.order == ["fast", "slow"] * 3


@pytest.mark.slow
def test_three_sides_take_turns_round_and_round():
    # performance.py --tensorboard: public, protos and none in one rotation.
    sides = {"a": _side(0.0), "b": _side(0.0), "c": _side(0.0)}
    assert performance.turns_fit(sides, epochs=3, steps=4).order == ["a", "b", "c"] * 3
    swapped = performance.turns_fit(sides, epochs=2, steps=4, swap=True)
    assert swapped.order == ["c", "b", "a"] * 2


@pytest.mark.slow
def test_a_sides_clock_stands_still_during_the_other_sides_turns():
    clocks = []
    sides = {"fast": _side(0.0, clocks=clocks), "slow": _side(0.05)}
    turns = performance.turns_fit(sides, epochs=5, steps=4)
    own = sum(turns.seconds["fast"])
    # The fast side's clock saw its own turns (~5 short epochs), not the slow side's 5 x 50 ms.
    assert clocks == sorted(clocks) and clocks[-1] <= own + 1e-6
    assert clocks[-1] < sum(turns.seconds["slow"]) - 0.2


@pytest.mark.slow
def test_a_failing_side_lets_the_other_finish_and_raises():
    model, initial, dataset, validation, make_callbacks = _side(0.0)

    def failing(turns, side):
        import keras

        class Fail(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise RuntimeError("planted")

        return [Fail()], None

    sides = {"bad": (model, initial, dataset, validation, failing), "good": _side(0.0)}
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="planted"):
        performance.turns_fit(sides, epochs=4, steps=4)
    assert time.perf_counter() - started < 60  # not the 600 s a lost turn would wait


def test_the_generator_makes_decodable_jpegs_in_class_folders_once(tmp_path):
    from PIL import Image

    folder = real_images.generate(tmp_path / "images", 6, processes=2)
    files = sorted(folder.glob("*/*.jpg"))
    assert [f.parent.name for f in files] == ["circle"] * 2 + ["square"] * 2 + ["triangle"] * 2
    for path in files:
        with Image.open(path) as image:
            image.load()
            assert (image.format, image.size, image.mode) == ("JPEG", (256, 256), "RGB")
    # Kept and reused: a second call rewrites nothing; another count starts afresh.
    written = {f: f.stat().st_mtime_ns for f in files}
    real_images.generate(folder, 6)
    assert {f: f.stat().st_mtime_ns for f in files} == written
    real_images.generate(folder, 3)
    assert len(list(folder.glob("*/*.jpg"))) == 3
    # The same index gives the same image: the folders are reproducible.
    first, again = (np.asarray(real_images.make_image(4, side=32)) for _ in range(2))
    np.testing.assert_array_equal(first, again)


def test_stream_examples_count_each_epochs_short_batch():
    assert real_images.examples_in(10, 3500, 64) == 640
    assert real_images.examples_in(55, 3500, 64) == 3500  # 54 full batches and one of 44
    assert real_images.examples_in(56, 3500, 64) == 3564


def _run(images, rss_gb, first_step, baselines, linear_loss):
    losses = {"model": 1.0, "linear_baseline": linear_loss, "majority_baseline": 1.0986}
    return {
        "images": images,
        "rss_gb": rss_gb,
        "rss_parts": {"checks": rss_gb},
        "first_step": first_step,
        "start_python": 5.0,
        "load": 2.0,
        "checks": 9.0,
        "to_fit": 2.0,
        "step_one": first_step - 18.0,
        "epoch": 20.0,
        "steps": 55,
        "after": baselines + 5.0,
        "evaluate": baselines + 4.0,
        "baselines": baselines,
        "wall": 60.0,
        "train_seconds": 20.0,
        "metrics": {k: {"loss": v, "accuracy": 0.5} for k, v in losses.items()},
    }


def test_train_criteria_flag_growing_memory_and_a_linear_baseline_worse_than_majority():
    small = _run(5000, 2.0, 20.0, 1.0, 1.0990)
    large = _run(25000, 2.5, 21.0, 4.0, 1.1648)
    lines = real_images.train_tables([small, large])
    verdicts = {line.split(" | ")[0].lstrip("| "): line for line in lines}
    assert verdicts["peak RSS, 25,000 vs 5,000 images"].endswith("| 1.250x | <= 1.15 | FAIL |")
    assert verdicts["peak RSS, 25,000 images"].endswith("| pass |")
    assert verdicts["time to the first step, 25,000 vs 5,000 images"].endswith("| pass |")
    assert verdicts["baselines vs training time, 5,000 images"].endswith("| pass |")  # 5%
    assert verdicts["baselines vs training time, 25,000 images"].endswith("| FAIL |")  # 20%
    assert verdicts["linear minus majority test loss, 5,000 images"].endswith("| pass |")
    assert verdicts["linear minus majority test loss, 25,000 images"].endswith("| FAIL |")
    # One folder: no growth to judge, so no growth rows.
    assert not [line for line in real_images.train_tables([small]) if " vs 5,000 images" in line]
