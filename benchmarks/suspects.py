"""What inspect's suspects find, measured: planted near-copies and planted label flips, and
what the three suspects cost per `inspect` call.

Bakes the template with its defaults and imports the baked package in this process. Every
figure of docs/inspect.md's near_duplicates_across_splits, suspicious_labels and runtime
notes comes from this script:

1. Near-copies of images: in digits (70/15/15 split, seeded), COPIES test images replaced by
   changed copies of training images: noise of 3% of the value range, new contrast and
   brightness (0.7 x + 2), both; and, with every image drawn 4x larger (32x32), a copy
   shifted by one pixel. Recall: planted pairs reported; false pairs: reported pairs that
   were not planted.
2. Near-copies of rows: in breast_cancer, COPIES test rows replaced by training rows
   jittered in the 5th significant digit of every column.
3. Label flips: 5%, 10%, 20% of the digits labels and 10% of breast_cancer's moved to another
   class at random; the share of training labels flagged, precision (flagged ones that were
   flipped) and recall (flipped ones flagged); and the clean data's share.
4. Seconds: the three suspects (near-copies, label noise, identifier columns) on digits,
   breast_cancer, a 5,000 x 20 table, and 6,000 32x32 RGB images in memory; whole `inspect`
   calls on the default digits and on breast_cancer; the thumbnails the file scan makes
   per decoded 256x256 image, next to decoding it.

    .venv/bin/python benchmarks/suspects.py [--seeds 0 1 2] [--quick]

--quick: one seed, the smallest data; what the template's tests run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import results  # the sibling script: bake(), package_name(), machine()
from sklearn import datasets

COPIES = 30


def load_package():
    work = Path(tempfile.mkdtemp(prefix="recipe-suspects-"))
    with contextlib.redirect_stdout(io.StringIO()):
        project = results.bake("image_classification", work)
    sys.path.insert(0, str(project / "src"))
    name = results.package_name(project)
    modules = ("data", "config", "inspection", "inspection.near_duplicates", "inspection.suspects")
    pkg = {m: importlib.import_module(f"{name}.{m}") for m in modules}
    # Every pair and every flagged label in the summaries, not only the ones shown: what
    # recall and precision count.
    pkg["inspection.near_duplicates"].PAIRS_KEPT = 1 << 30
    pkg["inspection.suspects"].SUSPECTS_SHOWN = 1 << 30
    return project, pkg


def split(pkg, x, y, kind, seed, task="classification"):
    """x, y split 70/15/15 at random; each example's id is its row in x."""
    data = pkg["data"]
    order = np.random.default_rng(seed).permutation(len(y))
    parts = [
        data.Split(x[i], y[i], i) for i in np.split(order, [int(0.7 * len(y)), int(0.85 * len(y))])
    ]
    names = [str(c) for c in range(int(y.max()) + 1)] if task == "classification" else []
    return data.Data("bench", kind, task, *parts, class_names=names)


def plant(data, change, seed):
    """COPIES test examples replaced by changed copies of training ones: the planted id pairs."""
    rng = np.random.default_rng(seed + 100)
    sources = rng.choice(len(data.train.y), COPIES, replace=False)
    targets = rng.choice(len(data.test.y), COPIES, replace=False)
    for s, t in zip(sources, targets, strict=True):
        data.test.x[t] = change(data.train.x[s].astype(np.float64), rng)
    return {
        (str(data.train.ids[s]), str(data.test.ids[t]))
        for s, t in zip(sources, targets, strict=True)
    }


def near_copy_rows(pkg, seeds, quick):
    near = pkg["inspection.near_duplicates"]
    digits = datasets.load_digits()
    images = digits.images[..., None].astype(np.float32)
    large = np.kron(images, np.ones((1, 4, 4, 1), dtype=np.float32))
    cancer = datasets.load_breast_cancer()

    def jitter(row, rng):
        return row + rng.choice([-1, 1], row.shape) * 10.0 ** (
            np.floor(np.log10(np.abs(row) + 1e-30)) - 4
        )

    cases = {
        "digits, clean": (images, digits.target, "image", None),
        "digits, noise 3%": (
            images,
            digits.target,
            "image",
            lambda a, r: np.clip(a + r.normal(0, 0.48, a.shape), 0, 16),
        ),
        "digits, contrast 0.7x + 2": (images, digits.target, "image", lambda a, r: a * 0.7 + 2),
        "digits, both": (
            images,
            digits.target,
            "image",
            lambda a, r: np.clip(a * 0.7 + 2 + r.normal(0, 0.48, a.shape), 0, 16),
        ),
        "digits at 32x32, shifted 1 px": (
            large,
            digits.target,
            "image",
            lambda a, r: np.roll(a, 1, axis=1),
        ),
        "breast_cancer, clean": (cancer.data.astype(np.float32), cancer.target, "tabular", None),
        "breast_cancer, 5th digit jitter": (
            cancer.data.astype(np.float32),
            cancer.target,
            "tabular",
            jitter,
        ),
    }
    if quick:
        cases = {
            k: v
            for k, v in cases.items()
            if k in ("digits, noise 3%", "breast_cancer, 5th digit jitter")
        }
    print("| planted near-copies | seeds | recall | false pairs per run |")
    print("| --- | --- | --- | --- |")
    for label, (x, y, kind, change) in cases.items():
        recall, false = [], []
        for seed in seeds:
            data = split(pkg, x.copy(), y, kind, seed)
            planted = plant(data, change, seed) if change else set()
            summary = near.near_duplicate_findings(data, seed=seed)[1]
            found = {
                (p["a"]["id"], p["b"]["id"]) for p in summary["pairs"] if p["kind"] == "across"
            }
            if planted:
                recall.append(len(found & planted) / len(planted))
            false.append(len(found - planted) + summary["within_split_extra_copies"])
        shown = f"{statistics.mean(recall):.0%}" if recall else "-"
        print(f"| {label} | {len(seeds)} | {shown} | {statistics.mean(false):.1f} |", flush=True)


