"""Near-copies that exact hashing misses (R1.2): images whose small grey thumbnails correlate
almost perfectly, table rows alike to 3 significant digits; within a split and across splits.

near_duplicate_findings takes one loaded Data (arrays in memory, or image files with the
thumbnails inspect's file scan made) and returns its findings and a JSON-able summary for
inspect.json; draw_near_duplicates turns that summary into near_duplicates.png.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..data import Data, ImageFiles, Split
from .common import (
    IDENTIFIER_DISTINCT,
    MAX_PLOTTED_FEATURES,
    Finding,
    Look,
    counted,
    feature_names_of,
    sample_index,
    shared,
    short_id,
    splits_of,
)
from .splits import content_keys

# ---------------------------------------------------------------- thresholds

# Near-copies of images (R1.2). Each image becomes its grey 8x8 thumbnail (area averages),
# minus its mean and scaled to length 1, so brightness and contrast do not count: the dot
# product of two thumbnails is their correlation r, and sqrt(2 - 2r) their distance.
THUMBNAIL_SIDE = 8
# r this high is a near-copy whatever else the data holds: what is left after matching
# brightness and contrast is about 6% of the image's own variation (sqrt(1 - r^2)).
NEAR_IDENTICAL = 0.998
# Below this r, never a near-copy. Between the two, a pair must also pass a ratio test (as
# Lowe's for matching SIFT features): its distance at most NEAR_RATIO times the distance from
# either image to its NEIGHBOURS-th nearest one. Resemblance alone is not copying: in digits,
# 1,198 pairs of different images correlate at r >= 0.95 (one at 0.994), and none is closer
# than 0.35x its 10th neighbour; a copy with 3% noise, new contrast or JPEG quality 30 is.
NEAR_FLOOR = 0.95
NEAR_RATIO = 0.25
NEIGHBOURS = 10
# Shifted copies: pairs at r >= SHIFTED_FLOOR within SHIFTED_RATIO of the ratio test are
# compared again with one thumbnail's windows moved by a quarter of a cell each way, and
# judged on the best of the nine by the rule above.
SHIFTED_FLOOR = 0.85
SHIFTED_RATIO = 0.6
# Every pair of thumbnails is compared (matrix products in blocks, not a Python loop), which
# grows with the square of the count. Beyond this many images in all splits, a seeded sample
# of each split in proportion, which the finding states; a sample finds a copy pair only if
# it holds both, so check.sample (2,000) would be too few here.
MAX_NEAR_IMAGES = 20_000
# At most this many partners are kept per image (the most similar), so a burst of hundreds of
# near-identical frames cannot fill the memory; the groups still join up through them.
MAX_PARTNERS = 16
# Near-copies of table rows: every non-integer numeric column cut to this many
# significant digits; integer-valued and categorical columns compared exactly; identifier
# columns (integers, >= IDENTIFIER_DISTINCT distinct) left out, since a copied row with a
# new row id is just what to find.
SIGNIFICANT_DIGITS = 3
# Two grids half a step apart, each with its edges 0.045 of a step or more from every value
# kept to 4 significant digits (the 4th digit's tenths plus 0.255 or 0.755 never come nearer
# an integer), so a copy jittered by up to 4 units of the 5th digit stays in its cell.
GRID_OFFSETS = (0.255, 0.755)
DECADE_SHIFT = 0.1234  # decades from 1.33 x 10^k
PAIRS_SHOWN = 8  # pairs drawn in near_duplicates.png
PAIRS_KEPT = 20  # pairs kept in the summary (inspect.json)


def _default_name(split: str, example_id) -> str:
    return f"{split} #{example_id}"


def _chunks(split: Split, index: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The split's inputs (at `index`) a few megabytes at a time; image files decoded."""
    index = np.arange(len(split.y)) if index is None else index
    if isinstance(split.x, ImageFiles):
        from ..images import decoded_chunks

        yield from decoded_chunks(split.x.subset(index))
        return
    per_example = int(np.prod(split.x.shape[1:])) or 1
    step = max(1, (1 << 22) // per_example)
    for start in range(0, len(index), step):
        yield np.asarray(split.x[index[start : start + step]])


def _row_digests(rows: np.ndarray) -> list[str]:
    """A content hash per example, as splits.content_keys makes for arrays (-0.0 as 0.0)."""
    flat = np.ascontiguousarray(rows.reshape(len(rows), -1) + rows.dtype.type(0))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat]


