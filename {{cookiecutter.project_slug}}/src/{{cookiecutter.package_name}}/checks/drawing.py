"""The checks' pictures: the batch as it enters the net (R2.10), first-layer weights
(R4.13), labels next to predictions after overfitting one batch (R2.8)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from .. import models, pictures
from ..data import unscale_targets
from .common import (
    BRIEF_STEPS,
    OVERFIT_TARGET,
    PICTURE_EXAMPLES,
    Setup,
    snapshot,
    training_pipeline,
)


def label_captions(data, y) -> list[str]:
    """Labels as class names or targets; class probabilities (the labels MixUp and CutMix
    make) as their two largest shares."""
    y = np.asarray(y)
    if data.task != "classification":
        return [f"{float(v):.4g}" for v in unscale_targets(data, y)]
    if y.ndim == 1:
        return [data.class_names[int(v)] for v in y]
    captions = []
    for row in y:
        first, second = np.argsort(row)[::-1][:2]
        text = f"{data.class_names[first]} {row[first]:.2f}"
        if row[second] >= 0.01:
            text += f" + {data.class_names[second]} {row[second]:.2f}"
        captions.append(text)
    return captions


def draw_input_batch(setup: Setup) -> Path:
    """R2.10: the first training batch exactly as it enters the network (normalized, augmented
    when data.augment is on), from the pipeline training uses, with its labels."""
    data = setup.data
    x, y = (t.numpy()[:PICTURE_EXAMPLES] for t in next(iter(training_pipeline(setup))))
    captions = label_captions(data, y)
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


def first_conv_kernel(model) -> np.ndarray | None:
    conv = next((la for la in _all_layers(model) if isinstance(la, keras.layers.Conv2D)), None)
    return None if conv is None else snapshot(conv.kernel)


def draw_first_layer_weights(setup: Setup) -> Path | None:
    """R4.13: the first convolution's filters, from the run's trained model.keras when there is
    one, else after the brief training run. Trained filters look like edges and blobs; noise after
    a full training run means a too-high rate or too little training."""
    kernel, source = None, f"after {BRIEF_STEPS} steps (train, then rerun check, for trained ones)"
    trained = setup.config.run_dir / "model.keras"
    if trained.is_file():
        try:
            kernel, source = first_conv_kernel(keras.saving.load_model(trained)), f"of {trained}"
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


def draw_overfit(setup: Setup, run: dict, shape: str) -> Path:
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
            images = pictures.to_uint8(data.train.x[run["chosen"]], data.value_range)
        panel = pictures.classification_panel(
            models.softmax(outputs), run["y"], data.class_names, "label -> prediction", images
        )
        right.imshow(panel.convert("RGB"))
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
