"""learning-curve (R4.1 "get more data"): the same run on 25, 50 and 100% of the training
split, with the same validation and test splits, and a verdict on whether more data is
likely to help.

Each point is an ordinary run under runs/<run.name>/learning_curve/, so a killed curve
resumes and a finished point is reused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from . import config as config_lib
from . import runs
from .callbacks import read_history
from .config import Config
from .pictures import learning_curve_figure
from .train import train

FRACTIONS = (0.25, 0.5, 1.0)
# From half the data to all of it, the best validation loss falling by more than this share
# means the curve has not flattened yet: more data is likely to help.
STILL_FALLING = 0.02
# A flat curve whose training loss is within this share of its validation loss fits the
# training data no better than unseen data: the model, not the data, is the limit.
NO_GAP = 0.10


def point_config(config: Config, fraction: float) -> Config:
    """The run of one point: train.fraction of the training split; split, seed and model
    unchanged, so the points differ only in how much data they saw."""
    point = copy.deepcopy(config)
    point.train.fraction = fraction
    point.run.dir = str(config.run_dir / "learning_curve")
    point.run.name = f"fraction-{round(fraction * 100)}"
    # Every point shares the data and the model: one round of checks is enough.
    point.check.before_train = config.check.before_train and fraction == FRACTIONS[0]
    return point


def read_point(run_dir: Path, fraction: float) -> dict:
    """A finished point: its training examples, the epoch of its best validation loss with
    the training loss there, and its test metric."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    examples = json.loads((run_dir / "data.json").read_text())["examples"]
    rows = [row for row in read_history(run_dir / "history.csv") if row["epoch"] > 0]
    best = min(rows, key=lambda row: row["val_loss"])
    key = "accuracy" if metrics["task"] == "classification" else "r2"
    return {
        "fraction": fraction,
        "examples": examples["train"],
        "best_epoch": int(best["epoch"]),
        "train_loss": float(best["loss"]),
        "val_loss": float(best["val_loss"]),
        "test_loss": metrics["model"]["loss"],
        f"test_{key}": metrics["model"][key],
    }


def judge(points: list[dict]) -> tuple[str, str]:
    """(verdict, advice) from the last two points: still falling, flat at the model's limit,
    or flat with the training loss well below the validation loss."""
    half, full = points[-2], points[-1]
    fall = (half["val_loss"] - full["val_loss"]) / abs(half["val_loss"])
    change = (
        f"best validation loss {half['val_loss']:.4f} on {half['examples']:,} examples, "
        f"{full['val_loss']:.4f} on {full['examples']:,} ({-fall:+.1%})"
    )
    if fall > STILL_FALLING:
        return "more_data", (
            f"{change}: still falling with more data, so more data (or augmentation, R4.2) "
            "is likely to help"
        )
    gap = (full["val_loss"] - full["train_loss"]) / abs(full["val_loss"])
    if gap < NO_GAP:
        return "capacity", (
            f"{change}: flat, and the training loss ({full['train_loss']:.4f}) is as high: "
            "the model is capacity-bound; more data alone will not help, a larger model may "
            "(R4.12)"
        )
    return "flat", (
        f"{change}: flat, with the training loss ({full['train_loss']:.4f}) well below: more "
        "of the same data is unlikely to help; regularize (R4) or look for label noise (R1.3)"
    )


def learning_curve(config: Config, command: str = "") -> int:
    """`python -m <package> learning-curve`: trains the points that are not finished yet,
    then writes learning_curve.json and learning_curve.png into the run folder."""
    points = []
    for fraction in FRACTIONS:
        point = point_config(config, fraction)
        label = f"{fraction:.0%} of the training split"
        if (point.run_dir / "model.keras").is_file():
            config_lib.refuse_changes(
                point.run_dir / "config.yaml",
                point,
                "reuse",
                "choose another run.name for a different curve",
            )
            print(f"{label}: trained already in {point.run_dir}")
        else:
            print(f"\n== {label} -> {point.run_dir}", flush=True)
            status = train(point, command)
            if status:
                return status
        points.append(read_point(point.run_dir, fraction))

    verdict, advice = judge(points)
    run_dir = config.run_dir
    report = {"points": points, "verdict": verdict, "advice": advice}
    runs.write_json(run_dir / "learning_curve.json", report)
    learning_curve_figure(points, run_dir / "learning_curve.png", f"{run_dir.name}: {advice}")
    metric = next(key for key in points[0] if key.startswith("test_") and key != "test_loss")
    print("\nfraction  examples  best epoch  train loss  val loss  " + metric)
    for p in points:
        print(
            f"{p['fraction']:>8.0%}  {p['examples']:>8,}  {p['best_epoch']:>10}  "
            f"{p['train_loss']:>10.4f}  {p['val_loss']:>8.4f}  {p[metric]:.4f}"
        )
    print(f"learning curve ({verdict}): {advice}")
    print(f"wrote {run_dir / 'learning_curve.json'} and learning_curve.png")
    return 0
