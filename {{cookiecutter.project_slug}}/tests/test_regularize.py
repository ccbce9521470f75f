"""Stage 4 options end to end: each one reaches training and changes its outcome."""

import json

import numpy as np
import pytest


def test_balanced_class_weights_raise_the_rare_class_recall(project, make_config, tmp_path):
    """A 92/8 table whose rare class is shifted by 1.5 std: unweighted, a linear model mostly
    predicts the common class; with train.class_weight=balanced (T2) it finds the rare one."""
    rng = np.random.default_rng(0)
    rare = rng.random(1500) < 0.08
    x = rng.normal(size=(1500, 2))
    x[rare, 0] += 1.5
    lines = ["a,b,label"] + [
        f"{u:.4f},{v:.4f},{'rare' if r else 'common'}" for (u, v), r in zip(x, rare, strict=True)
    ]
    source = tmp_path / "imbalanced.csv"
    source.write_text("\n".join(lines) + "\n")
    scores = {}
    for weight in ("none", "balanced"):
        config = make_config(
            f"data.source={source}",
            "data.label_column=label",
            "model.name=linear",
            "train.epochs=20",
            "optimizer.learning_rate=0.05",
            f"train.class_weight={weight}",
            "check.before_train=false",
            f"run.name={weight}",
        )
        assert project.train.train(config, "pytest") == 0
        metrics = json.loads((config.run_dir / "metrics.json").read_text())
        recall = metrics["per_class"]["rare"]["recall"]
        scores[weight] = (recall, metrics["model"]["balanced_accuracy"])
    assert scores["balanced"][0] > scores["none"][0] + 0.3
    assert scores["balanced"][1] > scores["none"][1] + 0.08


