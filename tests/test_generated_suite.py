"""Each baked project's own tests and CLI run, in this interpreter (one shared venv)."""

import json

import pytest
import yaml
from conftest import DEFAULT_TASK, TASKS, explain, run_in

OTHER_TASKS = [task for task in TASKS if task != DEFAULT_TASK]


@pytest.mark.parametrize("task", TASKS)
def test_cli_help(baked, task):
    proc = run_in(baked(task), "-m", "recipe_project", "--help", timeout=300)
    assert proc.returncode == 0, explain(proc)
    assert "Without --config: configs/default.yaml" in " ".join(proc.stdout.split())


@pytest.mark.slow
def test_default_bake_full_suite(baked):
    proc = run_in(baked(DEFAULT_TASK), "-m", "pytest", "-q", "-x", "-n", "2")
    assert proc.returncode == 0, explain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("task", OTHER_TASKS)
def test_other_bakes_fast_suite(baked, task):
    proc = run_in(baked(task), "-m", "pytest", "-q", "-x", "-n", "2", "-m", "not slow")
    assert proc.returncode == 0, explain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("task", OTHER_TASKS)
def test_other_bakes_train_from_the_cli_on_their_own_default_config(baked, task):
    # No --config: the bake's configs/default.yaml (its task's data), not the built-in digits.
    project = baked(task)
    proc = run_in(project, "-m", "recipe_project", "train", "train.epochs=2", "run.name=smoke")
    assert proc.returncode == 0, explain(proc)
    run = project / "runs" / "smoke"
    assert (run / "metrics.json").is_file(), explain(proc)
    assert json.loads((run / "metrics.json").read_text())  # parses and is not empty
    source = yaml.safe_load((run / "config.yaml").read_text())["data"]["source"]
    assert source == {"tabular_classification": "breast_cancer", "regression": "diabetes"}[task]
