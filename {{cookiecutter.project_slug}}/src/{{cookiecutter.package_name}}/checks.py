"""The recipe's sanity experiments (R2, T1): hypotheses about the setup, tested on the configured
model and data, each with a verdict and a diagnosis a person can act on.

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
PICTURE_EXAMPLES = 32
CHECK_SECONDS = 60.0  # overfit_one_batch gives up (WARN, undecided) after this long
BEFORE_TRAINING_SECONDS = 8.0
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
    """At most `limit` training and validation examples (seeded), and a sentence saying so."""
    if len(data.train.y) <= limit and len(data.val.y) <= limit:
        return data, ""
    rng = np.random.default_rng(seed)

    def take(split: Split) -> Split:
        if len(split.y) <= limit:
            return split
        keep = np.sort(rng.choice(len(split.y), limit, replace=False))
        return Split(split.x[keep], split.y[keep], split.ids[keep])

    total = len(data.train.y)
    note = f"checks use {min(limit, total)} of {total} training examples (check.sample={limit})"
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


def _inputs(data: Data, split: Split, limit: int | None = None):
    """A split as it enters the network: normalized inputs, scaled targets."""
    x = np.asarray(data.normalize(split.x[:limit]), dtype=np.float32)
    return x, scale_targets(data, split.y[:limit])


def _forward(model, task: str, x: np.ndarray, y: np.ndarray, chunk: int = 256):
    """Outputs (inference mode) and per-example reference losses, in chunks."""
    outputs, losses = [], []
    for start in range(0, len(x), chunk):
        out = model(x[start : start + chunk], training=False)
        loss = _example_losses(task, y[start : start + chunk], out)
        outputs.append(keras.ops.convert_to_numpy(out))
        losses.append(keras.ops.convert_to_numpy(loss))
    return np.concatenate(outputs).astype(np.float64), np.concatenate(losses).astype(np.float64)


def _snapshot(variable) -> np.ndarray:
    return variable.value.numpy().copy()


def _constant_rate_optimizer(setup: Setup):
    """The configured optimizer at its base rate: checks last a few hundred steps (lr_schedule
    looks at the schedule on its own) and a weight EMA would blur them."""
    config = setup.config
    optimizer = dataclasses.replace(config.optimizer, schedule="constant", ema=False)
    return models.make_optimizer(
        dataclasses.replace(config, optimizer=optimizer), setup.steps_per_epoch
    )


def _dataset(setup: Setup):
    """The training pipeline exactly as train builds it: shuffled from the seed, augmented if on."""
    config, data = setup.config, setup.data
    return make_dataset(
        data,
        data.train,
        config.train.batch_size,
        shuffle=True,
        seed=config.seed,
        augment=config.data.augment,
    )


@dataclass
class Trainer:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: object  # traced (x, y) -> loss, reference loss in training/inference mode, both outputs
    initial: list  # every model variable at init, seed-generator states included
    rate: float


def _trainer(setup: Setup) -> Trainer:
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
    train.seed_everything(setup.config)
    model = models.build_model(setup.config, data)
    optimizer = _constant_rate_optimizer(setup)
    loss_fn = models.loss_for(data)  # what training optimizes, a user's change included
    labels = tf.int32 if data.task == "classification" else tf.float32
    x_spec = tf.TensorSpec((None, *data.input_shape), tf.float32)

    @tf.function(input_signature=[x_spec, tf.TensorSpec((None,), labels)])
    def step(x, y):
        inference = model(x, training=False)
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.reduce_mean(loss_fn(y, outputs))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        reference = tf.reduce_mean(_example_losses(data.task, y, outputs))
        reference_inference = tf.reduce_mean(_example_losses(data.task, y, inference))
        return loss, reference, reference_inference, outputs, inference

    initial = [_snapshot(v) for v in model.variables]
    return Trainer(model, optimizer, step, initial, setup.config.optimizer.learning_rate)


def _softmax(outputs: np.ndarray) -> np.ndarray:
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _probabilities_like(outputs: np.ndarray) -> bool:
    """Every row in [0, 1] and summing to 1: softmax was applied already."""
    in_range = outputs.shape[1] > 1 and outputs.min() >= 0 and outputs.max() <= 1
    return bool(in_range and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


# ---------------------------------------------------------------- the checks


def determinism(setup: Setup) -> Result:
    """Hypothesis: the seed fixes everything random (R2.1): initial weights, data order,
    augmentation and dropout. Expected: two runs of a few training steps from the same seed give
    identical losses."""
    first, second = _short_run(setup), _short_run(setup)
    expected = (
        f"identical losses in two {DETERMINISM_STEPS}-step runs from seed {setup.config.seed}"
    )
    if first["losses"] == second["losses"]:
        measured = f"identical losses {first['losses'][-1]:.6g} after {DETERMINISM_STEPS} steps"
        return Result("determinism", PASS, measured, expected, "same seed, same run (R2.1)")
    step = next(
        i for i, (a, b) in enumerate(zip(first["losses"], second["losses"], strict=True)) if a != b
    )
    measured = f"step {step + 1}: {first['losses'][step]:.6g} vs {second['losses'][step]:.6g}"
    if not all(
        np.array_equal(a, b) for a, b in zip(first["weights"], second["weights"], strict=True)
    ):
        why = (
            "the initial weights differ between two builds from the same seed: the model is built "
            "without seeding (call seed_everything / keras.utils.set_random_seed before building; "
            "give initializers created elsewhere a seed)"
        )
    elif not np.array_equal(first["batch"], second["batch"]):
        why = (
            "the first training batch differs: the data order or augmentation is not seeded "
            "(shuffle(seed=...), seeds for augmentation layers)"
        )
    else:
        why = (
            "same weights and batch, different losses: an op draws unseeded random numbers (a "
            "dropout/noise layer or tf.random call without seed) or kernels are not deterministic "
            "(keep train.deterministic=true)"
        )
    return Result("determinism", FAIL, measured, expected, why)


def _short_run(setup: Setup) -> dict:
    """A few eager training steps from the seed: the path training takes, minus fit."""
    import tensorflow as tf

    train.seed_everything(setup.config)
    model = models.build_model(setup.config, setup.data)
    weights = [_snapshot(w) for w in model.weights]
    optimizer = _constant_rate_optimizer(setup)
    loss_fn = models.loss_for(setup.data)
    losses, batch = [], None
    for x, y in _dataset(setup).repeat().take(DETERMINISM_STEPS):
        batch = x.numpy() if batch is None else batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        losses.append(float(loss))
    return {"losses": losses, "weights": weights, "batch": batch}


def init_loss(setup: Setup) -> Result:
    """Hypothesis: before any step the model predicts the priors, so its loss is the priors' loss
    (R2.4, R2.5). Expected, within 5%: -log(1/C) for balanced classes; the prior entropy when the
    output bias holds the log class priors (the project's builders set it; a user's builder may
    not, so both values are compared); for regression the variance of the validation targets
    around the bias (the training mean), in the standard units the project trains in."""
    data = setup.data
    outputs, losses = _forward(_trainer(setup).model, data.task, *_inputs(data, data.val))
    measured = float(np.mean(losses))
    prior = train.expected_initial_loss(data)
    if data.task == "regression":
        why = "the variance of the targets around the mean, in standard units (bias = mean)"
        return _init_verdict(data, outputs, measured, prior, why)
    if _probabilities_like(outputs):
        why = (
            "the outputs are already probabilities (rows in [0, 1] summing to 1): softmax on the "
            "output layer, then again in the loss and the predictions. Keras's fit quietly reads "
            "the pre-softmax logits, predict/evaluate do not; remove the output activation (U3)"
        )
        return Result("init_loss", FAIL, measured, prior, why)
    balanced = math.log(data.num_outputs)
    if abs(balanced - prior) <= 0.01 * prior:
        why = f"-log(1/{data.num_outputs}): balanced classes, the bias holds the priors"
        return _init_verdict(data, outputs, measured, prior, why)
    if setup.config.model.name in BUILTIN_MODELS:
        why = "the prior entropy: the output bias holds the log class priors (R2.5)"
        return _init_verdict(data, outputs, measured, prior, why)
    # A user's builder may ignore output_bias: say which of the two values it matches (the nearer).
    near_prior = abs(measured - prior) <= abs(measured - balanced)
    nearer = prior if near_prior else balanced
    if abs(measured - nearer) > INIT_LOSS_TOLERANCE * nearer:
        why = f"the prior entropy ({prior:.4g}) or -log(1/C) = {balanced:.4g}"
        return _init_verdict(data, outputs, measured, prior, why)
    if near_prior:
        why = "the prior entropy: your output bias holds the log class priors (R2.5)"
        return _init_verdict(data, outputs, measured, prior, why)
    why = (
        f"matches -log(1/{data.num_outputs}) = {balanced:.4g}, not the prior entropy {prior:.4g}: "
        "the output bias ignores the class priors, so expect a 'hockey stick' at the start of "
        "training; initialize it with Constant(output_bias) (R2.5, T3)"
    )
    return Result("init_loss", WARN, measured, f"{prior:.4g} (prior entropy)", why)


def _init_verdict(data: Data, outputs, measured: float, expected: float, why: str) -> Result:
    if abs(measured - expected) <= INIT_LOSS_TOLERANCE * expected:
        return Result("init_loss", PASS, measured, expected, f"expected {why}")
    cause = _init_diagnosis(data, outputs, measured, expected)
    return Result("init_loss", FAIL, measured, expected, f"expected {why}; {cause}")


def _init_diagnosis(data: Data, outputs: np.ndarray, measured: float, expected: float) -> str:
    """Too-large init scale (outputs vary between examples) or a wrong bias (their mean is off)."""
    if measured < expected:
        return (
            "lower than any prior-only prediction before training: the untrained model already "
            "predicts the labels; look for the label leaking into the inputs"
        )
    if data.task == "classification":
        spread = float(outputs.std(axis=0).mean())
        priors = np.log(data.class_priors)
        means = outputs.mean(axis=0)
        offset = float(np.abs((means - means.mean()) - (priors - priors.mean())).max())
        target = "log class priors"
    else:
        spread = float(outputs[:, 0].std())
        offset = float(abs(outputs[:, 0].mean() - data.output_bias[0]))
        target = "target mean"
    if spread > 0.3:  # a small output kernel keeps every example's logits within ~0.01 of the bias
        return (
            f"the initial outputs vary by {spread:.3g} (std) between examples: the output "
            "layer's init scale is too large; initialize its kernel small (zeros, or "
            "VarianceScaling(1e-4) as the project's builders do); batch norm or gradient "
            "clipping would only hide it (U19)"
        )
    return (
        f"the mean output is {offset:.3g} away from the {target}: the output bias is not set or "
        "wrong; initialize it with Constant(output_bias) (R2.5)"
    )


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
    model = _trainer(setup).model
    layer = _output_layer(model)
    where = f"output layer '{getattr(layer, 'name', '?')}' ({type(layer).__name__})"
    activation = _activation_name(layer)
    x, y = _inputs(data, data.val, 256)
    outputs, _ = _forward(model, data.task, x, y)
    probe, _ = _forward(model, data.task, x * _probe_scale(data), y)
    both = np.concatenate([outputs, probe])
    span = f"[{outputs.min():.3g}, {outputs.max():.3g}]"
    measured = f"{where}, activation {activation or 'none'}, outputs in {span}"
    expected = "no output activation; unbounded logits (U3)"
    if data.task == "classification" and _probabilities_like(outputs):
        why = (
            f"the {where} outputs probabilities ({activation or 'a softmax inside it'}): the loss "
            "and the predictions apply softmax again, flattening them (Keras's fit hides it, "
            "predict/evaluate do not); remove the activation and train on logits (U3)"
        )
        return Result("output_activation", FAIL, measured + ", rows sum to 1", expected, why)
    if activation:
        why = (
            f"the {where} applies activation='{activation}': the losses take logits, so the "
            "outputs are squashed before the loss; remove it (U3), apply it to read predictions"
        )
        return Result("output_activation", FAIL, measured, expected, why)
    for low, high in ((0.0, 1.0), (-1.0, 1.0)):
        inside = both.min() >= low and both.max() <= high
        saturated = probe.min() <= low + 1e-3 or probe.max() >= high - 1e-3
        if inside and saturated:
            why = (
                f"the outputs of the {where} are squashed into [{low:g}, {high:g}] (a sigmoid or "
                "tanh inside it?): the loss takes logits; remove the squashing (U3)"
            )
            measured += f", saturating at [{low:g}, {high:g}] on inputs x1000"
            return Result("output_activation", FAIL, measured, expected, why)
    return Result("output_activation", PASS, measured, expected, "the model outputs logits")


def _probe_scale(data: Data) -> np.ndarray:
    """1000 for every input value except categorical index columns (they must stay valid)."""
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
    model = _trainer(setup).model
    x, y = _inputs(data, data.val, GRADIENT_EXAMPLES)
    x = tf.constant(x)
    own, leaked, pairs = 0.0, 0.0, 0
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _example_losses(data.task, y, model(x, training=False))[i]
        norms = _per_example_norms(tape.gradient(loss, x))
        others = np.delete(norms, i)
        own, leaked = max(own, norms[i]), max(leaked, float(others.max(initial=0.0)))
        pairs += int((others > 0).sum())
    expected = "0 gradient on every other example"
    measured = f"largest gradient on another example {leaked:.3g} (own example {own:.3g})"
    mixes = "a reshape/transpose that moves the batch axis or a reduction over axis 0 (e.g. "
    mixes += "mean(x, axis=0)) mixes the batch; check every reshape (U16, R2.12)"
    if leaked > 1e-7 * max(own, 1e-30):
        layer = _first_mixing_layer(model, x)
        found = f", first in layer '{layer.name}' ({type(layer).__name__})" if layer else ""
        why = f"example losses depend on other examples' inputs ({pairs} pairs){found}: {mixes}"
        return Result("batch_independence", FAIL, measured, expected, why)
    if own == 0.0:  # e.g. a zero-initialized output kernel: look layer by layer instead
        layer = _first_mixing_layer(model, x)
        if layer is not None:
            why = f"layer '{layer.name}' ({type(layer).__name__}) mixes examples: {mixes}"
            return Result("batch_independence", FAIL, measured, expected, why)
        why = (
            "no gradient reaches the inputs through the loss at init (a zero output kernel, dead "
            "ReLUs, a stop_gradient); layer by layer, no layer mixes the batch"
        )
        return Result("batch_independence", WARN, measured, expected, why)
    why = "each example's loss sees its own input only"
    return Result("batch_independence", PASS, measured, expected, why)


def _per_example_norms(gradient) -> np.ndarray:
    values = keras.ops.convert_to_numpy(gradient).reshape(gradient.shape[0], -1)
    return np.sqrt((values.astype(np.float64) ** 2).sum(axis=1))


def _first_mixing_layer(model, x):
    """The first layer of a functional model whose output for example 0 depends on the others."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for layer in getattr(model, "layers", []):
        try:
            partial = keras.Model(model.inputs, layer.output)
        except Exception:  # nested, shared or multi-output layers: skip them, keep looking
            continue
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = partial(x, training=False)
            if out.shape[0] != x.shape[0]:
                return layer  # the batch dimension itself changed
            # A random projection: a plain sum can cancel (a softmax row sums to 1).
            weights = tf.constant(rng.normal(size=out.shape[1:]), dtype=out.dtype)
            projection = tf.reduce_sum(out[0] * weights)
        gradient = tape.gradient(projection, x)
        if gradient is not None and _per_example_norms(gradient)[1:].max() > 0:
            return layer
    return None


