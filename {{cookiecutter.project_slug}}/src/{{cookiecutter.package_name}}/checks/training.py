"""Checks that train a little: determinism, overfit one batch (R2.8, T1), loss decreases,
input-independent baseline."""

from __future__ import annotations

import math
import time

import numpy as np

from .. import models, seeding
from ..data import Data, Split
from .common import (
    BRIEF_STEPS,
    CLEARLY_BETTER,
    DETERMINISM_STEPS,
    EXPLODED,
    FAIL,
    LOSS_FALLS,
    OVERFIT_EXAMPLES,
    OVERFIT_MAX_STEPS,
    OVERFIT_MIN_RATE,
    OVERFIT_TARGET,
    OVERFIT_TOLERANCE,
    PASS,
    SLIGHTLY_BETTER,
    WARN,
    Result,
    Setup,
    constant_rate_optimizer,
    forward,
    shared_trainer,
    snapshot,
    split_inputs,
    training_pipeline,
)
from .drawing import draw_overfit, first_conv_kernel


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

    seeding.seed_everything(setup.config)
    model = models.build_model(setup.config, setup.data)
    weights = [snapshot(w) for w in model.weights]
    optimizer = constant_rate_optimizer(setup)
    loss_fn = models.loss_for(setup.data, setup.config)
    losses, batch = [], None
    for x, y in training_pipeline(setup).repeat().take(DETERMINISM_STEPS):
        batch = x.numpy() if batch is None else batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        losses.append(float(loss))
    return {"losses": losses, "weights": weights, "batch": batch}


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
    trainer = shared_trainer(setup)
    rate = trainer.optimizer.learning_rate = max(trainer.rate, OVERFIT_MIN_RATE)
    chosen = _pick_batch(data, setup.config.seed)
    x, y = split_inputs(
        data, Split(data.train.x[chosen], data.train.y[chosen], data.train.ids[chosen])
    )
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
    seen = f" (see {draw_overfit(setup, run, shape)})"
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


def brief_run(setup: Setup, zeroed: bool) -> dict:
    """BRIEF_STEPS training steps on the real (or zeroed) inputs, same seed and batches, at the
    configured rate; mean losses in inference mode before and after."""
    key = f"brief_zeroed={zeroed}"
    if key in setup.cache:
        return setup.cache[key]
    data, trainer = setup.data, shared_trainer(setup)
    scale = 0.0 if zeroed else 1.0
    train_x, train_y = split_inputs(data, data.train)
    val_x, val_y = split_inputs(data, data.val)

    def mean_loss(x, y):
        return float(np.mean(forward(trainer.model, data.task, x * scale, y)[1]))

    before = mean_loss(train_x, train_y)
    batches = training_pipeline(setup).repeat().take(BRIEF_STEPS)
    losses = [float(trainer.step(x * scale, y)[0]) for x, y in batches]
    result = {
        "before": before,
        "after": mean_loss(train_x, train_y),
        "losses": losses,
        "val": mean_loss(val_x, val_y),
        "first_kernel": first_conv_kernel(trainer.model),
        "weights": None if zeroed else [snapshot(v) for v in trainer.model.variables],  # dead_units
    }
    setup.cache[key] = result
    return result


def input_independent_baseline(setup: Setup) -> Result:
    """Hypothesis: the inputs carry signal the model uses (R2.7): trained briefly on the real
    inputs it beats the same model trained on zeroed inputs (same seed, same batches, BRIEF_STEPS
    steps). Expected: validation loss with real inputs <= 90% of the zeroed-input one."""
    zero, real = brief_run(setup, zeroed=True), brief_run(setup, zeroed=False)
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
    run = brief_run(setup, zeroed=False)
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
