"""Recipe rows proven where no feature's own test file holds them (docs/recipe.md): the
bake's config adds no extras (R2.2), the pipeline against a loop over examples (R2.13), sizes
in multiples of 8 (T9), early stopping ending a run (R4.11, T15) and the averaged weights in
every place that reads them (T17)."""

from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- R2.2


def _keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_the_baked_config_sets_only_data_model_and_the_dropout_of_its_overfit_step(
    project, make_config
):
    """R2.2: what `make train` reads, configs/default.yaml, changes the package's simple
    defaults (no augmentation, no dropout, constant rate) only in its data and model, and in
    the dropout rate the bake's overfit step called for (R4.9): no other extra."""
    path = ROOT / "configs" / "default.yaml"
    assert set(_keys(yaml.safe_load(path.read_text()) or {})) <= {
        "data.source",
        "model.name",
        "model.width",
        "model.dropout_rate",
    }
    defaults, baked = make_config(), make_config(files=[path])
    assert defaults.data.augment == baked.data.augment == []
    assert defaults.optimizer.schedule == baked.optimizer.schedule == "constant"
    assert defaults.model.dropout_rate == 0.0


# ---------------------------------------------------------------- R2.13


def _loop_statistics(examples, passed_through=()):
    """The special case: mean and std per channel (last axis), summed one example at a time.
    A constant channel gets std 1; category-index columns pass through (mean 0, std 1)."""
    total, squares, count = 0.0, 0.0, 0
    for example in examples:
        values = np.asarray(example, np.float64).reshape(-1, np.shape(example)[-1])
        total = total + values.sum(axis=0)
        squares = squares + np.square(values).sum(axis=0)
        count += len(values)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std < 1e-7] = 1.0
    for column in passed_through:
        mean[column], std[column] = 0.0, 1.0
    return mean, std


def _by_rows(x):
    """The rows of x in one canonical order, so two orderings of the same examples compare."""
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