# ---------------------------------------------------------------- near-copies (R1.2)


@functools.lru_cache(maxsize=64)
def _area_weights(size_in: int, size_out: int, shift: float = 0.0) -> np.ndarray:
    """(size_out, size_in): each output cell the average of the input pixels it covers
    (fractions at the edges), so any size maps to any other, up or down; `shift` moves every
    window by that many input pixels (what falls off the border is left out)."""
    edges = np.clip(np.linspace(0, size_in, size_out + 1) + shift, 0, size_in)
    pixels = np.arange(size_in)
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    weights = np.clip(overlap, 0, None)
    weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    weights.flags.writeable = False  # cached: one array serves every image of that size
    return weights


def _standardized(small: np.ndarray, scale: np.ndarray) -> np.ndarray:
    small = small - small.mean(axis=-1, keepdims=True)
    length = np.linalg.norm(small, axis=-1, keepdims=True)
    flat = length <= 1e-5 * scale  # a constant image, up to rounding
    return np.where(flat, 0.0, small / np.where(flat, 1.0, length)).astype(np.float32)


def thumbnails(images: np.ndarray, side: int = THUMBNAIL_SIDE, shifted: bool = False) -> np.ndarray:
    """(n, side * side) float32: each image grey, area-averaged to side x side, minus its mean,
    scaled to length 1; the dot product of two rows is the images' correlation. A flat image
    gives a row of zeros (correlation 0 with everything: constant_image reports it).

    With `shifted`, (n, 9, side * side): the same from windows moved by -1/4, 0 or +1/4 of a
    cell down and across (index 4 unmoved), one native pixel at 32x32."""
    x = np.asarray(images, dtype=np.float32)
    grey = x.mean(axis=-1) if x.ndim == 4 else x
    height, width = grey.shape[1:]
    scale = np.abs(grey).reshape(len(x), 1, -1).max(axis=-1, keepdims=True) * side + 1e-12
    moves = (-0.25, 0.0, 0.25) if shifted else (0.0,)
    across = [grey @ _area_weights(width, side, m * width / side).T for m in moves]
    small = np.stack(
        [
            (_area_weights(height, side, m * height / side) @ part).reshape(len(x), -1)
            for m in moves
            for part in across
        ],
        axis=1,
    )
    small = _standardized(small, scale)
    return small if shifted else small[:, 0]


