"""Model builders (plain functions), a user's own builder by name, and compilation.

Every built-in builder follows the recipe's init rules: He (variance-scaling) init
for hidden layers (U5), a bias in every layer (U4), ReLU (U2), no activation on the
output (U3, losses take logits), an output bias set from the training split (R2.5)
and a small output kernel, so the loss at init is the one predicted by the priors.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

from . import backbones
from .config import CLASSIFICATION_LOSSES, LABEL_MIXING, REGRESSION_LOSSES, Config
from .data import Data, scale_targets
from .errors import UsageError

# Output kernel scale: logits start within ~0.01 of the bias, so the loss at init is the
# prior's loss even when the inputs predict the label well (a random projection of strongly
# predictive features moved the breast_cancer loss at init by 9% at scale 1e-2). Adam's
# steps do not depend on the scale of the weights, so training is not slowed.
OUTPUT_KERNEL_SCALE = 1e-4


@keras.saving.register_keras_serializable(package="recipe")
class TabularInput(layers.Layer):
    """Passes numeric columns through and replaces each categorical column by an embedding (T5).

    Categorical columns arrive as category indices (0 = unseen) in the same float
    matrix as the numeric ones, so every model takes one input tensor.
    """

    def __init__(self, categorical_columns, vocabulary_sizes, num_columns, **kwargs):
        super().__init__(**kwargs)
        self.categorical_columns = [int(c) for c in categorical_columns]
        self.vocabulary_sizes = [int(v) for v in vocabulary_sizes]
        self.num_columns = int(num_columns)
        self.numeric_columns = [
            c for c in range(self.num_columns) if c not in self.categorical_columns
        ]
        # Rule of thumb for embedding width: grows with the vocabulary, capped small.
        self.embeddings = [
            layers.Embedding(size, min(16, (size + 1) // 2), name=f"embedding_{column}")
            for column, size in zip(self.categorical_columns, self.vocabulary_sizes, strict=True)
        ]

    def build(self, input_shape):
        for embedding in self.embeddings:
            embedding.build((None,))

    def call(self, x):
        parts = [keras.ops.take(x, self.numeric_columns, axis=1)] if self.numeric_columns else []
        for column, embedding in zip(self.categorical_columns, self.embeddings, strict=True):
            parts.append(embedding(keras.ops.cast(x[:, column], "int32")))
        return keras.ops.concatenate(parts, axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "categorical_columns": self.categorical_columns,
            "vocabulary_sizes": self.vocabulary_sizes,
            "num_columns": self.num_columns,
        }


@keras.saving.register_keras_serializable(package="recipe")
class SquashColumns(layers.Layer):
    """Squashes heavy-tailed numeric columns (data.transform, U7) and standardizes them again.

    The network takes columns standardized with their raw training mean and std (the
    pipeline, with_preprocessing), so this layer first undoes that for its columns, applies
    sign(x) log1p(|x|) (log1p; signed, so negative values stay finite) or
    tanh((x - center) / spread) (tanh), then standardizes the result with its training mean
    and std. Other columns pass through unchanged. Being part of the model, it goes wherever
    model.keras goes: evaluate, predict and the exported SavedModel.

    Args:
        num_columns: the width of the input.
        columns: the squashed columns' indices.
        functions: "log1p" or "tanh", one per column.
        raw_mean, raw_std: the standardization the input arrives with, per column.
        center, spread: tanh's shift and scale, per column (0 and 1 for log1p).
        mean, std: the squashed values' training mean and std, per column.
    """

    def __init__(
        self,
        num_columns,
        columns,
        functions,
        raw_mean,
        raw_std,
        center,
        spread,
        mean,
        std,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_columns, self.columns = int(num_columns), [int(c) for c in columns]
        self.functions = [str(f) for f in functions]
        self.statistics = {
            name: [float(v) for v in values]
            for name, values in zip(
                ("raw_mean", "raw_std", "center", "spread", "mean", "std"),
                (raw_mean, raw_std, center, spread, mean, std),
                strict=True,
            )
        }
        # Full-width constants, identities on the columns left alone, so one vectorized
        # expression serves any number of columns.
        identity = dict(raw_mean=0.0, raw_std=1.0, center=0.0, spread=1.0, mean=0.0, std=1.0)
        self.full = {}
        for name, values in self.statistics.items():
            full = np.full(self.num_columns, identity[name], np.float32)
            full[self.columns] = values
            self.full[name] = full
        self.is_log = np.isin(np.arange(self.num_columns), self._chosen("log1p"))
        self.is_tanh = np.isin(np.arange(self.num_columns), self._chosen("tanh"))

    def _chosen(self, function: str) -> list[int]:
        return [c for c, f in zip(self.columns, self.functions, strict=True) if f == function]

    def call(self, x):
        f = self.full
        raw = x * f["raw_std"] + f["raw_mean"]
        logged = keras.ops.sign(raw) * keras.ops.log1p(keras.ops.abs(raw))
        squashed = keras.ops.tanh((raw - f["center"]) / f["spread"])
        values = keras.ops.where(self.is_log, logged, keras.ops.where(self.is_tanh, squashed, x))
        return (values - f["mean"]) / f["std"]

    def get_config(self):
        return {
            **super().get_config(),
            "num_columns": self.num_columns,
            "columns": self.columns,
            "functions": self.functions,
            **self.statistics,
        }


def squash(values: np.ndarray, function: str, center: float = 0.0, spread: float = 1.0):
    """SquashColumns's functions in numpy, for fitting it."""
    if function == "log1p":
        return np.sign(values) * np.log1p(np.abs(values))
    return np.tanh((values - center) / spread)