def lr_schedule(setup: Setup) -> Result:
    """Hypothesis: the learning rate stays near its base for the early part of training (R3.4,
    U8): schedules tied to epochs move with the dataset size. Expected: constant, or at least 10%
    of the base rate over the first 25% of the steps, once any warmup is over."""
    config, spe = setup.config, setup.steps_per_epoch
    base = config.optimizer.learning_rate
    total = config.train.epochs * spe
    early = max(1, int(total * SCHEDULE_EARLY))
    expected = f">= {SCHEDULE_FLOOR * base:.3g} until step {early} (first {SCHEDULE_EARLY:.0%})"
    schedule = models.learning_rate(config, spe)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        why = "a constant rate: decay, if any, is tuned at the end (R3.4, U8)"
        return Result("lr_schedule", PASS, f"constant {float(schedule):.3g}", expected, why)
    steps = np.unique(np.linspace(0, early, num=min(early + 1, 200)).astype(int))
    rates = np.array([float(keras.ops.convert_to_numpy(schedule(int(s)))) for s in steps])
    peak = int(np.argmax(rates))
    low = peak + int(np.argmin(rates[peak:]))
    measured = (
        f"lowest {rates[low]:.3g} ({rates[low] / base:.0%} of {base:.3g}) at step {steps[low]}"
    )
    measured += f" of {total}"
    if rates[low] < SCHEDULE_FLOOR * base:
        why = (
            f"the schedule drives the rate below {SCHEDULE_FLOOR:.0%} of its base by epoch "
            f"{steps[low] / spe:.1f}: training stalls early and looks converged; use a constant "
            "rate (optimizer.schedule=constant) or decay over the whole run, tuned at the end "
            "(R3.4, U8)"
        )
        return Result("lr_schedule", WARN, measured, expected, why)
    return Result(
        "lr_schedule", PASS, measured, expected, "the schedule keeps the rate up early on"
    )


