"""What a run ran on: library versions, devices, and the git commit of the code
(`<run>/environment.json`), so a result can be traced to the software that produced it.
Commands other than train that write into a run folder record theirs beside it, as
`environment-<command>.json`: evaluate shares its folder with the training it scores."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from . import runs

GIT_SECONDS = 10  # a git that hangs (a network file system) must not hold up training


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def devices() -> list[str]:
    """The devices the backend sees, GPUs with their model name: 'CPU:0', 'GPU:0 (NVIDIA ...)'."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [f"{d.platform.upper()}:{d.id} ({d.device_kind})" for d in jax.devices()]
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices():
        name = device.name.removeprefix("/physical_device:")
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            name += f" ({details.get('device_name', 'unknown model')})"
        found.append(name)
    return found


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, timeout=GIT_SECONDS, check=True
    )
    return done.stdout.strip()


def git_state(folder: Path) -> dict:
    """The commit of the git repository holding `folder`, and whether tracked files differ from
    it; empty when the folder is in no repository, or git is missing or fails."""
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_uncommitted_changes": bool(changed)}


def describe_environment(folder: Path) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "keras_tuner": _version("keras-tuner"),
        "numpy": np.__version__,
        "devices": devices(),
        **git_state(folder),
    }


def write_environment(run_dir: Path, folder: Path | None = None, command: str = "train") -> Path:
    """environment.json (train) or environment-<command>.json in the run folder; `folder`
    (default: this package's) names the code whose git commit is recorded."""
    about = describe_environment(folder or Path(__file__).resolve().parent)
    path = run_dir / ("environment.json" if command == "train" else f"environment-{command}.json")
    runs.write_json(path, about)
    return path