@pytest.mark.parametrize(
    "source",
    ["breast_cancer", "digits", "csv", pytest.param("folder", marks=pytest.mark.slow)],
)
def test_the_pipeline_agrees_with_a_loop_over_examples(
    project, make_config, csv_file, image_folder, source
):
    """R2.13: the vectorized pipeline (statistics over the whole split, arrays normalized in
    one pass and gathered per shuffled epoch, image files decoded and normalized in the
    graph) gives what a plain loop gives, one example at a time."""
    overrides = {
        "csv": [f"data.source={csv_file}", "data.label_column=kind"],
        "folder": [f"data.source={image_folder}", "data.image_size=12,10"],
    }.get(source, [f"data.source={source}"])
    data = project.data.load(make_config(*overrides))
    if source == "folder":  # the reference decodes each file itself
        raw = {
            name: np.stack([np.asarray(Image.open(path).convert("RGB")) for path in split.ids])
            for name, split in (("train", data.train), ("val", data.val), ("test", data.test))
        }
    else:
        raw = {name: getattr(data, name).x for name in ("train", "val", "test")}
    mean, std = _loop_statistics(raw["train"], data.categorical)
    make = project.pipeline.make_dataset
    for name in ("train", "val", "test"):
        expected = np.stack([(example - mean) / std for example in raw[name]])
        split = getattr(data, name)
        batches = [x.numpy() for x, _ in make(data, split, 32, shuffle=False)]
        np.testing.assert_allclose(np.concatenate(batches), expected, rtol=1e-5, atol=1e-5)
    # One shuffled epoch of the training stream: the same examples, each once.
    steps = project.pipeline.steps_per_epoch(data.train, 32)
    stream = make(data, data.train, 32, shuffle=True, seed=1)
    shuffled = np.concatenate([x.numpy() for x, _ in stream.take(steps)])
    expected = np.stack([(example - mean) / std for example in raw["train"]])
    np.testing.assert_allclose(_by_rows(shuffled), _by_rows(expected), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- T9


def test_default_sizes_are_multiples_of_8_and_widths_of_64(project, make_config):
    """T9: the batch size and every layer width and filter count the defaults (config.py and
    this bake's configs/default.yaml) build are multiples of 8; dense widths of 64."""
    for config in (make_config(), make_config(files=[ROOT / "configs" / "default.yaml"])):
        assert config.train.batch_size % 8 == 0
        assert config.model.width % 64 == 0 and config.model.filters % 8 == 0
    for source, name in [("breast_cancer", "mlp"), ("digits", "convnet"), ("digits", "resnet")]:
        config = make_config(f"data.source={source}", f"model.name={name}")
        model = project.models.build_model(config, project.data.load(config))
        hidden = [layer for layer in model.layers if layer.name != "logits"]
        sizes = [layer.units for layer in hidden if isinstance(layer, keras.layers.Dense)]
        sizes += [layer.filters for layer in hidden if isinstance(layer, keras.layers.Conv2D)]
        assert sizes and all(size % 8 == 0 for size in sizes), (name, sizes)


# ---------------------------------------------------------------- R4.11, T15, T17


def _fit(project, config, run, epochs, probe=lambda callbacks: None):
    """train's model, validation split and callbacks on a shrunk config (the training split
    in order: these claims do not depend on its shuffle), with the callback probe(callbacks)
    returns, if any, before them all."""
    project.seeding.seed_everything(config)
    data = project.data.load(config)
    batch_size = config.train.batch_size
    steps = project.pipeline.steps_per_epoch(data.train, batch_size)
    model = project.models.build_model(config, data)
    project.models.compile_model(model, config, data, steps)
    run.mkdir()
    callbacks, _ = project.train.make_callbacks(config, data, run, {})
    first = probe(callbacks)
    val = project.pipeline.make_dataset(data, data.val, batch_size, shuffle=False)
    fitted = model.fit(
        project.pipeline.make_dataset(data, data.train, batch_size, shuffle=False).repeat(),
        validation_data=val,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[first, *callbacks] if first else callbacks,
        shuffle=False,
        verbose=0,
    )
    return model, fitted.history, callbacks, val


@pytest.fixture
def noise_csv(tmp_path):
    """Labels that have nothing to do with the features: training can only overfit them."""
    rng = np.random.default_rng(0)
    lines = ["a,b,c,d,label"]
    for _ in range(200):
        row = ",".join(f"{value:.3f}" for value in rng.normal(size=4))
        lines.append(f"{row},{rng.choice(['x', 'y'])}")
    path = tmp_path / "noise.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_early_stopping_ends_the_fit_patience_epochs_after_its_best(
    project, make_config, noise_csv, tmp_path
):
    """R4.11, T15: on labels it can only memorize, the validation loss turns up at once; train's
    callbacks end the fit train.patience epochs after its best epoch, far short of the epochs
    asked for, and the best checkpoint holds that epoch."""
    config = make_config(
        f"data.source={noise_csv}",
        "model.name=mlp",
        "train.patience=2",
        "train.batch_size=32",
        "optimizer.learning_rate=1e-2",
        "train.prediction_examples=4",
    )
    model, history, _, val = _fit(project, config, tmp_path / "run", epochs=30)
    best = int(np.argmin(history["val_loss"])) + 1  # epochs count from 1
    assert len(history["val_loss"]) == best + 2 < 30
    record = yaml.safe_load((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert record["epoch"] == best
    model.load_weights(tmp_path / "run" / "checkpoints" / "best.keras")
    measured = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    assert measured == pytest.approx(min(history["val_loss"]), rel=1e-5)


def test_early_stopping_goes_on_counting_across_a_resume(project, tmp_path):
    """T15 across a kill: the rerun's early stopping starts from the epochs before the backup
    (their val_losses in history.csv), so it stops where an uninterrupted run stops."""
    import keras

    rows = ["epoch,val_loss", "0,2.3", "1,1.0", "2,0.9", "3,0.95", "4,0.97"]
    (tmp_path / "history.csv").write_text("\n".join(rows) + "\n")
    seen = project.train.phase_losses(tmp_path, "train", done=3)  # backed up after epoch 3
    assert seen == (1.0, 0.9, 0.95)
    stop = project.callbacks.EarlyStop(patience=2, seen=seen)
    stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stop.on_epoch_end(3, {"val_loss": 0.96})  # the second epoch without a better one
    assert stop.model.stop_training
    fresh = project.callbacks.EarlyStop(patience=2)
    fresh.set_model(stop.model)
    fresh.model.stop_training = False
    fresh.on_epoch_end(3, {"val_loss": 0.96})
    assert not fresh.model.stop_training  # what Keras's EarlyStopping did after a resume


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_optimizer_keeps_the_average_when_asked(project, make_config, name):
    assert project.models.make_optimizer(make_config(f"optimizer.name={name}"), 10).use_ema is False
    asked = make_config(f"optimizer.name={name}", "optimizer.ema=true")
    assert project.models.make_optimizer(asked, 10).use_ema is True


def test_validation_the_best_checkpoint_and_the_picture_see_the_averaged_weights(
    project, make_config, tmp_path
):
    """T17: with optimizer.ema=true, train's callbacks validate, checkpoint and draw the
    averaged weights, while training goes on with the raw ones."""
    config = make_config(
        "data.source=breast_cancer",
        "model.name=mlp",
        "optimizer.ema=true",
        "optimizer.learning_rate=1e-2",
        "train.batch_size=32",
        "train.prediction_examples=8",
    )
    raw, drawn = [], {}

    class RawWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raw.append(self.model.get_weights())

    def probe(callbacks):
        """Records what the panel would draw, and the raw weights before any callback swaps."""
        panel = next(c for c in callbacks if isinstance(c, project.callbacks.PredictionPanel))
        panel.draw = lambda epoch, outputs: drawn.setdefault(epoch, (panel.x, outputs))
        return RawWeights()

    model, history, _, val = _fit(project, config, tmp_path / "run", 2, probe)
    averaged = model.get_weights()  # fit ends by writing the average into the model
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(averaged, raw[-1], strict=True))
    # validation
    measured = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    assert history["val_loss"][-1] == pytest.approx(measured, rel=1e-5)
    # the picture
    inputs, outputs = drawn[2]
    np.testing.assert_allclose(outputs, model.predict_on_batch(inputs), rtol=1e-5, atol=1e-6)
    # the best checkpoint (the average improves every epoch this early)
    assert history["val_loss"][1] < history["val_loss"][0]
    model.load_weights(tmp_path / "run" / "checkpoints" / "best.keras")
    for ours, theirs in zip(model.get_weights(), averaged, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
