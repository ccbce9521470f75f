"""What every inspection shares: thresholds, the Finding type, naming helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import Data, Split

SPLITS = ("train", "val", "test")
SEVERITIES = ("error", "warning", "info")

# Thresholds. Each is a judgement call; docs/inspect.md gives the reasoning.
IMBALANCE_RATIO = (
    3.0  # largest / smallest class above this: accuracy starts to hide the rare class (T2)
)
TARGET_SKEW = 1.0  # |skewness| above 1 is conventionally "highly skewed": try log(y)
OUTLIER_Z = 6.0  # a normal feature puts one value in ~500 million beyond 6 std
# (2.5th or 97.5th percentile - median) / IQR: a normal feature gives 1.5, an exponential 2.7,
# a lognormal(0, 1) 4.2. Above 4 the tail dominates the std that normalization divides by (U7).
# Percentiles this far in leave one wild value to feature_outliers even in a table of 100 rows.
TAIL_PERCENTILE = 2.5
HEAVY_TAIL_RATIO = 4.0
MIN_DISTINCT_FOR_TAILS = 20  # fewer distinct values: a discrete code, not a continuous scale
LEAK_SCORE = 0.99  # one column reaching this on both train and validation is rarely honest
UNIT_SCALE = (
    10.0  # |values| beyond this or std below 1/this: not on the scale the net wants (U6, T6)
)
MIXED_NUMERIC_SHARE = 0.8  # a column this numeric with a few text cells holds typos or NA codes
EXAMPLES_PER_CLASS = 8  # R1.1: look at many examples
MAX_CLASSES_SHOWN = 20
MAX_PLOTTED_FEATURES = 30
MAX_NAMED = 5  # culprits named in one detail line (the report and inspect.json hold more)
MAX_FILE_FINDINGS = 20  # corrupt files listed one finding each, then one summary line

PICTURES = ("examples.png", "extremes.png", "features.png")


@dataclass
class Finding:
    name: str
    severity: str  # error | warning | info
    detail: str

    def line(self) -> str:
        return f"{self.severity.upper()} {self.name}: {self.detail}"


@dataclass
class ImageScan:
    """What decoding every file of an image folder once with Pillow found."""

    digests: dict[str, str] = field(default_factory=dict)  # path -> hash of the decoded pixels
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (height, width)
    modes: dict[str, str] = field(default_factory=dict)  # path -> Pillow mode (L, RGB, RGBA...)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def listing(items, limit: int = MAX_NAMED) -> str:
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def counted(count: int, noun: str, verb: str) -> str:
    """'1 image differs', '3 images differ': a count, its noun and a verb agreeing with it."""
    if count == 1:
        verb = {"have": "has", "do": "does"}.get(verb, verb + "s")
    return f"{plural(count, noun)} {verb}"


def line_numbers(lines: list[int]) -> str:
    return f"{len(lines)} ({'line' if len(lines) == 1 else 'lines'} {listing(lines, 3)})"


# ---------------------------------------------------------------- the loaded data


def replace_non_finite(data: Data) -> None:
    """After infinite_values is reported, the rest of inspect studies finite numbers only."""
    finite = np.isfinite(data.train.x)
    if finite.all() and all(np.isfinite(s.x).all() for s in (data.val, data.test)):
        return
    sums = np.where(finite, data.train.x, 0).sum(axis=0)
    fill = (sums / np.maximum(finite.sum(axis=0), 1)).astype(np.float32)
    for split in (data.train, data.val, data.test):
        bad = ~np.isfinite(split.x)
        split.x[bad] = np.broadcast_to(fill, split.x.shape)[bad]


def feature_names_of(data: Data) -> list[str]:
    return [str(n) for n in data.feature_names] or [
        f"column {j}" for j in range(data.train.x.shape[1])
    ]


def splits_of(data: Data) -> dict[str, Split]:
    return {"train": data.train, "val": data.val, "test": data.test}


class Namer:
    """How a finding names an example: a file path, a CSV line, or a row of an embedded dataset."""

    def __init__(self, where: str):
        self.where = where

    def __call__(self, split: str, example_id) -> str:
        if self.where == "csv":
            return f"{split} line {example_id}"
        if self.where == "embedded":
            return f"{split} #{example_id}"
        return f"{split} {example_id}"
