"""The recipe's sanity experiments (R2, T1): each one a hypothesis about the setup, tested on the
configured model and data, with a verdict and a diagnosis a person can act on.

Every check is a small function `name(setup) -> Result` whose docstring states the hypothesis and
the expected value. `check` runs them all (`make check`); `before_training` runs the fast subset
that `train` runs first. Both print one line per check and write `<run>/checks.json`; pictures go
to `<run>/checks/`. docs/checks.md explains each check, its threshold and what to try.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import models, pictures, train
from .config import BUILTIN_MODELS, Config
from .data import Data, Split, load, make_dataset, scale_targets, steps_per_epoch, unscale_targets
from .errors import UsageError

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

INIT_LOSS_TOLERANCE = 0.05  # R2.4: the loss at init within 5% of the expected value
DETERMINISM_STEPS = 3  # enough to cover init, data order, dropout and the first updates
BRIEF_STEPS = 60  # input-independent baseline and loss_decreases: ~3 epochs of digits
CLEARLY_BETTER = 0.90  # real inputs must reach <= 90% of the zeroed-input validation loss
SLIGHTLY_BETTER = 0.97  # between the two: a weak signal (WARN)
LOSS_FALLS = 0.97  # loss_decreases: the training loss falls by at least 3% in BRIEF_STEPS
OVERFIT_EXAMPLES = 16  # U11: two examples per class, at most this many (regression: half)
OVERFIT_MIN_RATE = 1e-3  # one tiny batch needs ~3x fewer steps at 1e-3 than at 3e-4
OVERFIT_MAX_STEPS = 300
OVERFIT_TARGET = {"classification": 0.05, "regression": 0.01}  # "near zero" loss on the batch
OVERFIT_TOLERANCE = 0.1  # regression: every prediction within 0.1 target std of its label
EXPLODED = 10.0  # a loss above 10x its start has exploded
SCHEDULE_FLOOR = 0.10  # lr_schedule: the rate must stay >= 10% of its base ...
SCHEDULE_EARLY = 0.25  # ... during the first 25% of the steps (after any warmup)
GRADIENT_EXAMPLES = 8  # batch_independence: batch size of the gradient probe
PICTURE_EXAMPLES = 32
CHECK_SECONDS = 60.0  # overfit_one_batch stops (WARN, undecided) after this long
BEFORE_TRAINING_SECONDS = 8.0


@dataclass
class Result:
    """One check's verdict: what was measured, what was expected, and what to do about it."""

    name: str
    status: str  # PASS | WARN | FAIL
    measured: float | str | None
    expected: float | str | None
    diagnosis: str

    def line(self) -> str:
        return (f"{self.status} {self.name}: measured {_show(self.measured)} "
                f"expected {_show(self.expected)} — {self.diagnosis}")


@dataclass
class Setup:
    """What the checks share: the config, the data they run on (sampled when big), and a cache
    holding one model built from the seed with its traced training step (reset between uses)."""

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
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sample(data: Data, limit: int, seed: int) -> tuple[Data, str]:
    """At most `limit` training and validation examples (seeded), and a sentence saying so."""
    if len(data.train.y) <= limit and len(data.val.y) <= limit:
        return data, ""
    rng = np.random.default_rng(seed)

    def take(split: Split) -> Split:
        if len(split.y) <= limit:
            return split
        keep = np.sort(rng.choice(len(split.y), limit, replace=False))
        return Split(split.x[keep], split.y[keep], split.ids[keep])

    note = (f"checks use {min(limit, len(data.train.y))} of {len(data.train.y)} training examples "
            f"(check.sample={limit})")
    return dataclasses.replace(data, train=take(data.train), val=take(data.val)), note


def make_setup(config: Config, data: Data, seconds: float = CHECK_SECONDS) -> Setup:
    sampled, note = sample(data, config.check.sample, config.seed)
    spe = steps_per_epoch(data.train, config.train.batch_size)
    return Setup(config, sampled, spe, config.run_dir / "checks", seconds, note)


# ---------------------------------------------------------------- shared machinery


def _example_losses(task: str, y, outputs):
    """The task's reference loss per example, on logits, whatever loss the project optimizes.

    On a live tensor from a softmax layer Keras reads the pre-softmax logits, as fit does."""
    if task == "classification":
        return keras.losses.sparse_categorical_crossentropy(y, outputs, from_logits=True)
    return keras.ops.square(outputs[:, 0] - y)


