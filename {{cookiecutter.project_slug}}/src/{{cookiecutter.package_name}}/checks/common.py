"""What every check shares: thresholds, the Result and Setup types, one traced training step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .. import models, seeding
from ..config import Config
from ..data import Data, Split, scale_targets
from ..pipeline import steps_per_epoch, training_stream

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

INIT_LOSS_TOLERANCE = 0.05  # R2.4: the loss at init within 5% of the expected value
DETERMINISM_STEPS = 3  # covers init, data order, augmentation, dropout and the first updates
BRIEF_STEPS = 60  # input_independent_baseline and loss_decreases: ~3 epochs of digits
CLEARLY_BETTER = 0.90  # real inputs must reach <= 90% of the zeroed-input validation loss
SLIGHTLY_BETTER = 0.97  # between the two: a weak signal (WARN)
LOSS_FALLS = 0.97  # the training loss must fall by at least 3% in BRIEF_STEPS steps
OVERFIT_EXAMPLES = 16  # U11: two examples per class up to this many; regression uses half
OVERFIT_MIN_RATE = 1e-3  # one tiny batch needs ~3x fewer steps at 1e-3 than at 3e-4
OVERFIT_MAX_STEPS = 300
OVERFIT_TARGET = {"classification": 0.05, "regression": 0.01}  # "near zero" on the batch
OVERFIT_TOLERANCE = 0.1  # regression: every prediction within 0.1 target std of its label
EXPLODED = 10.0  # a loss above 10x its start has exploded
SCHEDULE_FLOOR = 0.10  # the rate must stay >= 10% of its base ...
SCHEDULE_EARLY = 0.25  # ... over the first 25% of the steps, once any warmup is over
GRADIENT_EXAMPLES = 8  # batch size of the batch_independence probe
PROBE_EXAMPLES = 256  # the validation batch dead_units and inference_repeatable look at
DEAD_SHARE = 0.5  # dead_units: WARN when more than half of a ReLU layer's units never fire
# update_ratio: the first steps from init; a rate far too large shows there, before the
# weights it inflates make every later update look small.
UPDATE_STEPS = 5
UPDATE_RATIO_RANGE = (1e-5, 1e-1)  # per step; healthy is about 1e-3 (Karpathy)
# update_ratio leaves out kernels starting below 1% of He init's scale (the small output
# kernel, R2.5): a weight near zero makes any update look huge.
NEAR_ZERO_INIT = 0.01
REPEAT_TOLERANCE = 1e-6  # inference_repeatable: two predictions equal up to float rounding
PICTURE_EXAMPLES = 32
CHECK_SECONDS = 60.0  # overfit_one_batch gives up (WARN, undecided) after this long
BEFORE_TRAINING_SECONDS = 8.0
# Image files the checks before training decode per split, at most: enough for their
# verdicts, and the first step of a big folder comes sooner, with less memory held.
BEFORE_TRAINING_IMAGES = 512
ACTIVATIONS = frozenset(
    "softmax log_softmax sigmoid hard_sigmoid tanh relu relu6 softplus softsign elu selu gelu "
    "silu exponential leakyrelu prelu".split()
)


@dataclass
class Result:
    """One check's verdict: what was measured, what was expected, and what to do about it."""

    name: str
    status: str  # PASS | WARN | FAIL
    measured: float | str | None
    expected: float | str | None
    diagnosis: str

    def line(self) -> str:
        measured, expected = _show(self.measured), _show(self.expected)
        return (
            f"{self.status} {self.name}: measured {measured} expected {expected} — {self.diagnosis}"
        )


@dataclass
class Setup:
    """What the checks share: the config, the data they run on (sampled when big), and a cache
    holding one model built from the seed with its traced training step."""

    config: Config
    data: Data
    steps_per_epoch: int  # of the full training split: the schedule counts these
    folder: Path  # pictures go here
    seconds: float = CHECK_SECONDS
    note: str = ""
    cache: dict = field(default_factory=dict)


def _show(value) -> str:
    if value is None:
        return "not set"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sample(data: Data, limit: int, seed: int) -> tuple[Data, str]:
    """At most `limit` training and validation examples (seeded), in memory (image files
    decoded), and a sentence saying so."""
    sampled, fewer = data.in_memory(limit, seed, test=False)
    if not fewer:
        return sampled, ""
    total = len(data.train.y)
    note = f"checks use {min(limit, total)} of {total} training examples (check.sample={limit})"
    return sampled, note


def make_setup(
    config: Config, data: Data, seconds: float = CHECK_SECONDS, limit: int | None = None
) -> Setup:
    sampled, note = sample(data, limit or config.check.sample, config.seed)
    spe = steps_per_epoch(data.train, config.train.batch_size)
    return Setup(config, sampled, spe, config.run_dir / "checks", seconds, note)


