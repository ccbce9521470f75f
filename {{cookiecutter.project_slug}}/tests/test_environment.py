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
