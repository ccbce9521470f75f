"""compare: finished runs side by side, so experiments are read in one table, not by opening
folders. The config keys that differ between them, the test metric with its interval, the
best validation loss, epochs and time; runs/compare.md and runs/compare.png (the
validation-loss curves overlaid).

Rows are sorted by the best validation loss: the split a model is chosen on. The test
metric is there to report, not to choose by (choosing on it leaks the test set).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import config as config_lib
from . import runs
from .callbacks import read_history
from .config import Config
from .errors import UsageError
from .pictures import compare_figure
from .tables import markdown_table

# Keys that name or place a run rather than change it.
NOT_THE_EXPERIMENT = ("run.name", "run.dir", "run.overwrite", "run.extend", "compare.runs")


def run_folders(config: Config) -> list[Path]:
    """compare.runs under run.dir, or every finished run there (one holding metrics.json)."""
    parent = Path(config.run.dir)
    if config.compare.runs:
        folders = [parent / name for name in config.compare.runs]
        missing = [f for f in folders if not (f / "metrics.json").is_file()]
        if missing:
            raise UsageError(
                f"{missing[0]} is not a finished run (no metrics.json); train it first"
            )
    else:
        folders = sorted(p.parent for p in parent.glob("*/metrics.json"))
    if len(folders) < 2:
        raise UsageError(
            f"{parent} holds {len(folders)} finished run(s); compare needs two or more "
            "(train with different run.name=...)"
        )
    return folders


def saved_settings(run_dir: Path) -> dict:
    """A run's config.yaml as dotted keys over today's defaults (a key added since shows its
    default; one removed since is kept as saved)."""
    defaults = {key: value for key, value, _ in config_lib.iter_fields(Config())}
    saved = run_dir / "config.yaml"
    return {**defaults, **(config_lib.load_yaml(saved) if saved.is_file() else {})}


def read_run(run_dir: Path) -> dict:
    """What the table shows of one run, and its validation curve for the picture."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [row for row in read_history(run_dir / "history.csv") if "val_loss" in row]
    key = "accuracy" if metrics["task"] == "classification" else "r2"
    interval = metrics["model"].get(f"{key}_interval")
    return {
        "run": run_dir.name,
        "task": metrics["task"],
        "metric": key,
        "test": metrics["model"][key],
        "interval": (interval["low"], interval["high"]) if interval else None,
        "test_loss": metrics["model"]["loss"],
        "best_val_loss": min((row["val_loss"] for row in rows), default=None),
        "epochs": metrics.get("epochs"),
        "seconds": metrics.get("train_seconds"),
        "curve": [(row["epoch"], row["val_loss"]) for row in rows],
        "settings": saved_settings(run_dir),
    }


def differing_keys(entries: list[dict]) -> list[str]:
    keys = entries[0]["settings"]
    return [
        key
        for key in keys
        if key not in NOT_THE_EXPERIMENT
        and len({repr(e["settings"].get(key)) for e in entries}) > 1
    ]


def table_rows(entries: list[dict], keys: list[str]) -> list[dict]:
    rows = []
    for e in entries:
        test = f"{e['test']:.4f}"
        if e["interval"]:
            test += f" ({e['interval'][0]:.4f}-{e['interval'][1]:.4f})"
        rows.append(
            {
                "run": e["run"],
                **{key: e["settings"].get(key) for key in keys},
                f"test {e['metric']} (95%)": test,
                "test loss": e["test_loss"],
                "best val loss": e["best_val_loss"],
                "epochs": e["epochs"],
                "seconds": e["seconds"],
            }
        )
    return rows


def compare(config: Config) -> int:
    """`python -m <package> compare`: writes <run.dir>/compare.md and compare.png."""
    entries = [read_run(folder) for folder in run_folders(config)]
    tasks = sorted({e["task"] for e in entries})
    if len(tasks) > 1:
        raise UsageError(
            f"the runs mix tasks ({', '.join(tasks)}); choose runs of one with compare.runs=[...]"
        )
    entries.sort(key=lambda e: (e["best_val_loss"] is None, e["best_val_loss"] or 0.0))
    keys = differing_keys(entries)
    rows = table_rows(entries, keys)
    table = markdown_table(rows, list(rows[0]))
    parent = Path(config.run.dir)
    note = (
        f"{len(entries)} runs, sorted by the best validation loss (choose on validation; the "
        "test metric and its bootstrap interval are for reporting). Columns between `run` and "
        "the test metric: the config keys whose values differ."
        if keys
        else f"{len(entries)} runs of the same config."
    )
    runs.write_text(parent / "compare.md", f"# Runs compared\n\n{note}\n\n{table}\n")
    compare_figure(
        {e["run"]: e["curve"] for e in entries}, parent / "compare.png", "validation loss"
    )
    print(table)
    print(f"\n{note}\nwrote {parent / 'compare.md'} and compare.png")
    return 0
