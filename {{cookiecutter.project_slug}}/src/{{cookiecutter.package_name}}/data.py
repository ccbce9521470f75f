"""Loads a data source into seeded train/val/test splits and serves them as tf.data pipelines.

Sources: scikit-learn's embedded datasets (offline), a folder of images with one
sub-folder per class, or a CSV file. Input normalization (and the regression target
scale) come from the training split only and are applied by the same function to
every split as its pipeline is made, so what the network sees at test time is
preprocessed exactly like what it trained on (U6).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .config import EMBEDDED_SOURCES, Config
from .errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Integer labels with at most this many distinct values are taken as classes.
MAX_INFERRED_CLASSES = 20


@dataclass
class Split:
    x: np.ndarray  # raw inputs (before normalization), float32
    y: np.ndarray  # class indices (int32) or targets in their own units (float32)
    ids: np.ndarray  # where each example came from: file path or row number


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
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

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


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decodes one image file to (height, width, channels) float32 in 0..255."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UsageError(f"cannot read image {path}: {err.__class__.__name__}") from None
    return array[..., None] if channels == 1 else array


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


def _image_channels(paths: list[Path]) -> int:
    """Grayscale when every sampled image is grayscale, else RGB."""
    from PIL import Image

    for path in paths[:: max(1, len(paths) // 50)]:
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "1", "I", "I;16", "LA"):
                    return 3
        except OSError:
            continue  # reported by name when the file is decoded
    return 1


def _image_folder(folder: Path, size: tuple[int, int], exclude=frozenset()):
    paths, labels = list_image_folder(folder)
    if exclude:  # files inspect already reported as unreadable
        keep = [i for i, p in enumerate(paths) if str(p) not in exclude]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    channels = _image_channels(paths)
    x = np.stack([read_image(p, size, channels) for p in paths])
    return "image", x, np.array(labels), None, [], np.array([str(p) for p in paths])


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
    categorical = {}
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
    return x, categorical


def resolve_source(source: str) -> str:
    """'embedded:<name>', 'folder:<path>' or 'csv:<path>' for a data.source value."""
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
        return f"csv:{path}"
    raise UsageError(f"data.source {source!r} is a file but not a .csv")


def load(
    config: Config, *, exclude: frozenset[str] = frozenset(), finite_only: bool = True
) -> Data:
    """Reads config.data.source and returns seeded, normalized-on-train splits.

    inspect passes `exclude` (image paths it reported as unreadable) and `finite_only=False`
    (it reports infinite values itself) so it can study the rest of the data.
    """
    d = config.data
    where, _, name = resolve_source(d.source).partition(":")
    ids = None
    if where == "embedded":
        kind, x, raw_y, class_names, features = _embedded(name)
    elif where == "folder":
        kind, x, raw_y, class_names, features, ids = _image_folder(
            Path(name), tuple(d.image_size), exclude
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
    if 0 < d.max_examples < len(y):
        stratify = y if task == "classification" else None
        keep, _ = train_test_split(
            np.arange(len(y)),
            train_size=d.max_examples,
            stratify=stratify,
            random_state=split_seed,
        )
        keep = np.sort(keep)
        x, y, ids = x[keep], y[keep], ids[keep]

    train, val, test = split_indices(y, task, d.val_fraction, d.test_fraction, split_seed)
    categorical = {}
    if x.dtype == object:
        x, categorical = _encode_table(x, train, d.missing, features)
    x = x.astype(np.float32)
    if finite_only and not np.isfinite(x).all():
        raise UsageError(f"{d.source} has NaN or infinite inputs; run inspect to find them")

    data = Data(
        source=d.source,
        kind=kind,
        task=task,
        train=Split(x[train], y[train], ids[train]),
        val=Split(x[val], y[val], ids[val]),
        test=Split(x[test], y[test], ids[test]),
        class_names=class_names,
        feature_names=features,
        categorical=categorical,
    )
    data.mean, data.std = input_statistics(data)
    if task == "regression":
        data.target_mean = float(data.train.y.mean())
        data.target_std = float(data.train.y.std()) or 1.0
    return data


def input_statistics(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from the training split: per channel for images, per column for tables.

    Categorical index columns get mean 0 and std 1 so they pass through unchanged.
    A constant feature gets std 1 instead of a division by zero.
    """
    x = data.train.x
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std[std < 1e-7] = 1.0
    for column in data.categorical:
        mean[column], std[column] = 0.0, 1.0
    return mean.astype(np.float32), std.astype(np.float32)