def similar_image_pairs(
    t: np.ndarray, moved: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, r) with i < j: the rows of thumbnails `t` that are near-copies, at most
    MAX_PARTNERS per i, and their correlation r. With `moved` (thumbnails(shifted=True)),
    r is the best over moving j's windows by a quarter of a cell, so a copy shifted by that
    much (one pixel of a 32x32 image) still matches.

    Near-copies: r >= NEAR_IDENTICAL, or r >= NEAR_FLOOR and their distance at most
    NEAR_RATIO times the distance from either to its NEIGHBOURS-th nearest image."""
    from threadpoolctl import threadpool_limits

    n = len(t)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, np.zeros(0, dtype=np.float32)
    k = min(NEIGHBOURS, n - 1)
    block = max(1, (1 << 23) // n)  # 32 MB of float32 similarities at a time
    kth = np.empty(n, dtype=np.float32)
    found = []

    def distance(r):
        return np.sqrt(np.maximum(2.0 - 2.0 * r, 0.0))

    # Two BLAS threads on a busy 2-core machine can run 100x slower than one (spinning).
    with threadpool_limits(1):
        for start in range(0, n, block):
            similar = t[start : start + block] @ t.T
            similar[np.arange(len(similar)), np.arange(start, start + len(similar))] = -2.0
            kth[start : start + len(similar)] = np.partition(similar, n - k, axis=1)[:, n - k]
        reach = distance(kth)  # to the k-th nearest neighbour
        floor = NEAR_FLOOR if moved is None else SHIFTED_FLOOR
        ratio = NEAR_RATIO if moved is None else SHIFTED_RATIO
        for start in range(0, n, block):
            similar = t[start : start + block] @ t.T
            rows = np.arange(start, start + len(similar))
            # The ratio test as a least r per pair (distance <= d is r >= 1 - d^2 / 2), so
            # that only the pairs that pass are ever listed, however alike the images are.
            need = np.minimum(reach[rows][:, None], reach[None, :])
            need = 1.0 - (ratio * need) ** 2 / 2
            np.clip(need, floor, NEAR_IDENTICAL, out=need)
            need[np.arange(n)[None, :] <= rows[:, None]] = np.inf  # each pair once, i < j
            i, j = np.nonzero(similar >= need)
            if not len(i):
                continue
            r = similar[i, j]
            i = i + start
            if moved is not None:  # the best of the nine windows of j against i's own
                r = np.concatenate(
                    [
                        np.einsum("pd,pkd->pk", t[i[a : a + 8192]], moved[j[a : a + 8192]]).max(1)
                        for a in range(0, len(i), 8192)
                    ]
                    or [r]
                )
                near = (r >= NEAR_IDENTICAL) | (
                    (r >= NEAR_FLOOR) & (distance(r) <= NEAR_RATIO * np.minimum(reach[i], reach[j]))
                )
                i, j, r = i[near], j[near], r[near]
            order = np.lexsort((-r, i))
            i, j, r = i[order], j[order], r[order]
            first = np.r_[0, np.flatnonzero(np.diff(i)) + 1]
            rank = np.arange(len(i)) - np.repeat(first, np.diff(np.r_[first, len(i)]))
            keep = rank < MAX_PARTNERS
            found.append((i[keep], j[keep], r[keep]))
    if not found:
        return empty, empty, np.zeros(0, dtype=np.float32)
    return tuple(np.concatenate(part) for part in zip(*found, strict=True))


def _group_ids(rows: np.ndarray) -> np.ndarray:
    """One integer per row, equal for equal rows."""
    rows = np.ascontiguousarray(rows)
    return np.unique(
        rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(),
        return_inverse=True,
    )[1].ravel()


def identifier_columns(x: np.ndarray, categorical=()) -> list[int]:
    """Numeric columns of integers with at least IDENTIFIER_DISTINCT of them distinct."""
    found = []
    for j in range(x.shape[1]):
        if j in categorical:
            continue
        column = x[:, j]
        if np.all(column == np.round(column)):
            if len(np.unique(column)) >= IDENTIFIER_DISTINCT * len(column):
                found.append(j)
    return found


def grid_cells(values: np.ndarray, offset: float, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Each value's cell on a grid of `digits` significant digits, as (decade, cell) columns.

    Recorded data sit on the decimal grid: values kept to 4 digits end in 5 one time in ten,
    exactly on an edge of rounding to 3, where a copy jittered in the 5th digit falls either
    way. So the cells' edges sit off it: the grid is moved by `offset` of a step (GRID_OFFSETS
    keeps every 4-digit value clear of an edge), and the decades change at 1.33 x 10^k
    rather than at 10^k (which 1.0 or 100 sit on)."""
    magnitude = np.abs(values)
    decade = np.floor(np.log10(np.where(magnitude > 0, magnitude, 1.0)) - DECADE_SHIFT)
    step = 10.0 ** (decade - (digits - 1))
    cells = np.where(magnitude > 0, np.floor(values / step + offset), 0.0)
    return np.concatenate([decade, cells], axis=1)


