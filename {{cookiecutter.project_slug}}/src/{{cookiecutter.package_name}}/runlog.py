"""`<run>/train.log`: everything a command printed (the Python process's stdout and stderr),
kept in its run folder, one header line per invocation, appended across resumes."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import runs
from .errors import UsageError

LOG = "train.log"
# Lines kept to start a deleted log again: a run is replaced before it trains, so its first.
KEPT_LINES = 1000


class _Log:
    """The file the streams copy into, a line at a time. A line redrawn in place (Keras's
    progress bar: backspaces and carriage returns) is kept as it last stood. A run replaced
    (run.overwrite) empties its folder, the log with it: the log starts again there with
    this invocation's lines."""

    def __init__(self, path: Path):
        self._path = path
        self._handle = path.open("a", encoding="utf-8")
        self._lines: list[str] = []  # this invocation's first, to start a deleted log again
        # Other threads print too (tf.data); reentrant, because a signal handler that prints
        # runs on the main thread between two of its steps, maybe inside this lock.
        self._lock = threading.RLock()

    def line(self, text: str) -> None:
        text = text[text.rfind("\r") + 1 :].replace("\b", "").rstrip() + "\n"
        with self._lock:
            if self._handle is None:
                return
            kept = len(self._lines) < KEPT_LINES
            if kept:
                self._lines.append(text)
            try:
                if os.fstat(self._handle.fileno()).st_nlink == 0:  # deleted under us
                    self._handle.close()
                    self._handle = self._path.open("a", encoding="utf-8")
                    text = "".join(self._lines) + ("" if kept else text)
                self._handle.write(text)
                self._handle.flush()
            except OSError:  # a full disk: the terminal still gets every line
                self._handle = None

    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


class _Tee:
    """A stream that writes through to `stream` and copies each finished line to the log."""

    def __init__(self, stream, log: _Log):
        self._stream, self._log, self._partial = stream, log, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._log.line(line)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def finish(self) -> None:
        if self._partial.strip():
            self._log.line(self._partial)
        self._partial = ""

    def __getattr__(self, name):  # isatty, fileno, encoding ... of the terminal's stream
        return getattr(self._stream, name)


@contextlib.contextmanager
def recorded(folder: Path | None, command: str):
    """Copies what the block prints into `<folder>/train.log` after a header line (the time
    and the command); an exception that ends the block is logged too. A refused command (a
    UsageError) leaves the log as it found it, and a log that is all a new folder would hold
    is removed, so runs.locked still removes a folder the command never wrote into."""
    if folder is None:
        yield
        return
    path = Path(folder) / LOG
    before = path.stat().st_size if path.is_file() else None
    log = _Log(path)
    log.line(f"== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: {command}")
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = tees = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    refused = False
    try:
        yield
    except UsageError:
        refused = True
        raise
    except runs.Stopped as stop:
        log.line(f"stopped by {stop.name}")
        raise
    except BaseException:
        for line in traceback.format_exc().splitlines():
            log.line(line)
        raise
    finally:
        sys.stdout, sys.stderr = streams
        for tee in tees:
            tee.finish()
        log.close()
        others = [p for p in Path(folder).iterdir() if p.name not in (LOG, runs.LOCK)]
        if refused or (before is None and not others):
            _restore(path, before)


def _restore(path: Path, size: int | None) -> None:
    with contextlib.suppress(OSError):
        if size is None:
            path.unlink()
        else:
            with path.open("r+b") as handle:
                handle.truncate(size)
