"""tf.data pipelines: a split's examples -> (decode) -> batch -> normalize -> augment -> prefetch.

Arrays in memory (embedded data, tables) are normalized once and sliced into batches.
Image files are decoded in parallel, batch by batch, every epoch (or once, with
data.cache), so memory does not grow with the number of images. Either way the
training stream is endless, one seeded permutation per epoch, so a resumed run sees
the orders an uninterrupted one would have seen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .config import IMAGE_AUGMENTATIONS, LABEL_MIXING, TABLE_AUGMENTATIONS, Config
from .data import Data, ImageFiles, Split, scale_targets
from .errors import UsageError
from .images import decode_image

# Decoded images a file cache's shuffle holds: about 200 MB of 128 px RGB images.
CACHE_SHUFFLE_BUFFER = 4096
# Examples of an array split's epoch gathered at a time, then cut into batches.
GATHER_EXAMPLES = 8192


# The ranges of the augmentations at data.augment_strength=1, in the units of each Keras layer:
# fractions of a turn (rotate), of the image size (translate, zoom), of the contrast (contrast),
# the largest erased area (erase), RandAugment's magnitude, MixUp's Beta(alpha, alpha),
# CutMix's range of patch sizes, and the noise's std in standard units (tables).
AUGMENT_RANGES = {
    "rotate": 0.04,
    "translate": 0.1,
    "zoom": 0.1,
    "contrast": 0.2,
    "erase": 0.33,
    "randaugment": 0.3,
    "mixup": 0.2,
    "cutmix": 1.0,
    "noise": 0.05,
}


def keyed_seeds(seed: int, index: int):
    """A keras.random.SeedGenerator for augmentation `index` whose seeds come from (seed, the
    batch's key, the draw's number) instead of a state: batch k of a stream draws the same
    numbers whatever came before it, so a resumed run augments as an uninterrupted one did,
    and batches augment in parallel without racing for a shared state. The map function
    calls start(key) before the layer draws (once, as tf.data traces it)."""
    import keras
    import tensorflow as tf

    class KeyedSeeds(keras.random.SeedGenerator):
        key, draws = None, 0

        def start(self, key):
            self.key, self.draws = key, 0

        def next(self, ordered=True):
            self.draws += 1
            first = (seed * 1_000_003 + index * 10_007 + self.draws) % 2**31
            return tf.stack([tf.constant(first, tf.int64), tf.cast(self.key, tf.int64)])

    return KeyedSeeds(seed)


def normalized_range(data: Data) -> tuple[float, float]:
    """The range of the normalized inputs: the value range some Keras layers clip to."""
    low, high = data.value_range
    ends = np.stack([(low - data.mean) / data.std, (high - data.mean) / data.std])
    return float(ends.min()), float(ends.max())


def augmentation_layer(name: str, data: Data, strength: float, seed: int):
    """The Keras layer of one image augmentation, in float32 whatever the precision policy
    (it runs in tf.data, before the model). Borders fill from the nearest pixels, erased
    patches with 0, the training mean."""
    import keras

    r = AUGMENT_RANGES.get(name, 0.0) * strength
    value_range = normalized_range(data)
    f32 = dict(dtype="float32", seed=seed)
    if name in ("flip_horizontal", "flip_vertical"):
        return keras.layers.RandomFlip(name.removeprefix("flip_"), **f32)
    if name == "rotate":
        return keras.layers.RandomRotation(r, fill_mode="nearest", **f32)
    if name == "translate":
        return keras.layers.RandomTranslation(r, r, fill_mode="nearest", **f32)
    if name == "zoom":
        return keras.layers.RandomZoom(r, fill_mode="nearest", **f32)
    if name == "contrast":
        return keras.layers.RandomContrast(min(r, 1.0), value_range=value_range, **f32)
    if name == "erase":
        return keras.layers.RandomErasing(
            scale=(0.02, min(r, 1.0)), fill_value=0.0, value_range=value_range, **f32
        )
    if name == "randaugment":  # on raw pixels (augmenter): posterize, equalize count levels
        return keras.layers.RandAugment(value_range=data.value_range, factor=min(r, 1.0), **f32)
    if name == "mixup":
        return keras.layers.MixUp(alpha=r, **f32)
    if name == "cutmix":
        return keras.layers.CutMix(factor=min(r, 1.0), **f32)
    raise ValueError(f"no augmentation layer named {name}")


def check_augmentations(data: Data, names) -> None:
    """data.augment's names fit this data: image augmentations for images, noise for tables."""
    fitting = IMAGE_AUGMENTATIONS if data.kind == "image" else TABLE_AUGMENTATIONS
    wrong = [name for name in names if name not in fitting]
    if wrong:
        kind = "images" if data.kind == "image" else "a table"
        raise UsageError(
            f"data.augment={','.join(wrong)} does not apply to {data.source} ({kind}); "
            f"use {', '.join(fitting)}"
        )
    if any(name in LABEL_MIXING for name in names) and data.task != "classification":
        raise UsageError("data.augment: mixup and cutmix mix class labels; use them to classify")


