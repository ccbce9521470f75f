"""Findings about the inputs: scale, outliers, heavy tails, constant features, odd images, and
single features that predict the label (a target leak)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import yaml

from .common import (
    HEAVY_TAIL_RATIO,
    LEAK_SCORE,
    MAX_NAMED,
    MIN_DISTINCT_FOR_TAILS,
    OUTLIER_Z,
    TAIL_PERCENTILE,
    UNIT_SCALE,
    Finding,
    Look,
    counted,
    feature_names_of,
    listing,
    plural,
    shared,
    splits_of,
)

# ---------------------------------------------------------------- table features


@dataclass
class FeatureStatistics:
    """Per feature of a table: statistics of the training split, and of every split's values
    their range and outliers (|z| from the training mean and std)."""

    names: list[str]
    first: np.ndarray  # the first training row (a constant feature's value)
    mean: np.ndarray
    std: np.ndarray
    low_q: np.ndarray  # the TAIL_PERCENTILE-th percentile
    high_q: np.ndarray  # the (100 - TAIL_PERCENTILE)-th percentile
    tail: np.ndarray  # the longer tail over the IQR
    numeric: np.ndarray  # bool: not a category index
    constant: np.ndarray  # bool
    scaled: np.ndarray  # bool: numeric and not constant, so z is defined
    heavy: np.ndarray  # bool
    low: np.ndarray  # the smallest value in any split
    high: np.ndarray
    magnitude: np.ndarray  # the largest |value| in any split
    outliers: np.ndarray  # values with |z| > OUTLIER_Z
    worst: list[tuple[str, str, float, float]]  # (split, id, value, |z|) of the largest |z|


@shared
def feature_statistics(look: Look) -> FeatureStatistics:
    data = look.data
    x = data.train.x.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    low_q, q25, q50, q75, high_q = np.percentile(
        x, [TAIL_PERCENTILE, 25, 50, 75, 100 - TAIL_PERCENTILE], axis=0
    )
    numeric = np.array([j not in data.categorical for j in range(x.shape[1])])
    constant = std == 0
    scaled = numeric & ~constant
    all_x = np.concatenate([s.x for s in splits_of(data).values()]).astype(np.float64)
    all_ids = [(s, i) for s, split in splits_of(data).items() for i in split.ids]
    z = np.zeros_like(all_x)
    z[:, scaled] = np.abs(all_x[:, scaled] - mean[scaled]) / std[scaled]
    worst = np.argmax(z, axis=0)
    iqr = q75 - q25
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(iqr > 0, np.maximum(high_q - q50, q50 - low_q) / iqr, 0.0)
    distinct = np.array([len(np.unique(x[:, j])) for j in range(x.shape[1])])
    return FeatureStatistics(
        names=feature_names_of(data),
        first=x[0].copy(),  # a view would keep all of x alive
        mean=mean,
        std=std,
        low_q=low_q,
        high_q=high_q,
        tail=tail,
        numeric=numeric,
        constant=constant,
        scaled=scaled,
        heavy=scaled & (distinct >= MIN_DISTINCT_FOR_TAILS) & (tail > HEAVY_TAIL_RATIO),
        low=all_x.min(axis=0),
        high=all_x.max(axis=0),
        magnitude=np.abs(all_x).max(axis=0),
        outliers=(z > OUTLIER_Z).sum(axis=0),
        worst=[(*all_ids[w], all_x[w, j], z[w, j]) for j, w in enumerate(worst)],
    )


def feature_table(look: Look) -> list[dict]:
    """inspect.json's "features": one row per feature."""
    stats = feature_statistics(look)
    return [
        {
            "feature": stats.names[j],
            "kind": "numeric" if stats.numeric[j] else "categorical",
            "mean": float(stats.mean[j]),
            "std": float(stats.std[j]),
            "min": float(stats.low[j]),
            "max": float(stats.high[j]),
            "outliers": int(stats.outliers[j]),
            "tail_ratio": round(float(stats.tail[j]), 2),
            "constant": bool(stats.constant[j]),
            "heavy_tailed": bool(stats.heavy[j]),
        }
        for j in range(len(stats.names))
    ]


def constant_feature(look: Look) -> list[Finding]:
    """A feature with one value in the training split carries no signal (R1.5, R4.6)."""
    if look.data.kind == "image":
        return []
    stats = feature_statistics(look)
    if not stats.constant.any():
        return []
    shown = [f"{stats.names[j]!r} (= {stats.first[j]:g})" for j in np.flatnonzero(stats.constant)]
    detail = (
        f"{counted(len(shown), 'feature', 'take')} one value in the training split: "
        f"{listing(shown)}; they carry no signal: drop them (R4.6)"
    )
    return [Finding("constant_feature", "warning", detail)]