# ---------------------------------------------------------------- shared machinery


def example_losses(task: str, y, outputs):
    """The task's reference loss per example, on logits, whatever loss the project optimizes.

    On a live tensor from a softmax layer Keras reads the pre-softmax logits, as fit does."""
    if task == "classification" and len(y.shape) == 2:  # class probabilities: MixUp, CutMix
        return keras.losses.categorical_crossentropy(y, outputs, from_logits=True)
    if task == "classification":
        return keras.losses.sparse_categorical_crossentropy(y, outputs, from_logits=True)
    return keras.ops.square(outputs[:, 0] - y)


def split_inputs(data: Data, split: Split, limit: int | None = None):
    """A split as it enters the network: normalized inputs, scaled targets."""
    x = np.asarray(data.normalize(split.x[:limit]), dtype=np.float32)
    return x, scale_targets(data, split.y[:limit])


def forward(model, task: str, x: np.ndarray, y: np.ndarray, chunk: int = 256):
    """Outputs (inference mode) and per-example reference losses, in chunks."""
    outputs, losses = [], []
    for start in range(0, len(x), chunk):
        out = model(x[start : start + chunk], training=False)
        loss = example_losses(task, y[start : start + chunk], out)
        outputs.append(keras.ops.convert_to_numpy(out))
        losses.append(keras.ops.convert_to_numpy(loss))
    return np.concatenate(outputs).astype(np.float64), np.concatenate(losses).astype(np.float64)


def snapshot(variable) -> np.ndarray:
    return variable.value.numpy().copy()


def constant_rate_optimizer(setup: Setup):
    """The configured optimizer at its base rate: checks last a few hundred steps (lr_schedule
    looks at the schedule on its own) and a weight EMA would blur them."""
    config = setup.config
    optimizer = dataclasses.replace(config.optimizer, schedule="constant", ema=False)
    return models.make_optimizer(
        dataclasses.replace(config, optimizer=optimizer), setup.steps_per_epoch
    )


def training_pipeline(setup: Setup):
    """The training pipeline exactly as train builds it: shuffled from the seed, augmented if on."""
    return training_stream(setup.config, setup.data, first_epoch=0)


@dataclass
class Trainer:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: object  # traced (x, y) -> loss, reference loss in training/inference mode, both outputs
    initial: list  # every model variable at init, seed-generator states included
    rate: float


def shared_trainer(setup: Setup) -> Trainer:
    """The configured model built from the seed with one traced training step, reset to init.

    One model and one trace serve every training check: tracing costs seconds, steps cost ms."""
    trainer = setup.cache.get("trainer")
    if trainer is None:
        trainer = setup.cache["trainer"] = _build_trainer(setup)
    for variable, value in zip(trainer.model.variables, trainer.initial, strict=True):
        variable.assign(value)
    for variable in trainer.optimizer.variables:  # moments and step count start at zero
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    trainer.optimizer.learning_rate = trainer.rate
    return trainer


def _build_trainer(setup: Setup) -> Trainer:
    import tensorflow as tf

    data = setup.data
    seeding.seed_everything(setup.config)
    model = models.build_model(setup.config, data)
    optimizer = constant_rate_optimizer(setup)
    # What training optimizes, a user's change included.
    loss_fn = models.loss_for(data, setup.config)
    labels = tf.int32 if data.task == "classification" else tf.float32
    x_spec = tf.TensorSpec((None, *data.input_shape), tf.float32)
    y_spec = tf.TensorSpec((None,), labels)
    mixing = models.mixes_labels(setup.config)
    if mixing:  # the training stream's labels are class probabilities
        y_spec = tf.TensorSpec((None, data.num_outputs), tf.float32)

    @tf.function(input_signature=[x_spec, y_spec])
    def traced_step(x, y):
        inference = model(x, training=False)
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.reduce_mean(loss_fn(y, outputs))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        reference = tf.reduce_mean(example_losses(data.task, y, outputs))
        reference_inference = tf.reduce_mean(example_losses(data.task, y, inference))
        return loss, reference, reference_inference, outputs, inference

    def step(x, y):
        # A split's fixed batch holds class indices: one-hot rows when the stream mixes labels.
        if mixing and len(y.shape) == 1:
            y = tf.one_hot(y, data.num_outputs)
        return traced_step(x, y)

    initial = [snapshot(v) for v in model.variables]
    return Trainer(model, optimizer, step, initial, setup.config.optimizer.learning_rate)


def probabilities_like(outputs: np.ndarray) -> bool:
    """Every row in [0, 1] and summing to 1: softmax was applied already."""
    in_range = outputs.shape[1] > 1 and outputs.min() >= 0 and outputs.max() <= 1
    return bool(in_range and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
