"""inspect: look hard at the data before any model code exists (R1).

Reads the configured data.source with the same train/val/test split that training
uses and reports what a person should know first: exact duplicates and examples
shared between splits, unreadable or odd files, missing and infinite values, class
balance or the target's distribution, per-feature scale, outliers and heavy tails,
single features that predict the label (a leak), and pictures of the examples.

Every finding has a stable snake_case name (docs/inspect.md says what each one
measures and what to do), a severity (error | warning | info) and a detail that
names the culprit. Any error makes the command exit with status 1.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import Config
from .data import Data, Split, list_image_folder, load, read_csv, resolve_source
from .errors import UsageError

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


def _listing(items, limit: int = MAX_NAMED) -> str:
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _counted(count: int, noun: str, verb: str) -> str:
    """'1 image differs', '3 images differ': a count, its noun and a verb agreeing with it."""
    if count == 1:
        verb = {"have": "has", "do": "does"}.get(verb, verb + "s")
    return f"{_plural(count, noun)} {verb}"


def _lines(lines: list[int]) -> str:
    return f"{len(lines)} ({'line' if len(lines) == 1 else 'lines'} {_listing(lines, 3)})"


# ---------------------------------------------------------------- files, before loading


def scan_image_folder(folder: Path) -> ImageScan:
    """Decodes every image once; an unreadable file is recorded by path, not raised (R1.3)."""
    from PIL import Image

    paths, _ = list_image_folder(folder)
    scan = ImageScan()
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file opens fine and only fails here
                pixels = np.asarray(image)
                size, mode = (image.height, image.width), image.mode
        except Exception as err:  # any decoder failure is a finding about that file, not a crash
            message = str(err)
            reason = err.__class__.__name__ + (
                f": {message[:80]}" if message and str(path) not in message else ""
            )
            scan.broken.append((str(path), reason))
            continue
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
        digest.update(f"{pixels.shape}{pixels.dtype}".encode())
        scan.digests[str(path)] = digest.hexdigest()
        scan.sizes[str(path)] = size
        scan.modes[str(path)] = mode
    return scan


def image_file_findings(scan: ImageScan) -> list[Finding]:
    """corrupt_file, unexpected_image_size, unexpected_channels."""
    findings = [
        Finding(
            "corrupt_file", "error", f"{path} cannot be decoded ({reason}); delete or replace it"
        )
        for path, reason in scan.broken[:MAX_FILE_FINDINGS]
    ]
    if len(scan.broken) > MAX_FILE_FINDINGS:
        rest = len(scan.broken) - MAX_FILE_FINDINGS
        findings.append(
            Finding(
                "corrupt_file",
                "error",
                f"{rest} more unreadable files, listed in inspect.json (corrupt_files)",
            )
        )
    for name, values, shown in (
        ("unexpected_image_size", scan.sizes, lambda s: f"{s[0]}x{s[1]}"),
        ("unexpected_channels", scan.modes, lambda m: f"{m} ({_channels(m)})"),
    ):
        if not values:
            continue
        usual, count = Counter(values.values()).most_common(1)[0]
        odd = [(path, value) for path, value in values.items() if value != usual]
        if odd:
            what = "height x width" if name == "unexpected_image_size" else "mode"
            findings.append(
                Finding(
                    name,
                    "warning",
                    f"{_counted(len(odd), 'image', 'differ')} from the usual {what} "
                    f"{shown(usual)} of "
                    f"{count} others: "
                    + _listing(f"{path} is {shown(value)}" for path, value in odd)
                    + "; every image is converted and resized to data.image_size, so check "
                    + "that these are "
                    "the same kind of picture (not a thumbnail, scan or mask)",
                )
            )
    return findings


def _channels(mode: str) -> str:
    from PIL import Image

    count = Image.getmodebands(mode)
    return "palette" if mode == "P" else _plural(count, "channel")


def scan_csv(path: Path, label_column: str, missing: str) -> list[Finding]:
    """missing_values, infinite_values, mixed_type_column, from the raw cells (load refuses)."""
    header, rows = read_csv(path)
    gaps, infinite, mixed = {}, {}, {}
    for j, name in enumerate(header):
        if name == label_column:
            continue
        values, text, numeric = np.full(len(rows), np.nan), [], 0
        for k, row in enumerate(rows):
            cell = row[j].strip()
            if cell:
                try:
                    values[k] = float(cell)
                    numeric += 1
                except ValueError:
                    text.append(cell)
        if text:
            if numeric >= MIXED_NUMERIC_SHARE * (numeric + len(text)):
                mixed[name] = Counter(text).most_common(3), len(text)
            continue  # a text column: its empty cells become the "unseen" category
        # Line numbers of the file, as data.load names rows (header = line 1).
        if np.isnan(values).any():
            gaps[name] = (np.flatnonzero(np.isnan(values)) + 2).tolist()
        if np.isinf(values).any():
            infinite[name] = (np.flatnonzero(np.isinf(values)) + 2).tolist()
    findings = []
    if gaps:
        where = "; ".join(f"{name!r}: {_lines(lines)}" for name, lines in gaps.items())
        if missing == "error":
            findings.append(
                Finding(
                    "missing_values",
                    "error",
                    f"empty or NaN cells in {where}; data.missing=error refuses them: fix the "
                    "file, "
                    "or set data.missing=mean to fill them with the training mean",
                )
            )
        else:
            findings.append(
                Finding(
                    "missing_values",
                    "info",
                    f"empty or NaN cells in {where}; filled with the training mean "
                    "(data.missing=mean)",
                )
            )
    if infinite:
        where = "; ".join(f"{name!r}: {_lines(lines)}" for name, lines in infinite.items())
        findings.append(
            Finding(
                "infinite_values",
                "error",
                f"infinite values in {where}; nothing fills them and one inf turns the loss "
                "into NaN: "
                "fix the file (a division by zero upstream?) or drop the column",
            )
        )
    for name, (common, count) in mixed.items():
        shown = ", ".join(f"{value!r} x{n}" for value, n in common)
        findings.append(
            Finding(
                "mixed_type_column",
                "warning",
                f"column {name!r} is numeric except {_plural(count, 'cell')} ({shown}), so the "
                "whole "
                "column is "
                "read as categories; empty those cells (then data.missing applies) or fix them",
            )
        )
    return findings


# ---------------------------------------------------------------- the loaded data


def _replace_non_finite(data: Data) -> None:
    """After infinite_values is reported, the rest of inspect studies finite numbers only."""
    finite = np.isfinite(data.train.x)
    if finite.all() and all(np.isfinite(s.x).all() for s in (data.val, data.test)):
        return
    sums = np.where(finite, data.train.x, 0).sum(axis=0)
    fill = (sums / np.maximum(finite.sum(axis=0), 1)).astype(np.float32)
    for split in (data.train, data.val, data.test):
        bad = ~np.isfinite(split.x)
        split.x[bad] = np.broadcast_to(fill, split.x.shape)[bad]


def _feature_names(data: Data) -> list[str]:
    return [str(n) for n in data.feature_names] or [
        f"column {j}" for j in range(data.train.x.shape[1])
    ]


def _splits(data: Data) -> dict[str, Split]:
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


def content_keys(data: Data, scan: ImageScan | None) -> dict[str, list[str]]:
    """A content hash per example: decoded pixels of an image file, else a row's values (R1.2)."""
    keys = {}
    for name, split in _splits(data).items():
        if scan is not None:
            keys[name] = [scan.digests[str(i)] for i in split.ids]
            continue
        # Adding 0 turns -0.0 into 0.0, so the two hash alike as they compare alike.
        rows = np.ascontiguousarray(split.x.reshape(len(split.x), -1) + np.float32(0))
        keys[name] = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in rows]
    return keys


