"""Each baked project's own tests and CLI run, in this interpreter (one shared venv)."""

import json

import pytest
from conftest import DEFAULT_TASK, TASKS, explain, run_in

OTHER_TASKS = [task for task in TASKS if task != DEFAULT_TASK]


@pytest.mark.parametrize("task", TASKS)
def test_cli_help(baked, task):
    proc = run_in(baked(task), "-m", "recipe_project", "--help", timeout=300)
    assert proc.returncode == 0, explain(proc)


@pytest.mark.slow
def test_default_bake_full_suite(baked):
    proc = run_in(baked(DEFAULT_TASK), "-m", "pytest", "-q", "-x")
    assert proc.returncode == 0, explain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("task", OTHER_TASKS)
def test_other_bakes_fast_suite(baked, task):
    proc = run_in(baked(task), "-m", "pytest", "-q", "-x", "-m", "not slow")
    assert proc.returncode == 0, explain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("task", OTHER_TASKS)
def test_other_bakes_train_from_the_cli(baked, task):
    project = baked(task)
    proc = run_in(
        project,
        "-m",
        "recipe_project",
        "train",
        "--config",
        "configs/default.yaml",
        "train.epochs=2",
        "run.name=smoke",
    )
    assert proc.returncode == 0, explain(proc)
    metrics = project / "runs" / "smoke" / "metrics.json"
    assert metrics.is_file(), explain(proc)
    assert json.loads(metrics.read_text())  # parses and is not empty
