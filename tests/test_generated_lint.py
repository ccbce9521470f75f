"""Every baked project passes its own ruff settings, so `make lint` is green from day one."""

import subprocess
import sys

import pytest
from conftest import TASKS


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(baked, task, command):
    project = baked(task)
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "src", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