def duplicate_findings(
    data: Data, keys: dict[str, list[str]], name: Namer
) -> tuple[list[Finding], dict]:
    """duplicate_across_splits, duplicate_within_split, conflicting_labels."""
    groups = defaultdict(list)
    for split_name, split_keys in keys.items():
        for index, key in enumerate(split_keys):
            groups[key].append((split_name, index))
    repeated = [members for members in groups.values() if len(members) > 1]
    splits = _splits(data)

    def show(members):
        return " = ".join(name(s, splits[s].ids[i]) for s, i in members[:4]) + (
            " ..." if len(members) > 4 else ""
        )

    def show_splits(members):  # one copy from each split it is in
        first = {}
        for s, i in members:
            first.setdefault(s, (s, i))
        return show(list(first.values())) + f" ({len(members)} copies)"

    across = [m for m in repeated if len({s for s, _ in m}) > 1]
    extra_within = Counter()
    within_examples = []
    for members in repeated:
        per_split = Counter(s for s, _ in members)
        for split_name, count in per_split.items():
            if count > 1:
                extra_within[split_name] += count - 1
                if len(within_examples) < 3:
                    within_examples.append(show([m for m in members if m[0] == split_name]))
    conflicting = []
    if data.task == "classification":
        for members in repeated:
            labels = {int(splits[s].y[i]) for s, i in members}
            if len(labels) > 1:
                conflicting.append((members, labels))

    findings = []
    if across:
        findings.append(
            Finding(
                "duplicate_across_splits",
                "error",
                f"{_counted(len(across), 'example', 'appear')} in two or "
                "more splits, e.g. "
                + "; ".join(show_splits(m) for m in across[:3])
                + "; validation and test scores then reward memory: deduplicate before splitting",
            )
        )
    if extra_within:
        where = ", ".join(f"{s} {n}" for s, n in extra_within.items())
        findings.append(
            Finding(
                "duplicate_within_split",
                "warning",
                f"{sum(extra_within.values())} extra copies of examples inside one split "
                f"({where}), e.g. "
                + "; ".join(within_examples)
                + "; they weigh those examples more: remove them unless that is intended",
            )
        )
    if conflicting:
        examples = []
        for members, _ in conflicting[:3]:
            examples.append(
                " vs ".join(
                    f"{name(s, splits[s].ids[i])} ({data.class_names[int(splits[s].y[i])]})"
                    for s, i in members[:3]
                )
            )
        findings.append(
            Finding(
                "conflicting_labels",
                "warning",
                f"{_counted(len(conflicting), 'input', 'occur')} with different labels, e.g. "
                f"{'; '.join(examples)}; "
                "label errors, or the inputs miss what decides the label",
            )
        )
    summary = {
        "across_splits": len(across),
        "within_split_extra_copies": sum(extra_within.values()),
        "conflicting_labels": len(conflicting),
    }
    return findings, summary


