"""Does the augmentation keep the labels (R4.2, T4)? Augmented examples drawn next to their
originals, and each transform's effect on a model that never saw it.

Karpathy's example is flipping the image but not the label: a transform that turns a
digit 6 into a 9, or a "left" arrow into a "right" one, teaches the model noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import pictures
from ..config import LABEL_MIXING
from ..pipeline import make_dataset, training_stream
from .common import (
    BRIEF_STEPS,
    FAIL,
    PASS,
    PICTURE_EXAMPLES,
    WARN,
    Result,
    Setup,
    forward,
    shared_trainer,
    split_inputs,
)
from .drawing import label_captions

# A transform keeps the labels when the augmented examples keep this share of the model's
# skill above chance (accuracy over the majority class's share; R^2 for regression).
KEEPS_LABELS = 0.7
DESTROYS_LABELS = 0.5
MIN_SKILL = 0.2  # below this over chance the brief model cannot tell a drop from noise


def draw_augmented_batch(setup: Setup) -> Path | None:
    """The first training batch before and after data.augment, pair by pair, with the labels
    each one trains on: a transform that changes what the label means shows up here first."""
    config, data = setup.config, setup.data
    if not config.data.augment:
        return None
    half = PICTURE_EXAMPLES // 2
    plain = make_dataset(data, data.train, config.train.batch_size, shuffle=True, seed=config.seed)
    x, y = (t.numpy()[:half] for t in next(iter(plain)))
    augmented_x, augmented_y = (
        t.numpy()[:half] for t in next(iter(training_stream(config, data, first_epoch=0)))
    )
    count = len(x)
    names, strength = ", ".join(config.data.augment), config.data.augment_strength
    title = f"first training batch: original, then {names} (strength {strength:g})"
    path = setup.folder / "augmented_batch.png"
    originals, changed = label_captions(data, y), label_captions(data, augmented_y)
    if data.kind != "image":
        values = np.stack([x, augmented_x], axis=1).reshape(2 * count, -1)
        labels = [
            text
            for pair in zip(originals, changed, strict=True)
            for text in (f"{pair[0]} (original)", f"{pair[1]} (augmented)")
        ]
        columns = data.feature_names or [str(i) for i in range(x.shape[1])]
        return pictures.table_heatmap_figure(values, labels, columns, path, title)
    normalized = data.normalize(data.train.x)
    value_range = (float(normalized.min()), float(normalized.max()))
    images = np.stack([x, augmented_x], axis=1).reshape(2 * count, *x.shape[1:])
    captions = [
        text
        for pair in zip(originals, changed, strict=True)
        for text in (f"original {pair[0]}", f"augmented {pair[1]}")
    ]
    pictures.save_array(
        pictures.image_grid_array(pictures.to_uint8(images, value_range), captions, title), path
    )
    return path


def _skill(task: str, outputs: np.ndarray, y: np.ndarray, chance: float) -> np.ndarray:
    """Per example: 1 for the right class, else 0, less chance; regression: 1 - squared error
    in standard units (its mean is R^2)."""
    if task == "classification":
        return (outputs.argmax(axis=1) == y).astype(np.float64) - chance
    return 1.0 - np.square(outputs[:, 0] - y)


def _trained_without_augmentation(setup: Setup):
    """The shared model after BRIEF_STEPS steps on the training stream without augmentation.

    Its own brief run, not the shared one: a model trained on the augmented stream learns
    the very confusion this check looks for (a flipped "left" labelled "left" next to a real
    "right"), and then does as badly on the originals as on the augmented examples."""
    config, data = setup.config, setup.data
    trainer = shared_trainer(setup)
    plain = make_dataset(data, data.train, config.train.batch_size, shuffle=True, seed=config.seed)
    for x, y in plain.take(BRIEF_STEPS):
        trainer.step(x, y)
    return trainer.model


def _augmented_validation(setup: Setup, name: str) -> np.ndarray:
    """The validation inputs, normalized, through one transform at data.augment_strength."""
    config, data = setup.config, setup.data
    batches = make_dataset(
        data,
        data.val,
        256,
        shuffle=False,
        seed=config.seed,
        augment=[name],
        augment_strength=config.data.augment_strength,
    )
    return np.concatenate([x.numpy() for x, _ in batches])


def augmentation_keeps_labels(setup: Setup) -> Result | None:
    """Hypothesis: every transform of data.augment keeps the label (R4.2, T4). A model trained
    briefly (BRIEF_STEPS steps) on the originals scores the validation examples, then each
    transform's augmented copies of them (those it changed; MixUp and CutMix mix labels by
    design and are left out). Expected: on the augmented examples it keeps at least 70% of
    its skill above chance (accuracy above the majority class's share; R^2 for regression).
    Below 50% the transform destroys labels (FAIL), in between it blurs them (WARN)."""
    config, data = setup.config, setup.data
    names = [name for name in config.data.augment if name not in LABEL_MIXING]
    if not names:
        return None
    model = _trained_without_augmentation(setup)
    x, y = split_inputs(data, data.val)
    chance = 0.0
    if data.task == "classification":
        chance = float(np.bincount(data.val.y, minlength=data.num_outputs).max() / len(y))
    skill = _skill(data.task, forward(model, data.task, x, y)[0], y, chance)
    base = float(skill.mean())
    expected = f"each transform keeps >= {KEEPS_LABELS:.0%} of the skill above chance"
    what = "accuracy" if data.task == "classification" else "R^2"
    if base < MIN_SKILL * (1 - chance):
        measured = f"{what} {base + chance:.3g} on the originals after {BRIEF_STEPS} steps"
        why = (
            "undecided: the model trained too briefly to judge the transforms; look at "
            "checks/augmented_batch.png, and at overfit_one_batch and loss_decreases"
        )
        return Result("augmentation_keeps_labels", WARN, measured, expected, why)
    kept = {}
    for name in names:
        augmented = _augmented_validation(setup, name)
        changed = np.abs(augmented - x).reshape(len(x), -1).max(axis=1) > 1e-4
        if not changed.any():
            continue
        after = _skill(data.task, forward(model, data.task, augmented, y)[0], y, chance)
        before = max(float(skill[changed].mean()), 1e-9)
        kept[name] = float(after[changed].mean()) / before
    measured = f"{what} {base + chance:.3g} on the originals; kept " + ", ".join(
        f"{name} {share:.0%}" for name, share in kept.items()
    )
    worst = min(kept, key=kept.get, default=None)
    if worst is None or kept[worst] >= KEEPS_LABELS:
        why = "every transform keeps the labels (see checks/augmented_batch.png)"
        return Result("augmentation_keeps_labels", PASS, measured, expected, why)
    status = FAIL if kept[worst] < DESTROYS_LABELS else WARN
    bad = [name for name, share in kept.items() if share < KEEPS_LABELS]
    verb = "destroy" if status == FAIL else "blur"
    verb += "s" if len(bad) == 1 else ""
    why = (
        f"{', '.join(bad)} {verb} the labels: a model of the originals no longer recognizes "
        "many augmented examples, so the transform changes what they show (a flipped 6 is a "
        "9) or is too strong for these images. Drop it from data.augment or lower "
        "data.augment_strength; look at checks/augmented_batch.png (R4.2)"
    )
    return Result("augmentation_keeps_labels", status, measured, expected, why)