# -- overfit one batch (R2.8, U11, T1)


def classify_curve(losses) -> tuple[str, str]:
    """Names the shape of a loss curve that did not reach zero, and says what to try (T1).

    Rules, in order (L0 the first loss; a step "goes up" when the loss grew):
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
        return "exploding", (
            f"exploding: the loss became {values[step]} at step {step}: the "
            "learning rate is too high; lower it 3-10x (U12), and check for "
            "log(0) or a division by zero in a custom loss"
        )
    start, changes = values[0], np.diff(values)
    tail = values[-max(1, len(values) // 10) :].mean()
    if len(changes) and (changes > 0).mean() >= 0.6 and tail > 1.1 * start:
        return "rising", (
            f"rising: the loss climbs from {start:.3g} to {tail:.3g}: a sign is "
            "flipped (the loss is maximized); check the sign of a custom loss and of "
            "the gradient step"
        )
    if values.max() > EXPLODED * start:
        return "exploding", (
            f"exploding: the loss jumped to {values.max():.3g} at step "
            f"{int(np.argmax(values))} ({values.max() / start:.3g}x its start): "
            "the learning rate is too high; lower it 3-10x (U12); gradient "
            "clipping or batch norm would only hide it (U19)"
        )
    half = values[len(values) // 2 :]
    steps = np.diff(half)
    if len(steps) and (steps > 0).mean() >= 0.3 and np.abs(steps).mean() > 0.1 * half.mean():
        return "oscillating", (
            "oscillating: the loss jumps up and down: lower the learning rate, "
            "and check that the labels stay fixed (augmentation or a label "
            "lookup that changes between steps)"
        )
    return "plateau", (
        f"plateau: the loss only went from {start:.3g} to {values[-1]:.3g}: raise the "
        "learning rate, remove regularization (dropout, weight decay), check the "
        "output layer (no activation, U3) and that the loss fits the task"
    )


def _pick_batch(data: Data, seed: int) -> np.ndarray:
    """Training indices: two per class (classes in turn) up to 16; 8 examples for regression."""
    rng = np.random.default_rng(seed)
    if data.task != "classification":
        return rng.permutation(len(data.train.y))[: OVERFIT_EXAMPLES // 2]
    size = min(OVERFIT_EXAMPLES, 2 * data.num_outputs, len(data.train.y))
    by_class = [
        list(rng.permutation(np.flatnonzero(data.train.y == c))) for c in range(data.num_outputs)
    ]
    chosen = []
    while len(chosen) < size:
        chosen += [members.pop() for members in by_class if members][: size - len(chosen)]
    return np.array(chosen)


def _fits(task: str, loss: float, outputs: np.ndarray, y: np.ndarray) -> bool:
    if task == "classification":
        return loss < OVERFIT_TARGET[task] and bool((outputs.argmax(axis=1) == y).all())
    return (
        loss < OVERFIT_TARGET[task] and float(np.abs(outputs[:, 0] - y).max()) < OVERFIT_TOLERANCE
    )


def _agreement(task: str, outputs: np.ndarray, y: np.ndarray) -> str:
    if task == "classification":
        return f"{int((outputs.argmax(axis=1) == y).sum())}/{len(y)} predictions match their labels"
    return f"largest error {np.abs(outputs[:, 0] - y).max():.3g} target std"


def _overfit(setup: Setup) -> dict:
    """Drives one tiny fixed training batch towards zero loss and records the curve: per step the
    lower of the loss in training and in inference mode, so neither dropout's noise nor batch
    norm's lagging moving averages hide a fit."""
    data = setup.data
    trainer = _trainer(setup)
    rate = trainer.optimizer.learning_rate = max(trainer.rate, OVERFIT_MIN_RATE)
    chosen = _pick_batch(data, setup.config.seed)
    x, y = _inputs(data, Split(data.train.x[chosen], data.train.y[chosen], data.train.ids[chosen]))
    curve, optimized, fitted, timed_out = [], [], False, False
    started = time.perf_counter()
    for _ in range(OVERFIT_MAX_STEPS):
        loss, reference, reference_inference, out, out_inference = trainer.step(x, y)
        in_training, in_inference = float(reference), float(reference_inference)
        outputs = np.asarray(out if in_training < in_inference else out_inference, dtype=np.float64)
        curve.append(float(np.fmin(in_training, in_inference)))
        optimized.append(float(loss))
        if not math.isfinite(curve[-1]) or _fits(data.task, curve[-1], outputs, y):
            fitted = math.isfinite(curve[-1])
            break
        if time.perf_counter() - started > setup.seconds:
            timed_out = True
            break
    return {
        "curve": curve,
        "optimized": optimized,
        "outputs": outputs,
        "y": y,
        "chosen": chosen,
        "rate": rate,
        "fitted": fitted,
        "timed_out": timed_out,
    }


