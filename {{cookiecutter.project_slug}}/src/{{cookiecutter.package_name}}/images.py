"""Image files to pixels: the one decoder the pipeline, the statistics and the pictures use.

Imports nothing else of the package but errors, so data.py and pipeline.py both use it.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

DECODE_CHUNK = 256


def decode_image(path, size: tuple[int, int], channels: int):
    """One image file -> (height, width, channels) uint8, resized by bilinear interpolation:
    the same resize as the saved model's Resizing layer, so a file of any size is seen alike."""
    import tensorflow as tf

    image = tf.io.decode_image(
        tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8
    )
    image = tf.image.resize(image, size)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, (*size, channels))


def decoded_chunks(files, chunk: int = DECODE_CHUNK, skip_broken: bool = False):
    """Yields the files' decoded pixels (uint8) in order, `chunk` images at a time.

    A file that cannot be decoded raises UsageError naming it, or, with skip_broken, is
    left out (inspect reports it by name)."""
    import tensorflow as tf

    size, channels = tuple(files.size), files.channels
    dataset = tf.data.Dataset.from_tensor_slices(files.paths.astype(str))
    dataset = dataset.map(
        lambda path: decode_image(path, size, channels), num_parallel_calls=tf.data.AUTOTUNE
    )
    if skip_broken:
        dataset = dataset.ignore_errors()
    options = tf.data.Options()
    options.autotune.enabled = False  # as in pipeline.make_dataset: no idle wait at the end
    try:
        for batch in dataset.batch(chunk).prefetch(1).with_options(options):
            yield batch.numpy()
    except tf.errors.InvalidArgumentError:
        raise UsageError(broken_file_message(files.paths)) from None


def decode_files(files) -> np.ndarray:
    """Every file of `files` decoded, (n, height, width, channels) uint8: for a few files."""
    chunks = list(decoded_chunks(files))
    if not chunks:
        return np.zeros((0, *files.size, files.channels), dtype=np.uint8)
    return np.concatenate(chunks)


def broken_file_message(paths) -> str:
    """Names the first file PIL cannot decode either (the slow search runs only on failure)."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:  # any decoder failure names this file
            return f"cannot decode image {path}; run make inspect, then remove or replace it"
    return "cannot decode an image of the split; run make inspect to find it"
