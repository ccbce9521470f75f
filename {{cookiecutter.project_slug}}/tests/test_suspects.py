"""inspect's suspects (R1.2, R1.3): near-copies across and within the splits, labels a quick model
doubts, identifier columns that predict the label. Each planted bug is caught and named; the
same data without it is not flagged."""

import importlib

import numpy as np
import pytest
from sklearn.datasets import load_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def near(project):
    return importlib.import_module(f"{project.name}.inspection.near_duplicates")


@pytest.fixture(scope="module")
def suspects(project):
    return importlib.import_module(f"{project.name}.inspection.suspects")


def _data(project, x, y, kind, task="classification", seed=0, names=None, class_names=None):
    """x, y split 70/15/15 at random; each example's id is its row in x."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = [int(0.7 * len(y)), int(0.85 * len(y))]
    split = project.data.Split
    parts = [split(x[i], y[i], i) for i in np.split(order, cut)]
    if class_names is None and task == "classification":
        class_names = [str(c) for c in range(int(y.max()) + 1)]
    return project.data.Data(
        "test", kind, task, *parts, class_names=class_names or [], feature_names=names or []
    )


def _digits(project, images=None, labels=None):
    x = DIGITS.images[..., None].astype(np.float32) if images is None else images
    return _data(project, x, DIGITS.target if labels is None else labels, "image")


def _found(findings, name):
    return [f for f in findings if f.name == name]


def _plant(data, changes):
    """Replaces test images by changed copies of training images; returns the copies' ids."""
    rng = np.random.default_rng(1)
    sources = rng.choice(len(data.train.y), len(changes), replace=False)
    targets = rng.choice(len(data.test.y), len(changes), replace=False)
    for change, source, target in zip(changes, sources, targets, strict=True):
        data.test.x[target] = change(data.train.x[source].copy(), rng)
    return [
        (int(data.train.ids[s]), int(data.test.ids[t]))
        for s, t in zip(sources, targets, strict=True)
    ]


# ---------------------------------------------------------------- near-copies (R1.2)


def test_clean_digits_have_no_near_copies(project, near):
    findings, summary = near.near_duplicate_findings(_digits(project))
    assert findings == []
    assert summary["across_splits"] == 0 and summary["compared"] == len(DIGITS.target)


def test_noisy_and_recontrasted_copies_of_digits_in_test_are_an_error(project, near, tmp_path):
    data = _digits(project)
    noise = [lambda a, rng: np.clip(a + rng.normal(0, 0.4, a.shape), 0, 16)] * 2
    contrast = [lambda a, rng: a * 0.7 + 2] * 2
    planted = _plant(data, noise + contrast)
    findings, summary = near.near_duplicate_findings(data)
    [error] = _found(findings, "near_duplicates_across_splits")
    assert error.severity == "error"
    assert error.detail.startswith("4 examples appear in two or more splits as near-copies")
    shown = {(p["a"]["id"], p["b"]["id"]) for p in summary["pairs"]}
    assert shown == {(str(a), str(b)) for a, b in planted}
    assert sum(f"train #{a} ~ test #{b} (r=" in error.detail for a, b in planted) == 3
    assert not _found(findings, "near_duplicates_within_split")
    assert near.draw_near_duplicates(data, summary, tmp_path) == ["near_duplicates.png"]
    assert (tmp_path / "near_duplicates.png").stat().st_size > 1000


def test_one_pixel_shift_of_a_32_pixel_image_is_a_near_copy(project, near):
    """At 8x8 a shift by one pixel moves every stroke an eighth of the image, further than
    different digits differ; drawn 4x larger, one pixel is a quarter of a thumbnail cell."""
    large = np.kron(DIGITS.images[..., None], np.ones((1, 4, 4, 1))).astype(np.float32)
    data = _digits(project, large)
    assert near.near_duplicate_findings(data)[0] == []
    shifted = _plant(data, [lambda a, rng: np.roll(a, 1, axis=1)] * 3)
    findings, summary = near.near_duplicate_findings(data)
    [error] = _found(findings, "near_duplicates_across_splits")
    assert {(p["a"]["id"], p["b"]["id"]) for p in summary["pairs"]} == {
        (str(a), str(b)) for a, b in shifted
    }


def test_thumbnails_made_elsewhere_give_the_same_near_copies(project, near):
    """inspect's file scan can make the thumbnails while it decodes each file anyway."""
    data = _digits(project)
    _plant(data, [lambda a, rng: a * 0.5 + 3] * 2)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    keys = {s: [x.tobytes().hex() for x in split.x] for s, split in splits.items()}
    thumbs = {s: near.thumbnails(split.x, shifted=True) for s, split in splits.items()}
    given = near.near_duplicate_findings(data, keys=keys, thumbs=thumbs)
    assert given == near.near_duplicate_findings(data)
    assert given[1]["across_splits"] == 2