def _transform_column(data: Data, name: str) -> int:
    """The index of data.transform's column `name`; a missing or text column is a UsageError."""
    if name not in data.feature_names:
        close = difflib.get_close_matches(name, data.feature_names, n=1)
        shown = ", ".join(data.feature_names[:8]) + (", ..." if len(data.feature_names) > 8 else "")
        hint = f"did you mean {close[0]!r}?" if close else f"columns: {shown}"
        raise UsageError(f"data.transform: {data.source} has no column {name!r} ({hint})")
    column = data.feature_names.index(name)
    if column in data.categorical:
        raise UsageError(
            f"data.transform: column {name!r} holds text (categories); only numbers are squashed"
        )
    return column


def squash_columns(data: Data, transform: dict[str, str]) -> SquashColumns | None:
    """data.transform as a SquashColumns layer fitted on the training split, or None.

    tanh's center is the training median and its spread the larger distance from the median
    to the 2.5th or 97.5th percentile, so 95% of the training values stay off tanh's flat
    ends (|tanh| < 0.76) and only the tail is squeezed."""
    if not transform:
        return None
    if data.kind == "image":
        raise UsageError(f"data.transform squashes table columns; {data.source} holds images")
    columns = [_transform_column(data, name) for name in transform]
    statistics = []
    for column, function in zip(columns, transform.values(), strict=True):
        raw = data.train.x[:, column].astype(np.float64)
        center, spread = 0.0, 1.0
        if function == "tanh":
            center = float(np.median(raw))
            low, high = np.percentile(raw, [2.5, 97.5])
            spread = float(max(high - center, center - low)) or float(raw.std()) or 1.0
        values = squash(raw, function, center, spread)
        std = float(values.std())
        raw_mean, raw_std = float(data.mean[column]), float(data.std[column])
        statistics.append(
            (raw_mean, raw_std, center, spread, float(values.mean()), std if std > 1e-7 else 1.0)
        )
    return SquashColumns(
        data.input_shape[-1],
        columns,
        list(transform.values()),
        *zip(*statistics, strict=True),
        dtype="float32",  # raw amounts overflow float16 under mixed precision
        name="squash",
    )


def dense(units: int, name: str | None = None) -> layers.Dense:
    """A hidden layer: ReLU, He init, bias."""
    return layers.Dense(units, activation="relu", kernel_initializer="he_normal", name=name)


def conv(filters: int, strides: int = 1, activation: str | None = "relu", padding: str = "same"):
    """A 3x3 convolution: ReLU, He init, bias."""
    return layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding=padding,
        activation=activation,
        kernel_initializer="he_normal",
    )


def output_layer(num_outputs: int, output_bias) -> layers.Dense:
    """Linear outputs (logits) in float32, so mixed precision never squashes them."""
    return layers.Dense(
        num_outputs,
        kernel_initializer=keras.initializers.VarianceScaling(
            OUTPUT_KERNEL_SCALE, "fan_in", "truncated_normal"
        ),
        bias_initializer=keras.initializers.Constant(np.asarray(output_bias, dtype="float32")),
        dtype="float32",
        name="logits",
    )


