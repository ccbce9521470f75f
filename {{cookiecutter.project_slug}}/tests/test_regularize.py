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