def overfit_one_batch(setup: Setup) -> Result:
    """Hypothesis: model, loss and optimizer can fit anything at all (R2.8, U11): a tiny fixed
    batch (two examples per class, at most 16) is driven to near-zero loss with every prediction
    matching its label, at max(configured rate, 1e-3) within 300 steps. Expected: loss below 0.05
    (regression: MSE below 0.01 in standard units, every prediction within 0.1 std); otherwise
    the curve's shape names the problem (classify_curve, T1)."""
    task = setup.data.task
    run = _overfit(setup)
    curve = run["curve"]
    expected = (
        f"loss < {OVERFIT_TARGET[task]:g} and all {len(run['y'])} labels matched within "
        f"{OVERFIT_MAX_STEPS} steps at lr {run['rate']:.3g}"
    )
    measured = f"loss {curve[-1]:.3g} after {len(curve)} steps; "
    measured += _agreement(task, run["outputs"], run["y"])
    shape, why = ("fit", "the batch is memorized") if run["fitted"] else classify_curve(curve)
    seen = f" (see {_draw_overfit(setup, run, shape)})"
    if run["fitted"] and max(curve) > EXPLODED * curve[0]:
        jump = classify_curve(curve[: int(np.argmax(curve)) + 1])[1]
        return Result("overfit_one_batch", WARN, measured, expected, f"fit, but {jump}{seen}")
    if run["fitted"]:
        return Result("overfit_one_batch", PASS, measured, expected, why + seen)
    if shape == "rising" and run["optimized"][-1] < run["optimized"][0]:
        why += f"; the optimized loss falls ({run['optimized'][-1]:.3g}) while the true loss rises"
    if run["timed_out"] and shape in ("plateau", "oscillating"):
        why = (
            f"stopped by the {setup.seconds:.0f} s time limit before a verdict (so far {why}); "
            "run make check for the full experiment"
        )
        return Result("overfit_one_batch", WARN, measured, expected, why + seen)
    return Result("overfit_one_batch", FAIL, measured, expected, why + seen)


