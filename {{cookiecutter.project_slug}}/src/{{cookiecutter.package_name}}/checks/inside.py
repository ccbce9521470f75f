"""Checks that look inside the network: ReLU units that never fire (R4.13, U19), randomness
left on at inference (R4.9), and each layer's update size next to its weights (U12, U13)."""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np

from .common import (
    BRIEF_STEPS,
    DEAD_SHARE,
    FAIL,
    NEAR_ZERO_INIT,
    PASS,
    PROBE_EXAMPLES,
    REPEAT_TOLERANCE,
    UPDATE_RATIO_RANGE,
    UPDATE_STEPS,
    WARN,
    Result,
    Setup,
    forward,
    shared_trainer,
    snapshot,
    split_inputs,
    training_pipeline,
)
from .model import activation_name
from .training import brief_run

# -- dead ReLU units (R4.13, U19)


class Silent(NamedTuple):
    layer: object
    dead: int  # units that output 0 for every example (and position)
    units: int


def _relu_layers(model) -> list:
    """The model's own layers whose output is a plain ReLU's (nested models are not opened)."""
    found = []
    for layer in getattr(model, "layers", []):
        # A leaky ReLU passes a gradient for every input, so its units cannot die.
        leaky = getattr(layer, "negative_slope", 0.0)
        if activation_name(layer) in ("relu", "relu6") and not leaky:
            found.append(layer)
    return found


def _never_fired(model, layers: list, x: np.ndarray) -> list[Silent]:
    """Per layer, how many of its units output 0 for every example and position of x."""
    probes = []
    for layer in layers:
        try:
            output = layer.output
        except (AttributeError, ValueError):  # a layer called twice has no single output
            continue
        # Each unit's peak over the positions of an image, so the probe's outputs stay small.
        positions = tuple(range(1, len(output.shape) - 1))
        probes.append((layer, keras.ops.max(output, axis=positions) if positions else output))
    try:
        probe = keras.Model(model.input, [peak for _, peak in probes])
    except Exception:  # no probes, or a model that is not functional: nothing to look at
        return []
    peaks = probe(x, training=False)
    peaks = peaks if isinstance(peaks, list | tuple) else [peaks]
    counts = []
    for (layer, _), peak in zip(probes, peaks, strict=True):
        highest = keras.ops.convert_to_numpy(peak).max(axis=0)
        counts.append(Silent(layer, int((highest <= 0).sum()), int(highest.size)))
    return counts


def dead_units(setup: Setup) -> Result | None:
    """Hypothesis: the ReLU units stay alive through the first steps (R4.13, U19): a unit whose
    input is negative for every example outputs 0, gets no gradient and never recovers (a large
    negative bias, a bad init, a rate that pushed it there). Measured: after loss_decreases'
    BRIEF_STEPS steps, each ReLU layer's units that output 0 on every example (and position) of
    a validation batch. Expected: at most half of each layer's units silent. Only for models
    with ReLU layers of their own."""
    data = setup.data
    run = brief_run(setup, zeroed=False)
    model = shared_trainer(setup).model
    layers = _relu_layers(model)
    if not layers:
        return None
    for variable, value in zip(model.variables, run["weights"], strict=True):
        variable.assign(value)
    x, _ = split_inputs(data, data.val, PROBE_EXAMPLES)
    counts = _never_fired(model, layers, x)
    if not counts:
        return None
    worst = max(counts, key=lambda count: count.dead / count.units)
    measured = (
        f"'{worst.layer.name}': {worst.dead}/{worst.units} units never fire; {len(counts)} ReLU "
        f"layers, {len(x)} validation examples, after {BRIEF_STEPS} steps"
    )
    expected = f"<= {DEAD_SHARE:.0%} of each ReLU layer's units never fire"
    dead = [count for count in counts if count.dead > DEAD_SHARE * count.units]
    if not dead:
        return Result("dead_units", PASS, measured, expected, "the ReLU units respond to the data")
    named = ", ".join(
        f"'{layer.name}' ({type(layer).__name__}, {n}/{units})" for layer, n, units in dead
    )
    why = (
        f"most units of {named} output 0 for every example: they get no gradient and never "
        "recover, so the layer works with a fraction of its width. Look at what pushes their "
        "inputs below zero: a large negative bias or a bad init (He init, zero biases), a "
        "learning rate too high (update_ratio); or use a leaky ReLU. Batch norm would only "
        "hide a bad init (U19)"
    )
    return Result("dead_units", WARN, measured, expected, why)


# -- randomness left on at inference (R4.9)


def _differs(first, second) -> bool:
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    return not np.allclose(first, second, rtol=REPEAT_TOLERANCE, atol=REPEAT_TOLERANCE)


def _first_random_layer(model, x: np.ndarray):
    """The first layer of a functional model whose output changes between two inference passes."""
    for layer in getattr(model, "layers", []):
        try:
            partial = keras.Model(model.input, layer.output)
        except Exception:  # nested, shared or multi-output layers: skip them, keep looking
            continue
        first = keras.ops.convert_to_numpy(partial(x, training=False))
        if _differs(first, keras.ops.convert_to_numpy(partial(x, training=False))):
            return layer
    return None


