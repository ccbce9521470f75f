"""Ensembles: members differ in seed but share one split; the average is scored honestly."""

import json

import numpy as np
import pytest


def test_members_vary_the_seed_but_keep_the_split(project, make_config):
    config = make_config("data.source=breast_cancer", "seed=7", "run.name=ens")
    first, second = (project.ensemble.member_config(config, i) for i in (0, 1))
    assert (first.seed, second.seed) == (7, 8)
    assert first.run_dir == config.run_dir / "members" / "seed-7"
    assert first.check.before_train and not second.check.before_train
    a, b = project.data.load(first), project.data.load(second)
    assert list(a.test.ids) == list(b.test.ids) and list(a.train.ids) == list(b.train.ids)
    # Without the shared split seed the members would be scored on different test sets.
    second.data.split_seed = None
    assert list(project.data.load(second).test.ids) != list(a.test.ids)


@pytest.mark.slow
def test_ensemble_scores_the_averaged_members_and_reuses_them(project, make_config, capsys):
    base = ("data.source=breast_cancer", "model.name=mlp", "train.epochs=4", "run.name=ens")
    config = make_config(*base, "ensemble.members=2")
    assert project.ensemble.ensemble(config, "pytest") == 0
    report = json.loads((config.run_dir / "ensemble.json").read_text())
    assert set(report["members"]) == {"seed-0", "seed-1"}
    assert (config.run_dir / "ensemble.png").exists()
    assert "**ensemble**" in (config.run_dir / "ensemble.md").read_text()

    # The reported ensemble is the average of the members' probabilities, recomputed here.
    data = project.data.load(project.ensemble.member_config(config, 0))
    outputs = [  # model.keras takes raw inputs
        project.models.predict_outputs(
            project.evaluate.load_trained(config.run_dir / "members" / name), data, data.test.x
        )
        for name in ("seed-0", "seed-1")
    ]
    assert not np.allclose(outputs[0], outputs[1])  # different seeds, different models
    expected = project.evaluate.score(data, data.test.y, np.mean(outputs, axis=0))
    assert report["ensemble"]["loss"] == pytest.approx(expected["loss"])
    mean_member = np.mean([m["accuracy"] for m in report["members"].values()])
    assert report["gain_over_mean_member"] == pytest.approx(
        report["ensemble"]["accuracy"] - mean_member
    )

    # A third member: the first two are reused, only the new one trains.
    capsys.readouterr()
    assert project.ensemble.ensemble(make_config(*base, "ensemble.members=3"), "pytest") == 0
    out = capsys.readouterr().out
    assert out.count("trained already") == 2 and "member 3/3 (seed 2) ->" in out
    # A member trained with another config is never silently mixed in.
    with pytest.raises(project.errors.UsageError, match=r"different config \(model.width\)"):
        project.ensemble.ensemble(make_config(*base, "model.width=32"), "pytest")


def test_an_ensemble_of_a_finished_searchs_best_trials_reuses_their_weights(
    project, make_config, capsys
):
    tune = project.tune
    shrink = ("data.max_examples=200", "model.name=mlp", "tune.epochs=3", "tune.max_trials=2")
    search = make_config(*shrink, "run.name=search")
    space = {"optimizer.learning_rate": tune.Range(1e-3, 3e-3, log=True)}
    assert tune.tune(search, "pytest", space=space) == 0

    config = make_config(*shrink, "ensemble.from_search=search", "ensemble.top_k=2")
    assert project.ensemble.ensemble(config, "pytest") == 0
    report = json.loads((config.run_dir / "ensemble.json").read_text())
    trials = report["from_search"]["trials"]
    assert report["from_search"]["search"] == "search" and len(trials) == 2
    assert set(report["members"]) == set(trials) == {f"trial-{t['trial']}" for t in trials.values()}
    assert "trial-" in (config.run_dir / "ensemble.md").read_text()
    # Each member is its trial's best epoch: its validation loss is the score the search kept.
    data = project.data.load(search)
    for name, trial in trials.items():
        model = project.evaluate.load_trained(config.run_dir / "members" / name)
        val = project.evaluate.predict_split(model, data, data.val)
        assert project.evaluate.score(data, data.val.y, val)["loss"] == pytest.approx(
            trial["val_loss"], rel=1e-3
        )
    # Saved once: a rerun reuses the members.
    capsys.readouterr()
    assert project.ensemble.ensemble(config, "pytest") == 0
    assert capsys.readouterr().out.count("saved already") == 2

    error = project.errors.UsageError
    with pytest.raises(error, match="has 2 finished trials; lower ensemble.top_k=3"):
        project.ensemble.ensemble(make_config(*shrink, "ensemble.from_search=search"), "pytest")
    other = make_config("ensemble.from_search=search", "run.name=other")
    with pytest.raises(error, match=r"other data or another split \(data.max_examples\)"):
        project.ensemble.ensemble(other, "pytest")