# -- brief training runs: input-independent baseline (R2.7) and loss_decreases (R2.9)


def _brief_run(setup: Setup, zeroed: bool) -> dict:
    """BRIEF_STEPS training steps on the real (or zeroed) inputs, same seed and batches, at the
    configured rate; mean losses in inference mode before and after."""
    key = f"brief_zeroed={zeroed}"
    if key in setup.cache:
        return setup.cache[key]
    data, trainer = setup.data, _trainer(setup)
    scale = 0.0 if zeroed else 1.0
    train_x, train_y = _inputs(data, data.train)
    val_x, val_y = _inputs(data, data.val)

    def mean_loss(x, y):
        return float(np.mean(_forward(trainer.model, data.task, x * scale, y)[1]))

    before = mean_loss(train_x, train_y)
    batches = _dataset(setup).repeat().take(BRIEF_STEPS)
    losses = [float(trainer.step(x * scale, y)[0]) for x, y in batches]
    result = {
        "before": before,
        "after": mean_loss(train_x, train_y),
        "losses": losses,
        "val": mean_loss(val_x, val_y),
        "first_kernel": _first_conv_kernel(trainer.model),
    }
    setup.cache[key] = result
    return result


def input_independent_baseline(setup: Setup) -> Result:
    """Hypothesis: the inputs carry signal the model uses (R2.7): trained briefly on the real
    inputs it beats the same model trained on zeroed inputs (same seed, same batches, BRIEF_STEPS
    steps). Expected: validation loss with real inputs <= 90% of the zeroed-input one."""
    zero, real = _brief_run(setup, zeroed=True), _brief_run(setup, zeroed=False)
    ratio = real["val"] / zero["val"] if zero["val"] > 0 else math.inf
    measured = (
        f"val loss {real['val']:.4g} (real inputs) vs {zero['val']:.4g} (zeroed), ratio {ratio:.3f}"
    )
    expected = f"ratio <= {CLEARLY_BETTER:g} after {BRIEF_STEPS} steps"
    name = "input_independent_baseline"
    if ratio <= CLEARLY_BETTER:
        return Result(name, PASS, measured, expected, "clearly better than a zeroed-input model")
    if ratio <= SLIGHTLY_BETTER:
        why = (
            "only slightly better than the zeroed-input model: a weak signal, or a model that "
            "learns slowly at this rate; look at the data (make inspect) and overfit_one_batch"
        )
        return Result(name, WARN, measured, expected, why)
    why = (
        "no better than a model that never sees the inputs: the inputs carry no usable signal to "
        "the model; check that labels line up with their inputs (not shuffled or misaligned), "
        "that the inputs reach the output (a disconnected or zeroed branch), and loss_decreases"
    )
    return Result(name, FAIL, measured, expected, why)


