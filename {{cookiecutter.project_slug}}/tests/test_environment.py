"""environment.json: the versions, devices and git commit a run ran with."""

import json
import platform
import subprocess

import keras
import numpy as np


def _git(folder, *args):
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)


def test_environment_records_versions_devices_and_the_commit_of_a_repository(project, tmp_path):
    repository = tmp_path / "project"
    repository.mkdir()
    _git(repository, "init", "-q")
    (repository / "README.md").write_text("x\n")
    _git(repository, "add", "README.md")
    _git(repository, "commit", "-q", "-m", "first")
    commit = _git(repository, "rev-parse", "HEAD").stdout.strip()
    path = project.environment.write_environment(tmp_path / "run", repository)
    written = json.loads(path.read_text())
    assert path.name == "environment.json"
    assert written["git_commit"] == commit and written["git_uncommitted_changes"] is False
    assert written["python"] == platform.python_version()
    assert (written["keras"], written["numpy"]) == (keras.__version__, np.__version__)
    assert written["tensorflow"] and written["keras_tuner"]
    assert "CPU:0" in written["devices"]
    (repository / "README.md").write_text("changed\n")
    changed = json.loads(
        project.environment.write_environment(tmp_path / "b", repository).read_text()
    )
    assert changed["git_uncommitted_changes"] is True


def test_environment_leaves_the_commit_out_outside_a_repository_or_without_git(
    project, tmp_path, monkeypatch
):
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it
    written = json.loads(project.environment.write_environment(tmp_path / "a", plain).read_text())
    assert "git_commit" not in written and written["numpy"] == np.__version__
    monkeypatch.setenv("PATH", str(tmp_path))  # git is not installed
    written = json.loads(project.environment.write_environment(tmp_path / "b", plain).read_text())
    assert "git_commit" not in written and written["devices"]


SMALL = ("data.max_examples=150", "model.name=mlp", "model.width=8", "model.depth=1")


def _finished(project, config):
    """A run folder as train leaves it (config.yaml, model.keras), without the training."""
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    config.run_dir.mkdir(parents=True)
    project.config.save(config, config.run_dir / "config.yaml")
    project.models.with_preprocessing(model, data).save(config.run_dir / "model.keras")


def test_evaluate_records_its_environment_beside_the_trainings(project, make_config):
    run = make_config(*SMALL, "run.name=a")
    _finished(project, run)
    assert project.cli.main(["evaluate", f"run.dir={run.run.dir}", "run.name=a"]) == 0
    written = json.loads((run.run_dir / "environment-evaluate.json").read_text())
    assert written["keras"] == keras.__version__ and written["devices"]
    assert not (run.run_dir / "environment.json").exists()  # train's: evaluate leaves it be


def test_ensemble_records_its_environment_in_its_folder(project, make_config, monkeypatch):
    monkeypatch.chdir(make_config().run_dir.parent.parent)  # no configs/default.yaml here
    overrides = [*SMALL, "run.name=ens", "ensemble.members=2"]
    config = make_config(*overrides)
    for index in range(2):  # members trained already: the ensemble only scores them
        _finished(project, project.ensemble.member_config(config, index))
    assert project.cli.main(["ensemble", f"run.dir={config.run.dir}", *overrides]) == 0
    written = json.loads((config.run_dir / "environment-ensemble.json").read_text())
    assert written["numpy"] == np.__version__


def test_tune_records_its_environment_and_each_trials_hparams(project, make_config):
    config = make_config(*SMALL, "run.name=search", "tune.max_trials=1", "tune.epochs=1")
    space = {"optimizer.learning_rate": project.tune.Range(1e-3, 1e-2, log=True)}  # one panel
    assert project.tune.tune(config, "pytest", space=space) == 0
    assert json.loads((config.run_dir / "environment-tune.json").read_text())["keras_tuner"]
    [trial] = (config.run_dir / "tensorboard").iterdir()
    assert trial.name == "trial-0" and list(trial.glob("events.out.tfevents.*"))
