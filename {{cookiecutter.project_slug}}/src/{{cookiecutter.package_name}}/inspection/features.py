"""Findings about the inputs: scale, outliers, heavy tails, constant features, odd images, and
single features that predict the label (a target leak)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..data import Data
from .common import (
    HEAVY_TAIL_RATIO,
    LEAK_SCORE,
    MAX_NAMED,
    MIN_DISTINCT_FOR_TAILS,
    OUTLIER_Z,
    TAIL_PERCENTILE,
    UNIT_SCALE,
    Finding,
    Namer,
    counted,
    feature_names_of,
    listing,
    plural,
    splits_of,
)


def feature_findings(data: Data, name: Namer) -> tuple[list[Finding], list[dict]]:
    """constant_feature, feature_outliers, heavy_tailed_feature, needs_normalization (R1.5, U7)."""
    x = data.train.x.astype(np.float64)
    names = feature_names_of(data)
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
                f"{counted(len(shown), 'feature', 'take')} one value in the training split: "
                f"{listing(shown)}; they carry no signal: drop them (R4.6)",
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
                f"{plural(count, 'feature')}: "
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
                f"{plural(len(shown), 'feature')} with heavy tails: {listing(shown)}; the "
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
    splits = splits_of(data)
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
                f"{counted(len(blank), 'image', 'hold')} a single value: {listing(shown)}; "
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
                f"{plural(len(odd), 'image')} with a mean (brightness) or std (contrast) more "
                "than "
                f"{OUTLIER_Z:g} robust std from the training images' median: "
                f"{listing(text for _, text in odd)}; look at them (extremes.png): wrong "
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
                f"{listing(f'{s:.3g}' for s in channel_std)}); "
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

    names = feature_names_of(data)
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