def _inputs(data: Data, split: Split, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split as it enters the network: normalized inputs, scaled targets."""
    x, y = split.x[:limit], split.y[:limit]
    return np.asarray(data.normalize(x), dtype=np.float32), scale_targets(data, y)


def _forward(model, task: str, x: np.ndarray, y: np.ndarray, chunk: int = 256):
    """Outputs (inference mode) and per-example reference losses, in chunks."""
    outputs, losses = [], []
    for start in range(0, len(x), chunk):
        out = model(x[start : start + chunk], training=False)
        losses.append(keras.ops.convert_to_numpy(_example_losses(task, y[start : start + chunk], out)))
        outputs.append(keras.ops.convert_to_numpy(out))
    return np.concatenate(outputs).astype(np.float64), np.concatenate(losses).astype(np.float64)


def _constant_rate_config(config: Config) -> Config:
    """The configured optimizer at its base rate: checks last a few hundred steps (lr_schedule
    looks at the schedule on its own) and EMA would blur them."""
    optimizer = dataclasses.replace(config.optimizer, schedule="constant", ema=False)
    return dataclasses.replace(config, optimizer=optimizer)


@dataclass
class Trainer:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: object  # traced: (x, y) -> (loss, reference loss training/inference mode, outputs x2)
    initial: list  # every model variable at init (seed-generator states included)
    rate: float


def _trainer(setup: Setup) -> Trainer:
    """The configured model built from the seed, with one traced training step, restored to init.

    One model and one trace serve every training check (tracing costs seconds; steps cost ms)."""
    trainer = setup.cache.get("trainer")
    if trainer is None:
        trainer = _build_trainer(setup)
        setup.cache["trainer"] = trainer
    for variable, value in zip(trainer.model.variables, trainer.initial, strict=True):
        variable.assign(value)
    for variable in trainer.optimizer.variables:  # Adam's moments and step count start at zero
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    trainer.optimizer.learning_rate = trainer.rate
    return trainer


def _build_trainer(setup: Setup) -> Trainer:
    import tensorflow as tf

    config, data = setup.config, setup.data
    train.seed_everything(config)
    model = models.build_model(config, data)
    optimizer = models.make_optimizer(_constant_rate_config(config), setup.steps_per_epoch)
    loss_fn = models.loss_for(data)  # what training optimizes, a user's change included
    label_type = tf.int32 if data.task == "classification" else tf.float32
    signature = [tf.TensorSpec((None, *data.input_shape), tf.float32), tf.TensorSpec((None,), label_type)]

    @tf.function(input_signature=signature)
    def step(x, y):
        inference = model(x, training=False)
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.reduce_mean(loss_fn(y, outputs))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        reference = tf.reduce_mean(_example_losses(data.task, y, outputs))
        reference_inference = tf.reduce_mean(_example_losses(data.task, y, inference))
        return loss, reference, reference_inference, outputs, inference

    initial = [np.array(v) for v in model.variables]
    return Trainer(model, optimizer, step, initial, config.optimizer.learning_rate)


def _initial_model(setup: Setup) -> keras.Model:
    return _trainer(setup).model


def _softmax(outputs: np.ndarray) -> np.ndarray:
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _probabilities_like(outputs: np.ndarray) -> bool:
    """Every row in [0, 1] and summing to 1: softmax was applied already."""
    return bool(outputs.shape[1] > 1 and outputs.min() >= 0 and outputs.max() <= 1
                and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


# ---------------------------------------------------------------- the checks


def determinism(setup: Setup) -> Result:
    """Hypothesis: the seed fixes everything random (R2.1): initial weights, data order,
    augmentation and dropout. Expected: two runs of a few training steps from the same seed give
    identical losses."""
    first, second = _short_run(setup), _short_run(setup)
    expected = f"identical losses in two {DETERMINISM_STEPS}-step runs from seed {setup.config.seed}"
    if first["losses"] == second["losses"]:
        return Result("determinism", PASS, f"identical losses {first['losses'][-1]:.6g} after "
                      f"{DETERMINISM_STEPS} steps", expected, "same seed, same run (R2.1)")
    step = next(i for i, (a, b) in enumerate(zip(first["losses"], second["losses"], strict=True)) if a != b)
    measured = f"step {step + 1}: {first['losses'][step]:.6g} vs {second['losses'][step]:.6g}"
    if not all(np.array_equal(a, b) for a, b in zip(first["weights"], second["weights"], strict=True)):
        why = ("the initial weights differ between two builds from the same seed: the model is built "
               "without seeding (call seed_everything / keras.utils.set_random_seed before building; "
               "give initializers created elsewhere a seed)")
    elif not np.array_equal(first["batch"], second["batch"]):
        why = ("the first training batch differs: the data order or augmentation is not seeded "
               "(shuffle(seed=...), seeds for augmentation layers)")
    else:
        why = ("same weights and same batch, different losses: an op draws unseeded random numbers "
               "(a dropout/noise layer or tf.random call without seed) or kernels are not "
               "deterministic (keep train.deterministic=true)")
    return Result("determinism", FAIL, measured, expected, why)


def _short_run(setup: Setup) -> dict:
    """A few eager training steps from the seed: the exact path training takes, minus fit."""
    import tensorflow as tf

    config, data = setup.config, setup.data
    train.seed_everything(config)
    model = models.build_model(config, data)
    weights = [np.array(w) for w in model.weights]
    optimizer = models.make_optimizer(_constant_rate_config(config), setup.steps_per_epoch)
    loss_fn = models.loss_for(data)
    dataset = make_dataset(data, data.train, config.train.batch_size, shuffle=True, seed=config.seed,
                           augment=config.data.augment)
    losses, batch = [], None
    for x, y in dataset.repeat().take(DETERMINISM_STEPS):
        batch = x.numpy() if batch is None else batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        losses.append(float(loss))
    return {"losses": losses, "weights": weights, "batch": batch}


def init_loss(setup: Setup) -> Result:
    """Hypothesis: before any step the model predicts the priors, so its loss is the priors' loss
    (R2.4, R2.5). Expected, within 5%: -log(1/C) for balanced classes; the prior entropy when the
    output bias holds the log class priors (the project's builders set it; a user's builder may
    not, so both values are compared); for regression the variance of the validation targets
    around the bias (the training mean), in the standard units the project trains in."""
    data = setup.data
    outputs, losses = _forward(_initial_model(setup), data.task, *_inputs(data, data.val))
    measured = float(np.mean(losses))
    prior = train.expected_initial_loss(data)
    if data.task == "regression":
        return _init_verdict(setup, outputs, measured, prior,
                             "the variance of the targets around the mean, in standard units (bias = mean)")
    if _probabilities_like(outputs):
        return Result("init_loss", FAIL, measured, prior, (
            "the outputs are already probabilities (rows in [0, 1] summing to 1): softmax is applied "
            "on the output layer and again by the loss and the predictions. Keras's fit quietly reads "
            "the pre-softmax logits, but predict/evaluate do not; remove the output activation (U3)"))
    balanced = math.log(data.num_outputs)
    if abs(balanced - prior) <= 0.01 * prior:
        return _init_verdict(setup, outputs, measured, prior,
                             f"-log(1/{data.num_outputs}): balanced classes, the bias holds the priors")
    if setup.config.model.name in BUILTIN_MODELS:
        return _init_verdict(setup, outputs, measured, prior,
                             "the prior entropy: the output bias holds the log class priors (R2.5)")
    # A user's builder: say which of the two it matches.
    if abs(measured - prior) <= INIT_LOSS_TOLERANCE * prior:
        return _init_verdict(setup, outputs, measured, prior,
                             "the prior entropy: your output bias holds the log class priors (R2.5)")
    if abs(measured - balanced) <= INIT_LOSS_TOLERANCE * balanced:
        return Result("init_loss", WARN, measured, f"{prior:.4g} (prior entropy)", (
            f"matches -log(1/{data.num_outputs}) = {balanced:.4g}, not the prior entropy {prior:.4g}: "
            "the output bias ignores the class priors, so expect a 'hockey stick' at the start of "
            "training; initialize it with Constant(output_bias) (R2.5, T3)"))
    return _init_verdict(setup, outputs, measured, prior,
                         f"the prior entropy ({prior:.4g}) or -log(1/C) = {balanced:.4g}")


def _init_verdict(setup: Setup, outputs, measured: float, expected: float, why: str) -> Result:
    if abs(measured - expected) <= INIT_LOSS_TOLERANCE * expected:
        return Result("init_loss", PASS, measured, expected, f"expected {why}")
    return Result("init_loss", FAIL, measured, expected,
                  f"expected {why}; {_init_diagnosis(setup.data, outputs, measured, expected)}")


def _init_diagnosis(data: Data, outputs: np.ndarray, measured: float, expected: float) -> str:
    """Too-large init scale (outputs vary between examples) or a wrong bias (their mean is off)."""
    if measured < expected:
        return ("lower than any prior-only prediction before training: the untrained model already "
                "predicts the labels; look for the label leaking into the inputs")
    if data.task == "classification":
        spread = float(outputs.std(axis=0).mean())
        priors = np.log(data.class_priors)
        offset = float(np.abs((outputs.mean(axis=0) - outputs.mean()) - (priors - priors.mean())).max())
        target = "log class priors"
    else:
        spread = float(outputs[:, 0].std())
        offset = float(abs(outputs[:, 0].mean() - data.output_bias[0]))
        target = "target mean"
    if spread > 0.3:  # a small output kernel keeps every example's logits within ~0.01 of the bias
        return (f"the initial outputs vary by {spread:.3g} (std) between examples: the output layer's "
                "init scale is too large; initialize its kernel small (zeros, or VarianceScaling with "
                "scale 1e-4 as the project's builders do); batch norm or gradient clipping would only "
                "hide it (U19)")
    return (f"the mean output is {offset:.3g} away from the {target}: the output bias is not set or "
            "wrong; initialize it with Constant(output_bias) (R2.5)")


ACTIVATIONS = {"softmax", "log_softmax", "sigmoid", "hard_sigmoid", "tanh", "relu", "relu6", "softplus",
               "softsign", "elu", "selu", "gelu", "silu", "exponential", "leakyrelu", "prelu"}


def _output_layer(model):
    """The layer (or op) producing the model's output, looking inside nested models."""
    try:
        layer = model.outputs[0]._keras_history.operation
    except (AttributeError, IndexError, TypeError, ValueError):
        layer = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(layer, keras.Model) and layer is not model:
        return _output_layer(layer)
    return layer


def _activation_name(layer) -> str | None:
    """The non-linear activation a layer applies last, if any."""
    if layer is None:
        return None
    kind = type(layer).__name__.lower()
    if kind in ACTIVATIONS:  # Softmax / ReLU layers, or keras.ops.sigmoid in a functional model
        return kind
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return None if name in (None, "linear") else name


def output_activation(setup: Setup) -> Result:
    """Hypothesis: the model outputs raw logits (U3); the loss takes logits and the predictions
    apply softmax once. Expected: no activation on the output layer, and outputs that are neither
    probabilities (rows in [0, 1] summing to 1) nor squashed into [0, 1] or [-1, 1] (tested on the
    data and on inputs scaled up 1000x, where a squashing activation saturates at its bounds)."""
    data = setup.data
    model = _initial_model(setup)
    layer = _output_layer(model)
    where = f"output layer '{getattr(layer, 'name', '?')}' ({type(layer).__name__})"
    activation = _activation_name(layer)
    x, y = _inputs(data, data.val, 256)
    outputs, _ = _forward(model, data.task, x, y)
    probe = x * _probe_scale(data)
    probe_outputs, _ = _forward(model, data.task, probe, y)
    both = np.concatenate([outputs, probe_outputs])
    measured = f"{where}, activation {activation or 'none'}, outputs in [{outputs.min():.3g}, {outputs.max():.3g}]"
    expected = "no output activation; unbounded logits (U3)"
    if data.task == "classification" and _probabilities_like(outputs):
        return Result("output_activation", FAIL, measured + ", rows sum to 1", expected, (
            f"the {where} outputs probabilities ({activation or 'a softmax inside it'}): the loss "
            "and the predictions apply softmax again, flattening them (Keras's fit hides it, "
            "predict/evaluate do not); remove the activation and train on logits (U3)"))
    if activation:
        return Result("output_activation", FAIL, measured, expected, (
            f"the {where} applies activation='{activation}': the losses take logits, so the outputs "
            "are squashed before the loss; remove it (U3) and apply it only when reading predictions"))
    for low, high in ((0.0, 1.0), (-1.0, 1.0)):
        inside = both.min() >= low and both.max() <= high
        saturated = probe_outputs.min() <= low + 1e-3 or probe_outputs.max() >= high - 1e-3
        if inside and saturated:
            return Result("output_activation", FAIL, measured + f", saturating at [{low:g}, {high:g}]",
                          expected, (f"the outputs of the {where} are squashed into [{low:g}, {high:g}] "
                                     "(a sigmoid or tanh inside it?): the loss takes logits; remove the "
                                     "squashing from the model's last operation (U3)"))
    return Result("output_activation", PASS, measured, expected, "the model outputs logits")


def _probe_scale(data: Data) -> np.ndarray:
    """1000 for every input value except categorical index columns (they must stay valid indices)."""
    scale = np.full(data.input_shape[-1], 1000.0, dtype=np.float32)
    scale[list(data.categorical)] = 1.0
    return scale


def batch_independence(setup: Setup) -> Result:
    """Hypothesis: the model never mixes examples (R2.12, U16): example i's loss depends on
    example i's input only. Measured with backprop in inference mode (batch norm then uses its
    moving statistics and mixes nothing legitimately). Expected: the gradient of example i's loss
    with respect to the whole input batch is zero on every other example."""
    import tensorflow as tf

    data = setup.data
    model = _initial_model(setup)
    x, y = _inputs(data, data.val, GRADIENT_EXAMPLES)
    x = tf.constant(x)
    own, leaked, pairs = 0.0, 0.0, 0
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _example_losses(data.task, y, model(x, training=False))[i]
        norms = _per_example_norms(tape.gradient(loss, x))
        own = max(own, norms[i])
        others = np.delete(norms, i)
        leaked = max(leaked, float(others.max()) if len(others) else 0.0)
        pairs += int((others > 0).sum())
    expected = "0 gradient on every other example"
    measured = f"largest gradient on another example {leaked:.3g} (own example {own:.3g})"
    if leaked > 1e-7 * max(own, 1e-30):
        layer = _first_mixing_layer(model, x)
        found = f"; the first layer whose output mixes them is '{layer.name}' ({type(layer).__name__})" if layer else ""
        return Result("batch_independence", FAIL, measured, expected, (
            f"an example's loss depends on other examples' inputs ({pairs} of {len(y) * (len(y) - 1)} "
            f"pairs){found}: a reshape/transpose that moves the batch axis or a reduction over axis 0 "
            "(e.g. mean(x, axis=0)) mixes the batch; check every reshape (U16, R2.12)"))
    if own == 0.0:
        layer = _first_mixing_layer(model, x)
        if layer is not None:
            return Result("batch_independence", FAIL, measured, expected, (
                f"layer '{layer.name}' ({type(layer).__name__}) mixes examples across the batch axis "
                "(found layer by layer: the loss's gradient is zero at init); check every reshape (U16)"))
        return Result("batch_independence", WARN, measured, expected, (
            "no gradient reaches the inputs at all (a zero-initialized output kernel, dead ReLUs or a "
            "stop_gradient): mixing cannot be measured through the loss; no layer mixes the batch"))
    return Result("batch_independence", PASS, measured, expected, "each example's loss sees its own input only")


def _per_example_norms(gradient) -> np.ndarray:
    values = keras.ops.convert_to_numpy(gradient).reshape(gradient.shape[0], -1)
    return np.sqrt((values.astype(np.float64) ** 2).sum(axis=1))


def _first_mixing_layer(model, x):
    """The first layer of a functional model whose output for example 0 depends on other examples."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for layer in getattr(model, "layers", []):
        try:
            partial = keras.Model(model.inputs, layer.output)
        except Exception:  # nested, shared or multi-output layers: skip, keep looking
            continue
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = partial(x, training=False)
            if out.shape[0] != x.shape[0]:
                return layer  # the batch dimension itself changed
            weights = tf.constant(rng.normal(size=out.shape[1:]), dtype=out.dtype)
            projection = tf.reduce_sum(out[0] * weights)  # random weights: sums like softmax's cancel
        gradient = tape.gradient(projection, x)
        if gradient is not None and _per_example_norms(gradient)[1:].max() > 0:
            return layer
    return None


def lr_schedule(setup: Setup) -> Result:
    """Hypothesis: the learning rate stays near its base for the early part of training (R3.4,
    U8): schedules tied to epochs move with the dataset size. Expected: constant, or at least 10%
    of the base rate over the first 25% of the steps, once any warmup is over."""
    config = setup.config
    base = config.optimizer.learning_rate
    total = config.train.epochs * setup.steps_per_epoch
    schedule = models.learning_rate(config, setup.steps_per_epoch)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return Result("lr_schedule", PASS, f"constant {float(schedule):.3g}", "constant, or >= 10% of the "
                      "base early on", "a constant rate: decay, if any, is tuned at the end (R3.4, U8)")
    early = max(1, int(total * SCHEDULE_EARLY))
    steps = np.unique(np.linspace(0, early, num=min(early + 1, 200)).astype(int))
    rates = np.array([float(keras.ops.convert_to_numpy(schedule(int(s)))) for s in steps])
    peak = int(np.argmax(rates))
    after = rates[peak:]
    lowest = int(np.argmin(after)) + peak
    measured = f"lowest {rates[lowest]:.3g} ({rates[lowest] / base:.0%} of {base:.3g}) at step {steps[lowest]} of {total}"
    expected = f">= {SCHEDULE_FLOOR * base:.3g} until step {early} (first {SCHEDULE_EARLY:.0%})"
    if rates[lowest] < SCHEDULE_FLOOR * base:
        epoch = steps[lowest] / setup.steps_per_epoch
        return Result("lr_schedule", WARN, measured, expected, (
            f"the schedule drives the rate below {SCHEDULE_FLOOR:.0%} of its base by epoch {epoch:.1f}: "
            "training stalls early and looks converged; use a constant rate (optimizer.schedule="
            "constant) or decay over the whole run, tuned at the end (R3.4, U8)"))
    return Result("lr_schedule", PASS, measured, expected, "the schedule keeps the rate up early on")


# -- overfit one batch (R2.8, U11, T1)


def classify_curve(losses) -> tuple[str, str]:
    """Names the shape of a loss curve that did not reach zero, and says what to try (T1).

    Rules, in order (L0 the first loss, "up" a step where the loss grew):
    1. exploding: a NaN or infinite loss;
    2. rising: at least 60% of the steps go up and the last tenth averages above 1.1 x L0;
    3. exploding: the loss went above 10 x L0 at some point;
    4. oscillating: in the second half, at least 30% of the steps go up and the mean step
       change is above 10% of the mean loss;
    5. plateau: anything else (it fell too little, or stalled).
    """
    values = np.asarray(losses, dtype=np.float64)
    if not np.isfinite(values).all():
        step = int(np.flatnonzero(~np.isfinite(values))[0])
        return "exploding", (f"exploding: the loss became {values[step]} at step {step}: the learning rate "
                             "is too high; lower it 3-10x (U12), and check for log(0) or a division by "
                             "zero in a custom loss")
    start = values[0]
    changes = np.diff(values)
    tail = values[-max(1, len(values) // 10):].mean()
    if len(changes) and (changes > 0).mean() >= 0.6 and tail > 1.1 * start:
        return "rising", (f"rising: the loss climbs from {start:.3g} to {tail:.3g}: a sign is flipped (the "
                          "loss is maximized); check the sign of a custom loss and of the gradient step")
    if values.max() > EXPLODED * start:
        step = int(np.argmax(values))
        return "exploding", (f"exploding: the loss jumped to {values.max():.3g} at step {step} "
                             f"({values.max() / start:.3g}x its start): the learning rate is too high; "
                             "lower it 3-10x (U12); gradient clipping or batch norm would only hide it (U19)")
    half = values[len(values) // 2 :]
    steps = np.diff(half)
    if len(steps) and (steps > 0).mean() >= 0.3 and np.abs(steps).mean() > 0.1 * half.mean():
        return "oscillating", ("oscillating: the loss jumps up and down: lower the learning rate, and check "
                               "that the labels stay fixed (augmentation or a label lookup that changes "
                               "between steps)")
    return "plateau", (f"plateau: the loss only went from {start:.3g} to {values[-1]:.3g}: raise the "
                       "learning rate, remove regularization (dropout, weight decay), check the output "
                       "layer (no activation, U3) and that the loss fits the task")


def _pick_batch(data: Data, seed: int) -> np.ndarray:
    """Indices into the training split: two per class (classes in turn), at most 16; 8 for regression."""
    rng = np.random.default_rng(seed)
    if data.task != "classification":
        return rng.permutation(len(data.train.y))[: OVERFIT_EXAMPLES // 2]
    size = min(OVERFIT_EXAMPLES, 2 * data.num_outputs, len(data.train.y))
    by_class = [list(rng.permutation(np.flatnonzero(data.train.y == c))) for c in range(data.num_outputs)]
    chosen = []
    while len(chosen) < size:
        for members in by_class:
            if members and len(chosen) < size:
                chosen.append(members.pop())
    return np.array(chosen)


def _fits(task: str, loss: float, outputs: np.ndarray, y: np.ndarray) -> bool:
    if task == "classification":
        return loss < OVERFIT_TARGET[task] and bool((outputs.argmax(axis=1) == y).all())
    return loss < OVERFIT_TARGET[task] and float(np.abs(outputs[:, 0] - y).max()) < OVERFIT_TOLERANCE


def _agreement(task: str, outputs: np.ndarray, y: np.ndarray) -> str:
    if task == "classification":
        return f"{int((outputs.argmax(axis=1) == y).sum())}/{len(y)} predictions match their labels"
    return f"largest error {np.abs(outputs[:, 0] - y).max():.3g} target std"


def _overfit(setup: Setup) -> dict:
    """Drives one tiny fixed training batch towards zero loss; records the curve.

    The curve is, per step, the lower of the loss in training mode and in inference mode, so
    neither dropout's noise nor batch norm's lagging moving averages hide a fit."""
    data = setup.data
    trainer = _trainer(setup)
    rate = max(setup.config.optimizer.learning_rate, OVERFIT_MIN_RATE)
    trainer.optimizer.learning_rate = rate
    chosen = _pick_batch(data, setup.config.seed)
    x, y = _inputs(data, Split(data.train.x[chosen], data.train.y[chosen], data.train.ids[chosen]))
    curve, optimized, outputs, fitted, timed_out = [], [], None, False, False
    started = time.perf_counter()
    for _ in range(OVERFIT_MAX_STEPS):
        loss, reference, reference_inference, out, out_inference = trainer.step(x, y)
        pair = (float(reference), float(reference_inference))
        lower = float(np.fmin(*pair))
        outputs = np.asarray(out_inference if not pair[1] > pair[0] else out, dtype=np.float64)
        curve.append(lower)
        optimized.append(float(loss))
        if not math.isfinite(lower) or _fits(data.task, lower, outputs, y):
            fitted = math.isfinite(lower)
            break
        if time.perf_counter() - started > setup.seconds:
            timed_out = True
            break
    return {"curve": curve, "optimized": optimized, "outputs": outputs, "x": x, "y": y, "chosen": chosen,
            "rate": rate, "fitted": fitted, "timed_out": timed_out}


def overfit_one_batch(setup: Setup) -> Result:
    """Hypothesis: the model, loss and optimizer can fit anything at all (R2.8, U11): a tiny fixed
    batch (two examples per class, at most 16) is driven to near-zero loss with every prediction
    matching its label. Runs at max(configured rate, 1e-3) for at most 300 steps. Expected: loss
    below 0.05 (classification; regression: MSE 0.01 in standard units with every prediction
    within 0.1 std); otherwise the curve's shape names the problem (classify_curve, T1)."""
    data = setup.data
    run = _overfit(setup)
    curve = run["curve"]
    target = OVERFIT_TARGET[data.task]
    size = len(run["y"])
    expected = f"loss < {target:g} and all {size} labels matched within {OVERFIT_MAX_STEPS} steps at lr {run['rate']:.3g}"
    measured = f"loss {curve[-1]:.3g} after {len(curve)} steps; {_agreement(data.task, run['outputs'], run['y'])}"
    shape, diagnosis = ("fit", "") if run["fitted"] else classify_curve(curve)
    path = _draw_overfit(setup, run, shape)
    seen = f" (see {path})"
    if run["fitted"] and max(curve) > EXPLODED * curve[0]:
        _, jump = classify_curve(curve[: int(np.argmax(curve)) + 1])
        return Result("overfit_one_batch", WARN, measured, expected, f"fit, but {jump}{seen}")
    if run["fitted"]:
        return Result("overfit_one_batch", PASS, measured, expected, f"the batch is memorized{seen}")
    if len(run["optimized"]) > 1 and run["optimized"][-1] < run["optimized"][0] and shape == "rising":
        diagnosis += f"; the optimized loss falls ({run['optimized'][-1]:.3g}) while the true loss rises"
    if run["timed_out"] and shape in ("plateau", "oscillating"):
        return Result("overfit_one_batch", WARN, measured, expected, (
            f"stopped by the {setup.seconds:.0f} s time limit before a verdict (so far {diagnosis}); "
            f"run make check for the full experiment{seen}"))
    return Result("overfit_one_batch", FAIL, measured, expected, diagnosis + seen)


# -- brief training runs: input-independent baseline (R2.7) and loss_decreases (R2.9)


def _brief_run(setup: Setup, zeroed: bool) -> dict:
    """BRIEF_STEPS training steps on the real (or zeroed) inputs, same seed and batches, at the
    configured rate; losses measured in inference mode before and after."""
    key = f"brief_zeroed={zeroed}"
    if key in setup.cache:
        return setup.cache[key]
    config, data = setup.config, setup.data
    trainer = _trainer(setup)
    scale = 0.0 if zeroed else 1.0
    train_x, train_y = _inputs(data, data.train)
    val_x, val_y = _inputs(data, data.val)

    def mean_loss(x, y):
        return float(np.mean(_forward(trainer.model, data.task, x * scale, y)[1]))

    before = mean_loss(train_x, train_y)
    dataset = make_dataset(data, data.train, config.train.batch_size, shuffle=True, seed=config.seed,
                           augment=config.data.augment)
    losses = [float(trainer.step(x * scale, y)[0]) for x, y in dataset.repeat().take(BRIEF_STEPS)]
    result = {"before": before, "after": mean_loss(train_x, train_y), "val": mean_loss(val_x, val_y),
              "losses": losses}
    if not zeroed:
        result["first_kernel"] = _first_conv_kernel(trainer.model)
    setup.cache[key] = result
    return result


def input_independent_baseline(setup: Setup) -> Result:
    """Hypothesis: the inputs carry signal the model uses (R2.7): trained briefly on the real
    inputs it must beat the same model trained on zeroed inputs (same seed, same batches,
    BRIEF_STEPS steps). Expected: validation loss with real inputs <= 90% of the zeroed one."""
    zero, real = _brief_run(setup, zeroed=True), _brief_run(setup, zeroed=False)
    ratio = real["val"] / zero["val"] if zero["val"] > 0 else math.inf
    measured = f"val loss {real['val']:.4g} (real inputs) vs {zero['val']:.4g} (zeroed), ratio {ratio:.3f}"
    expected = f"ratio <= {CLEARLY_BETTER:g} after {BRIEF_STEPS} steps"
    if ratio <= CLEARLY_BETTER:
        return Result("input_independent_baseline", PASS, measured, expected,
                      "the model uses the inputs: clearly better than the zeroed-input model")
    if ratio <= SLIGHTLY_BETTER:
        return Result("input_independent_baseline", WARN, measured, expected, (
            "only slightly better than the zeroed-input model: a weak signal, or a model that learns "
            "slowly at this rate; look at the data (make inspect) and overfit_one_batch"))
    return Result("input_independent_baseline", FAIL, measured, expected, (
        "no better than a model that never sees the inputs: the inputs carry no usable signal to the "
        "model; check that labels line up with their inputs (not shuffled or misaligned), that the "
        "inputs reach the output (a disconnected or zeroed branch), and loss_decreases"))


def loss_decreases(setup: Setup) -> Result:
    """Hypothesis: training lowers the training loss from the first steps on (R2.9). Expected:
    the inference-mode loss on the (sampled) training split falls by at least 3% in BRIEF_STEPS
    steps at the configured rate."""
    run = _brief_run(setup, zeroed=False)
    before, after = run["before"], run["after"]
    measured = f"{before:.4g} -> {after:.4g} in {BRIEF_STEPS} steps"
    expected = f"<= {LOSS_FALLS * before:.4g} ({1 - LOSS_FALLS:.0%} lower)"
    if not math.isfinite(after):
        return Result("loss_decreases", FAIL, measured, expected, (
            "the loss became NaN/inf: the learning rate is too high (lower it 3-10x), or the inputs "
            "hold huge values (make inspect)"))
    if after <= LOSS_FALLS * before:
        return Result("loss_decreases", PASS, measured, expected, "the training loss falls")
    if after < before:
        return Result("loss_decreases", WARN, measured, expected, (
            "the loss barely falls: raise the learning rate (U12, T8), check that labels match "
            "their inputs and that regularization is off for now"))
    if after > EXPLODED * before:
        return Result("loss_decreases", FAIL, measured, expected, (
            "the training loss explodes: the learning rate is too high; lower it 3-10x (U12)"))
    return Result("loss_decreases", FAIL, measured, expected, (
        "the training loss rises: a flipped sign in the loss or update, or a learning rate too high; "
        "overfit_one_batch's curve tells them apart (T1)"))


def human_baseline(setup: Setup) -> Result:
    """Hypothesis: none, a record (R2.6): the human baseline sits next to the dumb baselines here,
    and the model is compared with it in metrics after training. Expected: the configured value."""
    data = setup.data
    value = setup.config.check.human_baseline
    if data.task == "classification":
        majority = float(np.mean(data.val.y == np.argmax(data.class_priors)))
        dumb = f"majority-class accuracy {majority:.3f} (val)"
    else:
        mae = float(np.abs(data.val.y - data.target_mean).mean())
        dumb = f"mean-predictor MAE {mae:.4g} (val)"
    if value is None:
        return Result("human_baseline", PASS, None, dumb, (
            "set check.human_baseline to what a person reaches on this task, to compare against (R2.6)"))
    return Result("human_baseline", PASS, float(value), dumb,
                  "recorded; metrics.json compares the trained model with it (R2.6)")


ALL_CHECKS = (determinism, init_loss, output_activation, batch_independence, lr_schedule,
              overfit_one_batch, loss_decreases, input_independent_baseline, human_baseline)
FAST_CHECKS = (init_loss, output_activation, batch_independence, lr_schedule, overfit_one_batch,
               human_baseline)


# ---------------------------------------------------------------- pictures


def draw_input_batch(setup: Setup) -> Path:
    """R2.10: the first training batch exactly as it enters the network (normalized, augmented
    when data.augment is on), from the same pipeline training uses, with its labels."""
    config, data = setup.config, setup.data
    dataset = make_dataset(data, data.train, config.train.batch_size, shuffle=True, seed=config.seed,
                           augment=config.data.augment)
    x, y = next(iter(dataset))
    x, y = x.numpy()[:PICTURE_EXAMPLES], y.numpy()[:PICTURE_EXAMPLES]
    if data.task == "classification":
        captions = [data.class_names[int(v)] for v in y]
    else:
        captions = [f"{float(v):.4g}" for v in unscale_targets(data, y)]
    path = setup.folder / "input_batch.png"
    state = "normalized" + (", augmented" if config.data.augment else "")
    if data.kind == "image":
        normalized = data.normalize(data.train.x)
        value_range = (float(normalized.min()), float(normalized.max()))
        title = (f"first training batch as the network sees it ({state}), "
                 f"shown on [{value_range[0]:.2f}, {value_range[1]:.2f}], the normalized training range")
        grid = pictures.image_grid_array(pictures.to_uint8(x, value_range), captions, title)
        pictures.save_array(grid, path)
        return path
    names = data.feature_names or [str(i) for i in range(x.shape[1])]
    return pictures.table_heatmap_figure(x, captions, names, path,
                                         f"first training batch as the network sees it ({state})")


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _first_conv_kernel(model) -> np.ndarray | None:
    conv = next((layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Conv2D)), None)
    return None if conv is None else np.array(conv.kernel)