def balance_findings(data: Data) -> tuple[list[Finding], dict]:
    """class_imbalance or target_skew (regression), and the table for the report (R1.4)."""
    if data.task == "classification":
        size = len(data.class_names)
        counts = {s: np.bincount(split.y, minlength=size) for s, split in _splits(data).items()}
        total = sum(counts.values())
        table = [
            {
                "class": name,
                **{s: int(counts[s][c]) for s in SPLITS},
                "total": int(total[c]),
                "share": round(float(total[c] / total.sum()), 4),
            }
            for c, name in enumerate(data.class_names)
        ]
        largest, smallest = int(np.argmax(total)), int(np.argmin(total))
        ratio = float(total[largest] / max(total[smallest], 1))
        findings = []
        if ratio > IMBALANCE_RATIO:
            findings.append(
                Finding(
                    "class_imbalance",
                    "warning",
                    f"class {data.class_names[largest]!r} has {ratio:.1f}x the examples of "
                    f"{data.class_names[smallest]!r} ({total[largest]} vs {total[smallest]}; "
                    "threshold "
                    f"{IMBALANCE_RATIO:g}:1); the output bias already starts at the log class "
                    "priors "
                    "(R2.5, T3); "
                    "if the rare class matters, weight classes or oversample it (T2) and judge "
                    "per-class "
                    "recall",
                )
            )
        return findings, {"classes": table, "imbalance_ratio": round(ratio, 3)}
    y = data.train.y.astype(np.float64)
    std = float(y.std())
    skew = float(np.mean(((y - y.mean()) / std) ** 3)) if std > 0 else 0.0
    stats = {
        "mean": float(y.mean()),
        "std": std,
        "skew": skew,
        "min": float(y.min()),
        "median": float(np.median(y)),
        "max": float(y.max()),
    }
    findings = []
    if abs(skew) > TARGET_SKEW:
        if stats["min"] > 0:
            remedy = "log(y)"
        elif stats["min"] == 0:
            remedy = "log1p(y)"
        else:
            remedy = "a signed log or rank"
        findings.append(
            Finding(
                "target_skew",
                "warning",
                f"the training target has skewness {skew:.2f} (mean {stats['mean']:.4g}, median "
                f"{stats['median']:.4g}, max {stats['max']:.4g}); the squared loss is then "
                "ruled by the few "
                f"extreme targets: try training on {remedy} and transforming predictions back",
            )
        )
    return findings, {"target": {k: round(v, 6) for k, v in stats.items()}}