def feature_outliers(look: Look) -> list[Finding]:
    """Values beyond 6 std of the training mean: an entry, unit or parsing bug (R1.5)."""
    if look.data.kind == "image":
        return []
    stats = feature_statistics(look)
    outliers = stats.outliers
    if not outliers.any():
        return []
    shown = []
    for j in np.argsort(-outliers)[:MAX_NAMED]:
        if outliers[j]:
            split, example, value, z = stats.worst[j]
            shown.append(
                f"{stats.names[j]!r}: {outliers[j]} (worst {look.name(split, example)} = "
                f"{value:.4g}, z={z:.0f})"
            )
    count = int((outliers > 0).sum())
    detail = (
        f"values beyond {OUTLIER_Z:g} std of the training mean in {plural(count, 'feature')}: "
        + "; ".join(shown)
        + ("; ..." if count > MAX_NAMED else "")
        + "; outliers nearly always expose an entry, unit or parsing bug (R1.5): fix, clip or "
        "drop them"
    )
    return [Finding("feature_outliers", "warning", detail)]


def heavy_tailed_feature(look: Look) -> list[Finding]:
    """A tail over 4 IQRs long sets the std normalization divides by: squash it first (U7)."""
    if look.data.kind == "image":
        return []
    stats = feature_statistics(look)
    heavy, tail = stats.heavy, stats.tail
    if not heavy.any():
        return []
    shown, transform = [], {}
    for j in np.flatnonzero(heavy)[np.argsort(-tail[heavy])]:
        # log1p for amounts and counts; tanh, centred and scaled on the training split, when
        # negative values say the feature is not an amount
        transform[stats.names[j]] = "log1p" if stats.low[j] >= 0 else "tanh"
        remedy = "log1p(x)" if stats.low[j] >= 0 else "tanh((x - median) / C)"
        shown.append(f"{stats.names[j]!r} (tail {tail[j]:.1f}x its IQR; try {remedy})")
    override = yaml.safe_dump(transform, default_flow_style=True, width=math.inf).strip()
    detail = (
        f"{plural(len(shown), 'feature')} with heavy tails: {listing(shown)}; the few huge "
        "values set the std that normalization divides by and squeeze the rest together: "
        f"squash them before normalizing (U7) with data.transform='{override}'"
    )
    return [Finding("heavy_tailed_feature", "warning", detail)]


def needs_normalization(look: Look) -> list[Finding]:
    """Values beyond 10 or a std below 0.1: the pipeline standardizes them (U6, T6), a note."""
    if look.data.kind == "image":
        return _pixel_scale(look)
    stats = feature_statistics(look)
    scaled = stats.scaled
    if not scaled.any():
        return []
    magnitude, std = stats.magnitude[scaled], stats.std[scaled]
    if not ((magnitude > UNIT_SCALE).any() or (std < 1 / UNIT_SCALE).any()):
        return []
    columns = np.flatnonzero(scaled)
    widest, narrowest = columns[np.argmax(std)], columns[np.argmin(std)]
    names = stats.names
    detail = (
        f"feature std ranges from {stats.std[narrowest]:.3g} ({names[narrowest]!r}) to "
        f"{stats.std[widest]:.3g} ({names[widest]!r}), values up to {magnitude.max():.4g}; the "
        "pipeline standardizes every feature with the training mean and std, the same way for "
        "every split (U6, T6): nothing to do unless you preprocess elsewhere"
    )
    return [Finding("needs_normalization", "info", detail)]


# ---------------------------------------------------------------- images


@dataclass
class ImageStatistics:
    """Per pictured image (every split, in order) and per channel of the training images."""

    ids: list[tuple[str, str]]  # (split, id)
    brightness: np.ndarray  # each image's mean value
    contrast: np.ndarray  # each image's std
    first: np.ndarray  # each image's first value (a blank image's only one)
    train_count: int
    low: float  # the smallest value of any image
    high: float
    channel_mean: np.ndarray
    channel_std: np.ndarray


@shared
def image_statistics(look: Look) -> ImageStatistics:
    data = look.pictured
    splits = splits_of(data)
    x = np.concatenate([split.x for split in splits.values()])
    flat = x.reshape(len(x), -1)
    channels = data.train.x.reshape(-1, x.shape[-1])
    return ImageStatistics(
        ids=[(s, i) for s, split in splits.items() for i in split.ids],
        brightness=flat.mean(axis=1),
        contrast=flat.std(axis=1),
        first=flat[:, 0].copy(),  # a view would keep all of x alive
        train_count=len(data.train.x),
        low=float(x.min()),
        high=float(x.max()),
        channel_mean=channels.mean(axis=0),
        channel_std=channels.std(axis=0),
    )


def image_summary(look: Look) -> dict:
    """inspect.json's "image_stats"."""
    stats = image_statistics(look)
    return {
        "value_range": [stats.low, stats.high],
        "channel_mean": stats.channel_mean.tolist(),
        "channel_std": stats.channel_std.tolist(),
    }


