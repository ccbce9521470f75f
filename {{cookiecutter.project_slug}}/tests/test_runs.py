"""Run folders: one writer at a time, files whole or not at all, a full disk in one line, and
stop signals that wait for a safe point (runs.py). None of these needs TensorFlow."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def test_a_second_writer_is_refused_naming_the_holder(project, run_cli, tmp_path):
    run_dir = tmp_path / "runs" / "busy"
    holder = "python -m recipe train run.name=busy"
    with project.runs.locked(run_dir, holder):
        # Another process: refused before it loads TensorFlow or reads any data.
        refused = run_cli("train", "run.name=busy")
        assert json.loads((run_dir / ".lock").read_text())["pid"] == os.getpid()
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: runs/busy is in use by process {os.getpid()} on host ")
    assert socket.gethostname() in line and holder in line
    # Let go: the lock file goes, and the folders made only for it go too.
    assert not (tmp_path / "runs").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over_saying_so(project, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "left"
    holding = (
        f"from {project.name} import runs; import time\n"
        f"with runs.locked({str(run_dir)!r}, 'train run.name=left'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holding],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    with pytest.raises(project.errors.UsageError, match=f"in use by process {process.pid}"):
        with project.runs.locked(run_dir, "train"):
            pass
    process.kill()  # kill -9: no cleanup; the kernel drops its lock
    process.wait()
    capsys.readouterr()
    with project.runs.locked(run_dir, "train run.name=left"):
        out = capsys.readouterr().out
        assert f"names process {process.pid} on host {socket.gethostname()}" in out
        assert "ended without releasing it: taking it over" in out
        assert json.loads((run_dir / ".lock").read_text())["pid"] == os.getpid()


def test_a_write_that_dies_midway_leaves_the_previous_file(project, tmp_path):
    path = tmp_path / "metrics.json"
    project.runs.write_text(path, '{"accuracy": 0.9}\n')

    def dies(partial):
        partial.write_text('{"accur')
        raise KeyboardInterrupt  # a kill, as a Python exception

    with pytest.raises(KeyboardInterrupt):
        project.runs.write_whole(path, dies)
    assert json.loads(path.read_text()) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no partial left


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(project, tmp_path):
    path = tmp_path / "best.keras"
    project.runs.write_whole(path, lambda partial: partial.write_bytes(b"x" * 5000))

    def fills(partial):
        partial.write_bytes(b"y" * 3000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial))

    with pytest.raises(project.runs.DiskFull) as caught:
        project.runs.write_whole(path, fills)
    message = str(caught.value)
    assert message.startswith(f"no space left on the device writing {path} (it needs about 5.0 kB")
    assert "\n" not in message and "rerun the same command to resume" in message
    assert path.read_bytes() == b"x" * 5000
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
    # h5py and TensorFlow say it in words, not with an errno.
    assert project.runs.is_disk_full(OSError("Can't write data (errno = 28, No space left)"))
    assert not project.runs.is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_row_cut_short_by_a_full_disk_is_taken_back(project, tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.3\n")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda handle, data: real_write(handle, data[:3]))
    with pytest.raises(project.runs.DiskFull, match="history.csv"):
        project.runs.append_line(path, "1,1.25\n")
    monkeypatch.undo()
    assert path.read_text() == "epoch,loss\n0,2.3\n"
    project.runs.append_line(path, "1,1.25\n")
    assert [row["epoch"] for row in project.callbacks.read_history(path)] == [0, 1]


def test_a_stop_signal_waits_for_a_safe_point_and_a_second_one_ends_at_once(project, monkeypatch):
    runs = project.runs
    before = signal.getsignal(signal.SIGTERM)
    with runs.stop_on_signals():
        with runs.stop_deferred():  # a save, an epoch's end
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler has run: nothing was cut
            assert runs.stop_requested().name == "SIGTERM"
            exits = []
            monkeypatch.setattr(os, "_exit", lambda status: exits.append(status))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            assert exits == [143]  # the second one does not wait
            monkeypatch.undo()
            with pytest.raises(runs.Stopped) as stopped:
                runs.allow_cut(True)  # a safe point: the first one stops here
        assert stopped.value.status == 143
    assert signal.getsignal(signal.SIGTERM) is before  # handlers given back
    with runs.stop_on_signals():
        with pytest.raises(runs.Stopped) as stopped:  # outside a deferred block: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert stopped.value.name == "SIGINT" and stopped.value.status == 130
