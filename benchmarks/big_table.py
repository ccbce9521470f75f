"""How much memory a large CSV table costs `train`: peak RSS against one float32 copy of it.

Generates, once (cached under build/big_table/), a CSV of 1,000,000 rows x 50 columns:
47 numeric features, 2 text categories (columns 11 and 31, so the text path is taken in
the middle of a row) and a binary label learnable from both. Bakes the template with
its defaults and runs the baked package in fresh processes, PYTHONPATH=src:

1. Load alone: imports the package, TensorFlow and Keras (the RSS every run pays before
   it reads a byte), then `data.load(config)` (timed), then the training stream
   `train` builds (`make_dataset(..., shuffle=True)`) and its first batch.
2. `python -m <package> train data.source=<csv> data.label_column=label model.name=mlp
   train.epochs=1 run.dir=<tmp>`: wall time, the time until it prints its "data:" line
   (imports, load and the validation pipeline), and its peak RSS.

Peak RSS is each child's own ru_maxrss (os.wait4: the rusage of that one child, what
resource.getrusage(RUSAGE_CHILDREN) reports when it is the only child). "Copies" are the
peak above the load-alone process's RSS after its imports, in units of one float32 copy
of the table (rows x 50 x 4 bytes = 200 MB).

    .venv/bin/python benchmarks/big_table.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import results  # the sibling script: bake, package name, machine

COLUMNS = 50
TEXT_AT = (11, 31)  # the two text columns' positions among the 50
CITIES = [f"city_{i:02d}" for i in range(20)]
GRADES = ["A", "B", "C", "D", "E"]
CHUNK = 100_000
MB = 1e6

LOAD_ALONE = """
import json, resource, sys, time
import keras, tensorflow  # what train imports before it loads: the RSS every run pays
from {package} import config as config_lib, data as data_lib, pipeline

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

config = config_lib.build_config([], sys.argv[1:])
imported = peak()
started = time.perf_counter()
data = data_lib.load(config)
seconds = time.perf_counter() - started
loaded = peak()
stream = pipeline.make_dataset(data, data.train, config.train.batch_size, shuffle=True)
next(iter(stream))
print(json.dumps(dict(imported=imported, loaded=loaded, streamed=peak(), seconds=seconds,
                      train=len(data.train.y), categorical=data.categorical)))
"""


def make_csv(rows: int, folder: Path) -> Path:
    """The table, generated once per row count: seeded, so every run reads the same file."""
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


def run_child(command: list[str], cwd: Path, env: dict, mark: str = ""):
    """Runs a fresh process; returns (stdout, peak RSS bytes, wall s, s until a line starts
    with `mark`)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, marked = [], None
    for line in process.stdout:
        lines.append(line)
        if mark and marked is None and line.startswith(mark):
            marked = time.perf_counter() - started
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    output = "".join(lines)
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return output, usage.ru_maxrss * 1024, wall, marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    started = time.perf_counter()
    csv_path = make_csv(args.rows, results.TEMPLATE / "build" / "big_table")
    print(f"CSV: {csv_path} ({time.perf_counter() - started:.0f} s to have it)", file=sys.stderr)
    copy = args.rows * COLUMNS * 4
    with tempfile.TemporaryDirectory(prefix="recipe-big-table-") as work:
        work = Path(work)
        project = results.bake("tabular_classification", work)
        package = results.package_name(project)
        env = {
            **os.environ,
            "PYTHONPATH": str(project / "src"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        overrides = [
            f"data.source={csv_path}",
            "data.label_column=label",
            "model.name=mlp",
            "train.epochs=1",
            f"run.dir={work / 'runs'}",
        ]
        code = LOAD_ALONE.format(package=package)
        output, _, _, _ = run_child([sys.executable, "-c", code, *overrides], project, env)
        load = json.loads(output.strip().splitlines()[-1])
        output, peak, wall, ready = run_child(
            [sys.executable, "-m", package, "train", *overrides], project, env, mark="data: "
        )
        print(output, file=sys.stderr)

    def share(rss: float) -> str:
        return f"{rss / MB:,.0f} MB ({(rss - load['imported']) / copy:.1f} copies)"

    print(f"{date.today().isoformat()}, {results.machine()}")
    print(
        f"CSV: {args.rows:,} rows x {COLUMNS} columns ({len(TEXT_AT)} text), "
        f"{csv_path.stat().st_size / MB:,.0f} MB on disk; one float32 copy {copy / MB:,.0f} MB; "
        f"categorical columns {load['categorical']}"
    )
    print(f"RSS after importing the package, TensorFlow and Keras: {load['imported'] / MB:,.0f} MB")
    print(f"load alone: {load['seconds']:.1f} s, peak RSS {share(load['loaded'])}")
    print(f"  + the training stream's first batch: peak RSS {share(load['streamed'])}")
    print(
        f"train, 1 epoch of {load['train']:,} rows: {wall:.0f} s wall ({ready:.0f} s to its "
        f"'data:' line), peak RSS {share(peak)}"
    )


if __name__ == "__main__":
    main()
