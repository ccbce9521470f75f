"""Data sources, splits, normalization and pipelines."""

import collections

import numpy as np
import pytest


def _all_ids(data):
    return [set(split.ids) for split in (data.train, data.val, data.test)]


@pytest.mark.parametrize("source", ["digits", "breast_cancer", "diabetes"])
def test_embedded_splits_are_disjoint_and_complete(project, make_config, source):
    data = project.data.load(make_config(f"data.source={source}"))
    train, val, test = _all_ids(data)
    assert not (train & val or train & test or val & test)
    total = {"digits": 1797, "breast_cancer": 569, "diabetes": 442}[source]
    assert len(train | val | test) == total
    assert abs(len(test) / total - 0.15) < 0.01


def test_task_and_shapes_are_inferred(project, make_config):
    digits = project.data.load(make_config("data.source=digits"))
    assert (digits.kind, digits.task, digits.input_shape, digits.num_outputs) == (
        "image",
        "classification",
        (8, 8, 1),
        10,
    )
    cancer = project.data.load(make_config("data.source=breast_cancer"))
    assert (cancer.kind, cancer.task, cancer.num_outputs) == ("tabular", "classification", 2)
    diabetes = project.data.load(make_config("data.source=diabetes"))
    assert (diabetes.task, diabetes.num_outputs) == ("regression", 1)
    forced = project.data.load(make_config("data.source=diabetes", "data.task=regression"))
    assert forced.task == "regression"


def test_split_is_stratified(project, make_config):
    data = project.data.load(make_config("data.source=breast_cancer"))
    rates = [split.y.mean() for split in (data.train, data.val, data.test)]
    assert max(rates) - min(rates) < 0.02


def test_same_seed_same_split_other_seed_other_split(project, make_config):
    first, again = (project.data.load(make_config("seed=1")) for _ in range(2))
    other = project.data.load(make_config("seed=2"))
    assert np.array_equal(first.test.ids, again.test.ids)
    assert np.array_equal(first.train.x, again.train.x)
    assert not np.array_equal(first.test.ids, other.test.ids)


def test_normalization_comes_from_the_training_split_only(project, make_config):
    data = project.data.load(make_config("data.source=breast_cancer"))
    np.testing.assert_allclose(data.mean, data.train.x.mean(axis=0), rtol=1e-5)
    # Planted leak check: changing val/test must not move the statistics.
    data.val.x[:] = 1e6
    data.test.x[:] = -1e6
    mean, std = project.data.input_statistics(data)
    np.testing.assert_array_equal(mean, data.mean)
    np.testing.assert_array_equal(std, data.std)
    normalized = data.normalize(data.train.x)
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-3)


