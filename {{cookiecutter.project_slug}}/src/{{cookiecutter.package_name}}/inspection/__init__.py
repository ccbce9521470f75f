"""inspect: look hard at the data before any model code exists (R1).

Reads the configured data.source with the same train/val/test split that training
uses and reports what a person should know first: exact duplicates and examples
shared between splits, unreadable or odd files, missing and infinite values, class
balance or the target's distribution, per-feature scale, outliers and heavy tails,
single features that predict the label (a leak), and pictures of the examples.

Every finding has a stable snake_case name (docs/inspect.md says what each one
measures and what to do), a severity (error | warning | info) and a detail that
names the culprit. Any error makes the command exit with status 1.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import runs
from ..config import Config
from ..data import list_image_csv, list_image_folder, load, resolve_source
from ..errors import UsageError
from .common import PICTURES, SEVERITIES, Finding, Namer, plural, replace_non_finite, splits_of
from .features import feature_findings, image_findings, leak_findings
from .files import image_file_findings, scan_csv, scan_images
from .report import image_pictures, sample_index, table_pictures, write_report
from .splits import balance_findings, content_keys, duplicate_findings


def inspect(config: Config) -> int:
    """Studies config.data.source and writes runs/<name>/inspect/report.md and inspect.json.

    Returns 1 when any finding is an error, else 0. A bad config or a missing source is a
    UsageError raised before anything is written.
    """
    started = time.perf_counter()
    d = config.data
    where, _, location = resolve_source(d.source, d.path_column).partition(":")
    findings: list[Finding] = []
    scan = None
    if where in ("folder", "image_csv"):
        if where == "folder":
            paths, _ = list_image_folder(Path(location))
        else:
            paths, _ = list_image_csv(Path(location), d.path_column, d.label_column)
        scan = scan_images(paths)
        findings += image_file_findings(scan)
    elif where == "csv":
        findings += scan_csv(Path(location), d.label_column, d.missing)

    # Load what can be loaded: unreadable files left out, missing cells filled, infinities kept;
    # each of those was reported above, and the rest of the data still deserves a look.
    load_config = copy.deepcopy(config)
    load_config.data.missing = "mean"
    exclude = frozenset(path for path, _ in scan.broken) if scan else frozenset()
    try:
        # Infinities make load's own statistics NaN; inspect does not use them.
        with np.errstate(invalid="ignore", over="ignore"):
            data = load(load_config, exclude=exclude, finite_only=False)
    except UsageError:
        for finding in findings:  # what the files showed still helps explain why loading failed
            print(finding.line())
        raise
    # Image files: the pictures and the pixel statistics study a decoded sample of each split;
    # the files, duplicates and balance above and below cover every file.
    pictured, pictures_sampled = data, False
    if data.streamed:
        pictured, pictures_sampled = data.in_memory(config.check.sample, config.seed)
    else:
        replace_non_finite(data)
    name = Namer("folder" if where == "image_csv" else where)

    rng = np.random.default_rng(config.seed)
    limit = config.check.sample
    total = sum(len(split.y) for split in splits_of(data).values())
    train_sample = sample_index(len(data.train.y), limit, rng)
    val_sample = sample_index(len(data.val.y), limit, rng)
    sampled = total > limit
    if data.streamed and pictures_sampled:
        findings.append(
            Finding(
                "sampled_images",
                "info",
                f"the image statistics, outliers and pictures used a decoded sample of at most "
                f"{limit} images per split (check.sample); files, duplicates and balance cover "
                f"all {total}",
            )
        )

    result: dict = {
        "source": d.source,
        "kind": data.kind,
        "task": data.task,
        "examples": total,
        "splits": {s: len(split.y) for s, split in splits_of(data).items()},
    }
    more, result["duplicates"] = duplicate_findings(data, content_keys(data, scan), name)
    findings += more
    more, balance = balance_findings(data)
    findings += more
    result.update(balance)
    if data.kind == "image":
        more, image_stats = image_findings(pictured, name)
        findings += more
        findings.append(
            Finding(
                "leak_probe_skipped",
                "info",
                "the single-feature leak probe is skipped for images (one pixel "
                "is not a column to drop); duplicate_across_splits is the leak to watch here",
            )
        )
    else:
        more, result["features"] = feature_findings(data, name)
        findings += more
        more, result["leak_probe"] = leak_findings(data, train_sample, val_sample)
        findings += more

    # Only now, with the data read, does the run folder appear.
    folder = config.run_dir / "inspect"
    folder.mkdir(parents=True, exist_ok=True)
    for picture in PICTURES:
        (folder / picture).unlink(missing_ok=True)
    if data.kind == "image":
        result["pictures"], notes = image_pictures(pictured, folder, image_stats, rng)
        image_stats.pop("brightness_order")
        result["image_stats"] = image_stats
    else:
        result["pictures"], notes = table_pictures(data, folder, result["features"], train_sample)
    findings += [Finding("plot_capped", "info", note) for note in notes]
    if sampled and not data.streamed:  # image files: sampled_images says it
        findings.append(
            Finding(
                "sampled",
                "info",
                f"the leak probe and the plots used at most {limit} examples per split "
                f"of {total} (check.sample); duplicates, outliers and files were checked on "
                "all of them",
            )
        )

    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    result = {
        "findings": [asdict(f) for f in findings],
        "sampled": sampled,
        "sample_size": limit,
        **result,
    }
    if scan is not None:
        result["corrupt_files"] = [{"path": p, "reason": r} for p, r in scan.broken]
    result["seconds"] = round(time.perf_counter() - started, 2)
    write_report(folder / "report.md", result)
    text = json.dumps(result, indent=2, default=float) + "\n"
    runs.write_text(config.run_dir / "inspect.json", text)

    for finding in findings:
        print(finding.line())
    counts = Counter(f.severity for f in findings)
    print(
        f"inspect: {plural(counts['error'], 'error')}, {plural(counts['warning'], 'warning')}, "
        f"{plural(counts['info'], 'note')} in {result['seconds']:.1f}s; report: "
        f"{folder / 'report.md'}"
    )
    return 1 if counts["error"] else 0
