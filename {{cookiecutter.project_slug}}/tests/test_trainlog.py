"""train.log: what each command printed, kept in its run folder (runlog.py, wired in cli.py)."""

import importlib
import sys

import pytest


@pytest.fixture
def runlog(project):
    return importlib.import_module(f"{project.name}.runlog")


def test_every_invocation_appends_its_header_and_its_lines(project, tmp_path, capsys):
    args = ["inspect", f"run.dir={tmp_path / 'runs'}", "run.name=a", "data.max_examples=150"]
    for _ in range(2):
        assert project.cli.main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    log = (tmp_path / "runs" / "a" / "train.log").read_text().splitlines()
    headers = [line for line in log if line.startswith("== ")]
    assert len(headers) == 2 and all(" -m " in h and h.endswith(" ".join(args)) for h in headers)
    assert [line for line in log if not line.startswith("== ")] == [p.rstrip() for p in printed]
    assert any(line.startswith("inspect: 0 errors") for line in log)


def test_a_refused_command_leaves_no_log_and_no_folder(project, tmp_path):
    args = ["evaluate", f"run.dir={tmp_path / 'runs'}", "run.name=none"]
    assert project.cli.main(args) == 2  # no model.keras: refused after the lock was taken
    assert not (tmp_path / "runs").exists()


def test_the_log_keeps_errors_a_progress_bar_as_it_last_stood_and_the_exception(runlog, tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")  # a run folder: the log stays in it
    streams = sys.stdout, sys.stderr
    with pytest.raises(ZeroDivisionError), runlog.recorded(tmp_path, "python -m p train"):
        print("data: digits")
        sys.stdout.write("1/3 [==>...]\b\b\b\r2/3 [====>.]\r3/3 [=======] loss: 0.5\n")
        print("error: a verdict", file=sys.stderr)
        1 / 0  # noqa: B018
    assert (sys.stdout, sys.stderr) == streams
    log = (tmp_path / "train.log").read_text().splitlines()
    assert log[0].startswith("== ") and log[0].endswith(" UTC: python -m p train")
    assert log[1:4] == ["data: digits", "3/3 [=======] loss: 0.5", "error: a verdict"]
    assert log[-1] == "ZeroDivisionError: division by zero"


def test_a_replaced_run_starts_its_log_again_with_this_invocations_lines(runlog, project, tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")
    with runlog.recorded(tmp_path, "python -m p train run.overwrite=true"):
        print("data: digits")
        project.runs.empty(tmp_path)  # what train does to the old run: the log goes too
        (tmp_path / "config.yaml").write_text("{}\n")  # the new run's
        print("model: convnet")
    log = (tmp_path / "train.log").read_text().splitlines()
    assert log[1:] == ["data: digits", "model: convnet"] and log[0].startswith("== ")