def feature_findings(data: Data, name: Namer) -> tuple[list[Finding], list[dict]]:
    """constant_feature, feature_outliers, heavy_tailed_feature, needs_normalization (R1.5, U7)."""
    x = data.train.x.astype(np.float64)
    names = _feature_names(data)
    mean, std = x.mean(axis=0), x.std(axis=0)
    low_q, q25, q50, q75, high_q = np.percentile(
        x, [TAIL_PERCENTILE, 25, 50, 75, 100 - TAIL_PERCENTILE], axis=0
    )
    numeric = np.array([j not in data.categorical for j in range(x.shape[1])])
    constant = std == 0
    scaled = numeric & ~constant
    all_x = np.concatenate([s.x for s in _splits(data).values()]).astype(np.float64)
    all_ids = [(s, i) for s, split in _splits(data).items() for i in split.ids]
    z = np.zeros_like(all_x)
    z[:, scaled] = np.abs(all_x[:, scaled] - mean[scaled]) / std[scaled]
    outliers = (z > OUTLIER_Z).sum(axis=0)
    iqr = q75 - q25
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(iqr > 0, np.maximum(high_q - q50, q50 - low_q) / iqr, 0.0)
    distinct = np.array([len(np.unique(x[:, j])) for j in range(x.shape[1])])
    heavy = scaled & (distinct >= MIN_DISTINCT_FOR_TAILS) & (tail > HEAVY_TAIL_RATIO)

    table = [
        {
            "feature": names[j],
            "kind": "numeric" if numeric[j] else "categorical",
            "mean": float(mean[j]),
            "std": float(std[j]),
            "min": float(all_x[:, j].min()),
            "max": float(all_x[:, j].max()),
            "outliers": int(outliers[j]),
            "tail_ratio": round(float(tail[j]), 2),
            "constant": bool(constant[j]),
            "heavy_tailed": bool(heavy[j]),
        }
        for j in range(x.shape[1])
    ]
    findings = []
    if constant.any():
        shown = [f"{names[j]!r} (= {x[0, j]:g})" for j in np.flatnonzero(constant)]
        findings.append(
            Finding(
                "constant_feature",
                "warning",
                f"{_counted(len(shown), 'feature', 'take')} one value in the training split: "
                f"{_listing(shown)}; they carry no signal: drop them (R4.6)",
            )
        )
    if outliers.any():
        shown = []
        for j in np.argsort(-outliers)[:MAX_NAMED]:
            if outliers[j]:
                worst = int(np.argmax(z[:, j]))
                shown.append(
                    f"{names[j]!r}: {outliers[j]} (worst {name(*all_ids[worst])} = "
                    f"{all_x[worst, j]:.4g}, "
                    f"z={z[worst, j]:.0f})"
                )
        count = int((outliers > 0).sum())
        findings.append(
            Finding(
                "feature_outliers",
                "warning",
                f"values beyond {OUTLIER_Z:g} std of the training mean in "
                f"{_plural(count, 'feature')}: "
                + "; ".join(shown)
                + ("; ..." if count > MAX_NAMED else "")
                + "; outliers nearly always expose an entry, unit or parsing bug (R1.5): fix, "
                + "clip or "
                + "drop them",
            )
        )
    if heavy.any():
        shown = []
        for j in np.flatnonzero(heavy)[np.argsort(-tail[heavy])]:
            low = float(all_x[:, j].min())
            remedy = (
                "log1p(x)" if low >= 0 else f"tanh(x / {max(abs(low_q[j]), abs(high_q[j])):.3g})"
            )
            shown.append(f"{names[j]!r} (tail {tail[j]:.1f}x its IQR; try {remedy})")
        findings.append(
            Finding(
                "heavy_tailed_feature",
                "warning",
                f"{_plural(len(shown), 'feature')} with heavy tails: {_listing(shown)}; the "
                "few huge "
                "values set the "
                "std that normalization divides by and squeeze the rest together: squash them "
                "before "
                "normalizing (U7)",
            )
        )
    magnitude = np.abs(all_x[:, scaled]).max(axis=0) if scaled.any() else np.zeros(1)
    if (magnitude > UNIT_SCALE).any() or (std[scaled] < 1 / UNIT_SCALE).any():
        columns = np.flatnonzero(scaled)
        widest, narrowest = columns[np.argmax(std[scaled])], columns[np.argmin(std[scaled])]
        findings.append(
            Finding(
                "needs_normalization",
                "info",
                f"feature std ranges from {std[narrowest]:.3g} ({names[narrowest]!r}) to "
                f"{std[widest]:.3g} "
                f"({names[widest]!r}), values up to {magnitude.max():.4g}; the pipeline "
                "standardizes every "
                "feature with the training mean and std, the same way for every split (U6, "
                "T6): nothing "
                "to do "
                "unless you preprocess elsewhere",
            )
        )
    return findings, table