def draw_first_layer_weights(setup: Setup) -> Path | None:
    """R4.13: the first convolution's filters, from the trained run's model.keras when there is
    one, else from the model after the brief training run. Trained filters look like edges and
    blobs; noise after a full training run means a too-high rate or too little training."""
    kernel, source = None, ""
    trained = setup.config.run_dir / "model.keras"
    if trained.is_file():
        try:
            kernel, source = _first_conv_kernel(keras.saving.load_model(trained)), f"trained {trained}"
        except Exception:  # a user's custom layers may not load; fall back to the brief run
            kernel = None
    if kernel is None:
        kernel = setup.cache.get("brief_zeroed=False", {}).get("first_kernel")
        source = f"after {BRIEF_STEPS} training steps (train, then rerun check, for trained filters)"
    if kernel is None:
        return None
    limit = float(np.abs(kernel).max()) or 1.0
    filters = np.moveaxis(kernel, -1, 0)  # (filters, height, width, input channels)
    if filters.shape[-1] not in (1, 3):
        filters = filters[..., :1]  # first input channel only
    images = pictures.to_uint8(filters[:64], (-limit, limit))
    title = f"first-layer filters, {source}; grey = 0, range +-{limit:.3g}"
    grid = pictures.image_grid_array(images, [str(i) for i in range(len(images))], title, columns=16, cell=32)
    path = setup.folder / "first_layer_weights.png"
    pictures.save_array(grid, path)
    return path


