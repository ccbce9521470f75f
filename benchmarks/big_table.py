"""A large CSV table: the memory and time `train` needs for 1,000,000 rows x 50 columns.

The issue: such a table must train without holding more than ~2 copies of it. Generates,
once (kept under build/big_table/), a seeded CSV of ROWS rows x 50 columns: 47 numeric
features, 2 text categories (columns 11 and 31, so text is met mid-row) and a binary
label learnable from both; and the same table with SMALL_ROWS rows, whose run is what
`train` costs without the data. Bakes the template with its defaults and runs, for each
table, in a fresh process,

    python -m <package> train data.source=<csv> data.label_column=label model.name=mlp
        train.epochs=1 run.dir=<tmp>

through this script's `--drive` mode, which imports the baked package, marks where
`train`'s load and `fit` begin and end, samples its own RSS every 10 ms and runs the CLI
as `python -m <package>` does. Reported: peak RSS of the whole process (os.wait4's
rusage of that one child: RUSAGE_CHILDREN is the same number when it is the only child)
and of each phase (load; the rest up to `fit`: pipelines, model, recipe checks; `fit`;
saving and the test evaluation after it), the RSS after the imports alone, the load's
time and the wall time. "Copies" are RSS above the small table's run, in float32
copies of the large table (ROWS x 50 x 4 bytes = 200 MB).

    .venv/bin/python benchmarks/big_table.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import results  # the sibling script: the template's path, package name, machine

BUILD = results.TEMPLATE / "build" / "big_table"
ROWS = 1_000_000
SMALL_ROWS = 10_000
COLUMNS = 50
TEXT_AT = (11, 31)  # the two text columns' positions among the 50
CITIES = [f"city_{i:02d}" for i in range(20)]
GRADES = ["A", "B", "C", "D", "E"]
CHUNK = 100_000  # rows generated at a time
OVERRIDES = ("data.label_column=label", "model.name=mlp", "train.epochs=1")
PHASES = ("load", "to fit", "fit", "after")
MB = 1e6


def make_csv(rows: int, folder: Path = BUILD) -> Path:
    """The table with `rows` rows, generated once: seeded, so every run reads the same file."""
    import numpy as np

    path = folder / f"table_{rows}.csv"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    numeric = [j for j in range(COLUMNS - 1) if j not in TEXT_AT]
    weights = rng.normal(0, 1, size=len(numeric)) * (rng.random(len(numeric)) < 0.3)
    city_effect, grade_effect = rng.normal(0, 1, len(CITIES)), np.linspace(-1, 1, len(GRADES))
    header = [f"f{j}" for j in range(COLUMNS - 1)] + ["label"]
    formats = ["%s" if j in TEXT_AT else "%.4f" for j in range(COLUMNS - 1)] + ["%d"]
    partial = path.with_suffix(".partial")
    with partial.open("w") as handle:
        handle.write(",".join(header) + "\n")
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            values = rng.normal(0, 1, size=(n, len(numeric)))
            city, grade = rng.integers(0, len(CITIES), n), rng.integers(0, len(GRADES), n)
            logit = values @ weights + city_effect[city] + grade_effect[grade]
            label = (logit + rng.logistic(0, 0.5, n) > 0).astype(int)
            table = np.empty((n, COLUMNS), dtype=object)
            table[:, numeric] = values
            table[:, TEXT_AT[0]] = np.array(CITIES)[city]
            table[:, TEXT_AT[1]] = np.array(GRADES)[grade]
            table[:, -1] = label
            np.savetxt(handle, table, fmt=formats, delimiter=",")
    partial.rename(path)  # a run killed while writing leaves no half file behind
    return path


# ---------------------------------------------------------------- the child: --drive


def rss_now() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drive(package: str, arguments: list[str]) -> None:
    """Runs the CLI's `train` in this process, as `python -m <package>` does, and prints a
    JSON line: the RSS after the imports and each phase's seconds and peak RSS."""
    import importlib

    import keras

    cli = importlib.import_module(f"{package}.cli")
    train = importlib.import_module(f"{package}.train")
    imported = rss_now()
    samples, marks = [], []

    def sample():
        while True:
            samples.append((time.perf_counter(), rss_now()))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()

    def marked(function, begins: str, ends: str):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            marks.append((begins, time.perf_counter()))
            try:
                return function(*args, **kwargs)
            finally:
                marks.append((ends, time.perf_counter()))

        return wrapper

    # Phases: load | to fit (pipelines, model, checks) | fit | after (saving, evaluation).
    train.load = marked(train.load, "load", "to fit")
    keras.Model.fit = marked(keras.Model.fit, "fit", "after")
    marks.append(("started", time.perf_counter()))
    status = cli.main(["train", *arguments])
    marks.append(("end", time.perf_counter()))
    phases = {}
    for (name, start), (_, end) in itertools.pairwise(marks):
        if name in PHASES:  # the first of each: a backbone's second fit is not split off
            peak = max((rss for t, rss in samples if start <= t <= end), default=0)
            phases.setdefault(name, (end - start, peak))
    print(json.dumps({"status": status, "imported": imported, "phases": phases}))


