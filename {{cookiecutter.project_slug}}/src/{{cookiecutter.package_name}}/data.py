"""Loads a data source into seeded train/val/test splits: the records every command shares.

Sources: scikit-learn's embedded datasets (offline), a folder of images with one
sub-folder per class, a CSV listing image files with their labels, or a CSV table.
Image files stay on disk: a split holds their paths (ImageFiles) and pipeline.py
decodes them batch by batch, so memory and the time to the first step do not grow
with the number of images. Input normalization (and the regression target scale)
come from the training split only, from a seeded sample of it for image files; the
saved model applies them itself (models.with_preprocessing), so what the network sees
at test time is preprocessed exactly like what it trained on (U6).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .config import EMBEDDED_SOURCES, Config, DataConfig
from .errors import UsageError
from .images import decode_files, decoded_chunks

# The formats TensorFlow decodes in the input pipeline (tf.io.decode_image).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
# Integer labels with at most this many distinct values are taken as classes.
MAX_INFERRED_CLASSES = 20
# Cells of a CSV table parsed at a time, the only ones held as Python strings at once: a
# few hundred rows, which stay in the CPU's caches while they are turned into columns.
CSV_CHUNK_CELLS = 1 << 14


@dataclass
class ImageFiles:
    """A split's images as files. Indexing decodes just the files asked for, resized to
    `size`, as uint8 (a quarter of float32's memory), through the training pipeline's own
    decoder; `subset` selects files without decoding any."""

    paths: np.ndarray  # str
    size: tuple[int, int]
    channels: int

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.size, self.channels)

    def subset(self, index) -> ImageFiles:
        return ImageFiles(self.paths[index], self.size, self.channels)

    def __getitem__(self, index) -> np.ndarray:
        return decode_files(self.subset(index))


@dataclass
class Split:
    # Raw inputs (before normalization): float32, uint8 pixels decoded from files, or the files.
    x: np.ndarray | ImageFiles
    y: np.ndarray  # class indices (int32) or targets in their own units (float32)
    ids: np.ndarray  # where each example came from: file path or row number

    def subset(self, index) -> Split:
        """The examples at `index`; image files stay files."""
        x = self.x.subset(index) if isinstance(self.x, ImageFiles) else self.x[index]
        return Split(x, self.y[index], self.ids[index])


@dataclass
class Data:
    source: str
    kind: str  # "image" | "tabular"
    task: str  # "classification" | "regression"
    train: Split
    val: Split
    test: Split
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)
    # Tabular columns holding category indices: column -> vocabulary size (index 0 = unseen).
    categorical: dict[int, int] = field(default_factory=dict)
    # Their vocabularies, index i + 1 for entry i, so predict can encode new rows.
    vocabularies: dict[int, list[str]] = field(default_factory=dict)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    # Per-class weights of the training loss (train.class_weight), or None.
    class_weight: np.ndarray | None = None
    # How training batches draw the classes (data.sampling): none, or oversample (equally often).
    sampling: str = "none"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def streamed(self) -> bool:
        """Image files read from disk by the pipeline, rather than arrays in memory."""
        return isinstance(self.train.x, ImageFiles)

    @property
    def value_range(self) -> tuple[float, float]:
        """The raw inputs' range, for drawing them: 0..255 for image files."""
        if self.streamed:
            return 0.0, 255.0
        return float(self.train.x.min()), float(self.train.x.max())

    @property
    def num_outputs(self) -> int:
        return len(self.class_names) if self.task == "classification" else 1

    @property
    def class_priors(self) -> np.ndarray:
        counts = np.bincount(self.train.y, minlength=self.num_outputs).astype(np.float64)
        return np.maximum(counts, 1) / max(counts.sum(), 1)

    @property
    def training_priors(self) -> np.ndarray:
        """The class priors as the training loss sees them: the split's, uniform when the
        batches draw every class equally often (data.sampling=oversample), then reweighted by
        the class weights (uniform when balanced). The one place both corrections meet."""
        if self.sampling == "oversample":
            priors = np.full(self.num_outputs, 1.0 / self.num_outputs)
        else:
            priors = self.class_priors
        if self.class_weight is not None:
            priors = priors * self.class_weight / np.sum(priors * self.class_weight)
        return priors

    @property
    def output_bias(self) -> np.ndarray:
        """Initial output bias (R2.5): the log of the training priors (training_priors), or the
        (scaled) training target mean: the constant output that minimizes the training loss
        at init."""
        if self.task == "classification":
            return np.log(self.training_priors).astype(np.float32)
        return np.array([scale_targets(self, self.train.y).mean()], dtype=np.float32)

    def normalize(self, x):
        """The one input transform, for numpy arrays and tensors alike."""
        return (x - self.mean) / self.std

    def in_memory(self, limit: int, seed: int, test: bool = True) -> tuple[Data, bool]:
        """At most `limit` examples of each split (seeded; the test split left as it is unless
        `test`) with image files decoded, and whether that is fewer than all: what inspect and
        check study."""
        rng = np.random.default_rng(seed)
        sampled = False

        def take(split: Split) -> Split:
            nonlocal sampled
            if len(split.y) > limit:
                sampled = True
                split = split.subset(np.sort(rng.choice(len(split.y), limit, replace=False)))
            if isinstance(split.x, ImageFiles):
                split = Split(split.x[:], split.y, split.ids)
            return split

        copy = dataclasses.replace(self, train=take(self.train), val=take(self.val))
        if test:
            copy.test = take(self.test)
        return copy, sampled


def scale_targets(data: Data, y):
    """Regression targets are trained on in standard units; classes pass through."""
    if data.task == "regression":
        return ((y - data.target_mean) / data.target_std).astype(np.float32)
    return y


def unscale_targets(data: Data, y):
    if data.task == "regression":
        return y * data.target_std + data.target_mean
    return y


# ---------------------------------------------------------------- reading sources


@dataclass(frozen=True)
class Source:
    """A data source as read, before labels become classes or targets and before the split."""

    kind: str  # "image" | "tabular"
    x: np.ndarray | ImageFiles | _Table  # every example's inputs
    labels: np.ndarray  # as read: class indices, label strings or numbers
    class_names: list[str]  # when labels are class indices; else [] (the labels name them)
    feature_names: list[str]  # a table's columns; [] for images
    ids: np.ndarray  # where each example came from: file path, CSV line or row number


def _read(d: DataConfig, exclude: frozenset[str] = frozenset()) -> Source:
    """Reads data.source; `exclude`: image files inspect reported as unreadable, left out."""
    where, _, name = resolve_source(d.source, d.path_column).partition(":")
    if where == "embedded":
        return _embedded(name)
    if where == "folder":
        paths, labels = list_image_folder(Path(name))
        return _image_files(paths, labels, d.image_size, exclude)
    if where == "image_csv":
        paths, labels = list_image_csv(Path(name), d.path_column, d.label_column)
        return _image_files(paths, labels, d.image_size, exclude)
    return _csv(Path(name), d.label_column)


def _embedded(name: str) -> Source:
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        return Source(
            kind="image",
            x=bunch.images.astype(np.float32)[..., None],  # (n, 8, 8, 1), values 0..16
            labels=bunch.target,
            class_names=[str(c) for c in bunch.target_names],
            feature_names=[],
            ids=_row_numbers(len(bunch.target)),
        )
    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        return Source(
            kind="tabular",
            x=bunch.data,
            labels=bunch.target,
            class_names=list(bunch.target_names),
            feature_names=list(bunch.feature_names),
            ids=_row_numbers(len(bunch.target)),
        )
    bunch = datasets.load_diabetes(scaled=False)
    return Source(
        kind="tabular",
        x=bunch.data,
        labels=bunch.target.astype(np.float32),
        class_names=[],
        feature_names=list(bunch.feature_names),
        ids=_row_numbers(len(bunch.target)),
    )


def _row_numbers(count: int) -> np.ndarray:
    return np.array([str(i) for i in range(count)])


def list_image_folder(folder: Path) -> tuple[list[Path], list[str]]:
    """Image files and their class names (the sub-folder each one sits in)."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(
            f"image folder {folder} has no class sub-folders (expected {folder}/<class>/*.png)"
        )
    paths, labels = [], []
    for name in classes:
        files = sorted(
            p
            for p in (folder / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        paths += files
        labels += [name] * len(files)
    if not paths:
        raise UsageError(
            f"image folder {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths, labels


def list_image_csv(path: Path, path_column: str, label_column: str):
    """The image files a CSV lists (paths relative to the CSV) and their labels."""
    header, rows = read_csv(path)
    for column in (path_column, label_column):
        if column not in header:
            raise UsageError(
                f"CSV {path} has no column {column!r} (columns: {', '.join(header)}); "
                "set data.path_column and data.label_column"
            )
    at, label_at = header.index(path_column), header.index(label_column)
    paths = [path.parent / row[at].strip() for row in rows]
    labels = [row[label_at].strip() for row in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(
            f"CSV {path} lists {len(missing)} files that do not exist, first {missing[0]}"
        )
    odd = [p for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    if odd:
        raise UsageError(
            f"CSV {path} lists {len(odd)} files that are not "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} images, first {odd[0]}"
        )
    if any(not v for v in labels):
        raise UsageError(f"CSV {path} has rows with an empty {label_column!r} label")
    return paths, labels


def image_channels(paths: list[Path]) -> int:
    """Grayscale when every sampled image is grayscale, else RGB."""
    from PIL import Image

    for path in paths[:: max(1, len(paths) // 50)]:
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "1", "I", "I;16", "LA"):
                    return 3
        except OSError:
            continue  # inspect reports it by name; the pipeline skips it
    return 1


def _image_files(paths: list[Path], labels: list[str], size, exclude=frozenset()) -> Source:
    if exclude:  # files inspect already reported as unreadable
        keep = [i for i, p in enumerate(paths) if str(p) not in exclude]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    names = np.array([str(p) for p in paths])
    x = ImageFiles(names, tuple(size), image_channels(paths))
    return Source("image", x, np.array(labels), class_names=[], feature_names=[], ids=names)


def _csv_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """A CSV's header (cells stripped) and its data rows, read lazily and each checked against
    the header as it comes. Rows of nothing but whitespace are skipped."""

    def nonblank():
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                for row in reader:
                    if any(cell.strip() for cell in row):
                        yield row
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read CSV {path}: {err.__class__.__name__}") from None
        except csv.Error as err:  # a NUL byte, a field over the csv module's size limit
            raise UsageError(f"CSV {path} line {reader.line_num}: {err}") from None

    rows = nonblank()
    header, first = next(rows, None), next(rows, None)
    if first is None:
        raise UsageError(f"CSV {path} has no data rows (a header line and at least one row)")
    header = [h.strip() for h in header]

    def checked():
        # Numbered as load numbers the rows (header = 1): blank rows are not counted.
        for number, row in enumerate(itertools.chain([first], rows), start=2):
            if len(row) != len(header):
                raise UsageError(
                    f"CSV {path} line {number} has {len(row)} fields; the header has {len(header)}"
                )
            yield row

    return header, checked()


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header and rows, every cell a Python string: for the small files of image paths
    and of rows to predict. A table to train on is read column by column (_csv)."""
    header, rows = _csv_rows(path)
    return header, list(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(cells: tuple[str, ...]) -> tuple[np.ndarray | None, bool]:
    """A column's cells as float32 (NaN where a cell is empty), or None when a cell is text;
    and whether any cell is not empty."""
    try:  # float() ignores the spaces around a number as strip() does
        return np.fromiter(map(float, cells), np.float32, len(cells)), True
    except ValueError:
        pass
    stripped = [cell.strip() for cell in cells]
    try:
        values = np.array([float(v) if v else np.nan for v in stripped], dtype=np.float32)
    except ValueError:
        return None, True
    return values, any(stripped)


@dataclass
class _Table:
    """A CSV's feature columns as read: `numbers`, (rows, columns) float32, holds each cell's
    number, NaN where it is empty; a column with any other text holds instead, in
    `indices[j]`, each cell's index into `strings[j]`, its distinct stripped cells ("" first).
    Indexing selects rows."""

    numbers: np.ndarray
    indices: dict[int, np.ndarray]
    strings: dict[int, list[str]]

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index) -> _Table:
        indices = {j: column[index] for j, column in self.indices.items()}
        return _Table(self.numbers[index], indices, self.strings)


def _chunks(rows: Iterator[list[str]], width: int) -> Iterator[list[tuple[str, ...]]]:
    """The rows CSV_CHUNK_CELLS cells at a time, as one tuple of cells per column."""
    while chunk := list(itertools.islice(rows, max(16, CSV_CHUNK_CELLS // width))):
        yield list(zip(*chunk, strict=True))  # every row is the header's width (checked)


def _text_indices(lookup: dict[str, int], cells: tuple[str, ...]) -> np.ndarray:
    """Each cell's index into a text column's distinct stripped cells, new ones added."""
    found = (lookup.setdefault(cell.strip(), len(lookup)) for cell in cells)
    return np.fromiter(found, np.int32, len(cells))


def _room(numbers: np.ndarray, count: int, cells: list[tuple[str, ...]], size: int) -> np.ndarray:
    """`numbers` with room for the rows in `cells` after the first `count`: as many rows as a
    file of `size` bytes of such rows holds, and a margin. Pages past the last row are never
    written, so they take no memory."""
    chars = sum(len(cell) + 1 for column in cells for cell in column)  # + a comma or newline
    rows = len(cells[0])
    guess = int(1.25 * size / chars * rows) + rows
    grown = np.empty((max(guess, 2 * len(numbers), count + rows), numbers.shape[1]), np.float32)
    grown[:count] = numbers[:count]
    return grown


def _csv(path: Path, label_column: str) -> Source:
    header, rows = _csv_rows(path)
    if label_column not in header:
        collections.deque(rows, maxlen=0)  # a ragged row is reported first
        raise UsageError(
            f"CSV {path} has no column {label_column!r} (columns: {', '.join(header)}); "
            "set data.label_column"
        )
    label_at = header.index(label_column)
    features = [i for i in range(len(header)) if i != label_at]
    # Read a chunk of rows at a time into float32 columns: only a chunk's cells are ever
    # Python strings. A column turns to text at its first cell that is neither a number
    # nor empty; text after a number is read again from the first row, as the numbers' own
    # strings are gone ("1" and "1.0" are different categories). Inspect reports those.
    numbers = np.empty((0, len(features)), np.float32)
    lookups, indices, mixed = {}, {}, set()
    had_number = np.zeros(len(features), bool)
    labels, count, size = [], 0, path.stat().st_size
    for cells in _chunks(rows, len(header)):
        if count + len(cells[0]) > len(numbers):
            numbers = _room(numbers, count, cells, size)
        block = numbers[count : count + len(cells[0])]
        labels.append(np.array([cell.strip() for cell in cells[label_at]]))
        for j, i in enumerate(features):
            if j in lookups:
                indices[j].append(_text_indices(lookups[j], cells[i]))
            elif j not in mixed:
                values, filled = _numbers(cells[i])
                if values is not None:
                    block[:, j] = values
                    had_number[j] |= filled
                elif had_number[j]:
                    mixed.add(j)
                else:  # every earlier cell was empty: "" is all there is to keep of them
                    lookups[j] = {"": 0}
                    indices[j] = [np.zeros(count, np.int32), _text_indices(lookups[j], cells[i])]
        count += len(cells[0])
    labels = np.concatenate(labels)
    if (labels == "").any():
        raise UsageError(f"CSV {path} has rows with an empty {label_column!r} label")
    if not features:
        raise UsageError(f"CSV {path} has no feature columns besides {label_column!r}")
    if mixed:
        lookups.update({j: {"": 0} for j in mixed})
        indices.update({j: [] for j in mixed})
        for cells in _chunks(_csv_rows(path)[1], len(header)):
            for j in mixed:
                indices[j].append(_text_indices(lookups[j], cells[features[j]]))
    # Text stays indices into strings here: categorical vocabularies come from the training
    # split only.
    table = _Table(
        numbers[:count],
        {j: np.concatenate(parts) for j, parts in indices.items()},
        {j: list(lookup) for j, lookup in lookups.items()},
    )
    names = [header[i] for i in features]
    ids = np.arange(2, count + 2).astype(f"<U{len(str(count + 1))}")
    return Source("tabular", table, labels, class_names=[], feature_names=names, ids=ids)


# ---------------------------------------------------------------- labels and splits


def _labels_to_task(raw: np.ndarray, forced: str, class_names: list[str]):
    """Returns (task, y, class_names): classes as indices, or float targets."""
    text = [str(v) for v in raw]
    numeric = all(_is_number(v) for v in text)
    values = np.array([float(v) for v in text]) if numeric else None
    task = forced
    if task == "auto":
        if len(class_names):
            task = "classification"
        elif (
            numeric
            and np.all(values == np.round(values))
            and len(np.unique(values)) <= MAX_INFERRED_CLASSES
        ):
            task = "classification"
        else:
            task = "regression" if numeric else "classification"
    if task == "regression":
        if not numeric:
            bad = next(v for v in text if not _is_number(v))
            raise UsageError(f"data.task=regression needs numeric labels; found {bad!r}")
        return task, values.astype(np.float32), []
    if len(class_names):
        return task, np.asarray(raw, dtype=np.int32), list(class_names)
    # Sort numerically when the labels are numbers so class 10 comes after class 9.
    unique = sorted(set(text), key=(lambda v: float(v)) if numeric else str)
    index = {name: i for i, name in enumerate(unique)}
    return task, np.array([index[v] for v in text], dtype=np.int32), unique


def _check_classes(y: np.ndarray, class_names: list[str]) -> None:
    counts = np.bincount(y, minlength=len(class_names))
    if (counts > 0).sum() < 2:
        raise UsageError(
            f"only one class ({class_names[int(np.argmax(counts))]!r}) in the labels; "
            "classification needs at least two"
        )
    rare = [class_names[i] for i, c in enumerate(counts) if 0 < c < 3]
    if rare:
        raise UsageError(
            f"class {rare[0]!r} has fewer than 3 examples; a stratified "
            "train/val/test split needs at least 3 per class"
        )


def split_indices(y: np.ndarray, task: str, val_fraction: float, test_fraction: float, seed: int):
    """Seeded train/val/test indices, stratified by class for classification."""
    index = np.arange(len(y))
    rest, test = _split(index, y, task, seed, "data.test_fraction", test_size=test_fraction)
    val_size = val_fraction / (1 - test_fraction)
    train, val = _split(rest, y, task, seed, "data.val_fraction", test_size=val_size)
    return train, val, test


def _split(index: np.ndarray, y: np.ndarray, task: str, seed: int, key: str, **size):
    """train_test_split of index, stratified for classification; a split that cannot be made
    (fewer examples on one side than classes, a class of one example) is one line naming
    the key that sets its size."""
    stratify = y[index] if task == "classification" else None
    try:
        return train_test_split(index, stratify=stratify, random_state=seed, **size)
    except ValueError as err:
        classes = len(np.unique(y[index]))
        raise UsageError(
            f"cannot make a stratified split of {len(index)} examples of {classes} classes "
            f"({err}); add examples of the rarest classes or change {key}"
        ) from None


def training_fraction(train, y, task: str, fraction: float, seed: int) -> np.ndarray:
    """The first `fraction` of the training indices in one seeded order, of each class for
    classification: a smaller fraction is a subset of a larger one, so the points of a
    learning curve differ only in how much data they saw."""
    order = train[np.random.default_rng(seed).permutation(len(train))]
    groups = [order]
    if task == "classification":
        groups = [order[y[order] == c] for c in np.unique(y[train])]
    keep = [group[: max(1, round(fraction * len(group)))] for group in groups]
    return np.sort(np.concatenate(keep))


def _encode_table(table: _Table, train_index: np.ndarray, missing: str, names: list[str]):
    """Numeric columns to floats, others to category indices with the training vocabulary,
    in place in table.numbers. A column is numeric when every cell of the rows kept is a
    number or empty."""
    x = table.numbers
    categorical, vocabularies = {}, {}
    for j in sorted(table.strings):
        strings = table.strings[j]
        cells = table.indices[j]
        met = np.unique(cells)
        if all(_is_number(strings[i]) for i in met if strings[i]):
            # Text elsewhere in the file, numbers in the rows kept (data.max_examples).
            numbers = np.full(len(strings), np.nan, dtype=np.float32)
            numbers[met] = np.array(
                [float(strings[i]) if strings[i] else np.nan for i in met], dtype=np.float32
            )
            x[:, j] = numbers[cells]
            continue
        vocabulary = sorted({strings[i] for i in np.unique(cells[train_index])} - {""})
        index = {v: i + 1 for i, v in enumerate(vocabulary)}  # 0 = unseen or empty
        x[:, j] = np.array([index.get(v, 0) for v in strings], dtype=np.float32)[cells]
        categorical[j] = len(vocabulary) + 1
        vocabularies[j] = vocabulary
    gaps = np.zeros(x.shape[1], np.int64)
    for start in range(0, len(x), 1 << 16):  # counted a block of rows at a time: no n x d mask
        gaps += np.isnan(x[start : start + (1 << 16)]).sum(axis=0)
    for j in np.flatnonzero(gaps):  # category indices have none
        if missing == "error":
            raise UsageError(
                f"column {names[j]!r} has {int(gaps[j])} missing values; "
                "set data.missing=mean to fill them with the training mean"
            )
        column = x[:, j]
        train = column[train_index]
        column[np.isnan(column)] = np.nanmean(train) if (~np.isnan(train)).any() else 0.0
    return categorical, vocabularies


def resolve_source(source: str, path_column: str = "") -> str:
    """'embedded:<name>', 'folder:<path>', 'image_csv:<path>' (a CSV of image paths, when
    data.path_column names its column) or 'csv:<path>' for a data.source value."""
    if source in EMBEDDED_SOURCES:
        return f"embedded:{source}"
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(
            f"data.source {source!r} is neither an embedded dataset "
            f"({', '.join(EMBEDDED_SOURCES)}) "
            "nor an existing folder or CSV file"
        )
    if path.is_dir():
        return f"folder:{path}"
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        return f"image_csv:{path}" if path_column else f"csv:{path}"
    raise UsageError(f"data.source {source!r} is a file but not a .csv")


def load(
    config: Config, *, exclude: frozenset[str] = frozenset(), finite_only: bool = True
) -> Data:
    """Reads config.data.source and returns seeded, normalized-on-train splits.

    Image files are listed, not decoded: the statistics come from a seeded sample of
    check.sample training images. inspect passes `exclude` (image paths it reported as
    unreadable) and `finite_only=False` (it reports infinite values itself) so it can
    study the rest of the data.
    """
    d = config.data
    source = _read(d, exclude)
    task, y, class_names = _labels_to_task(source.labels, d.task, source.class_names)
    if task == "classification":
        _check_classes(y, class_names)
    if len(y) < 10:
        raise UsageError(
            f"{d.source} has {len(y)} examples; at least 10 are needed for three splits"
        )

    split_seed = config.seed if d.split_seed is None else d.split_seed
    every = Split(source.x, y, source.ids)
    kind, features = source.kind, source.feature_names
    del source  # `every` holds the inputs from here, so a table is freed once it is split
    if 0 < d.max_examples < len(y):
        keep, _ = _split(
            np.arange(len(y)), y, task, split_seed, "data.max_examples", train_size=d.max_examples
        )
        every = every.subset(np.sort(keep))

    train, val, test = split_indices(every.y, task, d.val_fraction, d.test_fraction, split_seed)
    if config.train.fraction < 1:
        train = training_fraction(train, every.y, task, config.train.fraction, split_seed)
    categorical, vocabularies = {}, {}
    if isinstance(every.x, _Table):  # a CSV table
        categorical, vocabularies = _encode_table(every.x, train, d.missing, features)
        every.x = every.x.numbers
    elif not isinstance(every.x, ImageFiles):
        every.x = np.asarray(every.x, dtype=np.float32)  # no copy of float32
    splits = [every.subset(index) for index in (train, val, test)]
    del every  # the table: only the splits' copies of it are kept
    arrays = [split.x for split in splits if not isinstance(split.x, ImageFiles)]
    if finite_only and not all(np.isfinite(x).all() for x in arrays):
        raise UsageError(f"{d.source} has NaN or infinite inputs; run inspect to find them")

    data = Data(
        source=d.source,
        kind=kind,
        task=task,
        train=splits[0],
        val=splits[1],
        test=splits[2],
        class_names=class_names,
        feature_names=features,
        categorical=categorical,
        vocabularies=vocabularies,
    )
    if config.model.name == "backbone":  # a pretrained network normalizes pixels its own way
        channels = data.input_shape[-1]
        data.mean, data.std = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    else:
        data.mean, data.std = input_statistics(data, config.check.sample, config.seed)
    if task == "regression":
        data.target_mean = float(data.train.y.mean())
        data.target_std = float(data.train.y.std()) or 1.0
    data.class_weight = class_weight(config.train.class_weight, data)
    data.sampling = _sampling(d, data)
    return data


def class_weight(setting: str | dict[str, float], data: Data) -> np.ndarray | None:
    """train.class_weight as one weight per class: none, balanced (n / (classes x n_c), as
    scikit-learn's), or a mapping from the labels the user sees to weights (others weigh 1)."""
    if isinstance(setting, dict) and data.task != "classification":
        raise UsageError(f"train.class_weight weighs classes; {data.source} is regression")
    if setting == "none" or data.task != "classification":
        return None
    if setting == "balanced":
        return 1.0 / (data.num_outputs * data.class_priors)
    unknown = [label for label in setting if label not in data.class_names]
    if unknown:
        raise UsageError(
            f"train.class_weight names {unknown[0]!r}, not a class of {data.source} "
            f"({', '.join(data.class_names)})"
        )
    return np.array([float(setting.get(name, 1.0)) for name in data.class_names])


def _sampling(d: DataConfig, data: Data) -> str:
    """data.sampling, refused where it cannot apply: a regression target has no classes, and a
    cache of decoded files is read in its own order, not drawn from by index."""
    if d.sampling == "oversample" and data.task != "classification":
        raise UsageError(f"data.sampling=oversample balances classes; {data.source} is regression")
    if d.sampling == "oversample" and data.streamed and d.cache != "none":
        raise UsageError("data.sampling=oversample draws image files by index; use data.cache=none")
    return d.sampling


def input_statistics(data: Data, sample: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from the training split: per channel for images, per column for tables.

    Image files: from a seeded sample of `sample` training images, summed chunk by chunk
    as they are decoded, so memory stays flat. Categorical index columns get mean 0 and
    std 1 so they pass through unchanged. A constant feature gets std 1 instead of a
    division by zero.
    """
    x = data.train.x
    if isinstance(x, ImageFiles):
        if 0 < sample < len(x):
            rng = np.random.default_rng(seed)
            x = x.subset(np.sort(rng.choice(len(x), sample, replace=False)))
        total, squares, count = np.zeros(x.channels), np.zeros(x.channels), 0
        for chunk in decoded_chunks(x, skip_broken=True):
            pixels = chunk.reshape(-1, x.channels).astype(np.float64)
            total += pixels.sum(axis=0)
            squares += np.square(pixels).sum(axis=0)
            count += len(pixels)
        if not count:
            raise UsageError(f"{data.source}: none of the sampled training images can be decoded")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    else:
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axis=axes)
        std = x.std(axis=axes)
    std[std < 1e-7] = 1.0
    for column in data.categorical:
        mean[column], std[column] = 0.0, 1.0
    return mean.astype(np.float32), std.astype(np.float32)
