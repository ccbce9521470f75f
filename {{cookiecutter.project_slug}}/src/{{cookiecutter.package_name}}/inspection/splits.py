"""Findings about examples and labels across the splits: duplicates, leakage between splits,
conflicting labels, class balance or the target distribution."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ..data import Data
from .common import (
    IMBALANCE_RATIO,
    SPLITS,
    TARGET_SKEW,
    Finding,
    ImageScan,
    Look,
    counted,
    shared,
    splits_of,
)

# ---------------------------------------------------------------- duplicates

Member = tuple[str, int]  # (split, index in that split)


@dataclass
class Duplicates:
    """Groups of examples with the same input, each a list of members in split order."""

    across: list[list[Member]]  # groups in two or more splits
    within: list[list[Member]]  # the copies of a group inside one split, per split it repeats in
    extra_within: Counter  # split -> copies beyond the first
    conflicting: list[list[Member]]  # classification: groups holding two or more labels


def content_keys(data: Data, scan: ImageScan | None) -> dict[str, list[str]]:
    """A content hash per example: decoded pixels of an image file, else a row's values (R1.2)."""
    keys = {}
    for name, split in splits_of(data).items():
        if scan is not None:
            keys[name] = [scan.digests[str(i)] for i in split.ids]
            continue
        # Adding 0 turns -0.0 into 0.0, so the two hash alike as they compare alike.
        rows = np.ascontiguousarray(split.x.reshape(len(split.x), -1) + np.float32(0))
        keys[name] = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in rows]
    return keys


@shared
def duplicates(look: Look) -> Duplicates:
    """Every example of every split grouped by its content key."""
    data = look.data
    groups = defaultdict(list)
    for split_name, split_keys in content_keys(data, look.files.images).items():
        for index, key in enumerate(split_keys):
            groups[key].append((split_name, index))
    repeated = [members for members in groups.values() if len(members) > 1]
    found = Duplicates([], [], Counter(), [])
    for members in repeated:
        if len({s for s, _ in members}) > 1:
            found.across.append(members)
        for split_name, count in Counter(s for s, _ in members).items():
            if count > 1:
                found.extra_within[split_name] += count - 1
                found.within.append([m for m in members if m[0] == split_name])
    if data.task == "classification":
        splits = splits_of(data)
        for members in repeated:
            if len({int(splits[s].y[i]) for s, i in members}) > 1:
                found.conflicting.append(members)
    return found


def duplicate_summary(look: Look) -> dict:
    """inspect.json's "duplicates"."""
    found = duplicates(look)
    return {
        "across_splits": len(found.across),
        "within_split_extra_copies": sum(found.extra_within.values()),
        "conflicting_labels": len(found.conflicting),
    }


def _show(look: Look, members: list[Member]) -> str:
    splits = splits_of(look.data)
    return " = ".join(look.name(s, splits[s].ids[i]) for s, i in members[:4]) + (
        " ..." if len(members) > 4 else ""
    )


def duplicate_across_splits(look: Look) -> list[Finding]:
    """The same input in two or more splits: validation and test then reward memory (R1.2)."""
    across = duplicates(look).across
    if not across:
        return []

    def one_per_split(members):
        first = {}
        for s, i in members:
            first.setdefault(s, (s, i))
        return _show(look, list(first.values())) + f" ({len(members)} copies)"

    detail = (
        f"{counted(len(across), 'example', 'appear')} in two or more splits, e.g. "
        + "; ".join(one_per_split(m) for m in across[:3])
        + "; validation and test scores then reward memory: deduplicate before splitting"
    )
    return [Finding("duplicate_across_splits", "error", detail)]


def duplicate_within_split(look: Look) -> list[Finding]:
    """The same input twice in one split: those examples weigh more (R1.2)."""
    found = duplicates(look)
    if not found.extra_within:
        return []
    where = ", ".join(f"{s} {n}" for s, n in found.extra_within.items())
    detail = (
        f"{sum(found.extra_within.values())} extra copies of examples inside one split "
        f"({where}), e.g. "
        + "; ".join(_show(look, copies) for copies in found.within[:3])
        + "; they weigh those examples more: remove them unless that is intended"
    )
    return [Finding("duplicate_within_split", "warning", detail)]