def inference_repeatable(setup: Setup) -> Result:
    """Hypothesis: the model is deterministic in inference mode (R4.9): dropout, noise and
    augmentation layers are off when it predicts, so evaluation and predictions are what the
    model is, not one random draw of it. Measured: two inference-mode passes over the same
    validation batch. Expected: the same outputs (up to float rounding)."""
    data = setup.data
    model = shared_trainer(setup).model
    x, y = split_inputs(data, data.val, PROBE_EXAMPLES)
    first, _ = forward(model, data.task, x, y)
    second, _ = forward(model, data.task, x, y)
    gap = float(np.abs(first - second).max())
    measured = f"largest difference {gap:.3g} between two predictions of {len(x)} examples"
    expected = "identical outputs in inference mode"
    if not _differs(first, second):
        why = "random layers are off at inference: predictions repeat exactly"
        return Result("inference_repeatable", PASS, measured, expected, why)
    layer = _first_random_layer(model, x)
    found = f"layer '{layer.name}' ({type(layer).__name__})" if layer else "a layer"
    why = (
        f"{found} draws random numbers in inference mode: a dropout or noise left on at test "
        "time (a custom layer calling keras.random.dropout, or Dropout(...)(x, training=True), "
        "whatever `training` says). Metrics and predictions then vary from call to call and "
        "are worse than the model; apply the randomness only when `training` is true (R4.9)"
    )
    return Result("inference_repeatable", FAIL, measured, expected, why)


# -- update size next to weight size (U12, U13)


def _starts_near_zero(variable) -> bool:
    """A kernel initialized far below He init's scale on purpose (the small output kernel)."""
    values = snapshot(variable).astype(np.float64)
    fan_in = math.prod(values.shape[:-1])
    rms = float(np.sqrt(np.mean(values**2)))
    return rms < NEAR_ZERO_INIT * math.sqrt(2.0 / max(fan_in, 1))


def _layer_name(variable) -> str:
    return variable.path.rsplit("/", 1)[0]


def _update_ratios(setup: Setup) -> tuple[dict, int]:
    """Per kernel, the median over the first UPDATE_STEPS steps of |update| / |weights| (norms
    over the whole kernel); and how many kernels started near zero and were left out."""
    trainer = shared_trainer(setup)
    kernels = [v for v in trainer.model.trainable_variables if len(v.shape) >= 2]
    judged = [v for v in kernels if not _starts_near_zero(v)]
    ratios = {v.path: [] for v in judged}
    for x, y in training_pipeline(setup).repeat().take(UPDATE_STEPS):
        before = [snapshot(v).astype(np.float64) for v in judged]
        trainer.step(x, y)
        for variable, old in zip(judged, before, strict=True):
            change = np.linalg.norm(snapshot(variable) - old)
            ratios[variable.path].append(change / max(np.linalg.norm(old), 1e-30))
    medians = {_layer_name(v): float(np.median(ratios[v.path])) for v in judged}
    return medians, len(kernels) - len(judged)


def update_ratio(setup: Setup) -> Result | None:
    """Hypothesis: the learning rate suits every layer (U12, U13): each step changes a layer's
    weights by about 1e-3 of their size (Karpathy's rule of thumb). Measured: per layer, the
    median over the first UPDATE_STEPS steps from init (configured optimizer and rate, the
    training pipeline) of |kernel update| / |kernel|; kernels that start near zero on purpose
    (the small output kernel, R2.5) are left out. Expected: between 1e-5 and 1e-1 everywhere."""
    medians, left_out = _update_ratios(setup)
    if not medians:
        return None
    low, high = UPDATE_RATIO_RANGE
    # NaN (an exploded step) sorts as too large.
    ordered = sorted(medians.items(), key=lambda item: math.inf if math.isnan(item[1]) else item[1])
    (small_name, smallest), (large_name, largest) = ordered[0], ordered[-1]
    rate = shared_trainer(setup).rate
    measured = (
        f"from {smallest:.2g} ('{small_name}') to {largest:.2g} ('{large_name}') per step, "
        f"{len(medians)} layers, first {UPDATE_STEPS} steps at lr {rate:.3g}"
    )
    if left_out:
        measured += f"; kernels starting near zero, left out: {left_out}"
    expected = f"between {low:g} and {high:g} per step in every layer (healthy: about 1e-3)"
    too_large = [(n, r) for n, r in ordered if not r <= high]
    too_small = [(n, r) for n, r in ordered if r < low]
    if too_large:
        named = ", ".join(f"'{n}' ({r:.2g})" for n, r in reversed(too_large))
        why = (
            f"each step changes the weights of {named} by more than {high:.0%} of their size: "
            "the learning rate is far too high for them, the weights thrash instead of "
            "learning; lower optimizer.learning_rate 3-10x (U12, T8)"
        )
        return Result("update_ratio", WARN, measured, expected, why)
    if too_small:
        named = ", ".join(f"'{n}' ({r:.2g})" for n, r in too_small)
        why = (
            f"the updates of {named} are below {low:g} of their weights: they barely learn; "
            "raise optimizer.learning_rate (U12, T8), or find why no gradient reaches them "
            "(dead ReLUs, a frozen or disconnected branch, a stop_gradient)"
        )
        return Result("update_ratio", WARN, measured, expected, why)
    why = "every layer's updates are a small, steady fraction of its weights"
    return Result("update_ratio", PASS, measured, expected, why)