def constant_image(look: Look) -> list[Finding]:
    """An image whose pixels all hold one value: a blank frame, failed capture or mask (R1.3)."""
    if look.data.kind != "image":
        return []
    stats = image_statistics(look)
    blank = np.flatnonzero(stats.contrast == 0)
    if not len(blank):
        return []
    shown = [f"{look.name(*stats.ids[i])} (all {stats.first[i]:g})" for i in blank]
    detail = (
        f"{counted(len(blank), 'image', 'hold')} a single value: {listing(shown)}; blank frames, "
        "failed captures or masks: drop or fix them"
    )
    return [Finding("constant_image", "warning", detail)]


def image_outliers(look: Look) -> list[Finding]:
    """Brightness or contrast beyond 6 robust std of the training images' median (R1.5)."""
    if look.data.kind != "image":
        return []
    stats = image_statistics(look)
    train = stats.train_count
    scores = {}
    for label, values in (("brightness", stats.brightness), ("contrast", stats.contrast)):
        # Median and MAD: in a small folder one odd training image inflates the std enough to
        # hide itself.
        center = np.median(values[:train])
        spread = 1.4826 * np.median(np.abs(values[:train] - center)) or values[:train].std()
        if spread:
            scores[label] = np.abs(values - center) / spread
    odd = []
    for i in sorted(
        {int(i) for score in scores.values() for i in np.flatnonzero(score > OUTLIER_Z)}
    ):
        parts = ", ".join(
            f"{label} z={score[i]:.0f}" for label, score in scores.items() if score[i] > OUTLIER_Z
        )
        worst = max(score[i] for score in scores.values())
        odd.append((worst, f"{look.name(*stats.ids[i])} ({parts})"))
    if not odd:
        return []
    odd.sort(reverse=True)
    detail = (
        f"{plural(len(odd), 'image')} with a mean (brightness) or std (contrast) more than "
        f"{OUTLIER_Z:g} robust std from the training images' median: "
        f"{listing(text for _, text in odd)}; look at them (extremes.png): wrong exposure, "
        "another source, or a decoding bug (R1.5)"
    )
    return [Finding("image_outliers", "warning", detail)]


def _pixel_scale(look: Look) -> list[Finding]:
    """needs_normalization for images."""
    stats = image_statistics(look)
    low, high, channel_std = stats.low, stats.high, stats.channel_std
    if not (max(abs(low), abs(high)) > UNIT_SCALE or (channel_std < 1 / UNIT_SCALE).any()):
        return []
    detail = (
        f"pixel values span {low:g}..{high:g} (channel std "
        f"{listing(f'{s:.3g}' for s in channel_std)}); the pipeline standardizes each channel "
        "with the training mean and std, the same way for every split (U6, T6): nothing to do "
        "unless you preprocess elsewhere"
    )
    return [Finding("needs_normalization", "info", detail)]


# ---------------------------------------------------------------- target leak


@dataclass
class LeakProbe:
    """One small tree per column, fitted on that column alone (a sample of the training split)."""

    scores: list[dict]  # {"feature", "train", "val"} per column
    leaks: list[tuple[str, float, float]]  # (feature, train score, validation score)
    what: str  # the score: "balanced accuracy" or "R^2"
    probe: str  # the tree, in words


@shared
def leak_probe(look: Look) -> LeakProbe:
    from sklearn import metrics, tree

    data = look.data
    x_train, y_train = data.train.x[look.train_sample], data.train.y[look.train_sample]
    x_val, y_val = data.val.x[look.val_sample], data.val.y[look.val_sample]
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
    found = LeakProbe([], [], what, probe)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" on tiny validation sets
        warnings.simplefilter("ignore")
        for j, feature in enumerate(feature_names_of(data)):
            fitted = model().fit(x_train[:, j : j + 1], y_train)
            on_train = float(score(y_train, fitted.predict(x_train[:, j : j + 1])))
            on_val = float(score(y_val, fitted.predict(x_val[:, j : j + 1])))
            found.scores.append(
                {"feature": feature, "train": round(on_train, 4), "val": round(on_val, 4)}
            )
            if min(on_train, on_val) >= LEAK_SCORE:
                found.leaks.append((feature, on_train, on_val))
    return found


def target_leak(look: Look) -> list[Finding]:
    """One column alone predicts the label almost perfectly on train and validation (R1.2, R1.6)."""
    if look.data.kind == "image":
        return []
    found = leak_probe(look)
    return [
        Finding(
            "target_leak",
            "error",
            f"column {feature!r} alone predicts the label: {found.what} {on_val:.3f} on "
            f"validation ({on_train:.3f} on train) with {found.probe} on that one column; "
            "usually the label in disguise (a copy, a value recorded after the fact, a sorted "
            "id): drop it, or write down why it is legitimate",
        )
        for feature, on_train, on_val in found.leaks
    ]


def leak_probe_skipped(look: Look) -> list[Finding]:
    """Images: one pixel is not a column to drop, so the leak probe does not run."""
    if look.data.kind != "image":
        return []
    detail = (
        "the single-feature leak probe is skipped for images (one pixel is not a column to "
        "drop); duplicate_across_splits and near_duplicates_across_splits are the leaks to "
        "watch here"
    )
    return [Finding("leak_probe_skipped", "info", detail)]
