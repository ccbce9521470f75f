"""Findings about the files themselves, before loading: unreadable, odd-sized or odd-channel
images; missing, infinite and mixed-type CSV cells."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..data import read_csv
from .common import (
    MAX_FILE_FINDINGS,
    MIXED_NUMERIC_SHARE,
    Finding,
    ImageScan,
    counted,
    line_numbers,
    listing,
    plural,
)

# ---------------------------------------------------------------- files, before loading


def scan_images(paths: list[Path]) -> ImageScan:
    """Decodes every image once; an unreadable file is recorded by path, not raised (R1.3)."""
    from PIL import Image

    scan = ImageScan()
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file opens fine and only fails here
                pixels = np.asarray(image)
                size, mode = (image.height, image.width), image.mode
        except Exception as err:  # any decoder failure is a finding about that file, not a crash
            message = str(err)
            reason = err.__class__.__name__ + (
                f": {message[:80]}" if message and str(path) not in message else ""
            )
            scan.broken.append((str(path), reason))
            continue
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
        digest.update(f"{pixels.shape}{pixels.dtype}".encode())
        scan.digests[str(path)] = digest.hexdigest()
        scan.sizes[str(path)] = size
        scan.modes[str(path)] = mode
    return scan


def image_file_findings(scan: ImageScan) -> list[Finding]:
    """corrupt_file, unexpected_image_size, unexpected_channels."""
    findings = [
        Finding(
            "corrupt_file", "error", f"{path} cannot be decoded ({reason}); delete or replace it"
        )
        for path, reason in scan.broken[:MAX_FILE_FINDINGS]
    ]
    if len(scan.broken) > MAX_FILE_FINDINGS:
        rest = len(scan.broken) - MAX_FILE_FINDINGS
        findings.append(
            Finding(
                "corrupt_file",
                "error",
                f"{rest} more unreadable files, listed in inspect.json (corrupt_files)",
            )
        )
    for name, values, shown in (
        ("unexpected_image_size", scan.sizes, lambda s: f"{s[0]}x{s[1]}"),
        ("unexpected_channels", scan.modes, lambda m: f"{m} ({_channels(m)})"),
    ):
        if not values:
            continue
        usual, count = Counter(values.values()).most_common(1)[0]
        odd = [(path, value) for path, value in values.items() if value != usual]
        if odd:
            what = "height x width" if name == "unexpected_image_size" else "mode"
            findings.append(
                Finding(
                    name,
                    "warning",
                    f"{counted(len(odd), 'image', 'differ')} from the usual {what} "
                    f"{shown(usual)} of "
                    f"{count} others: "
                    + listing(f"{path} is {shown(value)}" for path, value in odd)
                    + "; every image is converted and resized to data.image_size, so check "
                    + "that these are "
                    "the same kind of picture (not a thumbnail, scan or mask)",
                )
            )
    return findings


def _channels(mode: str) -> str:
    from PIL import Image

    count = Image.getmodebands(mode)
    return "palette" if mode == "P" else plural(count, "channel")


def scan_csv(path: Path, label_column: str, missing: str) -> list[Finding]:
    """missing_values, infinite_values, mixed_type_column, from the raw cells (load refuses)."""
    header, rows = read_csv(path)
    gaps, infinite, mixed = {}, {}, {}
    for j, name in enumerate(header):
        if name == label_column:
            continue
        values, text, numeric = np.full(len(rows), np.nan), [], 0
        for k, row in enumerate(rows):
            cell = row[j].strip()
            if cell:
                try:
                    values[k] = float(cell)
                    numeric += 1
                except ValueError:
                    text.append(cell)
        if text:
            if numeric >= MIXED_NUMERIC_SHARE * (numeric + len(text)):
                mixed[name] = Counter(text).most_common(3), len(text)
            continue  # a text column: its empty cells become the "unseen" category
        # Line numbers of the file, as data.load names rows (header = line 1).
        if np.isnan(values).any():
            gaps[name] = (np.flatnonzero(np.isnan(values)) + 2).tolist()
        if np.isinf(values).any():
            infinite[name] = (np.flatnonzero(np.isinf(values)) + 2).tolist()
    findings = []
    if gaps:
        where = "; ".join(f"{name!r}: {line_numbers(lines)}" for name, lines in gaps.items())
        if missing == "error":
            findings.append(
                Finding(
                    "missing_values",
                    "error",
                    f"empty or NaN cells in {where}; data.missing=error refuses them: fix the "
                    "file, "
                    "or set data.missing=mean to fill them with the training mean",
                )
            )
        else:
            findings.append(
                Finding(
                    "missing_values",
                    "info",
                    f"empty or NaN cells in {where}; filled with the training mean "
                    "(data.missing=mean)",
                )
            )
    if infinite:
        where = "; ".join(f"{name!r}: {line_numbers(lines)}" for name, lines in infinite.items())
        findings.append(
            Finding(
                "infinite_values",
                "error",
                f"infinite values in {where}; nothing fills them and one inf turns the loss "
                "into NaN: "
                "fix the file (a division by zero upstream?) or drop the column",
            )
        )
    for name, (common, count) in mixed.items():
        shown = ", ".join(f"{value!r} x{n}" for value, n in common)
        findings.append(
            Finding(
                "mixed_type_column",
                "warning",
                f"column {name!r} is numeric except {plural(count, 'cell')} ({shown}), so the "
                "whole "
                "column is "
                "read as categories; empty those cells (then data.missing applies) or fix them",
            )
        )
    return findings