def image_findings(data: Data, name: Namer) -> tuple[list[Finding], dict]:
    """constant_image, image_outliers, needs_normalization for image data (R1.3, R1.5, U6)."""
    splits = _splits(data)
    ids = [(s, i) for s, split in splits.items() for i in split.ids]
    x = np.concatenate([split.x for split in splits.values()])
    flat = x.reshape(len(x), -1)
    brightness, contrast = flat.mean(axis=1), flat.std(axis=1)
    train_count = len(data.train.x)
    findings = []
    blank = np.flatnonzero(contrast == 0)
    if len(blank):
        shown = [f"{name(*ids[i])} (all {flat[i, 0]:g})" for i in blank]
        findings.append(
            Finding(
                "constant_image",
                "warning",
                f"{_counted(len(blank), 'image', 'hold')} a single value: {_listing(shown)}; "
                "blank frames, "
                "failed "
                "captures or masks: drop or fix them",
            )
        )
    scores = {}
    for label, values in (("brightness", brightness), ("contrast", contrast)):
        # Median and MAD: in a small folder one odd training image inflates the std enough to
        # hide itself.
        center = np.median(values[:train_count])
        spread = (
            1.4826 * np.median(np.abs(values[:train_count] - center)) or values[:train_count].std()
        )
        if spread:
            scores[label] = np.abs(values - center) / spread
    odd = []
    for i in sorted(
        {int(i) for score in scores.values() for i in np.flatnonzero(score > OUTLIER_Z)}
    ):
        parts = ", ".join(
            f"{label} z={score[i]:.0f}" for label, score in scores.items() if score[i] > OUTLIER_Z
        )
        odd.append((max(score[i] for score in scores.values()), f"{name(*ids[i])} ({parts})"))
    if odd:
        odd.sort(reverse=True)
        findings.append(
            Finding(
                "image_outliers",
                "warning",
                f"{_plural(len(odd), 'image')} with a mean (brightness) or std (contrast) more "
                "than "
                f"{OUTLIER_Z:g} robust std from the training images' median: "
                f"{_listing(text for _, text in odd)}; look at them (extremes.png): wrong "
                "exposure, "
                "another source, or a decoding bug (R1.5)",
            )
        )
    low, high = float(x.min()), float(x.max())
    channel_std = data.train.x.reshape(-1, x.shape[-1]).std(axis=0)
    if max(abs(low), abs(high)) > UNIT_SCALE or (channel_std < 1 / UNIT_SCALE).any():
        findings.append(
            Finding(
                "needs_normalization",
                "info",
                f"pixel values span {low:g}..{high:g} (channel std "
                f"{_listing(f'{s:.3g}' for s in channel_std)}); "
                "the pipeline standardizes each channel with the training mean and std, the "
                "same way for "
                "every "
                "split (U6, T6): nothing to do unless you preprocess elsewhere",
            )
        )
    stats = {
        "value_range": [low, high],
        "channel_mean": data.train.x.reshape(-1, x.shape[-1]).mean(axis=0).tolist(),
        "channel_std": channel_std.tolist(),
        "brightness_order": np.argsort(brightness).tolist(),
    }
    return findings, stats


