"""Checks of the model and setup before training: loss at init, output activation, batch
independence, learning-rate schedule, a pretrained backbone's input range, human baseline."""

from __future__ import annotations

import math

import keras
import numpy as np

from .. import backbones, models
from ..config import BUILTIN_MODELS
from ..data import Data
from .common import (
    ACTIVATIONS,
    FAIL,
    GRADIENT_EXAMPLES,
    INIT_LOSS_TOLERANCE,
    PASS,
    SCHEDULE_EARLY,
    SCHEDULE_FLOOR,
    WARN,
    Result,
    Setup,
    example_losses,
    forward,
    probabilities_like,
    shared_trainer,
    split_inputs,
)


def init_loss(setup: Setup) -> Result:
    """Hypothesis: before any step the model predicts the priors, so its loss is the priors' loss
    (R2.4, R2.5). Expected, within 5%: -log(1/C) for balanced classes; the prior entropy when the
    output bias holds the log class priors (the project's builders set it; a user's builder may
    not, so both values are compared); for regression the variance of the validation targets
    around the bias (the training mean), in the standard units the project trains in."""
    data = setup.data
    outputs, losses = forward(shared_trainer(setup).model, data.task, *split_inputs(data, data.val))
    measured = float(np.mean(losses))
    prior = models.expected_initial_loss(data)
    if data.task == "regression":
        why = "the variance of the targets around the mean, in standard units (bias = mean)"
        return _init_verdict(data, outputs, measured, prior, why)
    if probabilities_like(outputs):
        why = (
            "the outputs are already probabilities (rows in [0, 1] summing to 1): softmax on the "
            "output layer, then again in the loss and the predictions. Keras's fit quietly reads "
            "the pre-softmax logits, predict/evaluate do not; remove the output activation (U3)"
        )
        return Result("init_loss", FAIL, measured, prior, why)
    balanced = math.log(data.num_outputs)
    if abs(balanced - prior) <= 0.01 * prior:
        why = f"-log(1/{data.num_outputs}): classes seen evenly, the bias holds their priors"
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
        priors = data.output_bias  # the log class priors (weighted, with class weights)
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


def activation_name(layer) -> str | None:
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
    model = shared_trainer(setup).model
    layer = _output_layer(model)
    where = f"output layer '{getattr(layer, 'name', '?')}' ({type(layer).__name__})"
    activation = activation_name(layer)
    x, y = split_inputs(data, data.val, 256)
    outputs, _ = forward(model, data.task, x, y)
    probe, _ = forward(model, data.task, x * _probe_scale(data), y)
    both = np.concatenate([outputs, probe])
    span = f"[{outputs.min():.3g}, {outputs.max():.3g}]"
    measured = f"{where}, activation {activation or 'none'}, outputs in {span}"
    expected = "no output activation; unbounded logits (U3)"
    if data.task == "classification" and probabilities_like(outputs):
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
    model = shared_trainer(setup).model
    x, y = split_inputs(data, data.val, GRADIENT_EXAMPLES)
    x = tf.constant(x)
    own, leaked, pairs = 0.0, 0.0, 0
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = example_losses(data.task, y, model(x, training=False))[i]
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


def backbone_input_range(setup: Setup) -> Result | None:
    """Hypothesis: a pretrained backbone sees pixels as it did on ImageNet (R4.4): raw values in
    [0, 255], which its own preprocessing maps to what its weights expect (the classic bug is a
    checkpoint fed inputs without its original mean or scale). Expected: the training inputs,
    as they enter the network, within [0, 255] and reaching above 2 (not already scaled to
    [0, 1]). Only for model.name=backbone."""
    config = setup.config
    if config.model.name != "backbone":
        return None
    x, _ = split_inputs(setup.data, setup.data.train)
    low, high = float(x.min()), float(x.max())
    floor, ceiling = backbones.input_range(config.model.backbone)
    measured, expected = f"[{low:.3g}, {high:.3g}]", f"within [{floor:g}, {ceiling:g}], max > 2"
    if low < floor - 1e-3 or high > ceiling + 1e-3:
        why = (
            f"{config.model.backbone} was trained on pixels in [{floor:g}, {ceiling:g}] and "
            "preprocesses them itself; these inputs were normalized or scaled on the way: feed "
            "raw pixels"
        )
        return Result("backbone_input_range", FAIL, measured, expected, why)
    if high <= 2:
        why = (
            f"the inputs look scaled to [0, 1] already; {config.model.backbone} rescales 0..255 "
            "pixels itself, so it sees near-black images: feed raw pixels"
        )
        return Result("backbone_input_range", FAIL, measured, expected, why)
    why = f"raw pixels reach {config.model.backbone}, which preprocesses them its own way"
    return Result("backbone_input_range", PASS, measured, expected, why)


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
