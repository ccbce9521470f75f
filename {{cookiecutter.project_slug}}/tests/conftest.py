"""Shared fixtures. Configs start from the real defaults and are shrunk (epochs, data).

The tests find the package by its folder under src/ instead of naming it, so they
stay plain Python whatever name the project was given.
"""

import importlib
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# make test runs several workers; each takes GPU memory as it needs it instead of all of it.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = next(p.parent.name for p in sorted((ROOT / "src").glob("*/__main__.py")))
MODULES = (
    "errors",
    "runs",
    "config",
    "data",
    "images",
    "pipeline",
    "backbones",
    "models",
    "devices",
    "seeding",
    "environment",
    "callbacks",
    "pictures",
    "evaluate",
    "train",
    "cli",
    "inspection",
    "checks",
    "tune",
    "ensemble",
    "learning_curve",
    "compare",
    "tables",
    "predict",
)


@pytest.fixture(scope="session")
def project():
    """The package's modules by their short names: project.config, project.data, ..."""
    return types.SimpleNamespace(
        name=PACKAGE, **{name: importlib.import_module(f"{PACKAGE}.{name}") for name in MODULES}
    )


@pytest.fixture
def make_config(project, tmp_path):
    """The default config with runs under tmp_path, plus key=value overrides."""

    def make(*overrides, files=()):
        return project.config.build_config(files, [f"run.dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture
def run_cli(tmp_path):
    """Runs `python -m <package> ...` in a fresh process in tmp_path; returns the result."""
    import subprocess

    def run(*args, cwd=tmp_path):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        return subprocess.run(
            [sys.executable, "-m", PACKAGE, *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


@pytest.fixture
def image_folder(tmp_path):
    """Three classes of 12x10 RGB images, each with a class-specific bright band (learnable)
    and two blobs of its own at random places on strong noise, so that no two are near-copies
    (the band alone would make each class one template)."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:12, 0:10]
    root = tmp_path / "images"
    for c, name in enumerate(["cat", "dog", "owl"]):
        (root / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 160, size=(12, 10, 3), dtype=np.uint8)
            pixels[c * 4 : c * 4 + 4] = 250
            for _ in range(2):
                center, radius = rng.uniform(0, [12, 10]), rng.uniform(1.5, 3.5, 2)
                distance = ((rows - center[0]) / radius[0]) ** 2 + (
                    (columns - center[1]) / radius[1]
                ) ** 2
                pixels[distance <= 1] = rng.integers(100, 200, 3, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def csv_file(tmp_path):
    """A numeric and a categorical feature, string labels; the colour decides the kind."""
    rng = np.random.default_rng(0)
    lines = ["size,color,kind"]
    for i in range(60):
        color = ["red", "green", "blue"][i % 3]
        size = rng.normal(0, 1)
        kind = "apple" if color == "red" else "pear"
        lines.append(f"{size:.3f},{color},{kind}")
    path = tmp_path / "fruit.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