def leak_findings(
    data: Data, train_index: np.ndarray, val_index: np.ndarray
) -> tuple[list[Finding], list]:
    """target_leak: one column alone predicts the label almost perfectly on train and validation."""
    from sklearn import metrics, tree

    names = _feature_names(data)
    x_train, y_train = data.train.x[train_index], data.train.y[train_index]
    x_val, y_val = data.val.x[val_index], data.val.y[val_index]
    if data.task == "classification":
        # Deep enough to give every class its own threshold: a copied label needs C-1 splits.
        depth = max(2, math.ceil(math.log2(len(data.class_names))))

        def model():
            return tree.DecisionTreeClassifier(max_depth=depth, random_state=0)

        score, what = metrics.balanced_accuracy_score, "balanced accuracy"
        probe = f"a depth-{depth} tree"
    else:
        # A depth-2 tree has only 4 leaf values (R^2 ~0.94 even on a copied target): grow it out.
        # Its train score is then near 1 for any column; the validation score is the one that tells.
        leaf = max(1, len(y_train) // 500)

        def model():
            return tree.DecisionTreeRegressor(min_samples_leaf=leaf, random_state=0)

        score, what = metrics.r2_score, "R^2"
        probe = f"a tree with leaves of >= {leaf} examples"
    scores = []
    findings = []
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" on tiny validation sets
        warnings.simplefilter("ignore")
        for j, feature in enumerate(names):
            fitted = model().fit(x_train[:, j : j + 1], y_train)
            on_train = float(score(y_train, fitted.predict(x_train[:, j : j + 1])))
            on_val = float(score(y_val, fitted.predict(x_val[:, j : j + 1])))
            scores.append(
                {"feature": feature, "train": round(on_train, 4), "val": round(on_val, 4)}
            )
            if min(on_train, on_val) >= LEAK_SCORE:
                findings.append(
                    Finding(
                        "target_leak",
                        "error",
                        f"column {feature!r} alone predicts the label: {what} {on_val:.3f} on "
                        "validation "
                        f"({on_train:.3f} on train) with {probe} on that one column; usually "
                        "the label in "
                        "disguise (a copy, a value recorded after the fact, a sorted id): drop it, "
                        "or write down why it is legitimate",
                    )
                )
    return findings, scores


# ---------------------------------------------------------------- pictures


def _short(example_id) -> str:
    text = str(example_id)
    return Path(text).name[:14] if "/" in text or "\\" in text else f"#{text}"


def image_pictures(
    data: Data, folder: Path, stats: dict, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """examples.png: up to 8 training images per class with labels (R1.1); extremes.png: the darkest
    and brightest images (R1.5)."""
    from .pictures import image_grid_array, save_array, to_uint8

    value_range = (float(data.train.x.min()), float(data.train.x.max()))
    notes = []
    images, captions = [], []
    if data.task == "classification":
        classes = range(min(len(data.class_names), MAX_CLASSES_SHOWN))
        if len(data.class_names) > MAX_CLASSES_SHOWN:
            notes.append(
                f"examples.png shows the first {MAX_CLASSES_SHOWN} of {len(data.class_names)} "
                "classes"
            )
        for c in classes:
            members = np.flatnonzero(data.train.y == c)
            chosen = rng.choice(members, min(EXAMPLES_PER_CLASS, len(members)), replace=False)
            for i in np.sort(chosen):
                images.append(data.train.x[i])
                captions.append(f"{data.class_names[c][:12]}\n{_short(data.train.ids[i])}")
    else:
        for i in np.sort(rng.choice(len(data.train.y), min(32, len(data.train.y)), replace=False)):
            images.append(data.train.x[i])
            captions.append(f"y={data.train.y[i]:.3g}\n{_short(data.train.ids[i])}")
    low, high = value_range
    title = f"{data.source}: training examples and labels, values {low:g}..{high:g}"
    save_array(
        image_grid_array(to_uint8(np.stack(images), value_range), captions, title, cell=80),
        folder / "examples.png",
    )

    splits = _splits(data)
    every = [(s, i) for s, split in splits.items() for i in range(len(split.y))]
    order = stats["brightness_order"]
    picked = list(order[:EXAMPLES_PER_CLASS]) + list(order[-EXAMPLES_PER_CLASS:])
    images = [splits[every[k][0]].x[every[k][1]] for k in picked]
    captions = [
        ("darkest" if n < EXAMPLES_PER_CLASS else "brightest")
        + f"\n{every[k][0]} {_short(splits[every[k][0]].ids[every[k][1]])}"
        for n, k in enumerate(picked)
    ]
    title = "the 8 darkest and 8 brightest images (mean pixel value)"
    save_array(
        image_grid_array(to_uint8(np.stack(images), value_range), captions, title, cell=80),
        folder / "extremes.png",
    )
    return ["examples.png", "extremes.png"], notes


def table_pictures(
    data: Data, folder: Path, table: list[dict], sample: np.ndarray
) -> tuple[list[str], list[str]]:
    """features.png: every feature by class or against the target (R1.5); extremes.png: the rows
    with the most extreme values."""
    from .pictures import feature_histograms_figure, table_heatmap_figure

    names = _feature_names(data)
    flagged = [
        j
        for j, row in enumerate(table)
        if row["outliers"] or row["heavy_tailed"] or row["constant"]
    ]
    order = flagged + [j for j in range(len(names)) if j not in flagged]
    shown = order[:MAX_PLOTTED_FEATURES]
    notes = []
    if len(order) > MAX_PLOTTED_FEATURES:
        notes.append(
            f"features.png shows {MAX_PLOTTED_FEATURES} of {len(order)} features (flagged ones "
            "first)"
        )
    x, y = data.train.x[sample], data.train.y[sample]
    marks = {"constant": "constant", "heavy_tailed": "heavy tail", "outliers": "outliers"}
    titles = [
        " ".join([names[j], *(f"[{mark}]" for key, mark in marks.items() if table[j][key])])
        for j in shown
    ]
    if data.task == "classification":
        feature_histograms_figure(
            x[:, shown],
            titles,
            folder / "features.png",
            f"{data.source}: training features by class",
            labels=y,
            class_names=data.class_names,
        )
    else:
        feature_histograms_figure(
            x[:, shown],
            titles,
            folder / "features.png",
            f"{data.source}: training features (x) against the target (y)",
            targets=y,
        )
    mean = np.array([row["mean"] for row in table])
    std = np.array(
        [row["std"] if row["std"] > 0 and row["kind"] == "numeric" else 1.0 for row in table]
    )
    splits = _splits(data)
    every = np.concatenate([split.x for split in splits.values()])
    labels = [f"{s} {_short(i)}" for s, split in splits.items() for i in split.ids]
    standardized = (every - mean) / std
    worst = np.argsort(-np.abs(standardized[:, shown]).max(axis=1))[:16]
    table_heatmap_figure(
        standardized[worst][:, shown],
        [labels[i] for i in worst],
        [names[j] for j in shown],
        folder / "extremes.png",
        "the 16 most unusual rows (largest |z| of any feature)",
    )
    return ["features.png", "extremes.png"], notes


# ---------------------------------------------------------------- report


def _sample_index(size: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(size, limit, replace=False)) if size > limit else np.arange(size)


def _markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, result: dict) -> None:
    findings = result["findings"]
    counts = Counter(f["severity"] for f in findings)
    verdict = "**errors found: fix them before training**" if counts["error"] else "no errors"
    sizes = result["splits"]
    parts = [
        f"# Data inspection: {result['source']}",
        "",
        f"{result['kind']} data, {result['task']}, {result['examples']} examples; {verdict} "
        f"({_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}, "
        f"{_plural(counts['info'], 'note')}). "
        "Each finding name is explained in docs/inspect.md of the recipe template (R1).",
        "",
        "## Findings",
        "",
        _markdown_table(findings, ["severity", "name", "detail"])
        if findings
        else "Nothing to report.",
        "",
        "## Splits",
        "",
        _markdown_table(
            [{"split": s, "examples": sizes[s]} for s in SPLITS], ["split", "examples"]
        ),
        "",
    ]
    if "classes" in result:
        parts += [
            "## Class balance",
            "",
            f"Imbalance ratio (largest / smallest class): {result['imbalance_ratio']:.2f}",
            "",
            _markdown_table(result["classes"], ["class", *SPLITS, "total", "share"]),
            "",
        ]
    if "target" in result:
        target = result["target"]
        parts += ["## Target (training split)", "", _markdown_table([target], list(target)), ""]
    if result.get("features"):
        columns = [
            "feature",
            "kind",
            "mean",
            "std",
            "min",
            "max",
            "outliers",
            "tail_ratio",
            "flags",
        ]
        rows = [
            {**row, "flags": ", ".join(k for k in ("constant", "heavy_tailed") if row[k])}
            for row in result["features"]
        ]
        parts += [
            f"## Features (outliers: |z| > {OUTLIER_Z:g} from the training mean)",
            "",
            _markdown_table(rows, columns),
            "",
        ]
    if result.get("leak_probe"):
        parts += [
            "## Single-feature scores (leak probe)",
            "",
            _markdown_table(
                sorted(result["leak_probe"], key=lambda r: -r["val"]), ["feature", "train", "val"]
            ),
            "",
        ]
    captions = {
        "examples.png": "Examples per class, as decoded (R1.1)",
        "features.png": "Every feature: histograms per class, or against the target (R1.5)",
        "extremes.png": "The most extreme examples (R1.5)",
    }
    if result["pictures"]:
        parts += ["## Pictures", ""]
        for picture in result["pictures"]:
            parts += [f"### {captions[picture]}", "", f"![{picture}]({picture})", ""]
    path.write_text("\n".join(parts))


def inspect(config: Config) -> int:
    """Studies config.data.source and writes runs/<name>/inspect/report.md and inspect.json.

    Returns 1 when any finding is an error, else 0. A bad config or a missing source is a
    UsageError raised before anything is written.
    """
    started = time.perf_counter()
    d = config.data
    where, _, location = resolve_source(d.source).partition(":")
    findings: list[Finding] = []
    scan = None
    if where == "folder":
        scan = scan_image_folder(Path(location))
        findings += image_file_findings(scan)
    elif where == "csv":
        findings += scan_csv(Path(location), d.label_column, d.missing)

    # Load what can be loaded: unreadable files left out, missing cells filled, infinities kept;
    # each of those was reported above, and the rest of the data still deserves a look.
    load_config = copy.deepcopy(config)
    load_config.data.missing = "mean"
    exclude = frozenset(path for path, _ in scan.broken) if scan else frozenset()
    try:
        # Infinities make load's own statistics NaN; inspect does not use them.
        with np.errstate(invalid="ignore", over="ignore"):
            data = load(load_config, exclude=exclude, finite_only=False)
    except UsageError:
        for finding in findings:  # what the files showed still helps explain why loading failed
            print(finding.line())
        raise
    _replace_non_finite(data)
    name = Namer(where)

    rng = np.random.default_rng(config.seed)
    limit = config.check.sample
    total = sum(len(split.y) for split in _splits(data).values())
    train_sample = _sample_index(len(data.train.y), limit, rng)
    val_sample = _sample_index(len(data.val.y), limit, rng)
    sampled = total > limit

    result: dict = {
        "source": d.source,
        "kind": data.kind,
        "task": data.task,
        "examples": total,
        "splits": {s: len(split.y) for s, split in _splits(data).items()},
    }
    more, result["duplicates"] = duplicate_findings(data, content_keys(data, scan), name)
    findings += more
    more, balance = balance_findings(data)
    findings += more
    result.update(balance)
    if data.kind == "image":
        more, image_stats = image_findings(data, name)
        findings += more
        findings.append(
            Finding(
                "leak_probe_skipped",
                "info",
                "the single-feature leak probe is skipped for images (one pixel "
                "is not a column to drop); duplicate_across_splits is the leak to watch here",
            )
        )
    else:
        more, result["features"] = feature_findings(data, name)
        findings += more
        more, result["leak_probe"] = leak_findings(data, train_sample, val_sample)
        findings += more

    # Only now, with the data read, does the run folder appear.
    folder = config.run_dir / "inspect"
    folder.mkdir(parents=True, exist_ok=True)
    for picture in PICTURES:
        (folder / picture).unlink(missing_ok=True)
    if data.kind == "image":
        result["pictures"], notes = image_pictures(data, folder, image_stats, rng)
        image_stats.pop("brightness_order")
        result["image_stats"] = image_stats
    else:
        result["pictures"], notes = table_pictures(data, folder, result["features"], train_sample)
    findings += [Finding("plot_capped", "info", note) for note in notes]
    if sampled:
        findings.append(
            Finding(
                "sampled",
                "info",
                f"the leak probe and the plots used at most {limit} examples per split "
                f"of {total} (check.sample); duplicates, outliers and files were checked on "
                "all of them",
            )
        )

    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    result = {
        "findings": [asdict(f) for f in findings],
        "sampled": sampled,
        "sample_size": limit,
        **result,
    }
    if scan is not None:
        result["corrupt_files"] = [{"path": p, "reason": r} for p, r in scan.broken]
    result["seconds"] = round(time.perf_counter() - started, 2)
    write_report(folder / "report.md", result)
    (config.run_dir / "inspect.json").write_text(json.dumps(result, indent=2, default=float) + "\n")

    for finding in findings:
        print(finding.line())
    counts = Counter(f.severity for f in findings)
    print(
        f"inspect: {_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}, "
        f"{_plural(counts['info'], 'note')} in {result['seconds']:.1f}s; report: "
        f"{folder / 'report.md'}"
    )
    return 1 if counts["error"] else 0