def similar_row_pairs(x: np.ndarray, categorical=()) -> tuple[np.ndarray, np.ndarray]:
    """(i, j): rows of table `x` in one cell once every non-integer numeric column is cut to
    SIGNIFICANT_DIGITS significant digits, on either of two grids half a step apart (so a
    value next to an edge of one grid sits inside a cell of the other); integer and
    categorical columns compared as they are, identifier columns left out. Each row is paired
    with the first row of its group, which is enough to join the groups."""
    x = np.asarray(x, dtype=np.float64)
    skip = set(identifier_columns(x, categorical))
    kept = [j for j in range(x.shape[1]) if j not in skip]
    if not kept:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    x = x[:, kept]
    exact = np.array(
        [
            (kept[c] in categorical) or bool(np.all(x[:, c] == np.round(x[:, c])))
            for c in range(len(kept))
        ]
    )
    pairs_i, pairs_j = [], []
    for offset in GRID_OFFSETS:
        keys = np.concatenate([x[:, exact], grid_cells(x[:, ~exact], offset)], axis=1)
        groups = _group_ids(keys)
        first = np.full(groups.max() + 1, -1, dtype=np.int64)
        order = np.arange(len(groups))[::-1]
        first[groups[order]] = order  # the last write wins: the first row of each group
        leader = first[groups]
        other = leader != np.arange(len(groups))
        pairs_i.append(leader[other])
        pairs_j.append(np.flatnonzero(other))
    return np.concatenate(pairs_i), np.concatenate(pairs_j)


def _components(count: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _near_groups(
    data: Data,
    chosen: dict[str, np.ndarray],
    keys: dict[str, list[str]] | None,
    thumbs: dict[str, np.ndarray] | None,
) -> tuple[list[list[tuple[str, int]]], Callable[[tuple, tuple], float | None]]:
    """The groups of near-copies among the chosen examples of each split, each a list of
    (split, index), and a function giving two examples' similarity (images; None for rows)."""
    image = data.kind == "image"
    where, parts, digests = [], [], []
    for s, split in splits_of(data).items():
        where += [(s, int(i)) for i in chosen[s]]
        if image and thumbs is not None:
            parts.append(thumbs[s][chosen[s]])
            digests += [keys[s][i] for i in chosen[s]]
            continue
        for chunk in _chunks(split, chosen[s]):
            flat = chunk.reshape(len(chunk), -1)
            parts.append(thumbnails(chunk, shifted=True) if image else flat)
            if keys is None:
                digests += _row_digests(chunk)
        if keys is not None:
            digests += [keys[s][i] for i in chosen[s]]
    shape = (9, THUMBNAIL_SIDE**2) if image else (data.train.x.shape[1],)
    values = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=np.float32)
    # Exact copies are splits.py's: one representative of each, so they neither pair up here
    # nor crowd each other's neighbourhoods.
    _, first_of_key = np.unique(np.array(digests, dtype=object), return_index=True)
    representatives = np.sort(first_of_key)
    values = values[representatives]
    if image:
        i, j, _ = similar_image_pairs(values[:, 4], values)
    else:
        i, j = similar_row_pairs(values, set(data.categorical))
    labels = _components(len(representatives), i, j)
    sizes = np.bincount(labels)
    groups: dict[int, list[tuple[str, int]]] = {}
    for rep in np.flatnonzero(sizes[labels] > 1):
        groups.setdefault(int(labels[rep]), []).append(where[representatives[rep]])
    row_of = {where[k]: n for n, k in enumerate(representatives)}

    def similarity(a: tuple, b: tuple) -> float | None:
        if not image:
            return None
        a, b = row_of[a], row_of[b]  # the best of the moved windows, either way round
        return float(max((values[b] @ values[a, 4]).max(), (values[a] @ values[b, 4]).max()))

    return list(groups.values()), similarity