def _features(inputs, categorical: dict[int, int] | None, input_dropout: float = 0.0, squash=None):
    x = layers.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    if squash is not None:
        x = squash(x)
    if categorical:
        x = TabularInput(list(categorical), list(categorical.values()), inputs.shape[-1])(x)
    if input_dropout:
        x = layers.Dropout(input_dropout, name="input_dropout")(x)
    return x


def linear(
    input_shape, num_outputs, output_bias, categorical=None, input_dropout=0.0, squash=None
) -> keras.Model:
    """The simplest model that can fit: a linear map to the logits (logistic/linear regression).
    `squash`: a SquashColumns layer (data.transform) applied first, or None."""
    inputs = keras.Input(input_shape)
    x = _features(inputs, categorical, input_dropout, squash)
    return keras.Model(inputs, output_layer(num_outputs, output_bias)(x), name="linear")


def mlp(
    input_shape,
    num_outputs,
    output_bias,
    categorical=None,
    width=64,
    depth=2,
    dropout_rate=0.0,
    input_dropout=0.0,
    squash=None,
):
    """`depth` ReLU layers of `width` units, optional dropout on the inputs and after each
    layer (R4.9, T10); `squash` as for linear."""
    inputs = keras.Input(input_shape)
    x = _features(inputs, categorical, input_dropout, squash)
    for i in range(depth):
        x = dense(width, name=f"dense_{i}")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate)(x)
    outputs = output_layer(num_outputs, output_bias)(x)
    return keras.Model(inputs, outputs, name="mlp")


def spatial_dropout(x, rate: float):
    """Drops whole feature maps: neighbouring pixels are correlated, so dropping single
    activations of a conv stage barely regularizes it (R4.9)."""
    return layers.SpatialDropout2D(rate)(x) if rate else x


def convnet(
    input_shape,
    num_outputs,
    output_bias,
    filters=32,
    width=128,
    dropout_rate=0.0,
    spatial_dropout_rate=0.0,
):
    """The proven small convnet of Keras's MNIST example (R3.1): two 3x3 convs, max pooling,
    a dense layer, logits; more conv + pooling stages only while the map is larger than 8x8.
    Optional spatial dropout after each conv stage, dropout before and after the dense layer."""
    inputs = keras.Input(input_shape)
    x = conv(filters, padding="valid")(inputs)
    x = conv(filters * 2, padding="valid")(x)
    x = spatial_dropout(layers.MaxPooling2D()(x), spatial_dropout_rate)
    while min(x.shape[1], x.shape[2]) > 8:
        x = spatial_dropout(layers.MaxPooling2D()(conv(filters * 2)(x)), spatial_dropout_rate)
    if dropout_rate:
        x = layers.Dropout(dropout_rate / 2)(x)
    x = dense(width)(layers.Flatten()(x))
    if dropout_rate:
        x = layers.Dropout(dropout_rate)(x)
    outputs = output_layer(num_outputs, output_bias)(x)
    return keras.Model(inputs, outputs, name="convnet")


def residual_block(x, filters: int, strides: int):
    """conv-bn-relu-conv-bn plus a shortcut (projected when the shape changes), then relu (T12)."""
    shortcut = x
    y = layers.BatchNormalization()(conv(filters, strides, activation=None)(x))
    y = layers.ReLU()(y)
    y = layers.BatchNormalization()(conv(filters, activation=None)(y))
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, kernel_initializer="he_normal")(x)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(
    input_shape, num_outputs, output_bias, filters=32, dropout_rate=0.0, spatial_dropout_rate=0.0
):
    """A small ResNet: three stages of two residual blocks, downsampling while the image allows;
    optional spatial dropout after each stage."""
    inputs = keras.Input(input_shape)
    x = layers.ReLU()(layers.BatchNormalization()(conv(filters, activation=None)(inputs)))
    for stage in range(3):
        strides = 2 if stage > 0 and min(x.shape[1], x.shape[2]) >= 4 else 1
        x = residual_block(x, filters * 2**stage, strides)
        x = spatial_dropout(residual_block(x, filters * 2**stage, 1), spatial_dropout_rate)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate)(x)
    outputs = output_layer(num_outputs, output_bias)(x)
    return keras.Model(inputs, outputs, name="resnet")