def loss_decreases(setup: Setup) -> Result:
    """Hypothesis: training lowers the training loss from the first steps on (R2.9). Expected:
    the inference-mode loss on the (sampled) training split falls by at least 3% in BRIEF_STEPS
    steps at the configured rate."""
    run = _brief_run(setup, zeroed=False)
    before, after = run["before"], run["after"]
    measured = f"{before:.4g} -> {after:.4g} in {BRIEF_STEPS} steps"
    expected = f"<= {LOSS_FALLS * before:.4g} ({1 - LOSS_FALLS:.0%} lower)"
    if after <= LOSS_FALLS * before:
        return Result("loss_decreases", PASS, measured, expected, "the training loss falls")
    if after < before:
        why = (
            "the loss barely falls: raise the learning rate (U12, T8), check that labels match "
            "their inputs and that regularization is off for now"
        )
        return Result("loss_decreases", WARN, measured, expected, why)
    if not all(math.isfinite(v) and v <= EXPLODED * before for v in (after, *run["losses"])):
        why = (
            "the training loss explodes or becomes NaN: the learning rate is too high; lower it "
            "3-10x (U12), and check the inputs for huge values (make inspect)"
        )
        return Result("loss_decreases", FAIL, measured, expected, why)
    why = (
        "the training loss rises: a flipped sign in the loss or the update, or a learning rate "
        "too high; overfit_one_batch's curve tells them apart (T1)"
    )
    return Result("loss_decreases", FAIL, measured, expected, why)