# ---------------------------------------------------------------- pipelines


def augmenter(data: Data, seed: int):
    """A light, label-preserving augmentation (off by default, R2.2)."""
    import keras

    if data.kind == "image":
        return keras.layers.Pipeline(
            [
                keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
                keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
            ]
        )
    return keras.layers.GaussianNoise(0.05, seed=seed)


def make_dataset(
    data: Data,
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    augment: bool = False,
    whole_batches: bool = False,
    first_epoch: int = 0,
):
    """Batches of a split in memory: in order and once through, or, with shuffle, an
    endless stream of epochs, each a fresh permutation of the whole split. Fit the
    stream with steps_per_epoch=steps_per_epoch(split, batch_size, whole_batches).
    Epoch e's order depends on (seed, e) alone, and the stream starts at first_epoch:
    a resumed or continued run that passes the epochs it has done sees the orders an
    uninterrupted run would have seen, rather than epoch 0's again.

    The split is normalized once, here, by the same data.normalize as everywhere else
    (a map would cost a function call every batch). The shuffle is one permutation op
    and one gather per epoch, cut into the epoch's batches by slicing, so each epoch
    ends with its own short batch and no batch spans two epochs. The gathered epoch is
    one more copy of the split in memory, as the shuffle buffer it replaces was. Endless,
    so that fit keeps one iterator: with a fresh one every epoch (fit's way with a finite
    dataset) the step waited for the buffer to refill. A digits epoch takes 8% less time
    on 2 cores than with the buffer (docs/performance.md, benchmarks/pipelines.py).
    tf.data's autotuning is off: it runs an optimizer thread beside every iterator,
    which on a CPU takes a core from the training step.

    whole_batches drops each epoch's last, partial batch: keras.distribution splits
    every batch between the processes and needs its size fixed.
    """
    import tensorflow as tf

    x = data.normalize(split.x).astype(np.float32)
    y = scale_targets(data, split.y)
    if shuffle:
        n, full = len(y), len(y) // batch_size
        whole = full * batch_size  # the examples in whole batches; the rest make the last one
        if whole_batches and full == 0:
            raise UsageError(f"{n} training examples make no whole batch of {batch_size}")
        x, y = tf.constant(x), tf.constant(y)

        def epoch(number):
            # Epoch e's order is seeded by (seed, e): the same on every device and process.
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), tf.stack([tf.constant(seed, tf.int64), number])
            )
            xs, ys = tf.gather(x, order), tf.gather(y, order)
            batches = tf.data.Dataset.from_tensor_slices(
                (
                    tf.reshape(xs[:whole], (full, batch_size, *x.shape[1:])),
                    tf.reshape(ys[:whole], (full, batch_size, *y.shape[1:])),
                )
            )
            if whole < n and not whole_batches:
                last = tf.data.Dataset.from_tensors((xs[whole:], ys[whole:]))
                batches = batches.concatenate(last)
            return batches

        # Cut by slicing, not rebatch(): OneDeviceStrategy's distributed dataset silently
        # drops a rebatch, so every "batch" would be the whole epoch.
        dataset = tf.data.Dataset.counter(start=first_epoch).flat_map(epoch)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.batch(batch_size, drop_remainder=whole_batches)
    if augment:
        layer = augmenter(data, seed)
        dataset = dataset.map(
            lambda x, y: (layer(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def steps_per_epoch(split: Split, batch_size: int, whole_batches: bool = False) -> int:
    if whole_batches:
        return len(split.y) // batch_size
    return math.ceil(len(split.y) / batch_size)


def fixed_batch(data: Data, size: int) -> np.ndarray:
    """Indices into the validation split, chosen once: classes taken in turn so each shows up."""
    size = min(size, len(data.val.y))
    if data.task != "classification":
        return np.arange(size)
    by_class = [list(np.flatnonzero(data.val.y == c)) for c in range(data.num_outputs)]
    chosen = []
    while len(chosen) < size:
        for members in by_class:
            if members and len(chosen) < size:
                chosen.append(members.pop(0))
    return np.array(chosen)