def test_pipeline_applies_the_same_normalization_to_every_split(project, make_config):
    data = project.data.load(make_config("data.source=digits"))
    batch_x, batch_y = next(iter(project.pipeline.make_dataset(data, data.test, 32, shuffle=False)))
    np.testing.assert_allclose(
        batch_x.numpy(), data.normalize(data.test.x[:32]), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(batch_y.numpy(), data.test.y[:32])


def test_pipeline_shuffles_reproducibly(project, make_config):
    data = project.data.load(make_config("data.source=digits"))

    def first_labels(seed):
        dataset = project.pipeline.make_dataset(data, data.train, 64, shuffle=True, seed=seed)
        return next(iter(dataset))[1].numpy()

    assert np.array_equal(first_labels(5), first_labels(5))
    assert not np.array_equal(first_labels(5), first_labels(6))


@pytest.mark.parametrize("whole_batches", [False, True])
def test_the_shuffled_stream_is_whole_epochs_each_a_new_permutation(
    project, make_config, whole_batches
):
    data = project.data.load(make_config("data.source=digits"))
    steps = project.pipeline.steps_per_epoch(data.train, 64, whole_batches)  # 1257 = 19 x 64 + 41
    stream = project.pipeline.make_dataset(
        data, data.train, 64, shuffle=True, seed=3, whole_batches=whole_batches
    )
    batches = [(x.numpy(), y.numpy()) for x, y in stream.take(3 * steps)]
    assert [len(y) for _, y in batches] == ([64] * 19 + [41] * (not whole_batches)) * 3

    split = data.normalize(data.train.x).astype(np.float32)
    in_split = collections.Counter(row.tobytes() for row in split)
    orders = []
    for epoch in range(3):
        x = np.concatenate([x for x, _ in batches[epoch * steps : (epoch + 1) * steps]])
        orders.append(np.concatenate([y for _, y in batches[epoch * steps : (epoch + 1) * steps]]))
        served = collections.Counter(row.tobytes() for row in x)
        if whole_batches:  # 1216 distinct examples of the split; the rest wait for later epochs
            assert len(x) == 19 * 64 and not served - in_split
        else:  # every example of the split exactly once
            assert served == in_split
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_the_stream_can_start_at_a_later_epoch_with_that_epochs_order(project, make_config):
    # A resumed run passes the epochs it has done: it must see epoch 3's order next, as
    # the uninterrupted run did, not epoch 0's again.
    data = project.data.load(make_config("data.source=breast_cancer"))
    steps = project.pipeline.steps_per_epoch(data.train, 64)

    def labels(first_epoch, epochs):
        stream = project.pipeline.make_dataset(
            data, data.train, 64, shuffle=True, seed=2, first_epoch=first_epoch
        )
        return [y.numpy() for _, y in stream.take(epochs * steps)]

    from_start, from_three = labels(0, 5), labels(3, 2)
    for ours, theirs in zip(from_three, from_start[3 * steps :], strict=True):
        assert np.array_equal(ours, theirs)
    first = [np.concatenate(labels[:steps]) for labels in (from_three, from_start)]
    assert not np.array_equal(*first)  # epoch 3's order, not epoch 0's


def test_a_strategy_serves_the_stream_batch_for_batch(project, make_config):
    # tf.distribute rewrites the datasets it distributes: OneDeviceStrategy drops a
    # rebatch(), which turned every batch of an earlier version of this stream into the
    # whole epoch, silently.
    import tensorflow as tf

    data = project.data.load(make_config("data.source=breast_cancer"))
    stream = project.pipeline.make_dataset(data, data.train, 64, shuffle=True, seed=1)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    served = iter(strategy.experimental_distribute_dataset(stream))
    for x, y in stream.take(2 * project.pipeline.steps_per_epoch(data.train, 64)):
        other_x, other_y = next(served)
        assert np.array_equal(x.numpy(), other_x.numpy())
        assert np.array_equal(y.numpy(), other_y.numpy())


def test_regression_targets_are_trained_in_standard_units(project, make_config):
    data = project.data.load(make_config("data.source=diabetes"))
    scaled = project.data.scale_targets(data, data.train.y)
    assert abs(scaled.mean()) < 1e-5 and abs(scaled.std() - 1) < 1e-4
    np.testing.assert_allclose(project.data.unscale_targets(data, scaled), data.train.y, rtol=1e-5)
    assert data.output_bias.shape == (1,) and abs(float(data.output_bias[0])) < 1e-5


def test_image_folder_is_read_with_class_names(project, make_config, image_folder):
    data = project.data.load(make_config(f"data.source={image_folder}", "data.image_size=12,10"))
    assert data.kind == "image" and data.class_names == ["cat", "dog", "owl"]
    assert data.input_shape == (12, 10, 3)
    assert all(i.endswith(".png") for i in data.train.ids)
    assert len(data.train.y) + len(data.val.y) + len(data.test.y) == 24


def test_csv_with_string_labels_and_a_categorical_column(project, make_config, csv_file):
    data = project.data.load(make_config(f"data.source={csv_file}", "data.label_column=kind"))
    assert data.task == "classification" and data.class_names == ["apple", "pear"]
    assert data.feature_names == ["size", "color"]
    assert data.categorical == {1: 4}  # three colours + index 0 for unseen
    assert set(np.unique(data.train.x[:, 1])) <= {1.0, 2.0, 3.0}
    assert data.mean[1] == 0 and data.std[1] == 1  # category indices are not normalized


def test_integer_labels_become_classes_and_floats_regression(project, make_config, tmp_path):
    rows = ["a,label"] + [f"{i},{10 * (i % 3)}" for i in range(30)]
    (tmp_path / "ints.csv").write_text("\n".join(rows))
    data = project.data.load(make_config(f"data.source={tmp_path / 'ints.csv'}"))
    assert data.task == "classification" and data.class_names == ["0", "10", "20"]
    rows = ["a,label"] + [f"{i},{i * 0.37:.2f}" for i in range(30)]
    (tmp_path / "floats.csv").write_text("\n".join(rows))
    assert (
        project.data.load(make_config(f"data.source={tmp_path / 'floats.csv'}")).task
        == "regression"
    )


def test_missing_values_stop_or_are_filled_from_train(project, make_config, tmp_path):
    rows = ["a,b,label"] + [f"{'' if i == 4 else i},{i % 5},{i % 2}" for i in range(40)]
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(rows))
    with pytest.raises(
        project.errors.UsageError, match="column 'a' has 1 missing values; set data.missing=mean"
    ):
        project.data.load(make_config(f"data.source={path}"))
    data = project.data.load(make_config(f"data.source={path}", "data.missing=mean"))
    assert np.isfinite(data.train.x).all()


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: tmp / "nowhere", "is neither an embedded dataset"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "has no class sub-folders"),
        (
            lambda tmp: (tmp / "hollow" / "a").mkdir(parents=True) or tmp / "hollow",
            "holds no image files",
        ),
        (
            lambda tmp: (tmp / "x.json").write_text("{}") and tmp / "x.json",
            "is a file but not a .csv",
        ),
    ],
)
def test_bad_sources_get_one_clear_message(project, make_config, tmp_path, make_source, message):
    with pytest.raises(project.errors.UsageError, match=message):
        project.data.load(make_config(f"data.source={make_source(tmp_path)}"))


