"""Distillation (R6.2, T16) measured: on digits, the image bake's default convnet as the
teacher, a small mlp as the student, trained on the teacher's softened probabilities and
alone on the labels, all scored on the whole test set, in a baked project's `train` and
`distill` (a fresh process each, as `make train` and `make distill`).

    .venv/bin/python benchmarks/distill.py [--seeds 0 1 2] [--epochs N]

Prints the Markdown table of the project's docs/tuning.md ("Squeeze") on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import results  # the sibling script: bake(), package_name(), machine()

# The student: one hidden layer of 32 units, no dropout (a few thousand weights against the
# convnet's hundreds of thousands).
STUDENT = ("model.name=mlp", "model.width=32", "model.depth=1", "model.dropout_rate=0")
ROWS = {
    "teacher": "teacher: convnet (the default config)",
    "student": "student (mlp, 32 units) distilled",
    "student_alone": "the same student on the labels alone",
}


def run(project: Path, command: str, overrides: list[str]) -> None:
    """`python -m <package> <command>` with the default config, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    package = results.package_name(project)
    subprocess.run(
        [sys.executable, "-m", package, command, "--config", "configs/default.yaml", *overrides],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )


def distill_once(project: Path, seed: int, epochs: list[str]) -> dict:
    """The teacher trained, then `distill`: the student's metrics.json 'distillation'."""
    common = [f"seed={seed}", "check.before_train=false", *epochs]
    run(project, "train", [*common, f"run.name=teacher-{seed}"])
    student = f"student-{seed}"
    overrides = [*common, *STUDENT, f"distill.teacher=teacher-{seed}", f"run.name={student}"]
    run(project, "distill", overrides)
    return json.loads((project / "runs" / student / "metrics.json").read_text())["distillation"]


def mean_and_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def table(reports: list[dict]) -> list[str]:
    lines = [
        "| model | test accuracy | 95% interval (first seed) | test loss |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in ROWS.items():
        accuracy = [report[key]["accuracy"] for report in reports]
        loss = [report[key]["loss"] for report in reports]
        interval = reports[0][key]["accuracy_interval"]
        lines.append(
            f"| {label} | {mean_and_spread(accuracy)} "
            f"| {interval['low']:.4f}-{interval['high']:.4f} | {mean_and_spread(loss)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--epochs", type=int, default=0, help="train.epochs of every run (0: the config's)"
    )
    args = parser.parse_args()
    epochs = [f"train.epochs={args.epochs}"] if args.epochs else []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recipe-distill-") as work:
        project = results.bake("image_classification", Path(work))
        reports = []
        for seed in args.seeds:
            reports.append(distill_once(project, seed, epochs))
            print(
                f"  seed {seed}: "
                + ", ".join(f"{key} {reports[-1][key]['accuracy']:.4f}" for key in ROWS),
                file=sys.stderr,
                flush=True,
            )
    first = reports[0]
    print(
        f"{date.today().isoformat()}, {results.machine()}; digits ({first['test_examples']} "
        f"test examples), temperature {first['temperature']:g}, alpha {first['alpha']:g}; "
        f"seeds {args.seeds}" + (", mean (min-max)" if len(args.seeds) > 1 else "")
    )
    print("\n".join(table(reports)))
    print(f"\nthis script: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