def test_a_finished_run_continues_at_a_lower_rate_for_the_final_drop(project, make_config):
    """run.extend=true may lower optimizer.learning_rate (R3.4, U8): the continued epochs run
    at the new rate with the optimizer's state carried over; other changes stay refused."""
    import keras

    base = ("data.source=breast_cancer", "model.name=mlp", "run.name=drop")
    config = make_config(*base, "train.epochs=3")
    assert project.train.train(config, "pytest") == 0
    steps = project.pipeline.steps_per_epoch(project.data.load(config).train, 64)
    with pytest.raises(project.errors.UsageError, match=r"different config \(optimizer.name\)"):
        project.train.train(
            make_config(*base, "train.epochs=5", "run.extend=true", "optimizer.name=sgd"), "pytest"
        )
    lower = make_config(*base, "train.epochs=5", "run.extend=true", "optimizer.learning_rate=3e-5")
    assert project.train.train(lower, "pytest") == 0
    rows = project.callbacks.read_history(config.run_dir / "history.csv")
    rates = {row["epoch"]: row["learning_rate"] for row in rows if row["epoch"] > 0}
    assert rates == pytest.approx({1: 3e-4, 2: 3e-4, 3: 3e-4, 4: 3e-5, 5: 3e-5})
    last = keras.saving.load_model(config.run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 5 * steps


def test_training_fractions_are_nested_stratified_subsets(project, make_config):
    """train.fraction (R4.1): a smaller share is a subset of a larger one, classes keep their
    proportions, and the validation and test splits do not move."""
    full = project.data.load(make_config())
    halves = [project.data.load(make_config(f"train.fraction={f}")) for f in (0.25, 0.5)]
    ids = [set(d.train.ids) for d in halves] + [set(full.train.ids)]
    assert ids[0] < ids[1] < ids[2]
    assert len(ids[0]) == pytest.approx(0.25 * len(ids[2]), abs=10)
    for part in halves:
        assert list(part.val.ids) == list(full.val.ids) and list(part.test.ids) == list(
            full.test.ids
        )
        assert part.class_priors == pytest.approx(full.class_priors, abs=0.01)


def test_the_learning_curve_verdicts(project):
    def points(val, train):
        return [
            {"examples": n, "val_loss": v, "train_loss": t}
            for n, v, t in zip((100, 200, 400), val, train, strict=True)
        ]

    judge = project.learning_curve.judge
    assert judge(points((0.9, 0.6, 0.4), (0.1, 0.1, 0.1)))[0] == "more_data"
    assert judge(points((0.9, 0.61, 0.60), (0.58, 0.57, 0.57)))[0] == "capacity"
    assert judge(points((0.9, 0.61, 0.60), (0.05, 0.05, 0.05)))[0] == "flat"


def test_the_learning_curve_trains_three_shares_and_reuses_them(project, make_config, capsys):
    config = make_config(
        "data.source=breast_cancer",
        "model.name=mlp",
        "train.epochs=15",
        "check.before_train=false",
        "run.name=curve",
    )
    assert project.learning_curve.learning_curve(config, "pytest") == 0
    report = json.loads((config.run_dir / "learning_curve.json").read_text())
    examples = [p["examples"] for p in report["points"]]
    assert [p["fraction"] for p in report["points"]] == [0.25, 0.5, 1.0]
    assert examples[0] < examples[1] < examples[2] and examples[1] == pytest.approx(
        examples[2] / 2, abs=2
    )
    assert report["verdict"] in ("more_data", "capacity", "flat") and report["advice"]
    assert all(0.5 < p["test_accuracy"] <= 1 for p in report["points"])
    assert (config.run_dir / "learning_curve.png").stat().st_size > 0
    capsys.readouterr()
    assert project.learning_curve.learning_curve(config, "pytest") == 0
    assert capsys.readouterr().out.count("trained already") == 3


# ---------------------------------------------------------------- imbalance: weights, sampling


def _imbalanced_table(path, rows=400, rare_share=0.05):
    """A seeded CSV of two features whose rare class ('rare', ~5%) sits apart on the first."""
    rng = np.random.default_rng(3)
    rare = np.arange(rows) % round(1 / rare_share) == 0
    x = rng.normal(size=(rows, 2))
    x[rare, 0] += 2.0
    lines = ["a,b,label"] + [
        f"{u:.4f},{v:.4f},{'rare' if r else 'common'}" for (u, v), r in zip(x, rare, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _imbalanced_folder(root, counts=(14, 14, 4)):
    """Small PNGs of three classes, one of them rare."""
    from PIL import Image

    rng = np.random.default_rng(4)
    for name, count in zip(("cat", "dog", "owl"), counts, strict=True):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _stream(project, data, epochs, seed=0, first_epoch=0, batch_size=16):
    """`epochs` epochs of the shuffled training stream: inputs and labels, one row per draw."""
    steps = project.pipeline.steps_per_epoch(data.train, batch_size)
    stream = project.pipeline.make_dataset(
        data, data.train, batch_size, shuffle=True, seed=seed, first_epoch=first_epoch
    )
    batches = list(stream.take(epochs * steps))
    x = np.concatenate([b[0].numpy() for b in batches])
    return x.reshape(len(x), -1), np.concatenate([b[1].numpy() for b in batches])


def test_a_class_weight_mapping_weighs_the_named_labels_and_refuses_an_unknown_one(
    project, make_config, tmp_path, capsys
):
    """train.class_weight={label: weight} (T2), as typed on the command line or in a config
    file: the named classes weigh that much (the others 1) in fit and in the output bias's
    priors; an unknown label or a weight <= 0 is one line naming it."""
    config = make_config("data.source=breast_cancer", "train.class_weight={malignant: 3}")
    data = project.data.load(config)
    assert list(data.class_names) == ["malignant", "benign"]
    assert project.models.class_weights(data) == {0: 3.0, 1: 1.0}
    weighted = data.class_priors * [3.0, 1.0]
    np.testing.assert_allclose(np.exp(data.output_bias), weighted / weighted.sum(), rtol=1e-6)
    saved = tmp_path / "saved.yaml"  # a run's config.yaml reads back as the same mapping
    project.config.save(config, saved)
    assert project.config.build_config([saved]).train.class_weight == {"malignant": 3.0}
    assert make_config("train.class_weight=benign:2,malignant:0.5").train.class_weight == {
        "benign": 2.0,
        "malignant": 0.5,
    }
    with pytest.raises(project.errors.UsageError, match="'benign' must be > 0; got 0"):
        make_config("train.class_weight={benign: 0}")
    argv = ["check", "data.source=breast_cancer", "train.class_weight={cow: 3}"]
    assert project.cli.main([*argv, f"run.dir={tmp_path / 'runs'}"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "error: train.class_weight names 'cow', not a class of breast_cancer (malignant, benign)\n"
    )


def test_oversampled_batches_draw_the_classes_equally_and_leave_validation_alone(
    project, make_config, tmp_path
):
    """data.sampling=oversample (T2): each training epoch keeps its length and draws the two
    classes of a 95/5 table equally often, every rare example among them; the validation
    split's batches stay the split, in order. It refuses regression and class weights."""
    source = _imbalanced_table(tmp_path / "imbalanced.csv")
    data = project.data.load(make_config(f"data.source={source}", "data.sampling=oversample"))
    plain = project.data.load(make_config(f"data.source={source}"))
    n, rare = len(data.train.y), data.class_names.index("rare")
    _, labels = _stream(project, data, epochs=2)
    _, plain_labels = _stream(project, plain, epochs=1)
    assert len(labels) == 2 * n
    for epoch in (labels[:n], labels[n:]):
        assert abs(np.sum(epoch == rare) - n / 2) <= 1
    assert np.sum(plain_labels == rare) == np.sum(data.train.y == rare) < n / 10
    val = project.pipeline.make_dataset(data, data.val, 16, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in val]), data.val.y)
    with pytest.raises(project.errors.UsageError, match="balances classes; diabetes is regr"):
        project.data.load(make_config("data.source=diabetes", "data.sampling=oversample"))
    with pytest.raises(project.errors.UsageError, match="both correct the imbalance; use one"):
        make_config("data.sampling=oversample", "train.class_weight=balanced")


@pytest.mark.parametrize("source", ["table", "image_files"])
def test_an_oversampled_stream_is_seeded_and_a_resumed_one_goes_on(
    project, make_config, tmp_path, source
):
    """The balanced draws of epoch e depend on (seed, e) alone, for arrays and image files: the
    same seed gives the same stream, and a stream started at epoch 2 (a resumed run) goes on
    with the uninterrupted stream's third epoch."""
    path = (
        _imbalanced_table(tmp_path / "imbalanced.csv")
        if source == "table"
        else _imbalanced_folder(tmp_path / "pictures")
    )
    data = project.data.load(
        make_config(f"data.source={path}", "data.image_size=[8,8]", "data.sampling=oversample")
    )
    n = len(data.train.y)
    x, labels = _stream(project, data, epochs=3, seed=5)
    again, _ = _stream(project, data, epochs=3, seed=5)
    np.testing.assert_array_equal(x, again)
    resumed, _ = _stream(project, data, epochs=1, seed=5, first_epoch=2)
    np.testing.assert_array_equal(resumed, x[2 * n :])
    other, _ = _stream(project, data, epochs=1, seed=6)
    assert not np.array_equal(other, x[:n]) and not np.array_equal(x[:n], x[n : 2 * n])
    counts = np.bincount(labels[:n], minlength=data.num_outputs)
    assert counts.max() - counts.min() <= 1


def test_the_expected_loss_at_init_under_oversampling_is_log_c(project, make_config, tmp_path):
    """Oversampled batches show the model uniform priors (R2.5): the output bias starts at
    them, and the expected loss at init (the init_loss check's value) is ln C on the
    imbalanced validation split, not the prior entropy."""
    source = _imbalanced_table(tmp_path / "imbalanced.csv")
    plain = project.data.load(make_config(f"data.source={source}"))
    data = project.data.load(make_config(f"data.source={source}", "data.sampling=oversample"))
    np.testing.assert_allclose(np.exp(data.output_bias), [0.5, 0.5], rtol=1e-6)
    assert project.models.expected_initial_loss(data) == pytest.approx(np.log(2))
    assert project.models.expected_initial_loss(plain) < 0.5 * np.log(2)
