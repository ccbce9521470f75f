"""Labels and columns to suspect (R1.3, R1.2): training labels a quick model confidently puts in
another class (confident learning), and identifier columns (row ids, counters) that predict
the label.

label_noise_findings and identifier_findings each take one loaded Data in memory and return
their findings and a JSON-able summary for inspect.json; draw_suspicious_labels turns the
label summary into suspicious_labels.png.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data import Data
from .common import (
    IDENTIFIER_DISTINCT,
    MAX_PLOTTED_FEATURES,
    Finding,
    Look,
    feature_names_of,
    sample_index,
    shared,
    short_id,
    splits_of,
)
from .features import leak_probe

# ---------------------------------------------------------------- thresholds

# Label noise (R1.3): confident learning (Northcutt et al. 2021) on out-of-fold probabilities
# of a logistic regression. Warn above this share of suspicious training labels: clean data
# flags a fraction of a percent, 10% of flipped labels most of them (docs/inspect.md quotes
# the recipe template's benchmarks/suspects.py), and a label the inputs only partly decide
# flags its boundary cases, which MIN_CONFIDENCE_LIFT keeps from warning.
SUSPICIOUS_SHARE = 0.05
# ... and only when the quick model knows the classes: its mean probability t_j of each class
# over the examples labelled so must rise at least this far from the class's share toward 1
# ((t_j - share_j) / (1 - share_j), averaged). Below, its doubts are mostly its own mistakes:
# on shuffled digits labels it stays near 0 while a third of the labels look "suspicious";
# clean digits reach 0.85.
MIN_CONFIDENCE_LIFT = 0.3
LABEL_FOLDS = 5
LABEL_C = 0.1  # inverse regularization strength of the quick model
LABEL_SIDE = 8  # images averaged down to at most 8x8 pixels per channel, as the linear baseline
SUSPECTS_SHOWN = 24  # examples in suspicious_labels.png, the most suspicious first

# Identifier columns: integer-valued and at least IDENTIFIER_DISTINCT distinct, or monotonic
# in the file's row order with at least IDENTIFIER_MIN_DISTINCT values; and alone scoring this much
# above chance on validation (balanced accuracy; R^2 for regression), or 3 standard errors of
# chance on a small validation split, whichever is more.
IDENTIFIER_MIN_DISTINCT = 20
IDENTIFIER_MARGIN = 0.1


def _default_name(split: str, example_id) -> str:
    return f"{split} #{example_id}"


# ---------------------------------------------------------------- label noise (R1.3)


def shrink(images: np.ndarray, side: int = LABEL_SIDE) -> np.ndarray:
    """Images averaged over blocks down to at most `side` pixels a side: evaluate.shrink, the
    linear baseline's, copied because evaluate imports Keras (TensorFlow), which inspecting
    arrays never needs."""
    n, height, width, channels = images.shape
    fy, fx = math.ceil(height / side), math.ceil(width / side)
    h, w = height // fy * fy, width // fx * fx
    blocks = images[:, :h, :w].reshape(n, h // fy, fy, w // fx, fx, channels)
    return blocks.mean(axis=(2, 4))


def _quick_model(data: Data):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    model = LogisticRegression(C=LABEL_C, max_iter=500)
    if data.kind == "tabular" and data.categorical:
        columns = sorted(data.categorical)
        numeric = [j for j in range(data.train.x.shape[1]) if j not in data.categorical]
        encode = ColumnTransformer(
            [
                ("numeric", StandardScaler(), numeric),
                ("categories", OneHotEncoder(handle_unknown="ignore"), columns),
            ]
        )
        return make_pipeline(encode, model)
    return make_pipeline(StandardScaler(), model)


def label_noise_findings(
    data: Data,
    name: Callable[[str, object], str] = _default_name,
    limit: int = 2000,
    seed: int = 0,
    index: np.ndarray | None = None,
) -> tuple[list[Finding], dict]:
    """suspicious_labels: the share of (a seeded sample of at most `limit`, or the training
    examples at `index`, such as the sample the other probes take) training labels that
    a logistic regression, predicting each example out of fold (LABEL_FOLDS folds), finds
    confidently wrong (R1.3). Classification only; nothing for regression.

    Confident learning: t_j is the mean probability of class j over the examples labelled j;
    an example is suspicious when its own class gets less than its t, and some other class k
    gets at least t_k, and more than the own class (the likeliest such k is the label it
    looks like). A warning takes more than SUSPICIOUS_SHARE of them, from a model sure enough
    of the classes to judge (MIN_CONFIDENCE_LIFT). Below that there is no finding: a few
    doubted labels are what any model says of the examples near its boundaries, and an unsure
    model's doubts are its own mistakes. The summary holds the numbers either way."""
    if data.task != "classification":
        return [], {}
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    if index is None:
        index = sample_index(len(data.train.y), limit, np.random.default_rng(seed))
    y = np.asarray(data.train.y[index], dtype=np.int64)
    present, counts = np.unique(y, return_counts=True)
    if len(present) < 2 or len(y) < 2 * LABEL_FOLDS or counts.max() < LABEL_FOLDS:
        return [], {}
    x = np.asarray(data.train.x[index], dtype=np.float32)
    if data.kind == "image":
        x = shrink(x)
    x = x.reshape(len(x), -1).astype(np.float64)
    folds = StratifiedKFold(LABEL_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(1):
        # A class with fewer members than folds is missing from some training folds
        # ("least populated class", "number of classes in training fold"): it gets
        # probability 0 where it was not seen, which only makes it claim fewer examples.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        found = cross_val_predict(_quick_model(data), x, y, cv=folds, method="predict_proba")
    classes = len(data.class_names)
    probabilities = np.zeros((len(y), classes))
    probabilities[:, present] = found
    own = probabilities[np.arange(len(y)), y]
    threshold = np.full(classes, np.inf)  # a class nobody carries never claims an example
    for c in present:
        threshold[c] = probabilities[y == c, c].mean()
    # Another class claims an example with at least its usual probability, and more than the
    # given label gets: a class the model hardly ever predicts has a t near 0 and would
    # otherwise claim every example.
    claims = (probabilities >= threshold[None, :]) & (probabilities > own[:, None])
    suspicious = (own < threshold[y]) & claims.any(axis=1)
    looks_like = np.where(claims, probabilities, -1.0).argmax(axis=1)
    accuracy = float((probabilities.argmax(axis=1) == y).mean())
    shares = counts / len(y)
    lift = float(np.mean((threshold[present] - shares) / np.maximum(1 - shares, 1e-12)))
    sure = lift >= MIN_CONFIDENCE_LIFT
    count = int(suspicious.sum())
    share = count / len(y)
    flagged = np.flatnonzero(suspicious)
    flagged = flagged[np.argsort(own[flagged], kind="stable")]
    classes_named = data.class_names

    def label(c: int) -> str:
        return repr(str(classes_named[c]))

    suspects = [
        {
            "index": int(index[k]),
            "id": str(data.train.ids[index[k]]),
            "given": str(classes_named[y[k]]),
            "looks_like": str(classes_named[looks_like[k]]),
            "p_given": round(float(own[k]), 4),
            "p_looks_like": round(float(probabilities[k, looks_like[k]]), 4),
        }
        for k in flagged[:SUSPECTS_SHOWN]
    ]
    named = [
        f"{name('train', data.train.ids[index[k]])} (labelled {label(y[k])}, looks like "
        f"{label(looks_like[k])}: p={own[k]:.2f} vs {probabilities[k, looks_like[k]]:.2f})"
        for k in flagged[:3]
    ]
    what = (
        f"pixels averaged to {LABEL_SIDE}x{LABEL_SIDE} per channel"
        if data.kind == "image"
        else "the columns, standardized" + (", categories one-hot" if data.categorical else "")
    )
    sample = (
        f"{len(y)} sampled training examples"
        if len(y) < len(data.train.y)
        else (f"{len(y)} training examples")
    )
    warned = share > SUSPICIOUS_SHARE and sure
    detail = (
        f"{share:.1%} of the training labels look wrong to a quick model: {count} of {sample} "
        "get less out-of-fold probability for their own class than that class usually gets, "
        "while another class gets at least its usual (logistic regression on "
        f"{what}: {accuracy:.1%} accurate out of fold; its confidence in the given class "
        f"{lift:.0%} of the way from the class's share to certainty; a warning above "
        f"{SUSPICIOUS_SHARE:.0%} from a model at least {MIN_CONFIDENCE_LIFT:.0%} of the way); "
        "the most suspicious: "
        + "; ".join(named)
        + "; look at suspicious_labels.png and fix the labels that are wrong (R1.3); if they "
        "look right, the inputs do not decide the label on their own and no model will be sure "
        "of those examples"
    )
    summary = {
        "share": round(share, 4),
        "count": count,
        "examined": int(len(y)),
        "model_accuracy": round(accuracy, 4),
        "confidence_lift": round(lift, 4),
        "warned": warned,
        "thresholds": {str(classes_named[c]): round(float(threshold[c]), 4) for c in present},
        "suspects": suspects,
    }
    return ([Finding("suspicious_labels", "warning", detail)] if warned else []), summary


def draw_suspicious_labels(data: Data, summary: dict, folder: Path) -> list[str]:
    """suspicious_labels.png: the most suspicious training examples, lowest probability of
    their own label first, captioned with the given label and the one they look like; rows of
    a table as a heatmap of their standardized values. Only with the warning."""
    suspects = summary.get("suspects", [])
    if not (summary.get("warned") and suspects):
        return []
    path = folder / "suspicious_labels.png"
    index = np.array([s["index"] for s in suspects])
    captions = [
        f"{short_id(s['id'])} given {s['given'][:10]} looks {s['looks_like'][:10]} "
        f"p={s['p_given']:.2f}"
        for s in suspects
    ]
    if data.kind == "image":
        from ..pictures import image_grid_array, save_array, to_uint8

        images = np.asarray(data.train.x[index], dtype=np.float32)
        title = "training labels a quick model doubts most: given label, the one it looks like"
        save_array(
            image_grid_array(to_uint8(images, data.value_range), captions, title, cell=80), path
        )
        return [path.name]
    from ..pictures import table_heatmap_figure

    names = feature_names_of(data)
    shown = list(range(min(len(names), MAX_PLOTTED_FEATURES)))
    mean = data.train.x.mean(axis=0)
    std = np.where(data.train.x.std(axis=0) > 0, data.train.x.std(axis=0), 1.0)
    rows = (data.train.x[index] - mean) / std
    table_heatmap_figure(
        rows[:, shown],
        [f"train {c}" for c in captions],
        [names[j] for j in shown],
        path,
        "training labels a quick model doubts most (standardized values)",
    )
    return [path.name]


# ---------------------------------------------------------------- identifier columns


def identifier_findings(
    data: Data,
    limit: int = 2000,
    seed: int = 0,
    train_index: np.ndarray | None = None,
    val_index: np.ndarray | None = None,
    leaking: frozenset[str] = frozenset(),
) -> tuple[list[Finding], list]:
    """identifier_column: a numeric column that looks like a row id or counter (integers, at
    least IDENTIFIER_DISTINCT distinct; or monotonic in the file's row order) and alone
    predicts the label on validation clearly better than chance. Tables only. The probe
    fits on (a seeded sample of at most `limit`) training rows and scores (as many)
    validation rows; `train_index` and `val_index` choose them instead (the leak probe's).
    Columns named in `leaking` are left out: target_leak already reports them as an error,
    and one problem is one finding."""
    if data.kind != "tabular":
        return [], []
    from sklearn import metrics, tree

    splits = splits_of(data)
    x_all = np.concatenate([split.x for split in splits.values()]).astype(np.float64)
    ids = np.concatenate([np.asarray(split.ids) for split in splits.values()])
    try:  # a table's ids are its row or line numbers, as text: the order of the file
        order = np.argsort(ids.astype(np.int64), kind="stable")
    except ValueError:
        order = None
    names = feature_names_of(data)
    rng = np.random.default_rng(seed)
    if train_index is None:
        train_index = sample_index(len(data.train.y), limit, rng)
    if val_index is None:
        val_index = sample_index(len(data.val.y), limit, rng)
    y_train, y_val = data.train.y[train_index], data.val.y[val_index]
    classification = data.task == "classification"
    table, findings = [], []
    for j in range(x_all.shape[1]):
        if j in data.categorical or names[j] in leaking:
            continue
        column = x_all[:, j]
        distinct = len(np.unique(column))
        integers = bool(np.all(column == np.round(column)))
        unique = integers and distinct >= IDENTIFIER_DISTINCT * len(column)
        monotonic = False
        if order is not None and distinct >= IDENTIFIER_MIN_DISTINCT:
            steps = np.diff(column[order])
            monotonic = bool(np.all(steps >= 0) or np.all(steps <= 0))
        if not (unique or monotonic):
            continue
        train_column = data.train.x[train_index, j : j + 1]
        val_column = data.val.x[val_index, j : j + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # classes missing from a tiny validation split
            if classification:
                present = len(np.unique(y_train))
                depth = max(2, math.ceil(math.log2(max(present, 2))))
                probe = tree.DecisionTreeClassifier(max_depth=depth, random_state=0)
                probe.fit(train_column, y_train)
                score = float(metrics.balanced_accuracy_score(y_val, probe.predict(val_column)))
                chance = 1.0 / present
                error = math.sqrt(max(present - 1, 1)) / (present * math.sqrt(max(len(y_val), 1)))
                what = f"balanced accuracy {score:.2f} on validation with a depth-{depth} tree"
                baseline = f"chance {chance:.2f}"
            else:
                leaf = max(5, len(y_train) // 200)
                probe = tree.DecisionTreeRegressor(min_samples_leaf=leaf, random_state=0)
                probe.fit(train_column, y_train)
                score = float(metrics.r2_score(y_val, probe.predict(val_column)))
                chance, error = 0.0, 1.0 / math.sqrt(max(len(y_val), 1))
                what = f"R^2 {score:.2f} on validation with a tree (leaves >= {leaf} rows)"
                baseline = "the mean's 0"
        needed = chance + max(IDENTIFIER_MARGIN, 3 * error)
        predictive = score >= needed
        why = []
        if unique:
            why.append(
                f"all {len(column)} values are distinct integers"
                if distinct == len(column)
                else f"{distinct / len(column):.1%} of its {len(column)} values are distinct "
                "integers"
            )
        if monotonic:
            why.append("it only ever grows (or shrinks) down the file")
        table.append(
            {
                "feature": names[j],
                "unique_integers": unique,
                "monotonic": monotonic,
                "val_score": round(score, 4),
                "needed": round(needed, 4),
                "predictive": predictive,
            }
        )
        if predictive:
            findings.append(
                Finding(
                    "identifier_column",
                    "warning",
                    f"column {names[j]!r} looks like a row id or counter ({' and '.join(why)}) "
                    f"and alone predicts the label: {what} ({baseline}; flagged from "
                    f"{needed:.2f}); an id carries the order in which rows were collected or "
                    "sorted, not a property of the example, and a model would learn that "
                    "order: drop the column (if it is a real measurement that happens to be "
                    "unique or sorted, keep it and write down why)",
                )
            )
    return findings, table


# ---------------------------------------------------------------- the findings inspect runs


@shared
def label_noise(look: Look) -> tuple[list[Finding], dict]:
    """label_noise_findings on the training examples the other probes study: the leak probe's
    sample of a table, the decoded sample of image files (no file is decoded again)."""
    data = look.pictured
    index = None if look.data.streamed else look.train_sample
    return label_noise_findings(
        data, look.name, limit=look.config.check.sample, seed=look.config.seed, index=index
    )


def suspicious_labels(look: Look) -> list[Finding]:
    """More than 5% of the training labels confidently put in another class by a quick model
    that knows the classes (R1.3)."""
    return label_noise(look)[0]


@shared
def identifiers(look: Look) -> tuple[list[Finding], list]:
    """identifier_findings on the leak probe's samples, leaving out what target_leak reports."""
    if look.data.kind != "tabular":
        return [], []
    leaking = frozenset(feature for feature, _, _ in leak_probe(look).leaks)
    return identifier_findings(
        look.data, train_index=look.train_sample, val_index=look.val_sample, leaking=leaking
    )


def identifier_column(look: Look) -> list[Finding]:
    """A row id or counter (unique integers, or sorted down the file) that predicts the label
    (R1.2, R1.5)."""
    return identifiers(look)[0]