def conflicting_labels(look: Look) -> list[Finding]:
    """The same input with different labels: label errors, or inputs missing what decides (R1.3)."""
    conflicting = duplicates(look).conflicting
    if not conflicting:
        return []
    data, splits = look.data, splits_of(look.data)
    examples = [
        " vs ".join(
            f"{look.name(s, splits[s].ids[i])} ({data.class_names[int(splits[s].y[i])]})"
            for s, i in members[:3]
        )
        for members in conflicting[:3]
    ]
    detail = (
        f"{counted(len(conflicting), 'input', 'occur')} with different labels, e.g. "
        f"{'; '.join(examples)}; label errors, or the inputs miss what decides the label"
    )
    return [Finding("conflicting_labels", "warning", detail)]


# ---------------------------------------------------------------- balance


@shared
def class_counts(look: Look) -> dict[str, np.ndarray]:
    """Examples per class in each split (classification)."""
    size = len(look.data.class_names)
    return {s: np.bincount(split.y, minlength=size) for s, split in splits_of(look.data).items()}


@shared
def target_statistics(look: Look) -> dict[str, float]:
    """The training target's mean, std, skewness and range (regression)."""
    y = look.data.train.y.astype(np.float64)
    std = float(y.std())
    skew = float(np.mean(((y - y.mean()) / std) ** 3)) if std > 0 else 0.0
    return {
        "mean": float(y.mean()),
        "std": std,
        "skew": skew,
        "min": float(y.min()),
        "median": float(np.median(y)),
        "max": float(y.max()),
    }


def _imbalance(total: np.ndarray) -> tuple[int, int, float]:
    """The largest and the smallest class and their ratio."""
    largest, smallest = int(np.argmax(total)), int(np.argmin(total))
    return largest, smallest, float(total[largest] / max(total[smallest], 1))


def balance_table(look: Look) -> dict:
    """inspect.json's "classes" and "imbalance_ratio" (R1.4), or its "target"."""
    data = look.data
    if data.task != "classification":
        return {"target": {k: round(v, 6) for k, v in target_statistics(look).items()}}
    counts = class_counts(look)
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
    return {"classes": table, "imbalance_ratio": round(_imbalance(total)[2], 3)}


def class_imbalance(look: Look) -> list[Finding]:
    """Largest / smallest class above 3: accuracy starts to hide the rare class (R1.4, T2)."""
    data = look.data
    if data.task != "classification":
        return []
    total = sum(class_counts(look).values())
    largest, smallest, ratio = _imbalance(total)
    if ratio <= IMBALANCE_RATIO:
        return []
    detail = (
        f"class {data.class_names[largest]!r} has {ratio:.1f}x the examples of "
        f"{data.class_names[smallest]!r} ({total[largest]} vs {total[smallest]}; threshold "
        f"{IMBALANCE_RATIO:g}:1); the output bias already starts at the log class priors "
        "(R2.5, T3); if the rare class matters, use one of data.sampling=oversample, "
        "train.class_weight=balanced (or a mapping {label: weight}) or train.loss=focal "
        "(T2, T18) and judge per-class recall"
    )
    return [Finding("class_imbalance", "warning", detail)]


def target_skew(look: Look) -> list[Finding]:
    """|skewness| of the training target above 1: a few extreme targets rule the loss (R1.4)."""
    if look.data.task != "regression":
        return []
    stats = target_statistics(look)
    skew = stats["skew"]
    if not abs(skew) > TARGET_SKEW:  # a NaN skew is not a finding
        return []
    if stats["min"] > 0:
        remedy = "log(y)"
    elif stats["min"] == 0:
        remedy = "log1p(y)"
    else:
        remedy = "a signed log or rank"
    detail = (
        f"the training target has skewness {skew:.2f} (mean {stats['mean']:.4g}, median "
        f"{stats['median']:.4g}, max {stats['max']:.4g}); the squared loss is then ruled by the "
        f"few extreme targets: try training on {remedy} and transforming predictions back"
    )
    return [Finding("target_skew", "warning", detail)]