def _draw_overfit(setup: Setup, run: dict, shape: str) -> Path:
    """R2.8: the loss curve, and labels next to predictions for every example of the batch."""
    import matplotlib.pyplot as plt

    data = setup.data
    curve = np.asarray(run["curve"])
    outputs = np.nan_to_num(run["outputs"], nan=0.0, posinf=1e6, neginf=-1e6)
    height = max(4.5, 0.42 * len(run["y"]))  # the label/prediction panel gets ~0.4 inch per example
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1, 1.3]})
    finite = np.isfinite(curve)
    left.plot(np.flatnonzero(finite), curve[finite], marker=".", markersize=3, label="loss on the batch")
    left.axhline(OVERFIT_TARGET[data.task], color="grey", linestyle="--", label="target")
    if finite.any() and (curve[finite] > 0).all():
        left.set_yscale("log")
    left.set_xlabel("step")
    left.set_title(f"overfit one batch at lr {run['rate']:.3g}: {shape}")
    left.legend()
    if data.task == "classification":
        images = None
        if data.kind == "image":
            value_range = (float(data.train.x.min()), float(data.train.x.max()))
            images = pictures.to_uint8(data.train.x[run["chosen"]], value_range)
        panel = pictures.classification_panel(_softmax(outputs), run["y"], data.class_names,
                                              "label -> prediction", images)
        right.imshow(panel)
        right.axis("off")
    else:
        targets = unscale_targets(data, run["y"])
        predictions = unscale_targets(data, outputs[:, 0])
        right.scatter(targets, predictions)
        low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
        right.plot([low, high], [low, high], color="grey", linewidth=1)
        right.set_xlabel("label")
        right.set_ylabel("prediction")
    path = setup.folder / "overfit_one_batch.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path