def augmenter(data: Data, names, strength: float, seed: int):
    """(x, y), key -> the batch augmented by data.augment's names in order (off by default,
    R2.2; R4.2, T4), seeded by (seed, key). Table noise goes to the numeric columns only:
    category indices stay categories. MixUp and CutMix mix the labels too, so with either the
    labels become class probabilities (the loss takes them, models.loss_for)."""
    import tensorflow as tf

    check_augmentations(data, names)
    seeds = [keyed_seeds(seed, index) for index in range(len(names))]
    steps = []
    for index, (name, seeded) in enumerate(zip(names, seeds, strict=True)):
        if name == "noise":
            steps.append((name, None, seeded))
            continue
        layer = augmentation_layer(name, data, strength, seed + index)
        # Every Keras image layer draws from .generator. On the JAX backend (multi_worker) a
        # layer in tf.data keeps a generator of its own: seeded, but not keyed by batch.
        layer.generator = seeded
        steps.append((name, layer, seeded))
    numeric = np.ones(data.input_shape[-1], np.float32)
    numeric[list(data.categorical)] = 0.0
    mixing = any(name in LABEL_MIXING for name in names)
    mean, std = data.mean.astype(np.float32), data.std.astype(np.float32)

    def augment(batch, key):
        x, y = batch
        if mixing:
            y = tf.one_hot(tf.cast(y, tf.int32), data.num_outputs)
        for name, layer, seeded in steps:
            seeded.start(key)
            if name == "noise":
                stddev = AUGMENT_RANGES["noise"] * strength
                # TensorFlow's op, whatever the Keras backend: tf.data runs it.
                noise = tf.random.stateless_normal(tf.shape(x), seeded.next(), stddev=stddev)
                x = x + noise * numeric
            elif name == "randaugment":
                x = (layer(x * std + mean, training=True) - mean) / std
            elif name in LABEL_MIXING:
                mixed = layer({"images": x, "labels": y}, training=True)
                x, y = mixed["images"], mixed["labels"]
            else:
                x = layer(x, training=True)
        return x, y

    return augment


def epoch_orders(n: int, seed: int, balance=None):
    """number -> epoch `number`'s order of a split's n examples, seeded by (seed, number) alone:
    the same on every device and process, and for a resumed run.

    A permutation; or, given `balance` (the split's class labels, data.sampling=oversample),
    n draws that take every class equally often (T2): each class's examples in a seeded
    order, cycled as often as its share needs (a rare class repeats, a common one shows part
    of itself each epoch), then mixed. An epoch keeps its n examples, so its steps."""
    import tensorflow as tf

    if balance is None:

        def permutation(number):
            key = tf.stack([tf.constant(seed, tf.int64), number])
            return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key)

        return permutation

    labels = np.asarray(balance)
    members = np.argsort(labels, kind="stable")  # example indices grouped by class
    _, starts, counts = np.unique(labels[members], return_index=True, return_counts=True)
    slot, classes = np.arange(n), len(counts)
    # Slot i draws class i mod K, the (i div K)-th of that class's draws this epoch.
    position = starts[slot % classes] + (slot // classes) % counts[slot % classes]
    group = np.repeat(np.arange(classes, dtype=np.float64), counts)

    def balanced(number):
        key = tf.stack([tf.constant(seed, tf.int64), number])
        within, mixed = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        # Sorting group + u, u in [0, 1), shuffles inside each class and keeps classes apart.
        u = tf.random.stateless_uniform([n], within, dtype=tf.float64)
        shuffled = tf.gather(members, tf.argsort(group + u))
        return tf.random.experimental.stateless_shuffle(tf.gather(shuffled, position), mixed)

    return balanced


def _file_batches(
    files: ImageFiles, y, batch_size, *, shuffle, seed, first_epoch, whole_batches, cache, balance
):
    """Batches of uint8 images decoded from files; with shuffle, an endless stream of epochs."""
    import tensorflow as tf

    n, size, channels = len(files), tuple(files.size), files.channels
    paths, labels = tf.constant(files.paths.astype(str)), tf.constant(y)
    calls = tf.data.AUTOTUNE  # decoding is the work: as many cores as help

    def decode(path, label):
        return decode_image(path, size, channels), label

    if cache != "none":
        # Decoded once, in order, then read back every epoch and shuffled through a buffer.
        target = "" if cache == "memory" else _cache_file(cache, files)
        decoded = tf.data.Dataset.from_tensor_slices((paths, labels))
        decoded = decoded.map(decode, num_parallel_calls=calls).cache(target)
        if not shuffle:
            return decoded.batch(batch_size, drop_remainder=whole_batches)
        buffer = n if cache == "memory" else min(n, CACHE_SHUFFLE_BUFFER)

        def cached_epoch(number):
            order_seed = tf.constant(seed, tf.int64) * 1_000_003 + number
            # A global seed of 0 (seed=0, as train sets it) makes TensorFlow compare this
            # tensor seed with 0 in Python, which fails in a traced function; without a
            # graph-level seed the order depends on order_seed alone.
            tf.compat.v1.get_default_graph().seed = None
            return decoded.shuffle(buffer, seed=order_seed).batch(
                batch_size, drop_remainder=whole_batches
            )

        return tf.data.Dataset.counter(start=first_epoch).flat_map(cached_epoch)

    if not shuffle:
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        return dataset.map(decode, num_parallel_calls=calls).batch(
            batch_size, drop_remainder=whole_batches
        )

    orders = epoch_orders(n, seed, balance)

    def epoch(number):
        order = orders(number)
        examples = tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, order), tf.gather(labels, order))
        )
        # A file that cannot be decoded is skipped with a warning rather than ending the run
        # (inspect names it); each epoch is batched on its own, so no batch spans two.
        examples = examples.map(decode, num_parallel_calls=calls).ignore_errors(log_warning=True)
        return examples.batch(batch_size, drop_remainder=whole_batches)

    return tf.data.Dataset.counter(start=first_epoch).flat_map(epoch)


