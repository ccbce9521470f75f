"""Run folders that survive their machine and each other: one writer per folder (a lock),
files written whole or not at all, a graceful stop on SIGTERM and SIGINT, a full disk
said in one line (docs/when-things-go-wrong.md).

Nothing here imports TensorFlow: the command line takes the lock before it loads, so a
second writer is refused at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError

# ---------------------------------------------------------------- one writer per run folder

LOCK = ".lock"


@contextlib.contextmanager
def locked(folder: Path | None, command: str):
    """Holds the lock of a run folder while the block runs (None: no folder to lock).

    The lock is an flock on `<folder>/.lock`: the kernel releases it when its process ends,
    however it ends, so a lock never outlives its holder. The file names the holder (process,
    host, command) for a second writer's refusal, a UsageError. A file still naming a holder
    when the lock is free was left by a process that died holding it: it is taken over,
    saying so. Folders made for the lock and left empty (the command failed before writing)
    are removed again.
    """
    if folder is None:
        yield
        return
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    path = folder / LOCK
    handle = _acquire(path, command)
    try:
        yield
    finally:
        _release(path, handle)
        for empty in made:
            try:
                empty.rmdir()
            except OSError:  # holds files now, or another process's
                break


def _acquire(path: Path, command: str) -> int:
    for _ in range(20):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the holder before removed its empty folder meanwhile
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            who = describe_holder(holder) if holder else "another process"
            raise UsageError(
                f"{path.parent} is in use by {who}; wait for it to end, or choose another run.name"
            ) from None
        except OSError as err:  # a file system without locks (some network mounts)
            print(f"warning: cannot lock {path} ({err.strerror}); running without a lock")
            return handle
        # The holder before unlinks the file as it lets go: a lock taken on that unlinked
        # file would lock nothing, so lock whatever file the path names now.
        if _same_file(handle, path):
            break
        os.close(handle)
    else:
        raise UsageError(f"cannot lock {path}: it keeps being replaced by other processes")
    stale = _holder(handle)
    if stale:
        print(
            f"note: {path} names {describe_holder(stale)}, which ended without releasing it: "
            "taking it over"
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(handle, 0)
    os.pwrite(handle, (json.dumps(record) + "\n").encode(), 0)
    return handle


def _release(path: Path, handle: int) -> None:
    with contextlib.suppress(OSError):
        if _same_file(handle, path):
            path.unlink()  # while still locked: the next writer finds no holder to name
    os.close(handle)


def _same_file(handle: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _holder(handle: int) -> dict | None:
    try:
        return json.loads(os.pread(handle, 4096, 0).decode() or "null")
    except (ValueError, UnicodeDecodeError):
        return None


def describe_holder(holder: dict) -> str:
    return (
        f"process {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')} "
        f"({holder.get('command')})"
    )


def empty(folder: Path) -> None:
    """Deletes everything in a run folder but its lock, which the caller holds."""
    for path in Path(folder).iterdir():
        if path.name == LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# ---------------------------------------------------------------- files written whole


def partial_path(path: Path) -> Path:
    """The sibling a file is written to before it is renamed over `path`. The mark goes
    after the first part of the name: Keras wants `.keras` and `.weights.h5` last."""
    head, dot, tail = path.name.partition(".")
    return path.with_name(f"{head}.partial{dot}{tail}")


def write_whole(path: Path, write) -> None:
    """Writes `path` whole or not at all: write(partial) makes a sibling file or folder, which
    is flushed to the disk, then renamed over `path`. A kill, a power cut or a full disk
    leaves the previous `path` (or none), never a part of one; a full disk raises DiskFull.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    _remove(partial)  # left by a process that died writing it
    try:
        write(partial)
        _sync(partial)
        if path.is_dir():  # a folder cannot be renamed over a folder: the old one goes first
            _remove(path)
        os.replace(partial, path)
        _sync_folder(path.parent)
    except BaseException as err:
        written = _size(partial)
        _remove(partial)
        if is_disk_full(err):
            raise DiskFull(path, max(written, _size(path)), known=path.exists()) from None
        raise


def write_text(path: Path, text: str) -> None:
    write_whole(path, lambda partial: partial.write_text(text))