def test_near_copies_inside_one_split_are_a_warning(project, near):
    data = _digits(project)
    rng = np.random.default_rng(2)
    source, target = rng.choice(len(data.train.y), 2, replace=False)
    data.train.x[target] = np.clip(data.train.x[source] + rng.normal(0, 0.4, (8, 8, 1)), 0, 16)
    findings, summary = near.near_duplicate_findings(data)
    [warning] = findings
    assert warning.name == "near_duplicates_within_split" and warning.severity == "warning"
    assert warning.detail.startswith("1 extra near-copies of examples inside one split (train 1")
    assert summary["within_split_extra_copies"] == 1


def test_beyond_the_limit_a_sample_of_each_split_is_compared_and_said_so(project, near):
    data = _digits(project)
    data.test.x[:] = data.train.x[: len(data.test.y)] * 0.7 + 2  # every test image a copy
    [error], summary = near.near_duplicate_findings(data, limit=1000, seed=3)
    assert summary["sampled"] and 1000 <= summary["compared"] <= 1003
    # A pair is seen only when both are drawn: about (1000 / 1797)^2 of the 270.
    assert 40 < summary["across_splits"] < 130
    assert f"a seeded sample of {summary['compared']} of 1797 images was compared" in error.detail


def test_exact_copies_are_left_to_the_duplicate_check(project, near):
    data = _digits(project)
    data.test.x[:3] = data.train.x[:3]
    assert near.near_duplicate_findings(data)[0] == []


def _table(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 5)) * [1, 10, 0.01, 1000, 3]
    x = np.column_stack([x, rng.integers(0, 5, rows)]).astype(np.float32)  # an integer code
    y = (x[:, 0] + rng.normal(0, 1, rows) > 0).astype(np.int32)
    return x, y


def test_table_rows_copied_with_jitter_in_the_fifth_digit_are_caught(project, near, tmp_path):
    x, y = _table()
    data = _data(project, x, y, "tabular", names=list("abcdef"))
    assert near.near_duplicate_findings(data)[0] == []
    rng = np.random.default_rng(3)
    copies = []
    for k in range(6):  # train row k, jittered in its 5th significant digit, as test row k
        row = data.train.x[k].astype(np.float64)
        magnitude = 10.0 ** (np.floor(np.log10(np.abs(row[:5]))) - 4)
        row[:5] += rng.choice([-1, 1], 5) * magnitude
        data.test.x[k] = row
        copies.append((int(data.train.ids[k]), int(data.test.ids[k])))
    assert not np.array_equal(data.test.x[0], data.train.x[0])
    findings, summary = near.near_duplicate_findings(data)
    [error] = findings
    assert error.name == "near_duplicates_across_splits"
    assert error.detail.startswith("6 examples appear in two or more splits as near-copies")
    assert "(alike to 3 digits)" in error.detail
    assert {(p["a"]["id"], p["b"]["id"]) for p in summary["pairs"]} == {
        (str(a), str(b)) for a, b in copies
    }
    assert near.draw_near_duplicates(data, summary, tmp_path) == ["near_duplicates.png"]


def test_values_on_a_rounding_edge_do_not_hide_a_copy(near):
    """0.4225, kept to 4 digits, sits on the edge of rounding to 3 (0.423), and its copy
    0.42249936 falls the other way; the grids' edges sit off the decimal ones. 0.4235 is not
    within 3 digits of either, nor is 1.0 of 0.99999 (a decade edge) hiding a copy."""
    rows = np.array([[0.4225, 1.0], [0.42249936, 0.99999], [0.4235, 1.0], [5.0, 1.0]])
    i, j = near.similar_row_pairs(rows)
    assert {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist(), strict=True)} == {(0, 1)}
    # Every 4-digit value is clear of both grids' edges: 25.38 (4th digit 8) and 0.4233 (3)
    # with their copies one unit off in the 5th digit.
    rows = np.array([[25.38, 0.4233], [25.379, 0.42329], [25.38, 0.4263]])
    i, j = near.similar_row_pairs(rows)
    assert {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist(), strict=True)} == {(0, 1)}


