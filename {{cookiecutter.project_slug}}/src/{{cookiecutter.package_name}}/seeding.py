"""One seed for Python, NumPy and the backend, and deterministic kernels (R2.1)."""

from __future__ import annotations

import keras

from .config import Config


def seed_everything(config: Config) -> None:
    """Python, numpy and backend seeds; deterministic kernels when asked (R2.1)."""
    keras.utils.set_random_seed(config.seed)
    if config.train.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
