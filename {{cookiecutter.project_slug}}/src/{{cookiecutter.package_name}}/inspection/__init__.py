"""inspect: look hard at the data before any model code exists (R1).

Reads the configured data.source with the same train/val/test split that training
uses and reports what a person should know first: exact duplicates and examples
shared between splits, unreadable or odd files, missing and infinite values, class
balance or the target's distribution, per-feature scale, outliers and heavy tails,
single features that predict the label (a leak), and pictures of the examples; and the
suspects exact checks miss: near-copies, labels a quick model doubts, identifier columns.

Every finding is a small function named after the finding it reports (docs/inspect.md
says what each one measures and what to do) that returns its Findings, [] when there is
nothing to say; each Finding has a severity (error | warning | info) and a detail that
names the culprit. FILE_FINDINGS look at the files before loading (`Files`), DATA_FINDINGS
at the loaded data (`Look`); what several of them share is computed once (`shared`).
`files.py` holds the findings about files, `splits.py` those about duplicates and
balance, `near_duplicates.py` the near-copies, `suspects.py` the doubted labels and the
identifier columns, `features.py` those about the inputs, `report.py` the pictures, report.md
and the notes on what was sampled. Any error makes the command exit with status 1.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from .. import runs
from ..config import Config
from ..errors import UsageError
from .common import (
    PICTURES,
    SEVERITIES,
    DataFinding,
    FileFinding,
    Finding,
    Look,
    look_at,
    plural,
    splits_of,
)
from .features import (
    constant_feature,
    constant_image,
    feature_outliers,
    feature_table,
    heavy_tailed_feature,
    image_outliers,
    image_summary,
    leak_probe,
    leak_probe_skipped,
    needs_normalization,
    target_leak,
)
from .files import (
    corrupt_file,
    infinite_values,
    missing_values,
    mixed_type_column,
    read_files,
    unexpected_channels,
    unexpected_image_size,
)
from .near_duplicates import (
    near_copies,
    near_duplicates_across_splits,
    near_duplicates_within_split,
)
from .report import draw_pictures, plot_capped, sampled, sampled_images, write_report
from .splits import (
    balance_table,
    class_imbalance,
    conflicting_labels,
    duplicate_across_splits,
    duplicate_summary,
    duplicate_within_split,
    target_skew,
)
from .suspects import (
    identifier_column,
    identifiers,
    label_noise,
    suspicious_labels,
)

# In the order their lines appear within a severity (errors, then warnings, then notes).
FILE_FINDINGS: tuple[FileFinding, ...] = (
    corrupt_file,
    unexpected_image_size,
    unexpected_channels,
    missing_values,
    infinite_values,
    mixed_type_column,
)
DATA_FINDINGS: tuple[DataFinding, ...] = (
    sampled_images,
    duplicate_across_splits,
    duplicate_within_split,
    near_duplicates_across_splits,
    near_duplicates_within_split,
    conflicting_labels,
    suspicious_labels,
    class_imbalance,
    target_skew,
    constant_image,
    image_outliers,
    constant_feature,
    feature_outliers,
    heavy_tailed_feature,
    needs_normalization,
    leak_probe_skipped,
    target_leak,
    identifier_column,
    plot_capped,
    sampled,
)
ALL_FINDINGS = FILE_FINDINGS + DATA_FINDINGS


def inspect(config: Config) -> int:
    """Studies config.data.source and writes runs/<name>/inspect/report.md and inspect.json.

    Returns 1 when any finding is an error, else 0. A bad config or a missing source is a
    UsageError raised before anything is written.
    """
    started = time.perf_counter()
    files = read_files(config)
    findings = run_findings(FILE_FINDINGS, files)
    try:
        look = look_at(config, files)
    except UsageError:
        for finding in findings:  # what the files showed still helps explain why loading failed
            print(finding.line())
        raise
    findings += run_findings(DATA_FINDINGS, look)
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))

    # Only now, with the data read, does the run folder appear.
    folder = config.run_dir / "inspect"
    folder.mkdir(parents=True, exist_ok=True)
    for picture in PICTURES:
        (folder / picture).unlink(missing_ok=True)
    pictures = draw_pictures(look, folder)

    result = summary(look, findings, pictures)
    result["seconds"] = round(time.perf_counter() - started, 2)
    write_report(folder / "report.md", result)
    runs.write_json(config.run_dir / "inspect.json", result)

    for finding in findings:
        print(finding.line())
    counts = Counter(f.severity for f in findings)
    print(
        f"inspect: {plural(counts['error'], 'error')}, {plural(counts['warning'], 'warning')}, "
        f"{plural(counts['info'], 'note')} in {result['seconds']:.1f}s; report: "
        f"{folder / 'report.md'}"
    )
    return 1 if counts["error"] else 0


def run_findings(functions: Sequence, subject) -> list[Finding]:
    """Each function's findings, in the registry's order; each is named after its function."""
    findings = []
    for function in functions:
        for finding in function(subject):
            if finding.name != function.__name__:
                raise ValueError(
                    f"{function.__name__} returned a finding named {finding.name!r}; a finding "
                    "function is named after the finding it reports"
                )
            findings.append(finding)
    return findings


def summary(look: Look, findings: list[Finding], pictures: list[str]) -> dict:
    """inspect.json without the seconds: the findings, then the tables report.md shows."""
    data = look.data
    result = {
        "findings": [asdict(f) for f in findings],
        "sampled": look.sampled,
        "sample_size": look.config.check.sample,
        "source": look.config.data.source,
        "kind": data.kind,
        "task": data.task,
        "examples": look.total,
        "splits": {s: len(split.y) for s, split in splits_of(data).items()},
        "duplicates": duplicate_summary(look),
        "near_duplicates": near_copies(look)[1],
        **balance_table(look),
    }
    if data.task == "classification":
        result["label_noise"] = label_noise(look)[1]
    if data.kind == "image":
        result["pictures"] = pictures
        result["image_stats"] = image_summary(look)
    else:
        result["features"] = feature_table(look)
        result["leak_probe"] = leak_probe(look).scores
        result["identifier_columns"] = identifiers(look)[1]
        result["pictures"] = pictures
    if look.files.images is not None:
        result["corrupt_files"] = [{"path": p, "reason": r} for p, r in look.files.images.broken]
    return result