# ---------------------------------------------------------------- running them


def run_checks(setup: Setup, checks) -> list[Result]:
    """Runs each check, prints its line as soon as it is known; a crash becomes that check's FAIL."""
    results = []
    with warnings.catch_warnings():
        # Keras warns on every softmax + from_logits loss; output_activation reports it once.
        warnings.filterwarnings("ignore", message=".*from_logits=True.*")
        for check_function in checks:
            try:
                result = check_function(setup)
            except UsageError:
                raise
            except Exception as err:  # one broken check must not hide the others' verdicts
                result = Result(check_function.__name__, FAIL, None, None,
                                f"the check could not run: {type(err).__name__}: {str(err)[:300]}")
            print(result.line(), flush=True)
            results.append(result)
    return results


def write_results(results: list[Result], run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "checks.json"
    path.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    return path


def _summary(results: list[Result], path: Path) -> str:
    counts = {status: sum(r.status == status for r in results) for status in (PASS, WARN, FAIL)}
    return f"{counts[PASS]} passed, {counts[WARN]} warned, {counts[FAIL]} failed; details in {path}"


def _header(setup: Setup, what: str) -> str:
    data = setup.data
    line = (f"{what}: model {_trainer(setup).model.name} on {data.source} ({data.kind}, {data.task}), "
            f"{len(data.train.y)} training examples")
    return line + (f"\n{setup.note}" if setup.note else "")


def check(config: Config) -> int:
    """`python -m <package> check`: every check on the configured model and data; 1 on any FAIL."""
    started = time.perf_counter()
    setup = make_setup(config, load(config))
    print(_header(setup, "recipe checks"), flush=True)
    results = run_checks(setup, ALL_CHECKS)
    drawn = [draw_input_batch(setup), draw_first_layer_weights(setup)]
    path = write_results(results, config.run_dir)
    print("pictures: " + ", ".join(str(p) for p in drawn if p) + f", {setup.folder / 'overfit_one_batch.png'}")
    print(f"{_summary(results, path)} ({time.perf_counter() - started:.0f} s)")
    return 1 if any(r.status == FAIL for r in results) else 0


def before_training(config: Config, data: Data) -> int:
    """The fast checks `train` runs first (check.before_train=false skips them); 1 on any FAIL."""
    started = time.perf_counter()
    setup = make_setup(config, data, seconds=BEFORE_TRAINING_SECONDS)
    print(_header(setup, "recipe checks before training (make check runs them all)"), flush=True)
    results = run_checks(setup, FAST_CHECKS)
    draw_input_batch(setup)
    path = write_results(results, config.run_dir)
    print(f"{_summary(results, path)} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if any(r.status == FAIL for r in results) else 0
