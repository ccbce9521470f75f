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

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .config import EMBEDDED_SOURCES, Config
from .errors import UsageError
from .images import decode_files, decoded_chunks

# The formats TensorFlow decodes in the input pipeline (tf.io.decode_image).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
# Integer labels with at most this many distinct values are taken as classes.
MAX_INFERRED_CLASSES = 20


@dataclass
class ImageFiles:
    """A split's images as files. Indexing decodes just the files asked for, resized to
    `size`, as float32 in 0..255, through the training pipeline's own decoder; `subset`
    selects files without decoding any."""

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
        return decode_files(self.subset(index)).astype(np.float32)


@dataclass
class Split:
    x: np.ndarray | ImageFiles  # raw inputs (before normalization): float32, or image files
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
    def output_bias(self) -> np.ndarray:
        """Initial output bias (R2.5): log class priors, or the (scaled) training target mean."""
        if self.task == "classification":
            return np.log(self.class_priors).astype(np.float32)
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


def _embedded(name: str):
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        x = bunch.images.astype(np.float32)[..., None]  # (n, 8, 8, 1), values 0..16
        return "image", x, bunch.target, [str(c) for c in bunch.target_names], []
    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        return (
            "tabular",
            bunch.data,
            bunch.target,
            list(bunch.target_names),
            list(bunch.feature_names),
        )
    bunch = datasets.load_diabetes(scaled=False)
    return "tabular", bunch.data, bunch.target.astype(np.float32), [], list(bunch.feature_names)


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


def _image_files(paths: list[Path], labels: list[str], size, exclude=frozenset()):
    if exclude:  # files inspect already reported as unreadable
        keep = [i for i, p in enumerate(paths) if str(p) not in exclude]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    names = np.array([str(p) for p in paths])
    x = ImageFiles(names, tuple(size), image_channels(paths))
    return "image", x, np.array(labels), None, [], names


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read CSV {path}: {err.__class__.__name__}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UsageError(f"CSV {path} has no data rows (a header line and at least one row)")
    header = [h.strip() for h in rows[0]]
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(
                f"CSV {path} line {number} has {len(row)} fields; the header has {len(header)}"
            )
    return header, rows[1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv(path: Path, label_column: str):
    header, rows = read_csv(path)
    if label_column not in header:
        raise UsageError(
            f"CSV {path} has no column {label_column!r} (columns: {', '.join(header)}); "
            "set data.label_column"
        )
    label_index = header.index(label_column)
    labels = [row[label_index].strip() for row in rows]
    if any(not v for v in labels):
        raise UsageError(f"CSV {path} has rows with an empty {label_column!r} label")
    columns = [i for i in range(len(header)) if i != label_index]
    if not columns:
        raise UsageError(f"CSV {path} has no feature columns besides {label_column!r}")
    # Cells stay strings here: categorical vocabularies are built from the training split only.
    cells = np.array([[row[i].strip() for i in columns] for row in rows], dtype=object)
    names = [header[i] for i in columns]
    return (
        "tabular",
        cells,
        np.array(labels),
        None,
        names,
        np.array([str(n) for n in range(2, len(rows) + 2)]),
    )


# ---------------------------------------------------------------- labels and splits


def _labels_to_task(raw: np.ndarray, forced: str, class_names):
    """Returns (task, y, class_names): classes as indices, or float targets."""
    text = [str(v) for v in raw]
    numeric = all(_is_number(v) for v in text)
    values = np.array([float(v) for v in text]) if numeric else None
    task = forced
    if task == "auto":
        if class_names is not None and len(class_names):
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
    if class_names is not None and len(class_names):
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
    stratify = y if task == "classification" else None
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=stratify, random_state=seed
    )
    stratify = y[rest] if task == "classification" else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=stratify, random_state=seed
    )
    return train, val, test


def _encode_table(cells: np.ndarray, train_index: np.ndarray, missing: str, names: list[str]):
    """Numeric columns to floats, others to category indices with the training vocabulary."""
    x = np.zeros(cells.shape, dtype=np.float32)
    categorical, vocabularies = {}, {}
    for j in range(cells.shape[1]):
        column = cells[:, j]
        present = column[column != ""]
        if all(_is_number(v) for v in present):
            values = np.array([float(v) if v != "" else np.nan for v in column], dtype=np.float32)
            gaps = np.isnan(values)
            if gaps.any():
                if missing == "error":
                    raise UsageError(
                        f"column {names[j]!r} has {int(gaps.sum())} missing values; "
                        "set data.missing=mean to fill them with the training mean"
                    )
                fill = np.nanmean(values[train_index]) if (~gaps[train_index]).any() else 0.0
                values[gaps] = fill
            x[:, j] = values
        else:
            vocabulary = sorted(set(column[train_index]) - {""})
            lookup = {v: i + 1 for i, v in enumerate(vocabulary)}  # 0 = unseen or empty
            x[:, j] = [lookup.get(v, 0) for v in column]
            categorical[j] = len(vocabulary) + 1
            vocabularies[j] = vocabulary
    return x, categorical, vocabularies


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
    where, _, name = resolve_source(d.source, d.path_column).partition(":")
    ids = None
    if where == "embedded":
        kind, x, raw_y, class_names, features = _embedded(name)
    elif where == "folder":
        paths, labels = list_image_folder(Path(name))
        kind, x, raw_y, class_names, features, ids = _image_files(
            paths, labels, d.image_size, exclude
        )
    elif where == "image_csv":
        paths, labels = list_image_csv(Path(name), d.path_column, d.label_column)
        kind, x, raw_y, class_names, features, ids = _image_files(
            paths, labels, d.image_size, exclude
        )
    else:
        kind, x, raw_y, class_names, features, ids = _csv(Path(name), d.label_column)
    if ids is None:
        ids = np.array([str(i) for i in range(len(x))])

    task, y, class_names = _labels_to_task(raw_y, d.task, class_names)
    if task == "classification":
        _check_classes(y, class_names)
    if len(y) < 10:
        raise UsageError(
            f"{d.source} has {len(y)} examples; at least 10 are needed for three splits"
        )

    split_seed = config.seed if d.split_seed is None else d.split_seed
    every = Split(x, y, ids)
    if 0 < d.max_examples < len(y):
        stratify = y if task == "classification" else None
        keep, _ = train_test_split(
            np.arange(len(y)),
            train_size=d.max_examples,
            stratify=stratify,
            random_state=split_seed,
        )
        every = every.subset(np.sort(keep))

    train, val, test = split_indices(every.y, task, d.val_fraction, d.test_fraction, split_seed)
    categorical, vocabularies = {}, {}
    if not isinstance(every.x, ImageFiles):
        if every.x.dtype == object:
            every.x, categorical, vocabularies = _encode_table(every.x, train, d.missing, features)
        every.x = every.x.astype(np.float32)
        if finite_only and not np.isfinite(every.x).all():
            raise UsageError(f"{d.source} has NaN or infinite inputs; run inspect to find them")

    data = Data(
        source=d.source,
        kind=kind,
        task=task,
        train=every.subset(train),
        val=every.subset(val),
        test=every.subset(test),
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
    return data


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