def human_baseline(setup: Setup) -> Result:
    """Hypothesis: none, a record (R2.6): the human baseline sits next to the dumb baseline here,
    and metrics compare the trained model with it. Expected: the configured value."""
    data, value = setup.data, setup.config.check.human_baseline
    if data.task == "classification":
        majority = float(np.mean(data.val.y == np.argmax(data.class_priors)))
        dumb = f"majority-class accuracy {majority:.3f} (val)"
    else:
        dumb = f"mean-predictor MAE {float(np.abs(data.val.y - data.target_mean).mean()):.4g} (val)"
    if value is None:
        why = "set check.human_baseline to what a person reaches on this task, to compare (R2.6)"
        return Result("human_baseline", PASS, None, dumb, why)
    why = "recorded; compare the trained model's test metrics with it (R2.6)"
    return Result("human_baseline", PASS, float(value), dumb, why)


ALL_CHECKS = (
    determinism,
    init_loss,
    output_activation,
    batch_independence,
    lr_schedule,
    overfit_one_batch,
    loss_decreases,
    input_independent_baseline,
    human_baseline,
)
FAST_CHECKS = (
    init_loss,
    output_activation,
    batch_independence,
    lr_schedule,
    overfit_one_batch,
    human_baseline,
)


# ---------------------------------------------------------------- pictures


def draw_input_batch(setup: Setup) -> Path:
    """R2.10: the first training batch exactly as it enters the network (normalized, augmented
    when data.augment is on), from the pipeline training uses, with its labels."""
    data = setup.data
    x, y = (t.numpy()[:PICTURE_EXAMPLES] for t in next(iter(_dataset(setup))))
    if data.task == "classification":
        captions = [data.class_names[int(v)] for v in y]
    else:
        captions = [f"{float(v):.4g}" for v in unscale_targets(data, y)]
    path = setup.folder / "input_batch.png"
    title = "first training batch as the network sees it (normalized"
    title += ", augmented)" if setup.config.data.augment else ")"
    if data.kind != "image":
        names = data.feature_names or [str(i) for i in range(x.shape[1])]
        return pictures.table_heatmap_figure(x, captions, names, path, title)
    normalized = data.normalize(data.train.x)
    low, high = float(normalized.min()), float(normalized.max())
    title += f", on [{low:.2f}, {high:.2f}], the normalized training range"
    pictures.save_array(
        pictures.image_grid_array(pictures.to_uint8(x, (low, high)), captions, title), path
    )
    return path


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _first_conv_kernel(model) -> np.ndarray | None:
    conv = next((la for la in _all_layers(model) if isinstance(la, keras.layers.Conv2D)), None)
    return None if conv is None else _snapshot(conv.kernel)


def draw_first_layer_weights(setup: Setup) -> Path | None:
    """R4.13: the first convolution's filters, from the run's trained model.keras when there is
    one, else after the brief training run. Trained filters look like edges and blobs; noise after
    a full training run means a too-high rate or too little training."""
    kernel, source = None, f"after {BRIEF_STEPS} steps (train, then rerun check, for trained ones)"
    trained = setup.config.run_dir / "model.keras"
    if trained.is_file():
        try:
            kernel, source = _first_conv_kernel(keras.saving.load_model(trained)), f"of {trained}"
        except Exception:  # a user's custom layers may not load: fall back to the brief run
            kernel = None
    if kernel is None:
        kernel = setup.cache.get("brief_zeroed=False", {}).get("first_kernel")
    if kernel is None:
        return None
    limit = float(np.abs(kernel).max()) or 1.0
    filters = np.moveaxis(kernel, -1, 0)[:64]  # (filters, height, width, input channels)
    if filters.shape[-1] not in (1, 3):
        filters = filters[..., :1]  # first input channel only
    title = f"first-layer filters {source}; grey = 0, range +-{limit:.3g}"
    images = pictures.to_uint8(filters, (-limit, limit))
    captions = [str(i) for i in range(len(images))]
    path = setup.folder / "first_layer_weights.png"
    pictures.save_array(
        pictures.image_grid_array(images, captions, title, columns=16, cell=32), path
    )
    return path