def _cache_file(folder: str, files: ImageFiles) -> str:
    """A cache file per list of files and decoding: another split or size never reads it."""
    import hashlib

    key = hashlib.blake2b(digest_size=8)
    key.update(f"{tuple(files.size)}x{files.channels}".encode())
    for path in files.paths:
        key.update(str(path).encode() + b"\0")
    root = Path(folder).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    prefix = root / f"images-{key.hexdigest()}"
    # A run killed while writing the cache leaves a lock file that would stop every later run.
    for stale in root.glob(f"{prefix.name}*.lockfile"):
        stale.unlink()
    return str(prefix)


def _array_batches(
    x, y, batch_size, *, shuffle, seed, first_epoch, whole_batches, balance, scale=None
):
    """Batches of arrays in memory, normalized by scale = (mean, std) if given; with shuffle,
    an endless stream of epochs.

    The split is held once, in the float32 tensor the pipeline reads: normalized while it is
    copied there. The shuffle is one permutation op per epoch; its examples are gathered
    GATHER_EXAMPLES at a time (one op, not one per batch, and not a permuted copy of the
    whole split) and cut into batches by slicing, so each epoch ends with its own short
    batch and no batch spans two epochs. Endless, so that fit keeps one iterator: with a
    fresh one every epoch (fit's way with a finite dataset) the step waited for the buffer
    to refill."""
    import tensorflow as tf

    def tensor(array, dtype, scale=None):
        # The one copy, in memory TensorFlow takes as it is (64-byte aligned) and gives back
        # when done; tf.constant(array) would hold the split twice (a numpy copy it keeps,
        # then its own) and keep that memory from the OS afterwards.
        size = array.size * np.dtype(dtype).itemsize
        buffer = np.empty(size + 64, np.uint8)
        start = -buffer.ctypes.data % 64
        copy = buffer[start : start + size].view(dtype).reshape(array.shape)
        for rows in range(0, max(len(array), 1), 1 << 16):
            part = array[rows : rows + (1 << 16)]
            copy[rows : rows + len(part)] = part if scale is None else (part - scale[0]) / scale[1]
        with tf.device("/cpu:0"):
            return tf.raw_ops.Identity(input=copy)

    y = np.asarray(y)
    orders = epoch_orders(len(y), seed, balance)
    x, y = tensor(x, np.float32, scale), tensor(y, y.dtype)
    # tf.data's default graph rewrites would copy the split into the rewritten graph for
    # every iterator (each validation pass too); none of them speeds up these few ops.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    if not shuffle:
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        return dataset.batch(batch_size, drop_remainder=whole_batches).with_options(options)
    n, full = len(y), len(y) // batch_size
    whole = full * batch_size  # the examples in whole batches; the rest make the last one
    per_gather = max(1, GATHER_EXAMPLES // batch_size)

    def gathered(index):
        return tf.gather(x, index), tf.gather(y, index)

    def epoch(number):
        order = orders(number)
        batch_orders = tf.reshape(order[:whole], (full, batch_size))
        batches = (
            tf.data.Dataset.from_tensor_slices(batch_orders)
            .batch(per_gather)
            .flat_map(lambda index: tf.data.Dataset.from_tensor_slices(gathered(index)))
        )
        if whole < n and not whole_batches:
            last = tf.data.Dataset.from_tensors(gathered(order[whole:]))
            batches = batches.concatenate(last)
        return batches

    # Cut by slicing, not rebatch(): OneDeviceStrategy's distributed dataset silently
    # drops a rebatch, so every "batch" would be the whole epoch.
    return tf.data.Dataset.counter(start=first_epoch).flat_map(epoch).with_options(options)


def make_dataset(
    data: Data,
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    augment=(),
    augment_strength: float = 1.0,
    whole_batches: bool = False,
    first_epoch: int = 0,
    raw: bool = False,
    cache: str = "none",
):
    """Batches of a split: in order and once through, or, with shuffle, an endless stream of
    epochs, each a fresh permutation of the whole split (with data.sampling=oversample, draws
    that take every class equally often: epoch_orders). Fit the stream with
    steps_per_epoch=steps_per_epoch(split, batch_size, whole_batches). Epoch e's order
    depends on (seed, e) alone, and the stream starts at first_epoch: a resumed or
    continued run that passes the epochs it has done sees the orders an uninterrupted run
    would have seen, rather than epoch 0's again.

    Inputs are normalized by data.normalize (arrays once, here; image batches as they are
    decoded), then augmented by the names in `augment` (data.augment) at augment_strength;
    each batch's random draws are seeded by (seed, its place in the stream), so a stream
    started at first_epoch augments as the uninterrupted one did. Unless raw: then they stay
    as the saved model takes them (models.with_preprocessing), float32 pixels or column
    values. Image files are decoded with
    `cache` (data.cache): none, memory or a folder.

    whole_batches drops each epoch's last, partial batch: keras.distribution splits
    every batch between the processes and needs its size fixed.
    """
    import tensorflow as tf

    y = scale_targets(data, split.y)
    if shuffle and whole_batches and len(y) < batch_size:
        raise UsageError(f"{len(y)} training examples make no whole batch of {batch_size}")
    # Training streams of data.sampling=oversample draw the classes equally often (T2).
    balance = y if shuffle and data.sampling == "oversample" else None
    order = dict(
        shuffle=shuffle,
        seed=seed,
        first_epoch=first_epoch,
        whole_batches=whole_batches,
        balance=balance,
    )
    if isinstance(split.x, ImageFiles):
        dataset = _file_batches(split.x, y, batch_size, cache=cache, **order)
        mean, std = tf.constant(data.mean), tf.constant(data.std)

        def to_float(x, y):
            x = tf.cast(x, tf.float32)
            return (x if raw else (x - mean) / std), y

        dataset = dataset.map(to_float)
    else:
        # Normalized once, as it is copied into the pipeline: a map would cost a function
        # call every batch.
        scale = None if raw else (data.mean, data.std)
        dataset = _array_batches(split.x, y, batch_size, scale=scale, **order)
    if augment:
        # Keyed by the batch's place in the stream: epoch e starts at e x steps per epoch.
        # (A file skipped as undecodable shortens its epoch and shifts later keys; still seeded.)
        epoch_steps = steps_per_epoch(split, batch_size, whole_batches)
        keys = tf.data.Dataset.counter(start=first_epoch * epoch_steps if shuffle else 0)
        dataset = tf.data.Dataset.zip((dataset, keys)).map(
            augmenter(data, augment, augment_strength, seed), num_parallel_calls=tf.data.AUTOTUNE
        )
    options = tf.data.Options()
    # tf.data's autotuning runs an optimizer thread beside every iterator: on a CPU it takes a
    # core from the training step (arrays in memory), and the end of an iterator of files
    # could wait, idle, for that thread's next wake-up (up to 10 s a fit, a second or more a
    # validation pass). Without it AUTOTUNE still means a map on every core and a prefetch
    # buffer that grows while the step waits: files decode as fast (benchmarks/real_images.py).
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def training_stream(config: Config, data: Data, first_epoch: int):
    """The endless stream of shuffled training epochs, from first_epoch on: a resumed run, or
    the next phase, goes on with the data orders an uninterrupted run would have seen."""
    return make_dataset(
        data,
        data.train,
        config.train.batch_size,
        shuffle=True,
        seed=config.seed,
        augment=config.data.augment,
        augment_strength=config.data.augment_strength,
        whole_batches=config.train.strategy == "multi_worker",
        first_epoch=first_epoch,
        cache=config.data.cache,
    )


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