def write_json(path: Path, value) -> None:
    """The one way a run's JSON files are written: whole, indented, NumPy numbers as plain
    numbers and anything else JSON lacks (paths, dates) as text."""
    text = json.dumps(value, indent=2, default=_plain) + "\n"
    write_text(path, text)


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def append_line(path: Path, line: str) -> None:
    """Appends one line in a single write. A write cut short (a full disk) is taken back, so
    the file ends on whole lines; a reader drops a last line without its newline (a power
    cut). No fsync: a row costs one write, on the thousandth epoch as on the first."""
    data = line.encode()
    handle = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(handle).st_size
        try:
            if os.write(handle, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as err:
            os.ftruncate(handle, size)
            if is_disk_full(err):
                raise DiskFull(Path(path), len(data), known=True) from None
            raise
    finally:
        os.close(handle)


def _sync(path: Path) -> None:
    if path.is_dir():
        for inner in sorted(path.rglob("*")):
            if inner.is_file():
                _sync(inner)
        _sync_folder(path)
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _sync_folder(folder: Path) -> None:
    """Makes a rename in the folder survive a power cut."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse to sync a folder; the rename still stands
        pass
    finally:
        os.close(handle)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


class Generation(NamedTuple):
    """One complete copy of a folder's contents, named by the epoch it holds."""

    epoch: int
    path: Path


def generations(folder: Path) -> list[Generation]:
    """The complete `epoch-NNNNNN` folders in `folder`, newest first (a `.partial` one is a
    save that never finished)."""
    found = []
    for path in Path(folder).glob("epoch-*"):
        number = path.name.removeprefix("epoch-")
        if path.is_dir() and number.isdigit():
            found.append(Generation(int(number), path))
    return sorted(found, reverse=True)


def generation_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"epoch-{epoch:06d}"


# ---------------------------------------------------------------- a full disk


class DiskFull(Exception):
    """A save ran out of space: one line naming the file and what it needed."""

    def __init__(self, path: Path, needed: int, known: bool = True):
        free = shutil.disk_usage(_existing(path)).free
        size = f"about {_bytes(needed)}" if known else f"more than {_bytes(needed)}"
        super().__init__(
            f"no space left on the device writing {path} (it needs {size}, {_bytes(free)} "
            "free there); what was saved before it is intact: free some space and rerun the "
            "same command to resume"
        )


def is_disk_full(err: BaseException) -> bool:
    """Out of space or over quota, whether Python, h5py or TensorFlow says it."""
    if isinstance(err, DiskFull) or (
        isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    ):
        return True
    text = str(err)
    return isinstance(err, Exception) and any(
        sign in text for sign in ("No space left on device", "Disk quota exceeded", "errno = 28")
    )


def disk_full_message(err: BaseException) -> str:
    """The one line for a full disk met outside write_whole (a picture, an event file)."""
    if isinstance(err, DiskFull):
        return str(err)
    return (
        f"no space left on the device ({reason(err)}); what was saved before it is intact: "
        "free some space and rerun the same command to resume"
    )


def reason(err: BaseException) -> str:
    """An error's type and first line, for one-line messages."""
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[0][:200]}"


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def _bytes(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


# ---------------------------------------------------------------- a graceful stop

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: int | None = None  # the first stop signal
_cut = True  # whether that signal cuts the work where it is


class Stopped(BaseException):
    """A stop signal, raised where the work may be cut short. Not an Exception, so no
    `except Exception` on the way (KerasTuner's trial runner has one) takes it for a failure.
    """

    def __init__(self, signum: int):
        self.name = signal.Signals(signum).name
        self.status = 128 + signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT
        super().__init__(self.name)


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT stop the work gracefully while the block runs.

    The first signal cuts the work where it is (Stopped) wherever that loses nothing; inside
    stop_deferred it waits for the next stop point instead (an epoch's end, a trial's end).
    A second signal ends the process at once. Signals are the main thread's only.
    """
    global _received, _cut
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _first_signal) for number in STOP_SIGNALS}
    _received, _cut = None, True
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _received, _cut = None, True


def _first_signal(signum, frame):
    global _received
    _received = signum
    for number in STOP_SIGNALS:
        signal.signal(number, _second_signal)
    name = signal.Signals(signum).name
    _say(f"{name}: stopping at the next safe point (send it again to stop at once)")
    if _cut:
        raise Stopped(signum)


def _second_signal(signum, frame):
    _say(
        f"{signal.Signals(signum).name} again: stopped at once; a rerun of the same command "
        "resumes from the last backup"
    )
    os._exit(128 + signum)


def _say(line: str) -> None:
    # Straight to the file descriptor: print() from a handler can land inside the main
    # thread's own print to the same stream, which Python refuses (a reentrant call).
    os.write(2, (line + "\n").encode())


def stop_requested() -> Stopped | None:
    """The stop signal received, if any, as the Stopped it raises."""
    return None if _received is None else Stopped(_received)


def stop_point() -> None:
    """Stops here (raises Stopped) when a stop signal came meanwhile."""
    if _received is not None:
        raise Stopped(_received)


def allow_cut(allowed: bool) -> None:
    """Whether a stop signal may cut the work where it is from now on; when allowed and one
    came meanwhile, stops here."""
    global _cut
    _cut = allowed
    if allowed:
        stop_point()


@contextlib.contextmanager
def stop_deferred():
    """Inside, a stop signal waits for a stop_point (or an allow_cut) instead of cutting
    the work where it is: saves, epoch ends and a run's last steps finish whole."""
    global _cut
    before, _cut = _cut, False
    try:
        yield
    finally:
        _cut = before
