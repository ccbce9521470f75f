"""Findings about the files themselves, before loading: unreadable, odd-sized or odd-channel
images; missing, infinite and mixed-type CSV cells. Each takes the Files that read_files found."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import Config
from ..data import list_image_csv, list_image_folder, read_csv, resolve_source
from .common import (
    MAX_FILE_FINDINGS,
    MIXED_NUMERIC_SHARE,
    CsvCells,
    Files,
    Finding,
    ImageScan,
    counted,
    line_numbers,
    listing,
    plural,
)
from .near_duplicates import thumbnails


def read_files(config: Config) -> Files:
    """Reads the source's files before loading it: every image file decoded once, or a CSV
    table's raw cells. An embedded dataset has no files to read."""
    d = config.data
    where, _, location = resolve_source(d.source, d.path_column).partition(":")
    files = Files(config, where)
    if where == "folder":
        files.images = scan_images(list_image_folder(Path(location))[0])
    elif where == "image_csv":
        files.images = scan_images(list_image_csv(Path(location), d.path_column, d.label_column)[0])
    elif where == "csv":
        files.cells = scan_csv(Path(location), d.label_column)
    return files


def scan_images(paths: list[Path]) -> ImageScan:
    """Decodes every image once; an unreadable file is recorded by path, not raised (R1.3).
    Each file's hash (exact copies) and grey thumbnails (near-copies) come from that one
    decoding."""
    from threadpoolctl import threadpool_limits

    scan = ImageScan()
    # One BLAS thread: the thumbnails' small matrix products run several times slower on two
    # threads of a busy machine.
    with threadpool_limits(1):
        for path in paths:
            _scan_image(path, scan)
    return scan


def _scan_image(path: Path, scan: ImageScan) -> None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file opens fine and only fails here
            pixels = np.asarray(image)
            size, mode = (image.height, image.width), image.mode
            grey = np.asarray(image.convert("L"), dtype=np.float32)
            thumbs = thumbnails(grey[None], shifted=True)[0]
    except Exception as err:  # any decoder failure is a finding about that file, not a crash
        message = str(err)
        reason = err.__class__.__name__ + (
            f": {message[:80]}" if message and str(path) not in message else ""
        )
        scan.broken.append((str(path), reason))
        return
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
    digest.update(f"{pixels.shape}{pixels.dtype}".encode())
    scan.digests[str(path)] = digest.hexdigest()
    scan.sizes[str(path)] = size
    scan.modes[str(path)] = mode
    scan.thumbs[str(path)] = thumbs


def scan_csv(path: Path, label_column: str) -> CsvCells:
    """Gaps, infinities and text among numbers, per feature column, from the raw cells."""
    header, rows = read_csv(path)
    cells = CsvCells()
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
                cells.mixed[name] = Counter(text).most_common(3), len(text)
            continue  # a text column: its empty cells become the "unseen" category
        # Line numbers of the file, as data.load names rows (header = line 1).
        if np.isnan(values).any():
            cells.gaps[name] = (np.flatnonzero(np.isnan(values)) + 2).tolist()
        if np.isinf(values).any():
            cells.infinite[name] = (np.flatnonzero(np.isinf(values)) + 2).tolist()
    return cells


# ---------------------------------------------------------------- image files


def corrupt_file(files: Files) -> list[Finding]:
    """An image file Pillow cannot decode: one error per file, the first 20 by path (R1.3)."""
    if files.images is None:
        return []
    broken = files.images.broken
    findings = [
        Finding(
            "corrupt_file", "error", f"{path} cannot be decoded ({reason}); delete or replace it"
        )
        for path, reason in broken[:MAX_FILE_FINDINGS]
    ]
    if len(broken) > MAX_FILE_FINDINGS:
        rest = len(broken) - MAX_FILE_FINDINGS
        findings.append(
            Finding(
                "corrupt_file",
                "error",
                f"{rest} more unreadable files, listed in inspect.json (corrupt_files)",
            )
        )
    return findings


def unexpected_image_size(files: Files) -> list[Finding]:
    """Images whose height x width differs from the most common one (R1.3)."""
    if files.images is None:
        return []
    return _unusual(
        "unexpected_image_size", files.images.sizes, "height x width", lambda s: f"{s[0]}x{s[1]}"
    )


def unexpected_channels(files: Files) -> list[Finding]:
    """Images whose Pillow mode (channels) differs from the most common one (R1.3)."""
    if files.images is None:
        return []
    return _unusual(
        "unexpected_channels", files.images.modes, "mode", lambda m: f"{m} ({_channels(m)})"
    )


def _unusual(name: str, values: dict, what: str, shown) -> list[Finding]:
    """One warning naming every image whose value differs from the most common value."""
    if not values:
        return []
    usual, count = Counter(values.values()).most_common(1)[0]
    odd = [(path, value) for path, value in values.items() if value != usual]
    if not odd:
        return []
    detail = (
        f"{counted(len(odd), 'image', 'differ')} from the usual {what} {shown(usual)} of "
        f"{count} others: "
        + listing(f"{path} is {shown(value)}" for path, value in odd)
        + "; every image is converted and resized to data.image_size, so check that these are "
        "the same kind of picture (not a thumbnail, scan or mask)"
    )
    return [Finding(name, "warning", detail)]


def _channels(mode: str) -> str:
    from PIL import Image

    count = Image.getmodebands(mode)
    return "palette" if mode == "P" else plural(count, "channel")


# ---------------------------------------------------------------- CSV cells


def missing_values(files: Files) -> list[Finding]:
    """Empty or NaN cells in a numeric column: an error unless data.missing=mean fills them."""
    if files.cells is None or not files.cells.gaps:
        return []
    gaps = files.cells.gaps
    where = "; ".join(f"{name!r}: {line_numbers(lines)}" for name, lines in gaps.items())
    if files.config.data.missing == "error":
        detail = (
            f"empty or NaN cells in {where}; data.missing=error refuses them: fix the file, "
            "or set data.missing=mean to fill them with the training mean"
        )
        return [Finding("missing_values", "error", detail)]
    detail = f"empty or NaN cells in {where}; filled with the training mean (data.missing=mean)"
    return [Finding("missing_values", "info", detail)]


def infinite_values(files: Files) -> list[Finding]:
    """inf or -inf cells: nothing fills them, and one turns the loss into NaN."""
    if files.cells is None or not files.cells.infinite:
        return []
    infinite = files.cells.infinite
    where = "; ".join(f"{name!r}: {line_numbers(lines)}" for name, lines in infinite.items())
    detail = (
        f"infinite values in {where}; nothing fills them and one inf turns the loss into NaN: "
        "fix the file (a division by zero upstream?) or drop the column"
    )
    return [Finding("infinite_values", "error", detail)]


def mixed_type_column(files: Files) -> list[Finding]:
    """A column of >= 80% numbers with some text (NA codes, typos): read as categories."""
    if files.cells is None:
        return []
    findings = []
    for name, (common, count) in files.cells.mixed.items():
        shown = ", ".join(f"{value!r} x{n}" for value, n in common)
        detail = (
            f"column {name!r} is numeric except {plural(count, 'cell')} ({shown}), so the whole "
            "column is read as categories; empty those cells (then data.missing applies) or fix "
            "them"
        )
        findings.append(Finding("mixed_type_column", "warning", detail))
    return findings