# ---------------------------------------------------------------- the parent


def run_train(project: Path, csv_path: Path, run_dir: Path) -> dict:
    """`train` on the table in a fresh process: its report, peak RSS and wall seconds."""
    package = results.package_name(project)
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--drive", package]
    command += [f"data.source={csv_path}", *OVERRIDES, f"run.dir={run_dir}"]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, cwd=project, env=env, stdout=output, stderr=output)
        # wait4: this child's own rusage (ru_maxrss in kilobytes on Linux).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    print(text, file=sys.stderr)
    report = json.loads(text.strip().splitlines()[-1]) if not process.returncode else {}
    if process.returncode or report["status"]:
        sys.exit(f"train on {csv_path} failed; its output is above")
    return {**report, "peak": usage.ru_maxrss * 1024, "wall": wall}


def main() -> None:
    if sys.argv[1:2] == ["--drive"]:
        drive(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()

    started = time.perf_counter()
    tables = {rows: make_csv(rows) for rows in (SMALL_ROWS, args.rows)}
    print(f"tables ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    copy = args.rows * COLUMNS * 4
    with tempfile.TemporaryDirectory(prefix="recipe-big-table-") as work:
        work = Path(work)
        subprocess.run(
            [Path(sys.executable).with_name("cookiecutter"), "--no-input", "-o", work, "."],
            cwd=results.TEMPLATE,
            check=True,
            stdout=sys.stderr,
        )
        project = next(work.iterdir())
        runs = {
            rows: run_train(project, path, work / f"runs{rows}") for rows, path in tables.items()
        }

    small = runs[SMALL_ROWS]

    def phase_peaks(run: dict) -> list[float]:
        return [run["phases"].get(name, (0.0, 0.0))[1] for name in PHASES]

    def rss(value: float, reference: float) -> str:
        return f"{value / MB:,.0f} MB ({(value - reference) / copy:+.1f})"

    print(f"{date.today().isoformat()}, {results.machine()}")
    print(
        f"{args.rows:,} rows x {COLUMNS} columns ({len(TEXT_AT)} of text): "
        f"{tables[args.rows].stat().st_size / MB:,.0f} MB on disk, one float32 copy "
        f"{copy / MB:,.0f} MB; RSS after the imports {small['imported'] / MB:,.0f} MB. "
        f"In brackets: RSS above the {SMALL_ROWS:,}-row run's, in float32 copies.\n"
    )
    print("| rows | load | wall | peak RSS | " + " | ".join(PHASES) + " |")
    print("| --- " * (4 + len(PHASES)) + "|")
    for rows, run in runs.items():
        phases = zip(phase_peaks(run), phase_peaks(small), strict=True)
        print(
            f"| {rows:,} | {run['phases']['load'][0]:.1f} s | {run['wall']:.0f} s "
            f"| **{rss(run['peak'], small['peak'])}** | "
            + " | ".join(rss(peak, reference) for peak, reference in phases)
            + " |"
        )


if __name__ == "__main__":
    main()