def label_rows(pkg, seeds, quick):
    suspects = pkg["inspection.suspects"]
    digits = datasets.load_digits()
    cancer = datasets.load_breast_cancer()
    wine = datasets.load_wine()
    images = digits.images[..., None].astype(np.float32)
    cases = [
        ("digits", images, digits.target, "image", 0.0),
        ("digits", images, digits.target, "image", 0.05),
        ("digits", images, digits.target, "image", 0.10),
        ("digits", images, digits.target, "image", 0.20),
        ("breast_cancer", cancer.data.astype(np.float32), cancer.target, "tabular", 0.0),
        ("breast_cancer", cancer.data.astype(np.float32), cancer.target, "tabular", 0.10),
        ("wine", wine.data.astype(np.float32), wine.target, "tabular", 0.0),
    ]
    if quick:
        cases = cases[2:3]
    print("\n| data | labels flipped | seeds | flagged share | warning | precision | recall |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, x, y, kind, rate in cases:
        share, warned, precision, recall = [], [], [], []
        for seed in seeds:
            rng = np.random.default_rng(seed + 200)
            labels = y.copy()
            flipped = rng.choice(len(y), int(rate * len(y)), replace=False)
            classes = int(y.max()) + 1
            labels[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
            data = split(pkg, x, labels, kind, seed)
            summary = suspects.label_noise_findings(data, seed=seed)[1]
            share.append(summary["share"])
            warned.append(summary["warned"])
            if rate:
                flagged = {int(s["id"]) for s in summary["suspects"]}
                truth = set(flipped.tolist()) & set(data.train.ids.tolist())
                precision.append(len(flagged & truth) / max(len(flagged), 1))
                recall.append(len(flagged & truth) / max(len(truth), 1))
        p = f"{statistics.mean(precision):.0%}" if precision else "-"
        r = f"{statistics.mean(recall):.0%}" if recall else "-"
        print(
            f"| {name} | {rate:.0%} | {len(seeds)} | {statistics.mean(share):.1%} | "
            f"{sum(warned)} of {len(seeds)} | {p} | {r} |",
            flush=True,
        )


def seconds(function, repeats=3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def time_rows(pkg, project, quick):
    near, suspects = pkg["inspection.near_duplicates"], pkg["inspection.suspects"]
    rng = np.random.default_rng(0)
    digits = datasets.load_digits()
    cancer = datasets.load_breast_cancer()
    table = rng.normal(0, 1, (5000, 20)).astype(np.float32)
    table_y = (table[:, :3].sum(axis=1) + rng.normal(0, 1, 5000) > 0).astype(np.int64)
    count = 600 if quick else 6000
    pictures = rng.integers(0, 256, (count, 32, 32, 3)).astype(np.uint8)
    cases = {
        "digits (1,797 8x8)": (digits.images[..., None].astype(np.float32), digits.target, "image"),
        "breast_cancer (569 x 30)": (cancer.data.astype(np.float32), cancer.target, "tabular"),
        "table 5,000 x 20": (table, table_y, "tabular"),
        f"{count:,} 32x32 RGB images": (pictures, rng.integers(0, 10, count), "image"),
    }
    if quick:
        cases = {k: v for k, v in cases.items() if "images" in k}
    print("\n| data | near-copies s | label noise s | identifier columns s |")
    print("| --- | --- | --- | --- |")
    for label, (x, y, kind) in cases.items():
        data = split(pkg, x, y, kind, 0)
        row = [
            seconds(lambda data=data: near.near_duplicate_findings(data)),
            seconds(lambda data=data: suspects.label_noise_findings(data)),
            seconds(lambda data=data: suspects.identifier_findings(data)),
        ]
        print(f"| {label} | " + " | ".join(f"{s:.2f}" for s in row) + " |", flush=True)

    from PIL import Image
    from threadpoolctl import threadpool_limits

    photo = Image.fromarray(rng.integers(0, 256, (256, 256, 3)).astype(np.uint8))
    encoded = io.BytesIO()
    photo.save(encoded, format="PNG")

    def decode():
        with Image.open(io.BytesIO(encoded.getvalue())) as image:
            image.load()

    with threadpool_limits(1):  # as the file scan runs it
        grey = np.asarray(photo.convert("L"), dtype=np.float32)[None]
        per_image = seconds(lambda: [near.thumbnails(grey, shifted=True) for _ in range(100)]) / 100
    per_decode = seconds(lambda: [decode() for _ in range(100)]) / 100
    print(
        f"\nthumbnails in the file scan: {per_image * 1e3:.2f} ms per 256x256 RGB image "
        f"(decoding its PNG: {per_decode * 1e3:.2f} ms)"
    )
    if quick:
        return
    config, inspection = pkg["config"], pkg["inspection"]
    for source in ("digits", "breast_cancer"):
        run = config.build_config((), [f"run.dir={project / 'runs'}", f"data.source={source}"])
        with contextlib.redirect_stdout(io.StringIO()):
            took = seconds(lambda run=run: inspection.inspect(run))
        print(f"whole inspect call, {source}: {took:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed, the smallest data")
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    print(f"machine: {results.machine()}")
    project, pkg = load_package()
    near_copy_rows(pkg, seeds, args.quick)
    label_rows(pkg, seeds, args.quick)
    time_rows(pkg, project, args.quick)


if __name__ == "__main__":
    main()