def backbone_model(
    input_shape,
    num_outputs,
    output_bias,
    backbone="MobileNetV3Small",
    weights="imagenet",
    dropout_rate=0.0,
):
    """A pretrained keras.applications network, frozen, under a new head (R3.1, R4.4, T13).

    It takes raw pixels in [0, 255] and preprocesses them its own way (backbones.py), so
    data.load leaves their normalization to it."""
    inputs, features, _ = backbones.backbone_features(input_shape, backbone, weights)
    x = layers.Dropout(dropout_rate)(features) if dropout_rate else features
    outputs = output_layer(num_outputs, output_bias)(x)
    return keras.Model(inputs, outputs, name=f"backbone_{backbone}")


def start_fine_tuning(model: keras.Model, config: Config, data: Data, steps_per_epoch: int) -> int:
    """Phase 2 of transfer learning: unfreezes the backbone's top model.fine_tune_layers
    (batch norm stays frozen) and recompiles at model.fine_tune_learning_rate, constant.
    Returns how many layers it unfroze."""
    base = next(layer.base for layer in model.layers if isinstance(layer, backbones.InferenceMode))
    unfrozen = backbones.fine_tune(base, config.model.fine_tune_layers)
    rate = dataclasses.replace(
        config.optimizer, learning_rate=config.model.fine_tune_learning_rate, schedule="constant"
    )
    compile_model(model, dataclasses.replace(config, optimizer=rate), data, steps_per_epoch)
    return unfrozen


def load_builder(name: str):
    """`package.module:function` or `path/to/file.py:function` -> the function."""
    target, _, function = name.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"model.name: file {target} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file: say which and why, without a traceback
            raise UsageError(f"model.name: importing {target} failed: {err!r}") from None
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise UsageError(f"model.name: cannot import module {target!r}: {err}") from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise UsageError(f"model.name: {target} has no function {function!r}")
    return builder


def resolved_name(config: Config, data: Data) -> str:
    """model.name with "auto" resolved: convnet for images, mlp for tables."""
    if config.model.name == "auto":
        return "convnet" if data.kind == "image" else "mlp"
    return config.model.name


def build_model(config: Config, data: Data) -> keras.Model:
    """The configured model, uncompiled, with its output bias set from the training split."""
    m = config.model
    name = resolved_name(config, data)
    common = dict(
        input_shape=data.input_shape, num_outputs=data.num_outputs, output_bias=data.output_bias
    )
    if name in ("convnet", "resnet", "backbone") and data.kind != "image":
        raise UsageError(
            f"model.name={name} needs images; {data.source} is a table (use mlp or linear)"
        )
    for key, rate, takers in (
        ("input_dropout", m.input_dropout, ("linear", "mlp")),
        ("spatial_dropout", m.spatial_dropout, ("convnet", "resnet")),
    ):
        if rate and name not in takers:  # said, not silently ignored
            raise UsageError(f"model.{key} applies to {' and '.join(takers)}, not {name}")
    squash = squash_columns(data, config.data.transform)
    if squash is not None and name not in ("linear", "mlp"):
        raise UsageError(f"data.transform applies to linear and mlp, not {name}")
    if name == "linear":
        return linear(
            **common, categorical=data.categorical, input_dropout=m.input_dropout, squash=squash
        )
    if name == "mlp":
        return mlp(
            **common,
            categorical=data.categorical,
            width=m.width,
            depth=m.depth,
            dropout_rate=m.dropout_rate,
            input_dropout=m.input_dropout,
            squash=squash,
        )
    if name == "convnet":
        return convnet(
            **common,
            filters=m.filters,
            width=m.width,
            dropout_rate=m.dropout_rate,
            spatial_dropout_rate=m.spatial_dropout,
        )
    if name == "resnet":
        return resnet(
            **common,
            filters=m.filters,
            dropout_rate=m.dropout_rate,
            spatial_dropout_rate=m.spatial_dropout,
        )
    if name == "backbone":
        return backbone_model(
            **common, backbone=m.backbone, weights=m.weights, dropout_rate=m.dropout_rate
        )
    model = load_builder(name)(**common)
    if not isinstance(model, keras.Model):
        raise UsageError(f"model.name={name} returned {type(model).__name__}, not a keras.Model")
    expected = (None, data.num_outputs)
    if tuple(model.output_shape) != expected:
        raise UsageError(
            f"model.name={name} returned outputs of shape {model.output_shape}; expected {expected}"
        )
    return model