@pytest.mark.parametrize(
    ("classes", "overrides", "key"),
    [
        (12, [], "data.test_fraction"),  # 36 rows: 6 test examples for 12 classes
        (4, ["data.max_examples=3"], "data.max_examples"),
    ],
)
def test_a_split_too_small_for_its_classes_is_one_line(
    project, make_config, tmp_path, classes, overrides, key
):
    path = tmp_path / "small.csv"
    path.write_text("a,label\n" + "".join(f"{i},c{i % classes}\n" for i in range(36)))
    with pytest.raises(project.errors.UsageError, match=rf"stratified split .* change {key}$"):
        project.data.load(make_config(f"data.source={path}", *overrides))


def test_one_class_and_missing_label_column_are_rejected(project, make_config, tmp_path, csv_file):
    with pytest.raises(
        project.errors.UsageError, match=r"has no column 'label' \(columns: size, color, kind\)"
    ):
        project.data.load(make_config(f"data.source={csv_file}"))
    rows = ["a,label"] + [f"{i},same" for i in range(20)]
    (tmp_path / "one.csv").write_text("\n".join(rows))
    with pytest.raises(project.errors.UsageError, match="only one class"):
        project.data.load(make_config(f"data.source={tmp_path / 'one.csv'}"))


def test_max_examples_shrinks_and_keeps_classes(project, make_config):
    data = project.data.load(make_config("data.max_examples=200"))
    assert len(data.train.y) + len(data.val.y) + len(data.test.y) == 200
    assert set(np.unique(data.test.y)) == set(range(10))


def test_fixed_batch_covers_the_classes(project, make_config):
    data = project.data.load(make_config())
    chosen = project.pipeline.fixed_batch(data, 16)
    assert len(set(chosen)) == 16
    assert set(data.val.y[chosen]) == set(range(10))


# ---------------------------------------------------------------- CSV tables


def _whole_table(data):
    """Every split's inputs back in the file's row order (ids are line numbers)."""
    splits = (data.train, data.val, data.test)
    x = np.concatenate([split.x for split in splits])
    order = np.argsort([int(i) for split in splits for i in split.ids])
    return x[order]


