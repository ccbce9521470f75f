"""Pretrained image backbones from keras.applications, with their own preprocessing (R3.1, R4.4).

"Don't be a hero": on images, start from a network someone trained on ImageNet. It only
helps if it sees pixels the way it was trained to, so each backbone brings its own
preprocessing, and the caller feeds raw pixels: float32 in [0, 255].
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras
from keras import applications, layers

from .errors import UsageError

# Every keras.applications backbone is trained on 8-bit pixels; its preprocessing is inside.
PIXEL_RANGE = (0.0, 255.0)

# ImageNet channel statistics on [0, 1] pixels, used by the torch-style preprocessing.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Black and white pixels after (x / 255 - mean) / std, over the three channels.
IMAGENET_RANGE = (
    min(-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)),
    max((1 - mean) / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)),
)


class Backbone(NamedTuple):
    """One keras.applications network and what it needs to see pixels as it was trained."""

    constructor: Callable[..., keras.Model]
    # the backbone's own preprocessing that Keras leaves outside the model, as layers
    preprocessing: Callable[[], list[layers.Layer]]
    # smallest height and width Keras accepts
    min_size: int
    # the no-top ImageNet weights file Keras downloads into its cache
    weights_file: str
    # the range of the tensor its first layer sees, after its preprocessing
    preprocessed_range: tuple[float, float]


def _built_in() -> list[layers.Layer]:
    """No layers: the network's include_preprocessing=True puts them inside the model."""
    return []


def _tf_mode() -> list[layers.Layer]:
    """keras.applications.resnet_v2.preprocess_input (imagenet_utils mode "tf"): x / 127.5 - 1."""
    return [layers.Rescaling(1 / 127.5, offset=-1.0)]


# Checked against keras/src/applications/{mobilenet_v3,efficientnet_v2,convnext,resnet_v2}.py.
BACKBONES = {
    # Rescaling(1/127.5, offset=-1) inside the model.
    "MobileNetV3Small": Backbone(
        functools.partial(applications.MobileNetV3Small, include_preprocessing=True),
        _built_in,
        32,
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        (-1.0, 1.0),
    ),
    # Rescaling(1/255) + Normalization(ImageNet mean, std) inside the model for 3 channels.
    "EfficientNetV2B0": Backbone(
        functools.partial(applications.EfficientNetV2B0, include_preprocessing=True),
        _built_in,
        32,
        "efficientnetv2-b0_notop.h5",
        IMAGENET_RANGE,
    ),
    # Its preprocess_input is a separate function, so its layers go in front of the model.
    "ResNet50V2": Backbone(
        applications.ResNet50V2,
        _tf_mode,
        32,
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        (-1.0, 1.0),
    ),
    # Normalization(ImageNet mean * 255, std * 255) inside the model for 3 channels.
    "ConvNeXtTiny": Backbone(
        functools.partial(applications.ConvNeXtTiny, include_preprocessing=True),
        _built_in,
        32,
        "convnext_tiny_notop.h5",
        IMAGENET_RANGE,
    ),
}


class Features(NamedTuple):
    """A backbone's pooled features on raw pixels; the caller adds dropout and its output layer."""

    inputs: keras.KerasTensor
    features: keras.KerasTensor
    base: keras.Model


@keras.saving.register_keras_serializable(package="recipe")
class InferenceMode(layers.Layer):
    """Runs a model in inference mode, whatever mode the model around it runs in.

    The Keras transfer-learning guide calls the base with `training=False`, but inside a
    Functional model Keras 3 overrides that with the outer call's value: `fit` passes
    `training=True` to every layer of the base (`operation_fn` in
    keras/src/models/functional.py, keras-team/keras#20285). Frozen BatchNormalization
    still runs in inference mode because it is not trainable, but EfficientNetV2's
    stochastic-depth Dropout would drop blocks during `fit`. This layer calls the base with
    `training=False` itself, which Keras respects.
    """

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def call(self, inputs):
        return self.base(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.base.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "base": keras.saving.serialize_keras_object(self.base)}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "base": keras.saving.deserialize_keras_object(config["base"])})


def backbone(name: str) -> Backbone:
    """The table entry for a name, or a UsageError listing the known names."""
    if name not in BACKBONES:
        raise UsageError(f"model.backbone must be one of {', '.join(BACKBONES)}; got {name!r}")
    return BACKBONES[name]


def input_range(name: str) -> tuple[float, float]:
    """The raw pixel range a backbone was trained on: [0, 255], since its preprocessing is inside.

    Pixels already scaled to [0, 1] or standardized would reach the pretrained weights far
    from anything they saw in training.
    """
    backbone(name)
    return PIXEL_RANGE