def test_a_new_row_id_does_not_hide_a_copied_row(project, near):
    x, y = _table(rows=300)
    x = np.column_stack([np.arange(len(y)), x]).astype(np.float32)  # row ids: all distinct
    data = _data(project, x, y, "tabular")
    data.test.x[0, 1:] = data.train.x[0, 1:]  # same values, another id
    [error] = near.near_duplicate_findings(data)[0]
    assert error.name == "near_duplicates_across_splits"
    assert f"train #{data.train.ids[0]} ~ test #{data.test.ids[0]}" in error.detail


# ---------------------------------------------------------------- label noise (R1.3)


def test_clean_digit_labels_are_not_suspicious(project, suspects, tmp_path):
    findings, summary = suspects.label_noise_findings(_digits(project), seed=0)
    assert findings == [] and not summary["warned"]
    assert summary["share"] < 0.02 and summary["model_accuracy"] > 0.9
    assert summary["examined"] == 1257
    assert suspects.draw_suspicious_labels(_digits(project), summary, tmp_path) == []


def test_flipped_digit_labels_are_suspicious_and_ranked_first(project, suspects, tmp_path):
    rng = np.random.default_rng(4)
    labels = DIGITS.target.copy()
    flipped = rng.choice(len(labels), len(labels) // 10, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    data = _digits(project, labels=labels)
    [finding], summary = suspects.label_noise_findings(data, seed=0)
    assert finding.severity == "warning" and summary["warned"]
    assert summary["share"] > 0.05
    assert finding.detail.startswith(f"{summary['share']:.1%} of the training labels look wrong")
    flipped_in_train = set(flipped.tolist()) & set(data.train.ids.tolist())
    suspects_ids = {int(s["id"]) for s in summary["suspects"]}
    # The 24 most suspicious: nearly all of them flipped; and most flipped ones are flagged.
    assert len(suspects_ids & flipped_in_train) >= 20
    assert summary["count"] >= 0.6 * len(flipped_in_train)
    top = summary["suspects"][0]
    assert int(top["id"]) in flipped_in_train
    assert top["given"] == str(labels[int(top["id"])])
    assert top["looks_like"] == str(DIGITS.target[int(top["id"])])
    assert suspects.draw_suspicious_labels(data, summary, tmp_path) == ["suspicious_labels.png"]


def test_a_model_that_learns_nothing_gives_no_verdict_on_the_labels(project, suspects):
    """Shuffled labels: the quick model stays at the class shares, and so many 'suspects' are
    its own mistakes, not evidence about the labels."""
    labels = np.random.default_rng(6).permutation(DIGITS.target)
    findings, summary = suspects.label_noise_findings(_digits(project, labels=labels))
    assert summary["share"] > 0.3 and summary["confidence_lift"] < 0.1
    assert findings == [] and not summary["warned"]


def test_label_noise_respects_the_sample_limit_and_skips_regression(project, suspects):
    data = _digits(project)
    assert suspects.label_noise_findings(data, limit=300, seed=1)[1]["examined"] == 300
    x, y = _table()
    regression = _data(project, x, y.astype(np.float32), "tabular", task="regression")
    assert suspects.label_noise_findings(regression) == ([], {})


# ---------------------------------------------------------------- identifier columns


def _sorted_by_class(project, id_column):
    """A table sorted by class, as many exports are, with an extra first column."""
    x, y = _table(rows=300)
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    x = np.column_stack([id_column(len(y)), x]).astype(np.float32)
    return _data(project, x, y, "tabular", names=["row", *"abcdef"])


def test_row_number_of_a_table_sorted_by_class_is_an_identifier(project, suspects):
    data = _sorted_by_class(project, np.arange)
    findings, table = suspects.identifier_findings(data)
    [warning] = findings
    assert warning.name == "identifier_column" and warning.severity == "warning"
    assert warning.detail.startswith("column 'row' looks like a row id or counter")
    assert "all 300 values are distinct integers" in warning.detail
    assert "drop the column" in warning.detail
    [row] = table
    assert row["feature"] == "row" and row["monotonic"] and row["predictive"]
    # What target_leak reports is left to it: one problem, one finding.
    assert suspects.identifier_findings(data, leaking=frozenset({"row"})) == ([], [])


def test_a_random_id_column_is_not_flagged(project, suspects):
    data = _sorted_by_class(project, lambda n: np.random.default_rng(5).permutation(n) + 1000)
    findings, table = suspects.identifier_findings(data)
    assert findings == []
    [row] = table  # looked at, as a unique integer column, and found not to predict
    assert row["unique_integers"] and not row["monotonic"] and not row["predictive"]


def test_images_have_no_identifier_columns(project, suspects):
    assert suspects.identifier_findings(_digits(project)) == ([], [])