def test_a_csv_table_reads_numbers_text_and_gaps_into_float32(project, make_config, tmp_path):
    colours = ["red", " green ", '"dark, blue"']  # spaces stripped, a quoted comma kept
    lines = ["size , colour,weight,label"]
    for i in range(30):
        colour = "" if i == 4 else colours[i % 3]
        weight = "" if i % 7 == 3 else (" 2 " if i % 2 else "2e0")
        lines.append(f"{i * 0.5},{colour},{weight},{i % 2}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join([*lines, " , , , "]) + "\n")  # a blank row is skipped

    data = project.data.load(make_config(f"data.source={path}", "data.missing=mean"))
    assert data.feature_names == ["size", "colour", "weight"]
    assert data.categorical == {1: 4} and data.vocabularies == {1: ["dark, blue", "green", "red"]}
    assert all(s.x.dtype == np.float32 and s.x.flags.c_contiguous for s in (data.train, data.val))
    index = {"red": 3, " green ": 2, '"dark, blue"': 1}  # 0 = the empty cell
    expected = [[i * 0.5, 0 if i == 4 else index[colours[i % 3]], 2.0] for i in range(30)]
    # Every present weight is 2, so the training mean that fills the gaps is 2 too.
    np.testing.assert_array_equal(_whole_table(data), np.array(expected, np.float32))
    with pytest.raises(project.errors.UsageError, match="column 'weight' has 4 missing values"):
        project.data.load(make_config(f"data.source={path}"))


def test_text_after_numbers_keeps_each_cells_own_text(project, make_config, tmp_path, monkeypatch):
    # 16-row chunks: the text comes chunks after the numbers it turns into categories.
    monkeypatch.setattr(project.data, "CSV_CHUNK_CELLS", 16)
    mixed = ["x" if i >= 40 and i % 4 == 0 else ("1" if i % 2 else "1.0") for i in range(60)]
    late = ["" if i < 35 else ["k", "l"][i % 2] for i in range(60)]  # empty, then text
    lines = ["mixed,late,label", *[f"{mixed[i]},{late[i]},{i % 3}" for i in range(60)]]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")

    data = project.data.load(make_config(f"data.source={path}"))
    assert set(data.categorical) == {0, 1}
    assert set(data.vocabularies[0]) - {"x"} == {"1", "1.0"} and data.vocabularies[1] == ["k", "l"]
    x = _whole_table(data)
    for j, cells in enumerate((mixed, late)):
        vocabulary = data.vocabularies[j]
        expected = [vocabulary.index(c) + 1 if c in vocabulary else 0 for c in cells]
        np.testing.assert_array_equal(x[:, j], expected)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["a,label", "1,0", "2,1,3"], "line 3 has 3 fields; the header has 2"),
        (["a,label", *[f"{i},{i % 2}" for i in range(12)], "5,"], "rows with an empty 'label'"),
        (["label", *[f"{i % 2}" for i in range(12)]], "no feature columns besides 'label'"),
        (["a,label", " , "], "has no data rows"),
        (["a,b", "1,2", "3"], "line 3 has 1 fields"),  # the ragged row before the missing label
        (["a,label", "1,0", "x" * 200_000 + ",1"], "line 3: field larger than field limit"),
    ],
)
def test_bad_csv_tables_get_one_clear_message(project, make_config, tmp_path, lines, message):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(project.errors.UsageError, match=message):
        project.data.load(make_config(f"data.source={path}"))


def test_a_csv_table_is_parsed_without_a_string_per_cell(project, tmp_path):
    import tracemalloc

    rows, columns = 50_000, 20
    rng = np.random.default_rng(0)
    lines = [",".join(f"c{j}" for j in range(columns - 1)) + ",label"]
    for i in range(1000):  # 18 numbers, a colour and a label; repeated to 50,000 rows
        numbers = ",".join(f"{v:.3f}" for v in rng.normal(0, 1, columns - 2))
        lines.append(f"{numbers},{['red', 'green', 'blue'][i % 3]},{i % 2}")
    path = tmp_path / "big.csv"
    path.write_text(lines[0] + "\n" + "\n".join(lines[1:] * (rows // 1000)) + "\n")

    tracemalloc.start()
    try:
        source = project.data._csv(path, "label")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert source.kind == "tabular" and len(source.feature_names) == columns - 1
    assert len(source.labels) == len(source.ids) == rows
    # One float32 copy is 4 MB; a Python string per cell would take ~60 MB.
    assert peak < 3 * rows * columns * 4, f"{peak / 1e6:.1f} MB"
