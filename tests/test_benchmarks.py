"""The benchmark's statistics: what decides a row's verdict in docs/performance.md."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import performance  # noqa: E402


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


def test_a_verdict_inside_the_noise_says_so():
    def row(ratios):
        return {"what": "w", "sides": "s", "ratios": ratios, "threshold": ("<=", 1.05)}

    clear_pass, close, clear_fail = performance.table(
        [row([1.00, 1.01, 1.02] * 10), row([1.02, 1.04, 1.06, 1.08] * 8), row([1.2] * 30)]
    )[2:]
    assert clear_pass.endswith("| pass |")
    assert close.endswith("| pass, within the noise |") and "**1.050x**" in close
    assert clear_fail.endswith("| FAIL |") and "(30)" in clear_fail