def near_duplicate_findings(
    data: Data,
    name: Callable[[str, object], str] = _default_name,
    keys: dict[str, list[str]] | None = None,
    limit: int = MAX_NEAR_IMAGES,
    seed: int = 0,
    thumbs: dict[str, np.ndarray] | None = None,
) -> tuple[list[Finding], dict]:
    """near_duplicates_across_splits (error), near_duplicates_within_split (warning): examples
    that are not exact copies (splits.py reports those) but nearly (R1.2).

    `name` names an example as the other findings do (a Namer); `keys` are the exact content
    keys per split of splits.content_keys (what counts as an exact copy there), else each
    example's own values are hashed. Images: every pair of thumbnails of at most `limit`
    images in all (a seeded sample of each split in proportion beyond that); rows: all of
    them, grouped by their rounded values (hashing, linear: no limit).

    `thumbs` (with `keys`): per split, thumbnails(pixels, shifted=True) of every example in
    split order, made where the files are decoded anyway (inspect's file scan), so that image
    files are not decoded a second time here."""
    if thumbs is not None and keys is None:
        raise ValueError("thumbs come with the exact content keys of the same decoding")
    splits = splits_of(data)
    rng = np.random.default_rng(seed)
    image = data.kind == "image"
    total = sum(len(split.y) for split in splits.values())
    sampled = image and total > limit
    chosen = {
        s: sample_index(
            len(split.y), math.ceil(len(split.y) * limit / total) if sampled else len(split.y), rng
        )
        for s, split in splits.items()
    }
    groups, similarity = _near_groups(data, chosen, keys, thumbs)

    def show(member: tuple[str, int]) -> str:
        return name(member[0], splits[member[0]].ids[member[1]])

    across, extra, within = [], Counter(), []
    for group in groups:
        per_split = Counter(s for s, _ in group)
        if len(per_split) > 1:
            first = {}
            for member in group:
                first.setdefault(member[0], member)
            a, *others = first.values()  # one from each split, the best match to show
            b = max(others, key=lambda m: similarity(a, m) or 0.0)
            across.append((a, b, group))
        for s, count in per_split.items():
            if count > 1:
                extra[s] += count - 1
                a, *others = [m for m in group if m[0] == s]
                within.append((a, max(others, key=lambda m: similarity(a, m) or 0.0), group))

    def described(a, b, group) -> str:
        close = f"r={similarity(a, b):.3f}" if image else f"alike to {SIGNIFICANT_DIGITS} digits"
        more = f", {len(group)} near-copies" if len(group) > 2 else ""
        return f"{show(a)} ~ {show(b)} ({close}{more})"

    how = (
        f"grey {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} thumbnails alike whatever the brightness and "
        f"contrast: r >= {NEAR_IDENTICAL:g}, or r >= {NEAR_FLOOR:g} and much closer to each "
        "other than to their other look-alikes"
        if image
        else f"rows alike to {SIGNIFICANT_DIGITS} significant digits in every column"
    )
    scope = (
        f"; a seeded sample of {sum(map(len, chosen.values()))} of {total} images was compared"
        if sampled
        else ""
    )
    findings = []
    if across:
        findings.append(
            Finding(
                "near_duplicates_across_splits",
                "error",
                f"{counted(len(across), 'example', 'appear')} in two or more splits as "
                f"near-copies, not exact ones ({how}), e.g. "
                + "; ".join(described(*item) for item in across[:3])
                + scope
                + "; validation and test scores then reward memory: look at "
                "near_duplicates.png, then drop the copies or group them so that each group "
                "lands in one split",
            )
        )
    if extra:
        counts = ", ".join(f"{s} {n}" for s, n in extra.items())
        findings.append(
            Finding(
                "near_duplicates_within_split",
                "warning",
                f"{sum(extra.values())} extra near-copies of examples inside one split "
                f"({counts}; {how}), e.g. "
                + "; ".join(described(*item) for item in within[:3])
                + scope
                + "; they weigh those examples more: remove them unless that is intended",
            )
        )

    def member(m: tuple[str, int]) -> dict:
        return {"split": m[0], "index": m[1], "id": str(splits[m[0]].ids[m[1]])}

    pairs = [
        {
            "kind": kind,
            "a": member(a),
            "b": member(b),
            "similarity": None if not image else round(similarity(a, b), 4),
            "group_size": len(group),
        }
        for kind, items in (("across", across), ("within", within))
        for a, b, group in items
    ][:PAIRS_KEPT]
    summary = {
        "across_splits": len(across),
        "within_split_extra_copies": int(sum(extra.values())),
        "compared": int(sum(map(len, chosen.values()))),
        "sampled": bool(sampled),
        "method": how,
        "pairs": pairs,
    }
    return findings, summary


