"""The pictures (examples per class, extremes, features) and report.md of inspect, and the
findings that say what the pictures and the probes left out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..data import Data
from ..tables import markdown_table
from .common import (
    EXAMPLES_PER_CLASS,
    MAX_CLASSES_SHOWN,
    MAX_PLOTTED_FEATURES,
    OUTLIER_Z,
    SPLITS,
    Finding,
    Look,
    feature_names_of,
    plural,
    short_id,
    splits_of,
)
from .features import feature_table, image_statistics
from .near_duplicates import draw_near_duplicates, near_copies
from .suspects import draw_suspicious_labels, label_noise

# ---------------------------------------------------------------- pictures


def draw_pictures(look: Look, folder: Path) -> list[str]:
    """Draws the pictures for the data's kind into folder, then those of the near-copies and
    the doubted labels when there are any; returns their file names."""
    if look.data.kind == "image":
        brightness = image_statistics(look).brightness
        pictures = image_pictures(look.pictured, folder, brightness, look.rng)
    else:
        pictures = table_pictures(look.data, folder, feature_table(look), look.train_sample)
    pictures += draw_near_duplicates(look.data, near_copies(look)[1], folder)
    return pictures + draw_suspicious_labels(look.pictured, label_noise(look)[1], folder)


def image_pictures(
    data: Data, folder: Path, brightness: np.ndarray, rng: np.random.Generator
) -> list[str]:
    """examples.png: up to 8 training images per class with labels (R1.1); extremes.png: the darkest
    and brightest images (R1.5)."""
    from ..pictures import image_grid_array, save_array, to_uint8

    value_range = data.value_range
    images, captions = [], []
    if data.task == "classification":
        for c in range(min(len(data.class_names), MAX_CLASSES_SHOWN)):
            members = np.flatnonzero(data.train.y == c)
            chosen = rng.choice(members, min(EXAMPLES_PER_CLASS, len(members)), replace=False)
            for i in np.sort(chosen):
                images.append(data.train.x[i])
                captions.append(f"{data.class_names[c][:12]}\n{short_id(data.train.ids[i])}")
    else:
        for i in np.sort(rng.choice(len(data.train.y), min(32, len(data.train.y)), replace=False)):
            images.append(data.train.x[i])
            captions.append(f"y={data.train.y[i]:.3g}\n{short_id(data.train.ids[i])}")
    low, high = value_range
    title = f"{data.source}: training examples and labels, values {low:g}..{high:g}"
    save_array(
        image_grid_array(to_uint8(np.stack(images), value_range), captions, title, cell=80),
        folder / "examples.png",
    )

    splits = splits_of(data)
    every = [(s, i) for s, split in splits.items() for i in range(len(split.y))]
    order = np.argsort(brightness).tolist()
    picked = list(order[:EXAMPLES_PER_CLASS]) + list(order[-EXAMPLES_PER_CLASS:])
    images = [splits[every[k][0]].x[every[k][1]] for k in picked]
    captions = [
        ("darkest" if n < EXAMPLES_PER_CLASS else "brightest")
        + f"\n{every[k][0]} {short_id(splits[every[k][0]].ids[every[k][1]])}"
        for n, k in enumerate(picked)
    ]
    title = "the 8 darkest and 8 brightest images (mean pixel value)"
    save_array(
        image_grid_array(to_uint8(np.stack(images), value_range), captions, title, cell=80),
        folder / "extremes.png",
    )
    return ["examples.png", "extremes.png"]


def table_pictures(data: Data, folder: Path, table: list[dict], sample: np.ndarray) -> list[str]:
    """features.png: every feature by class or against the target (R1.5); extremes.png: the rows
    with the most extreme values."""
    from ..pictures import feature_histograms_figure, table_heatmap_figure

    names = feature_names_of(data)
    flagged = [
        j
        for j, row in enumerate(table)
        if row["outliers"] or row["heavy_tailed"] or row["constant"]
    ]
    order = flagged + [j for j in range(len(names)) if j not in flagged]
    shown = order[:MAX_PLOTTED_FEATURES]
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
    splits = splits_of(data)
    every = np.concatenate([split.x for split in splits.values()])
    labels = [f"{s} {short_id(i)}" for s, split in splits.items() for i in split.ids]
    standardized = (every - mean) / std
    worst = np.argsort(-np.abs(standardized[:, shown]).max(axis=1))[:16]
    table_heatmap_figure(
        standardized[worst][:, shown],
        [labels[i] for i in worst],
        [names[j] for j in shown],
        folder / "extremes.png",
        "the 16 most unusual rows (largest |z| of any feature)",
    )
    return ["features.png", "extremes.png"]


# ---------------------------------------------------------------- what was left out


def sampled_images(look: Look) -> list[Finding]:
    """Image files: the pixel statistics and the pictures studied a decoded sample."""
    if not (look.data.streamed and look.pictures_sampled):
        return []
    detail = (
        f"the image statistics, outliers and pictures used a decoded sample of at most "
        f"{look.config.check.sample} images per split (check.sample); files, duplicates and "
        f"balance cover all {look.total}"
    )
    return [Finding("sampled_images", "info", detail)]


def plot_capped(look: Look) -> list[Finding]:
    """examples.png shows the first 20 classes, features.png 30 features (R1.1, R1.5)."""
    data = look.data
    if data.kind == "image":
        classes = len(data.class_names) if data.task == "classification" else 0
        if classes <= MAX_CLASSES_SHOWN:
            return []
        detail = f"examples.png shows the first {MAX_CLASSES_SHOWN} of {classes} classes"
        return [Finding("plot_capped", "info", detail)]
    features = len(feature_names_of(data))
    if features <= MAX_PLOTTED_FEATURES:
        return []
    detail = (
        f"features.png shows {MAX_PLOTTED_FEATURES} of {features} features (flagged ones first)"
    )
    return [Finding("plot_capped", "info", detail)]


def sampled(look: Look) -> list[Finding]:
    """More examples than check.sample: the leak probe and the plots used a sample."""
    if not look.sampled or look.data.streamed:  # image files: sampled_images says it
        return []
    detail = (
        f"the leak probe and the plots used at most {look.config.check.sample} examples per "
        f"split of {look.total} (check.sample); duplicates, outliers and files were checked on "
        "all of them"
    )
    return [Finding("sampled", "info", detail)]


# ---------------------------------------------------------------- report


def write_report(path: Path, result: dict) -> None:
    findings = result["findings"]
    counts = Counter(f["severity"] for f in findings)
    verdict = "**errors found: fix them before training**" if counts["error"] else "no errors"
    sizes = result["splits"]
    parts = [
        f"# Data inspection: {result['source']}",
        "",
        f"{result['kind']} data, {result['task']}, {result['examples']} examples; {verdict} "
        f"({plural(counts['error'], 'error')}, {plural(counts['warning'], 'warning')}, "
        f"{plural(counts['info'], 'note')}). "
        "Each finding name is explained in docs/inspect.md (R1).",
        "",
        "## Findings",
        "",
        markdown_table(findings, ["severity", "name", "detail"])
        if findings
        else "Nothing to report.",
        "",
        "## Splits",
        "",
        markdown_table([{"split": s, "examples": sizes[s]} for s in SPLITS], ["split", "examples"]),
        "",
    ]
    if "classes" in result:
        parts += [
            "## Class balance",
            "",
            f"Imbalance ratio (largest / smallest class): {result['imbalance_ratio']:.2f}",
            "",
            markdown_table(result["classes"], ["class", *SPLITS, "total", "share"]),
            "",
        ]
    if "target" in result:
        target = result["target"]
        parts += ["## Target (training split)", "", markdown_table([target], list(target)), ""]
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
            markdown_table(rows, columns),
            "",
        ]
    if result.get("leak_probe"):
        parts += [
            "## Single-feature scores (leak probe)",
            "",
            markdown_table(
                sorted(result["leak_probe"], key=lambda r: -r["val"]), ["feature", "train", "val"]
            ),
            "",
        ]
    captions = {
        "examples.png": "Examples per class, as decoded (R1.1)",
        "features.png": "Every feature: histograms per class, or against the target (R1.5)",
        "extremes.png": "The most extreme examples (R1.5)",
        "near_duplicates.png": "Near-copies side by side, across splits first (R1.2)",
        "suspicious_labels.png": "Training labels a quick model doubts most (R1.3)",
    }
    if result["pictures"]:
        parts += ["## Pictures", ""]
        for picture in result["pictures"]:
            parts += [f"### {captions[picture]}", "", f"![{picture}]({picture})", ""]
    path.write_text("\n".join(parts))