def expected_initial_loss(data: Data, loss: str = "auto", label_smoothing: float = 0.0) -> float:
    """Validation loss of a model that outputs exactly its initial bias (R2.4, R2.5), for
    train.loss and train.label_smoothing (class weights apply to training, not to it).

    Classification: the cross-entropy of the priors the bias holds on the validation labels
    (ln C when the classes are balanced), with smoothed labels (T7) and the focal factor
    alpha (1 - p)^gamma (T18) where asked. Regression, in the standard units trained in: the
    targets' variance around the bias (mse), their mean absolute deviation (mae), or the
    Huber loss of those deviations."""
    name = loss_name(data, loss)
    if data.task == "classification":
        p = np.exp(data.output_bias.astype(np.float64))
        p /= p.sum()
        per_class = -np.log(p)
        if name == "focal":
            per_class *= FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA
        s = label_smoothing
        targets = np.eye(data.num_outputs)[data.val.y] * (1 - s) + s / data.num_outputs
        return float(np.mean(targets @ per_class))
    r = np.abs(scale_targets(data, data.val.y) - data.output_bias[0]).astype(np.float64)
    if name == "mae":
        return float(np.mean(r))
    if name == "huber":  # Keras's delta of 1: quadratic within one std, linear beyond
        return float(np.mean(np.where(r <= 1.0, 0.5 * r**2, r - 0.5)))
    return float(np.mean(r**2))


def learning_rate(config: Config, steps_per_epoch: int):
    """A constant rate unless a schedule is asked for (R3.4); schedules count steps, not epochs."""
    o = config.optimizer
    if o.schedule == "constant":
        return o.learning_rate
    warmup = o.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=o.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(1, config.train.epochs * steps_per_epoch - warmup),
    )


def make_optimizer(config: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (R3.2), AdamW (adamw, or adam with weight decay; R4.10) or SGD with momentum;
    optional gradient clipping and weight EMA (T17)."""
    o = config.optimizer
    common = dict(
        learning_rate=learning_rate(config, steps_per_epoch),
        use_ema=o.ema,
        clipnorm=o.clipnorm or None,
    )
    if o.name == "sgd":
        return keras.optimizers.SGD(
            momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay or None, **common
        )
    if o.name == "adamw" or o.weight_decay > 0:
        # AdamW's own default decay (0.004) when none is set: asking for adamw asks for decay.
        return keras.optimizers.AdamW(weight_decay=o.weight_decay or 0.004, **common)
    return keras.optimizers.Adam(**common)


def class_weights(data: Data) -> dict[int, float] | None:
    """fit's class_weight from data.class_weight (train.class_weight), or None."""
    if data.class_weight is None:
        return None
    return {c: float(w) for c, w in enumerate(data.class_weight)}


# Keras's defaults for CategoricalFocalCrossentropy, spelled out for the loss at init.
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


def loss_name(data: Data, name: str) -> str:
    """train.loss for this data's task (auto: cross_entropy or mse); a mismatch is an error."""
    classification = data.task == "classification"
    if name == "auto":
        return "cross_entropy" if classification else "mse"
    allowed = CLASSIFICATION_LOSSES if classification else REGRESSION_LOSSES
    if name not in allowed:
        raise UsageError(
            f"train.loss={name} does not fit {data.task}; use one of {', '.join(allowed)}"
        )
    return name


def loss_for(data: Data, config: Config) -> keras.losses.Loss:
    """The training loss (train.loss, train.label_smoothing) on the pipeline's labels: class
    indices, or class probabilities under MixUp or CutMix (data.augment)."""
    name, smoothing = loss_name(data, config.train.loss), config.train.label_smoothing
    if data.task == "regression":
        if smoothing:
            raise UsageError("train.label_smoothing applies to classification; set it to 0")
        losses = {
            "mse": keras.losses.MeanSquaredError,
            "mae": keras.losses.MeanAbsoluteError,
            "huber": keras.losses.Huber,
        }
        return losses[name]()
    if name == "cross_entropy" and not smoothing and not mixes_labels(config):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return OneHotCrossentropy(data.num_outputs, focal=name == "focal", label_smoothing=smoothing)


@keras.saving.register_keras_serializable(package="recipe")
class OneHotCrossentropy(keras.losses.Loss):
    """Cross-entropy from logits, focal (T18) and/or with label smoothing (T7), on class
    indices: Keras's sparse loss has neither option, and its one-hot losses take one-hot
    labels, which the pipeline, the metrics and the checks do not use. Class probabilities
    (the training labels under MixUp or CutMix) are taken as they are."""

    def __init__(self, num_classes, focal=False, label_smoothing=0.0, name=None, **kwargs):
        super().__init__(name=name or ("focal_crossentropy" if focal else "crossentropy"), **kwargs)
        self.num_classes, self.focal = int(num_classes), bool(focal)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if len(y_true.shape) == 2 and y_true.shape[-1] == self.num_classes:
            labels = y_true
        else:
            labels = keras.ops.one_hot(
                keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), self.num_classes
            )
        if self.focal:
            return keras.losses.categorical_focal_crossentropy(
                labels,
                y_pred,
                alpha=FOCAL_ALPHA,
                gamma=FOCAL_GAMMA,
                from_logits=True,
                label_smoothing=self.label_smoothing,
            )
        return keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "focal": self.focal,
            "label_smoothing": self.label_smoothing,
        }


