"""Shared fixtures: one baked project per task, reused by every test that reads it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
TASKS = ["image_classification", "tabular_classification", "regression"]
DEFAULT_TASK = TASKS[0]


def pytest_configure(config):
    # pytest-cookies defaults --template to ".", which breaks when pytest runs elsewhere.
    if config.option.template == ".":
        config.option.template = str(TEMPLATE)


@pytest.fixture(scope="session")
def baked(cookies_session):
    """Returns bake(task) -> project path; each task is baked once per session."""
    projects = {}

    def bake(task: str) -> Path:
        if task not in projects:
            result = cookies_session.bake(extra_context={"task": task})
            assert result.exit_code == 0, result.exception
            projects[task] = result.project_path
        return projects[task]

    return bake


def run_in(project: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Runs `python <args>` in a baked project with this interpreter and its src/ importable."""
    env = dict(os.environ, PYTHONPATH="src", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(proc: subprocess.CompletedProcess) -> str:
    """The tail of a failed command's output, for the assertion message."""
    return f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