def preprocessed_range(name: str) -> tuple[float, float]:
    """The range after the backbone's own preprocessing, for [0, 255] pixels."""
    return backbone(name).preprocessed_range


def weights_folder() -> Path:
    """Where keras.applications look for their weights and download them.

    As get_file in keras/src/utils/file_utils.py: $KERAS_HOME or ~/.keras, or /tmp/.keras
    when that folder is not writable; then the "models" subfolder.
    """
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if not os.access(home, os.W_OK):
        home = Path("/tmp/.keras")
    return home / "models"


def _weights_argument(weights: str | Path) -> str | None:
    """keras.applications' `weights`: "imagenet", None, or the path of an existing file."""
    if str(weights) == "imagenet":
        return "imagenet"
    if str(weights) == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UsageError(
            f"model.weights={weights} is not a file; use imagenet, none or the path of a "
            "weights file (.weights.h5)"
        )
    return str(path)


def _build_base(name: str, input_shape: tuple, weights: str | Path) -> keras.Model:
    """The headless, average-pooled network, with its weights; weight failures are UsageErrors."""
    entry = backbone(name)
    argument = _weights_argument(weights)
    try:
        return entry.constructor(
            input_shape=input_shape, include_top=False, weights=argument, pooling="avg"
        )
    except Exception as error:  # offline, Keras raises a bare Exception("URL fetch failure ...")
        if argument is None:
            raise
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        # a download failure ends with the reason after " -- "; the URL before it is long
        reason = first_line.rpartition(" -- ")[2]
        if argument == "imagenet":
            raise UsageError(
                f"model.weights=imagenet needs {entry.weights_file}, which cannot be downloaded "
                f"here ({reason}); put it in {weights_folder()}{os.sep} or set model.weights=none "
                "or a path"
            ) from error
        raise UsageError(f"model.weights={weights} does not load into {name}: {reason}") from error


def backbone_features(input_shape: tuple, name: str, weights: str | Path) -> Features:
    """Raw pixels -> a frozen pretrained backbone's pooled features (transfer learning, phase 1).

    Args:
        input_shape: (height, width, channels) of the raw images, channels 1 or 3.
        name: a key of BACKBONES.
        weights: "imagenet", "none", or the path of a weights file saved from the same
            backbone (`base.save_weights("x.weights.h5")`).

    Returns:
        Features(inputs, features, base): `inputs` takes float32 pixels in [0, 255];
        `features` is the pooled feature vector; `base` is the frozen keras.applications model,
        for `fine_tune` later.
    """
    entry = backbone(name)
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise UsageError(f"model.backbone={name} takes 1 or 3 image channels; got {channels}")
    inputs = keras.Input(input_shape)
    x = inputs
    if channels == 1:
        # ImageNet networks see colour; grey is the same value in all three channels.
        x = layers.Concatenate()([x, x, x])
    if height and width and min(height, width) < entry.min_size:
        # one scale for both sides keeps the aspect ratio
        scale = entry.min_size / min(height, width)
        height, width = math.ceil(height * scale), math.ceil(width * scale)
        x = layers.Resizing(height, width)(x)
    for layer in entry.preprocessing():
        x = layer(x)
    base = _build_base(name, (height, width, 3), weights)
    # Phase 1 trains only the new head on top of the pretrained features.
    base.trainable = False
    return Features(inputs, InferenceMode(base)(x), base)


def fine_tune(base: keras.Model, layers_count: int) -> int:
    """Phase 2: unfreezes the top `layers_count` layers of the base, except BatchNormalization.

    BatchNormalization stays frozen, as in the Keras guide: unfrozen, its statistics from a
    small new dataset would replace ImageNet's and wreck the features. Keras 3 sets
    `trainable` on every nested layer when it is set on a model, so this unfreezes the
    whole base and then freezes all but the chosen layers.

    Returns:
        How many layers became trainable.
    """
    if layers_count < 0:
        raise ValueError(f"layers_count must be >= 0; got {layers_count}")
    candidates = [layer for layer in base.layers if not isinstance(layer, layers.InputLayer)]
    top = candidates[len(candidates) - min(layers_count, len(candidates)) :]
    chosen = [layer for layer in top if not isinstance(layer, layers.BatchNormalization)]
    chosen_ids = {id(layer) for layer in chosen}
    base.trainable = bool(chosen)
    for layer in candidates:
        layer.trainable = id(layer) in chosen_ids
    for layer in _nested_layers(base):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return len(chosen)


def _nested_layers(model: keras.Model):
    """Every layer inside a model, including those of nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _nested_layers(layer)
