"""What every finding shares: thresholds, the Finding type, what the findings look at (Files
before loading, a Look after), naming helpers."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..data import Data, Split, load

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
# Integer columns with at least this share of distinct values are row ids: near_copies leaves
# them out, identifier_column probes them.
IDENTIFIER_DISTINCT = 0.99
MIXED_NUMERIC_SHARE = 0.8  # a column this numeric with a few text cells holds typos or NA codes
EXAMPLES_PER_CLASS = 8  # R1.1: look at many examples
MAX_CLASSES_SHOWN = 20
MAX_PLOTTED_FEATURES = 30
MAX_NAMED = 5  # culprits named in one detail line (the report and inspect.json hold more)
MAX_FILE_FINDINGS = 20  # corrupt files listed one finding each, then one summary line

PICTURES = (
    "examples.png",
    "extremes.png",
    "features.png",
    "near_duplicates.png",
    "suspicious_labels.png",
)


@dataclass
class Finding:
    """One thing inspect found, named after the finding function that reports it."""

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
    # path -> the grey 8x8 thumbnails near_copies compares, (9, 64): made here, while the
    # file is decoded anyway
    thumbs: dict[str, np.ndarray] = field(default_factory=dict)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass
class CsvCells:
    """What reading a CSV table's raw cells found (load refuses gaps and infinities)."""

    gaps: dict[str, list[int]] = field(default_factory=dict)  # column -> line numbers
    infinite: dict[str, list[int]] = field(default_factory=dict)  # column -> line numbers
    # column -> (its 3 most common text cells with their counts, how many text cells)
    mixed: dict[str, tuple[list[tuple[str, int]], int]] = field(default_factory=dict)


@dataclass
class Files:
    """What the findings before loading look at: where the source is and what reading its files
    found (image files decoded one by one, or a CSV's raw cells)."""

    config: Config
    where: str  # embedded | folder | image_csv | csv
    images: ImageScan | None = None
    cells: CsvCells | None = None


@dataclass
class Look:
    """What the findings about the loaded data share, as the checks share a Setup: the data with
    the split training uses, the samples the probes and plots take, and a cache (`shared`)."""

    config: Config
    files: Files
    data: Data  # every example; image files stay files; non-finite values replaced by the mean
    # What the pixel statistics and the pictures study: a decoded sample of image files, else data.
    pictured: Data
    pictures_sampled: bool  # pictured holds fewer images than data
    name: Namer
    rng: np.random.Generator  # seeded: draws the two samples below, then the pictured examples
    train_sample: np.ndarray  # the rows the leak probe and the plots use (at most check.sample)
    val_sample: np.ndarray
    cache: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(split.y) for split in splits_of(self.data).values())

    @property
    def sampled(self) -> bool:
        return self.total > self.config.check.sample


FileFinding = Callable[[Files], list[Finding]]
DataFinding = Callable[[Look], list[Finding]]


def look_at(config: Config, files: Files) -> Look:
    """Loads what can be loaded: unreadable files left out, missing cells filled, infinities
    replaced by the mean; the file findings report each of those, and the rest of the data still
    deserves a look. A source that cannot be loaded at all raises load's UsageError."""
    load_config = copy.deepcopy(config)
    load_config.data.missing = "mean"
    exclude = frozenset(path for path, _ in files.images.broken) if files.images else frozenset()
    # Infinities make load's own statistics NaN; inspect does not use them.
    with np.errstate(invalid="ignore", over="ignore"):
        data = load(load_config, exclude=exclude, finite_only=False)
    # Image files: the pictures and the pixel statistics study a decoded sample of each split;
    # the files, duplicates and balance cover every file.
    pictured, pictures_sampled = data, False
    if data.streamed:
        pictured, pictures_sampled = data.in_memory(config.check.sample, config.seed)
    else:
        replace_non_finite(data)
    rng = np.random.default_rng(config.seed)
    train_sample = sample_index(len(data.train.y), config.check.sample, rng)
    val_sample = sample_index(len(data.val.y), config.check.sample, rng)
    name = Namer("folder" if files.where == "image_csv" else files.where)
    return Look(
        config, files, data, pictured, pictures_sampled, name, rng, train_sample, val_sample
    )


def shared(compute):
    """Decorates `compute(look)`, read by several findings and the report, to run once per look."""

    @functools.wraps(compute)
    def once(look: Look):
        if compute not in look.cache:
            look.cache[compute] = compute(look)
        return look.cache[compute]

    return once


def sample_index(size: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(size, limit, replace=False)) if size > limit else np.arange(size)


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


def short_id(example_id) -> str:
    """An example's id in a picture's caption: a file's name, else #row."""
    text = str(example_id)
    return Path(text).name[:14] if "/" in text or "\\" in text else f"#{text}"


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
