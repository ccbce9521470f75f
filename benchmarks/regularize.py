"""What stage 4's options do, measured: each against the default on the whole test set, a
few seeds, in a baked project's `train` (a fresh process per run, as `make train`).

1. Class weights and oversampling on an imbalanced table: a seeded CSV of 4,000 rows, 95/5,
   the rare class shifted by 1.5 standard deviations on 2 of 8 features; the mlp with
   `train.class_weight=none` vs `balanced` vs `data.sampling=oversample`: balanced accuracy
   and the rare class's recall.
2. Huber vs MSE on a target with outliers: a seeded CSV of 3,000 rows, the target linear in
   8 features plus noise, 5% of the rows' targets replaced by outliers of 20 standard
   deviations; test MAE and R^2 on the rows without outliers (what a robust loss protects).
3. Label smoothing on digits (the image bake's default config, the convnet):
   `train.label_smoothing=0` vs `0.1`: test accuracy, loss, and expected calibration error.

    .venv/bin/python benchmarks/regularize.py [--seeds 0 1 2] [--only imbalance huber smoothing]

Prints the Markdown tables of the project's docs/regularize.md ("Measured") on stdout.
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

import numpy as np
import results  # the sibling script: bake(), package_name(), machine()


def imbalanced_table(path: Path) -> Path:
    rng = np.random.default_rng(2026)
    rare = rng.random(4000) < 0.05
    x = rng.normal(size=(4000, 8))
    x[rare, :2] += 1.5
    rows = [
        ",".join(f"{v:.4f}" for v in row) + f",{'rare' if r else 'common'}"
        for row, r in zip(x, rare, strict=True)
    ]
    path.write_text(",".join(f"x{i}" for i in range(8)) + ",label\n" + "\n".join(rows) + "\n")
    return path


def outlier_table(path: Path) -> tuple[Path, np.ndarray]:
    """The CSV and which of its rows hold an outlier target."""
    rng = np.random.default_rng(2027)
    x = rng.normal(size=(3000, 8))
    y = x @ rng.normal(size=8) + 0.5 * rng.normal(size=3000)
    outlier = rng.random(3000) < 0.05
    y[outlier] += rng.choice([-1, 1], outlier.sum()) * 20 * y.std()
    rows = [",".join(f"{v:.4f}" for v in row) + f",{t:.4f}" for row, t in zip(x, y, strict=True)]
    path.write_text(",".join(f"x{i}" for i in range(8)) + ",target\n" + "\n".join(rows) + "\n")
    return path, outlier


def train(project: Path, name: str, overrides: list[str]) -> Path:
    """`python -m <package> train` in a fresh process; the run folder."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", results.package_name(project), "train"]
    subprocess.run(
        [*command, *overrides, f"run.name={name}", "check.before_train=false"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    return project / "runs" / name


def mean_and_spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


# The imbalance corrections compared: the default, then each correction on its own.
IMBALANCE_SETTINGS = (
    "train.class_weight=none",
    "train.class_weight=balanced",
    "data.sampling=oversample",
)


def class_weights(project: Path, source: Path, seeds: list[int]) -> list[str]:
    lines = [
        "| setting | balanced accuracy | rare class recall | accuracy |",
        "| --- | --- | --- | --- |",
    ]
    for setting in IMBALANCE_SETTINGS:
        scores = {"balanced_accuracy": [], "recall": [], "accuracy": []}
        for seed in seeds:
            run = train(
                project,
                f"imbalance-{setting.rpartition('=')[2]}-{seed}",
                [f"data.source={source}", "model.name=mlp", setting, f"seed={seed}"],
            )
            metrics = json.loads((run / "metrics.json").read_text())
            scores["balanced_accuracy"].append(metrics["model"]["balanced_accuracy"])
            scores["accuracy"].append(metrics["model"]["accuracy"])
            scores["recall"].append(metrics["per_class"]["rare"]["recall"])
            print(f"  {setting} seed {seed}: {scores}", file=sys.stderr, flush=True)
        lines.append(
            f"| `{setting}` | {mean_and_spread(scores['balanced_accuracy'])} "
            f"| {mean_and_spread(scores['recall'])} | {mean_and_spread(scores['accuracy'])} |"
        )
    return lines


def robust_loss(project: Path, source: Path, outlier: np.ndarray, seeds: list[int]) -> list[str]:
    lines = [
        "| `train.loss` | test MAE, rows without outliers | test R^2, rows without outliers |",
        "| --- | --- | --- |",
    ]
    for loss in ("mse", "huber"):
        maes, r2s = [], []
        for seed in seeds:
            run = train(
                project,
                f"loss-{loss}-{seed}",
                [
                    f"data.source={source}",
                    "data.label_column=target",
                    "model.name=mlp",
                    f"train.loss={loss}",
                    f"seed={seed}",
                ],
            )
            rows = (run / "test_predictions.csv").read_text().splitlines()
            header = rows[0].split(",")
            cells = [dict(zip(header, row.split(","), strict=True)) for row in rows[1:]]
            clean = [c for c in cells if not outlier[int(c["id"]) - 2]]  # ids: CSV line numbers
            true = np.array([float(c["true"]) for c in clean])
            predicted = np.array([float(c["predicted"]) for c in clean])
            maes.append(float(np.mean(np.abs(true - predicted))))
            r2s.append(
                float(1 - np.sum((true - predicted) ** 2) / np.sum((true - true.mean()) ** 2))
            )
            print(
                f"  loss={loss} seed {seed}: MAE {maes[-1]:.4f} R^2 {r2s[-1]:.4f}",
                file=sys.stderr,
                flush=True,
            )
        lines.append(f"| `{loss}` | {mean_and_spread(maes)} | {mean_and_spread(r2s)} |")
    return lines


def label_smoothing(project: Path, seeds: list[int]) -> list[str]:
    lines = [
        "| `train.label_smoothing` | test accuracy | test loss | expected calibration error |",
        "| --- | --- | --- | --- |",
    ]
    for smoothing in ("0", "0.1"):
        accuracy, loss, ece = [], [], []
        for seed in seeds:
            run = train(
                project,
                f"smoothing-{smoothing}-{seed}",
                [
                    "--config",
                    "configs/default.yaml",
                    f"train.label_smoothing={smoothing}",
                    f"seed={seed}",
                ],
            )
            model = json.loads((run / "metrics.json").read_text())["model"]
            accuracy.append(model["accuracy"])
            loss.append(model["loss"])
            ece.append(model.get("ece", float("nan")))
            print(
                f"  label_smoothing={smoothing} seed {seed}: {model['accuracy']:.4f}",
                file=sys.stderr,
                flush=True,
            )
        lines.append(
            f"| {smoothing} | {mean_and_spread(accuracy)} | {mean_and_spread(loss)} "
            f"| {mean_and_spread(ece)} |"
        )
    return lines


PARTS = {
    "imbalance": "Class weights and oversampling, 95/5 table (4,000 rows, mlp)",
    "huber": "Huber vs MSE, target with 5% outliers of 20 std (3,000 rows, mlp)",
    "smoothing": "Label smoothing, digits (the image bake's convnet)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure these parts only"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    tables = {}
    with tempfile.TemporaryDirectory(prefix="recipe-regularize-") as work:
        work = Path(work)
        if "imbalance" in args.only or "huber" in args.only:
            project = results.bake("tabular_classification", work / "tables")
        if "imbalance" in args.only:
            print("1: class weights and oversampling", file=sys.stderr)
            source = imbalanced_table(work / "imbalanced.csv")
            tables["imbalance"] = class_weights(project, source, args.seeds)
        if "huber" in args.only:
            print("2: huber vs mse", file=sys.stderr)
            source, outlier = outlier_table(work / "outliers.csv")
            tables["huber"] = robust_loss(project, source, outlier, args.seeds)
        if "smoothing" in args.only:
            print("3: label smoothing", file=sys.stderr)
            images = results.bake("image_classification", work / "images")
            tables["smoothing"] = label_smoothing(images, args.seeds)
    print(f"{date.today().isoformat()}, {results.machine()}; seeds {args.seeds}, mean (min-max)")
    for part, lines in tables.items():
        print(f"\n{PARTS[part]}\n")
        print("\n".join(lines))
    print(f"\nthis script: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