def mixes_labels(config: Config) -> bool:
    """MixUp or CutMix is on: the training labels are class probabilities, not indices."""
    return any(name in LABEL_MIXING for name in config.data.augment)


@keras.saving.register_keras_serializable(package="recipe")
def index_or_probability_accuracy(y_true, y_pred):
    """Accuracy on class indices, or on class probabilities (MixUp, CutMix) by their largest
    share: Keras's accuracies take one kind or the other, and validation keeps indices."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1]:
        y_true = keras.ops.argmax(y_true, axis=-1)
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)


def metrics_for(data: Data, soft_labels: bool = False) -> list[keras.metrics.Metric]:
    if data.task == "classification" and soft_labels:
        return [keras.metrics.MeanMetricWrapper(index_or_probability_accuracy, name="accuracy")]
    if data.task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.MeanAbsoluteError(name="mae")]


def compile_model(
    model: keras.Model, config: Config, data: Data, steps_per_epoch: int
) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=loss_for(data, config),
        metrics=metrics_for(data, mixes_labels(config)),
        jit_compile={"true": True, "false": False}.get(config.train.jit_compile, "auto"),
        steps_per_execution=config.train.steps_per_execution,
    )
    return model


def with_preprocessing(network: keras.Model, data: Data) -> keras.Model:
    """The trained network behind the layers that turn raw inputs into what it trained on.

    What model.keras holds: images as decoded pixels of any height and width (resized
    here, as the pipeline resizes files) and tables as column values (category indices
    for categorical columns), normalized with the training split's statistics (U6). So
    evaluate, predict and export need the run folder, not the training data."""
    if data.kind == "image":
        inputs = keras.Input((None, None, data.input_shape[-1]), name="pixels")
        x = layers.Resizing(*data.input_shape[:2], name="resize")(inputs)
    else:
        inputs = keras.Input(data.input_shape, name="columns")
        x = inputs
    x = layers.Normalization(mean=data.mean, variance=np.square(data.std), name="normalize")(x)
    # Uncompiled: no optimizer state in the file, and loading it warns of none.
    return keras.Model(inputs, network(x), name=network.name)


def predict_outputs(model: keras.Model, data: Data, inputs, batch_size: int = 256):
    """Probabilities for classification, targets in their own units for regression; `inputs`
    is an array or a dataset of batches, as the model takes them."""
    if isinstance(inputs, np.ndarray):
        logits = model.predict(inputs, batch_size=batch_size, verbose=0)
    else:
        logits = model.predict(inputs, verbose=0)
    return outputs_from_logits(logits, data.task, data.target_mean, data.target_std)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from a batch of logits, row by row, in float64 so that they sum to one
    for the metrics that check it."""
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def outputs_from_logits(logits: np.ndarray, task: str, target_mean: float, target_std: float):
    if task == "classification":
        return softmax(logits)
    return logits[:, 0] * target_std + target_mean