def _draw_overfit(setup: Setup, run: dict, shape: str) -> Path:
    """R2.8: the loss curve, and labels next to predictions for every example of the batch."""
    import matplotlib.pyplot as plt

    data = setup.data
    curve = np.asarray(run["curve"])
    outputs = np.nan_to_num(run["outputs"], nan=0.0, posinf=1e6, neginf=-1e6)
    height = max(4.5, 0.3 * len(run["y"]))  # ~0.3 inch per example for the label panel
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, height), width_ratios=[1, 1.3])
    finite = np.isfinite(curve)
    left.plot(
        np.flatnonzero(finite), curve[finite], marker=".", markersize=3, label="loss on the batch"
    )
    left.axhline(OVERFIT_TARGET[data.task], color="grey", linestyle="--", label="target")
    if finite.any() and (curve[finite] > 0).all():
        left.set_yscale("log")
    left.set(xlabel="step", title=f"overfit one batch at lr {run['rate']:.3g}: {shape}")
    left.legend()
    if data.task == "classification":
        images = None
        if data.kind == "image":
            value_range = (float(data.train.x.min()), float(data.train.x.max()))
            images = pictures.to_uint8(data.train.x[run["chosen"]], value_range)
        panel = pictures.classification_panel(
            _softmax(outputs), run["y"], data.class_names, "label -> prediction", images
        )
        right.imshow(panel)
        right.axis("off")
    else:
        targets, predictions = unscale_targets(data, run["y"]), unscale_targets(data, outputs[:, 0])
        right.scatter(targets, predictions)
        ends = [min(targets.min(), predictions.min()), max(targets.max(), predictions.max())]
        right.plot(ends, ends, color="grey", linewidth=1)
        right.set(xlabel="label", ylabel="prediction")
    path = setup.folder / "overfit_one_batch.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path


# ---------------------------------------------------------------- running them


def run_checks(setup: Setup, checks) -> list[Result]:
    """Runs each check and prints its line at once; a crash becomes that check's FAIL."""
    results = []
    with warnings.catch_warnings():
        # Keras warns on every softmax + from_logits loss; output_activation reports it once.
        warnings.filterwarnings("ignore", message=".*from_logits=True.*")
        for check_function in checks:
            try:
                result = check_function(setup)
            except UsageError:
                raise
            except Exception as err:  # one broken check must not hide the other verdicts
                why = f"the check could not run: {type(err).__name__}: {str(err)[:300]}"
                result = Result(check_function.__name__, FAIL, None, None, why)
            print(result.line(), flush=True)
            results.append(result)
    return results


def write_results(results: list[Result], run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "checks.json"
    path.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    return path


def _summary(results: list[Result], path: Path, started: float) -> str:
    counts = [sum(r.status == status for r in results) for status in (PASS, WARN, FAIL)]
    seconds = time.perf_counter() - started
    return "{} passed, {} warned, {} failed".format(*counts) + f"; {path} ({seconds:.1f} s)"


def _header(setup: Setup, what: str) -> str:
    data = setup.data
    line = (
        f"{what}: model {_trainer(setup).model.name} on {data.source} ({data.kind}, "
        f"{data.task}), {len(data.train.y)} training examples"
    )
    return line + (f"\n{setup.note}" if setup.note else "")


def check(config: Config) -> int:
    """`python -m <package> check`: every check on the configured model and data; 1 on a FAIL."""
    started = time.perf_counter()
    setup = make_setup(config, load(config))
    print(_header(setup, "recipe checks"), flush=True)
    results = run_checks(setup, ALL_CHECKS)
    drawn = [draw_input_batch(setup), draw_first_layer_weights(setup), "overfit_one_batch.png"]
    print("pictures in " + str(setup.folder) + ": " + ", ".join(Path(p).name for p in drawn if p))
    print(_summary(results, write_results(results, config.run_dir), started))
    return 1 if any(r.status == FAIL for r in results) else 0


def before_training(config: Config, data: Data) -> int:
    """The fast checks `train` runs first (check.before_train=false skips them); 1 on a FAIL."""
    started = time.perf_counter()
    setup = make_setup(config, data, seconds=BEFORE_TRAINING_SECONDS)
    print(_header(setup, "recipe checks before training (make check runs them all)"), flush=True)
    results = run_checks(setup, FAST_CHECKS)
    draw_input_batch(setup)
    print(_summary(results, write_results(results, config.run_dir), started), flush=True)
    return 1 if any(r.status == FAIL for r in results) else 0
