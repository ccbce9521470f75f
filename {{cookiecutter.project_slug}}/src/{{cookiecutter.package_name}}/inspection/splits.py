"""Findings about examples and labels across the splits: duplicates, leakage between splits,
conflicting labels, class balance or the target distribution."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

import numpy as np

from ..data import Data
from .common import (
    IMBALANCE_RATIO,
    SPLITS,
    TARGET_SKEW,
    Finding,
    ImageScan,
    Namer,
    counted,
    splits_of,
)


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


def duplicate_findings(
    data: Data, keys: dict[str, list[str]], name: Namer
) -> tuple[list[Finding], dict]:
    """duplicate_across_splits, duplicate_within_split, conflicting_labels."""
    groups = defaultdict(list)
    for split_name, split_keys in keys.items():
        for index, key in enumerate(split_keys):
            groups[key].append((split_name, index))
    repeated = [members for members in groups.values() if len(members) > 1]
    splits = splits_of(data)

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
                f"{counted(len(across), 'example', 'appear')} in two or "
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
                f"{counted(len(conflicting), 'input', 'occur')} with different labels, e.g. "
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
        counts = {s: np.bincount(split.y, minlength=size) for s, split in splits_of(data).items()}
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
                    "if the rare class matters, set train.class_weight=balanced or "
                    "train.loss=focal (T2, T18) and judge per-class recall",
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