def draw_near_duplicates(data: Data, summary: dict, folder: Path) -> list[str]:
    """near_duplicates.png: up to PAIRS_SHOWN pairs side by side with split and example, the
    cross-split ones first; images as pictures on one value range, rows as a heatmap of their
    standardized values. Nothing when there is no pair."""
    pairs = summary.get("pairs", [])[:PAIRS_SHOWN]
    if not pairs:
        return []
    splits = splits_of(data)
    path = folder / "near_duplicates.png"
    if data.kind == "image":
        from ..pictures import image_grid_array, save_array, to_uint8

        images, captions = [], []
        for number, pair in enumerate(pairs, 1):
            for side in ("a", "b"):
                where = pair[side]
                split = splits[where["split"]]
                x = (
                    split.x[np.array([where["index"]])]
                    if isinstance(split.x, ImageFiles)
                    else (split.x[where["index"] : where["index"] + 1])
                )
                images.append(np.asarray(x[0], dtype=np.float32))
                caption = f"{number}: {where['split']} {short_id(where['id'])}"
                if side == "b" and pair["similarity"] is not None:
                    caption += f" r={pair['similarity']:.3f}"
                captions.append(caption)
        low, high = data.value_range
        title = f"near-copies, {len(pairs)} pairs side by side (values {low:g}..{high:g})"
        save_array(
            image_grid_array(
                to_uint8(np.stack(images), (low, high)), captions, title, columns=2, cell=80
            ),
            path,
        )
        return [path.name]
    from ..pictures import table_heatmap_figure

    names = feature_names_of(data)
    shown = list(range(min(len(names), MAX_PLOTTED_FEATURES)))
    mean = data.train.x.mean(axis=0)
    std = np.where(data.train.x.std(axis=0) > 0, data.train.x.std(axis=0), 1.0)
    rows, labels = [], []
    for number, pair in enumerate(pairs, 1):
        for side in ("a", "b"):
            where = pair[side]
            rows.append((splits[where["split"]].x[where["index"]] - mean) / std)
            labels.append(f"{number}: {where['split']} {short_id(where['id'])}")
    table_heatmap_figure(
        np.stack(rows)[:, shown],
        labels,
        [names[j] for j in shown],
        path,
        f"near-copies: {len(pairs)} pairs of rows, one under the other",
    )
    return [path.name]


# ---------------------------------------------------------------- the findings inspect runs


@shared
def near_copies(look: Look) -> tuple[list[Finding], dict]:
    """near_duplicate_findings over every example; image files by the thumbnails and content
    hashes of the file scan, so no file is decoded twice."""
    data, scan = look.data, look.files.images
    keys = thumbs = None
    if scan is not None:
        keys = content_keys(data, scan)
        empty = np.zeros((0, 9, THUMBNAIL_SIDE**2), dtype=np.float32)
        thumbs = {
            s: np.stack([scan.thumbs[str(i)] for i in split.ids]) if len(split.ids) else empty
            for s, split in splits_of(data).items()
        }
    return near_duplicate_findings(data, look.name, keys=keys, seed=look.config.seed, thumbs=thumbs)


def near_duplicates_across_splits(look: Look) -> list[Finding]:
    """Not the same input but nearly, in two or more splits: scores reward memory (R1.2)."""
    return [f for f in near_copies(look)[0] if f.name == "near_duplicates_across_splits"]


def near_duplicates_within_split(look: Look) -> list[Finding]:
    """Near-copies inside one split: those examples weigh more (R1.2)."""
    return [f for f in near_copies(look)[0] if f.name == "near_duplicates_within_split"]
