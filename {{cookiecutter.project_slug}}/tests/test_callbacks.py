"""Callbacks fed made-up logs, the way Keras tests its own."""

import io
import itertools
import json
import math
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image


def _tiny_model(num_outputs=3):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(num_outputs)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def test_history_writes_epoch_zero_then_one_row_per_epoch(project, tmp_path):
    history = project.callbacks.HistoryCSV(tmp_path / "history.csv", {"val_loss": 2.3})
    history.set_model(_tiny_model())
    history.on_train_begin()
    for epoch in range(3):
        history.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)})
    rows = project.callbacks.read_history(tmp_path / "history.csv")
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3]
    assert rows[0]["val_loss"] == pytest.approx(2.3) and "loss" not in rows[0]
    assert rows[3]["loss"] == pytest.approx(1 / 3)
    assert rows[1]["learning_rate"] == pytest.approx(1e-3)


def test_history_drops_rows_past_the_resumed_epoch(project, tmp_path):
    path = tmp_path / "history.csv"
    first = project.callbacks.HistoryCSV(path, {"val_loss": 2.3})
    first.set_model(_tiny_model())
    first.on_train_begin()
    for epoch in range(4):  # epoch 4 was logged but its backup never written (killed)
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    second = project.callbacks.HistoryCSV(path, {"val_loss": 99.0})
    second.set_model(_tiny_model())
    second.on_train_begin()
    second.on_epoch_begin(3)  # fit resumes at epoch index 3 after restoring epoch 3's backup
    second.on_epoch_end(3, {"loss": 0.5, "val_loss": 0.5})
    rows = project.callbacks.read_history(path)
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["val_loss"] == pytest.approx(2.3)  # the original epoch 0, not re-measured
    assert rows[4]["loss"] == pytest.approx(0.5)


def test_history_appends_a_row_per_epoch_and_skips_a_row_cut_by_a_kill(project, tmp_path):
    path = tmp_path / "history.csv"
    history = project.callbacks.HistoryCSV(path, {"val_loss": 2.3})
    history.set_model(_tiny_model())
    rewrites = []
    write = history._write
    history._write = lambda: rewrites.append(1) or write()
    history.on_train_begin()
    for epoch in range(5):
        history.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 0.5})
    # Whole rewrites: the start, and the first epoch's new columns; every later row appended.
    assert len(rewrites) == 2
    assert [row["epoch"] for row in project.callbacks.read_history(path)] == [0, 1, 2, 3, 4, 5]
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 6])  # cut inside the last row
    assert [row["epoch"] for row in project.callbacks.read_history(path)] == [0, 1, 2, 3, 4]


def test_nan_guard_stops_and_says_what_to_try(project):
    guard = project.callbacks.NaNGuard()
    model = _tiny_model()
    guard.set_model(model)
    guard.on_train_begin()
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 0.7})
    assert guard.message is None and not model.stop_training
    guard.on_train_batch_end(5, {"loss": math.nan})
    assert model.stop_training
    assert "epoch 3, batch 6" in guard.message and "lower optimizer.learning_rate" in guard.message


def test_nan_guard_stops_a_real_exploding_run_and_nothing_nan_is_backed_up(project, tmp_path):
    model = _tiny_model(1)
    model.compile(optimizer=keras.optimizers.SGD(1e12), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32") * 1e3
    guard = project.callbacks.NaNGuard()
    always = project.callbacks.SaveBudget(clock=itertools.count(0, 1000).__next__)  # always due
    backup = project.callbacks.BudgetedBackupAndRestore(tmp_path / "backup", always, guard=guard)
    model.fit(x, x[:, :1], epochs=5, batch_size=8, callbacks=[guard, backup], verbose=0)
    assert guard.message is not None and "became" in guard.message
    assert project.runs.generations(tmp_path / "backup") == []  # a rerun starts from finite


def test_nan_guard_catches_weights_killed_by_a_nan_input_the_loss_never_shows(project):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    x[0] = np.nan  # the planted bug: one NaN example reaches the network
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    guard = project.callbacks.NaNGuard()
    history = model.fit(x, np.arange(64) % 10, batch_size=32, epochs=5, callbacks=[guard])
    assert guard.message is not None and "lower optimizer.learning_rate" in guard.message
    assert len(history.history["loss"]) == 1  # stopped after the first epoch
    # Where ReLU(NaN) is 0 the loss stays finite and only the weights tell; elsewhere
    # the loss itself turns NaN first. Either way the guard names what broke.
    if all(math.isfinite(loss) for loss in history.history["loss"]):
        assert "weights conv2d" in guard.message and "kernel" in guard.message
    else:
        assert "the training loss became nan" in guard.message


def test_keras_runs_the_batch_hooks_of_trains_callbacks_off_the_training_thread(
    project, tmp_path, monkeypatch
):
    """NaNGuard.async_safe, which Keras's CallbackList reads and does not document: on a
    backend Keras holds thread-safe (JAX, which multi_worker runs on; not TensorFlow in
    Keras 3.15), it runs the batch hooks on a worker thread only when every callback sets
    it or overrides no batch hook. If this fails, Keras stopped reading it (or renamed the
    backend's flag), or one of train's callbacks (make_callbacks' list, EMA on) holds the
    hooks on the training thread."""
    import keras.src.backend

    monkeypatch.setattr(keras.src.backend, "IS_THREAD_SAFE", True)  # as on JAX
    threads = set()

    class Recording(project.callbacks.NaNGuard):
        def on_train_batch_end(self, batch, logs=None):
            threads.add(threading.get_ident())
            super().on_train_batch_end(batch, logs)

    cb = project.callbacks
    backup = cb.BudgetedBackupAndRestore(tmp_path / "backup", budget := cb.SaveBudget())
    callbacks = [
        cb.GracefulStop(backup),
        Recording(),
        cb.HistoryCSV(tmp_path / "history.csv"),
        keras.callbacks.EarlyStopping(patience=5),
        backup,
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        cb.BestCheckpoint(tmp_path / "best.keras", "val_loss", budget),
        cb.EpochTensorBoard(tmp_path / "tb"),
        cb.PredictionPanel(np.zeros((3, 4)), np.arange(3), tmp_path / "predictions", "regression"),
    ]
    hooks = keras.callbacks.CallbackList(callbacks, model=_tiny_model(1))
    hooks.on_train_begin()
    for batch in range(2):
        hooks.on_train_batch_end(batch, {"loss": 1.0})
    hooks.on_train_end()
    assert threads and threading.get_ident() not in threads


def test_a_models_distribute_strategy_is_the_one_it_was_built_in(project):
    """PredictionPanel reads model.distribute_strategy (the TensorFlow trainer's, not in
    Keras's documented API) to predict through a strategy of several replicas, where
    predict_on_batch would give every replica the whole batch. If Keras drops or renames
    it, getattr finds None and a mirrored run's picture is drawn from N copies."""
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _tiny_model()
    assert model.distribute_strategy is strategy
    assert _tiny_model().distribute_strategy is tf.distribute.get_strategy()  # the default


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_prediction_panel_draws_every_epoch_from_epoch_zero(project, tmp_path, task):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2]) if task == "classification" else rng.normal(size=6)
    model = _tiny_model(3 if task == "classification" else 1)
    panel = project.callbacks.PredictionPanel(
        x,
        labels,
        tmp_path / "predictions",
        task,
        class_names=["a", "b", "c"],
        log_dir=str(tmp_path / "tb"),
    )
    panel.set_model(model)
    panel.on_train_begin()
    for epoch in range(2):
        panel.on_epoch_begin(epoch)
        panel.on_epoch_end(epoch)
    panel.on_train_end()  # waits for the drawing thread
    files = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert files == ["epoch_000.png", "epoch_001.png", "epoch_002.png"]
    assert any((tmp_path / "tb" / "predictions").iterdir())  # TensorBoard image events


def test_prediction_panel_raises_a_drawing_error_at_the_next_epoch(project, tmp_path):
    def broken_units(values):
        raise ValueError("planted drawing bug")

    panel = project.callbacks.PredictionPanel(
        np.zeros((4, 4), "float32"), np.zeros(4), tmp_path, "regression", to_units=broken_units
    )
    panel.set_model(_tiny_model(1))
    panel.on_train_begin()
    panel.on_epoch_begin(0)  # the epoch-0 picture fails on the worker thread
    with pytest.raises(ValueError, match="planted drawing bug"):
        for epoch in range(3):  # surfaces on the training thread at the next picture
            time.sleep(0.2)
            panel.on_epoch_end(epoch)


def _events(folder, plugin):
    """(tag, step, value) of what TensorBoard's own loader finds for `plugin` in a folder."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    loaded = EventAccumulator(str(folder))
    loaded.Reload()
    return [
        (tag, event.step, tensor_util.make_ndarray(event.tensor_proto))
        for tag in loaded.PluginTagToContent(plugin)
        for event in loaded.Tensors(tag)
    ]


def test_tensorboard_writes_each_epoch_once_with_the_rate_of_that_epoch(project, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = _tiny_model(1)
    # The rate halves every 4 steps (one epoch): logged late, it would show a later value.
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5, staircase=True)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    board = project.callbacks.EpochTensorBoard(tmp_path / "tb")
    model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), callbacks=[board], verbose=0)
    train = _events(tmp_path / "tb" / "train", "scalars")
    val = _events(tmp_path / "tb" / "validation", "scalars")
    assert sorted((tag, step) for tag, step, _ in train) == sorted(
        (tag, step) for tag in ("epoch_loss", "epoch_learning_rate") for step in range(3)
    )
    assert sorted((tag, step) for tag, step, _ in val) == [("epoch_loss", s) for s in range(3)]
    rates = {step: float(value) for tag, step, value in train if tag == "epoch_learning_rate"}
    assert rates == pytest.approx({0: 0.05, 1: 0.025, 2: 0.0125})  # after 4, 8 and 12 steps


def test_tensorboard_of_a_resumed_fit_goes_on_from_its_first_epoch(project, tmp_path):
    # train resumes and extends a run with fit(initial_epoch=k): a second fit, whose first
    # epoch is k, in files of its own; TensorBoard reads one curve from both.
    model = _tiny_model(1)
    for epochs in (range(0, 2), range(2, 4)):
        board = project.callbacks.EpochTensorBoard(tmp_path / "tb")
        board.set_model(model)
        board.on_train_begin()
        for epoch in epochs:
            board.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.0})
        board.on_train_end()
    assert len(list((tmp_path / "tb" / "train").iterdir())) == 2
    train = _events(tmp_path / "tb" / "train", "scalars")
    losses = {step: float(value) for tag, step, value in train if tag == "epoch_loss"}
    assert losses == pytest.approx({0: 1.0, 1: 0.5, 2: 1 / 3, 3: 0.25})
    assert len(train) == 8  # loss and learning rate, once per epoch


def test_prediction_panel_puts_the_file_picture_in_tensorboard(project, tmp_path):
    panel = project.callbacks.PredictionPanel(
        np.zeros((3, 4), "float32"),
        np.array([0, 1, 2]),
        tmp_path / "predictions",
        "classification",
        class_names=["a", "b", "c"],
        log_dir=str(tmp_path / "tb"),
    )
    panel.set_model(_tiny_model())
    panel.on_train_begin()
    panel.on_epoch_begin(0)
    panel.on_train_end()
    [(tag, step, value)] = _events(tmp_path / "tb" / "predictions", "images")
    png = (tmp_path / "predictions" / "epoch_000.png").read_bytes()
    with Image.open(io.BytesIO(png)) as picture:
        size = picture.size
    assert (tag, step) == ("fixed_batch_predictions", 0)
    assert value.tolist() == [str(size[0]).encode(), str(size[1]).encode(), png]


def test_classification_panel_marks_right_and_wrong(project):
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2]])
    panel = project.pictures.classification_panel(probabilities, np.array([0, 1]), ["a", "b"], "t")
    pixels = np.asarray(panel.convert("RGB"))

    def rows_with(color):
        return (pixels == color).all(axis=-1).any(axis=1)

    greens, reds = rows_with(project.pictures.GREEN), rows_with(project.pictures.RED)
    middle = 20 + 20  # title strip, then one 20-pixel row per example
    assert greens[:middle].any() and not greens[middle:].any()
    assert reds[middle:].any() and not reds[:middle].any()


@pytest.mark.parametrize("side", [8, 64])
def test_classification_panel_shows_each_input_whole_at_its_row(project, side):
    rng = np.random.default_rng(0)
    # 17 grey levels, as digits have: fewer than the palette keeps for thumbnails.
    images = (rng.integers(0, 17, size=(3, side, side, 1)) * 15).astype(np.uint8)
    panel = project.pictures.classification_panel(
        np.full((3, 2), 0.5), np.array([0, 1, 0]), ["a", "b"], "t", images
    )
    pixels = np.asarray(panel.convert("RGB")).astype(int)
    assert pixels.shape[0] == 20 + 3 * 36  # a 20-pixel title, then 32-pixel rows 4 apart
    for i, image in enumerate(images):
        top = 20 + i * 36
        shown = pixels[top : top + 32, :32]
        if side == 8:  # enlarged 4x: every one of its grey levels kept exactly
            assert np.array_equal(shown[..., 0], np.kron(image[..., 0], np.ones((4, 4))))
        else:  # reduced to the row's height, so it does not cover the next row
            assert abs(shown.mean() - image.mean()) < 10
        assert (pixels[top + 32 : top + 36, :32] == 25).all()


def test_images_keep_one_fixed_range(project):
    images = np.array([[[[0.0]]], [[[8.0]]], [[[16.0]]]])
    pixels = project.pictures.to_uint8(images, (0.0, 16.0))
    assert pixels.ravel().tolist() == [0, 127, 255]  # not stretched per image (U18)


def test_seed_states_put_dropout_back_where_it_was(project, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((100,)), keras.layers.Dropout(0.5)])
    x = np.ones((1, 100), np.float32)
    model(x, training=True)
    project.callbacks.save_seed_states(model, tmp_path / "seeds.npy")
    first, second = (model(x, training=True).numpy() for _ in range(2))
    assert not np.array_equal(first, second)  # every call draws a new mask
    project.callbacks.load_seed_states(model, tmp_path / "seeds.npy")
    assert np.array_equal(model(x, training=True).numpy(), first)  # the saved point again


def test_save_budget_spaces_saves_by_their_cost(project):
    clock = [100.0]
    budget = project.callbacks.SaveBudget(fraction=0.01, clock=lambda: clock[0])
    assert not budget.due(0)  # the first save waits for 10 s of training (0.1 s guessed at 1%)
    clock[0] += 10.0
    assert budget.due(1)

    def save():
        clock[0] += 0.05  # a 50 ms save

    budget.spend(save)
    clock[0] += 4.0
    assert not budget.due(2)  # 50 ms at 1% -> at most one save per 5 s
    clock[0] += 1.0
    assert budget.due(3)


def test_savers_sharing_a_budget_save_at_the_same_epochs_within_one_share(project):
    clock = [100.0]
    budget = project.callbacks.SaveBudget(fraction=0.01, clock=lambda: clock[0])
    saved = []

    def saver(name):
        def save():
            clock[0] += 0.05
            saved.append((epoch, name))

        return save

    for epoch in range(40):  # epochs of 0.5 s; both savers ask at every epoch end
        clock[0] += 0.5
        for name in ("backup", "best"):
            if budget.due(epoch):
                budget.spend(saver(name))
    # Both save in the same epochs (the first after 10 s), and the pair's 100 ms sets the
    # next wait: 10 s, so twice in 20 s; on budgets of their own each would save every 5 s.
    assert saved == [(19, "backup"), (19, "best"), (39, "backup"), (39, "best")]
    assert budget.cost == pytest.approx(0.1)


def test_best_checkpoint_writes_the_best_epoch_not_the_last(project, tmp_path):
    model = _tiny_model()
    model(np.zeros((1, 4)))
    checkpoint = project.callbacks.BestCheckpoint(tmp_path / "best.keras")
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0, {"val_loss": 1.0})  # best so far: kept in memory
    model.set_weights([w + 0.5 for w in model.get_weights()])
    best = [w.copy() for w in model.get_weights()]
    checkpoint.on_epoch_end(1, {"val_loss": 0.5})  # better: replaces it (no save due yet)
    model.set_weights([w + 1 for w in best])
    checkpoint.on_epoch_end(2, {"val_loss": 0.9})  # worse: ignored
    checkpoint.on_train_end()  # writes the pending best
    saved = keras.saving.load_model(tmp_path / "best.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, best, strict=True))
    # The model itself keeps training weights; the checkpoint swapped them back.
    assert all(np.array_equal(a, b + 1) for a, b in zip(model.get_weights(), best, strict=True))


def test_a_resumed_best_checkpoint_starts_from_the_file_not_from_the_history(project, tmp_path):
    # The bug: a kill can come after a better epoch was kept in memory but before the
    # budget let it reach the file. Taking the best from the history then blocks every
    # later epoch that beats the file but not that lost one, so training ends on the file's
    # older, worse weights.
    model = _tiny_model()
    model(np.zeros((1, 4)))
    path = tmp_path / "best.keras"
    checkpoint = project.callbacks.BestCheckpoint(path)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.budget.due = lambda epoch: epoch == 0  # a save is due after epoch 1 only
    checkpoint.on_epoch_end(0, {"val_loss": 0.5})
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 1, "val_loss": 0.5}
    model.set_weights([w + 1 for w in model.get_weights()])
    checkpoint.on_epoch_end(1, {"val_loss": 0.2})  # better, in memory only: then the kill

    resumed = project.callbacks.BestCheckpoint(path)
    assert resumed.best == 0.5
    resumed.set_model(model)
    resumed.on_train_begin()
    model.set_weights([w + 1 for w in model.get_weights()])
    third = [w.copy() for w in model.get_weights()]
    resumed.on_epoch_end(2, {"val_loss": 0.3})  # worse than the lost epoch, better than the file
    resumed.on_train_end()
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 3, "val_loss": 0.3}
    saved = keras.saving.load_model(path).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, third, strict=True))


def test_a_save_that_dies_midway_leaves_the_previous_best_file(project, tmp_path, monkeypatch):
    model = _tiny_model()
    model(np.zeros((1, 4)))
    checkpoint = project.callbacks.BestCheckpoint(tmp_path / "best.keras")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_loss": 0.5})
    checkpoint.on_train_end()
    before = (tmp_path / "best.keras").read_bytes()

    def killed(path, *args, **kwargs):
        Path(path).write_bytes(b"half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", killed)
    checkpoint.on_epoch_end(1, {"val_loss": 0.4})
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_train_end()
    assert (tmp_path / "best.keras").read_bytes() == before
    assert json.loads((tmp_path / "best.json").read_text())["val_loss"] == 0.5


def _summaries(folder):
    """(tag, step, plugin name, summary value) of every summary in a folder's event files,
    read with TensorFlow's public event reader."""
    import tensorflow as tf

    found = []
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.append((value.tag, event.step, value.metadata.plugin_data.plugin_name, value))
    return found


def _hparams(folder) -> dict:
    """{name: (kind, value)} of the HParams session a folder holds."""
    from tensorboard.plugins.hparams import metadata

    [value] = [v for _, _, plugin, v in _summaries(folder) if plugin == "hparams"]
    info = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
    kinds = {name: info.hparams[name].WhichOneof("kind") for name in info.hparams}
    return {name: (kind, getattr(info.hparams[name], kind)) for name, kind in kinds.items()}


def _number(value) -> float:
    """A scalar summary's value."""
    import tensorflow as tf

    return float(tf.make_ndarray(value.tensor))


def test_hparams_of_a_run_hold_its_config_and_final_metrics_once(project, make_config, tmp_path):
    config = make_config("optimizer.learning_rate=0.001", "data.image_size=[16,16]")
    report = {"model": {"loss": 0.3, "accuracy": 0.9, "accuracy_interval": [0.8, 0.95]}}
    history = [{"epoch": 0, "val_loss": 2.3}, {"epoch": 1, "val_loss": 0.4, "loss": 0.5}]
    hparams, metrics = project.callbacks.run_hparams(config, {**report, "epochs": 1}, history)
    for _ in range(2):  # a run continued and finished again: its folder holds the last finish
        project.callbacks.write_hparams(tmp_path / "tb", hparams, metrics, step=1)
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    found = _hparams(tmp_path / "tb")
    assert set(found) == {key for key, _, _ in project.config.iter_fields(config)}
    assert found["optimizer.learning_rate"] == ("number_value", pytest.approx(0.001))
    assert found["data.image_size"] == ("string_value", "[16, 16]")  # a list, as text
    assert found["model.name"][0] == "string_value" and found["train.histograms"][0] == "bool_value"
    scalars = {
        tag: _number(value)
        for tag, step, plugin, value in _summaries(tmp_path / "tb")
        if plugin == "scalars" and step == 1
    }
    assert scalars == pytest.approx(
        {"test_loss": 0.3, "test_accuracy": 0.9, "best_val_loss": 0.4, "epochs": 1}
    )


def test_each_trial_of_a_search_gets_its_hparams_and_objective(project, tmp_path):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Float("optimizer.learning_rate", 1e-4, 1e-2, default=3e-3)
    hp.Choice("model.width", [32, 64], default=64)
    trial = keras_tuner.engine.trial.Trial(hp, trial_id="3", status="COMPLETED")
    trial.score = 0.25
    project.callbacks.write_trial_hparams(trial, "val_loss", tmp_path / "tb")
    found = _hparams(tmp_path / "tb" / "trial-3")
    assert found["optimizer.learning_rate"][1] == pytest.approx(3e-3)
    assert found["model.width"] == ("number_value", 64)
    summaries = _summaries(tmp_path / "tb" / "trial-3")
    assert [(t, _number(v)) for t, _, p, v in summaries if p == "scalars"] == [("val_loss", 0.25)]


def _dense_and_conv_model():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    return model


def test_weight_histograms_and_gradient_norms_every_epoch(project, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6, 6, 1)).astype("float32"), np.arange(8) % 3
    model = _dense_and_conv_model()
    board = project.callbacks.WeightHistograms(x[:4], y[:4], tmp_path / "tb")
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[board], verbose=0)
    found = _summaries(tmp_path / "tb" / "train")
    histograms = {(tag, step) for tag, step, plugin, _ in found if plugin == "histograms"}
    kernels = {"conv/kernel", "dense/kernel"}
    assert {(k, s) for k in kernels for s in (0, 1)} <= histograms
    norms = {tag: _number(v) for tag, step, p, v in found if p == "scalars" and step == 1}
    # The loss of the fixed batch, its gradient taken apart from the callback.
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x[:4], y=y[:4], y_pred=model(x[:4]), training=False)
    expected = tape.gradient(loss, model.get_layer("dense").kernel)
    assert norms["gradient_norm/dense/kernel"] == pytest.approx(float(tf.norm(expected)), rel=1e-5)
    assert norms["gradient_norm/conv/kernel"] > 0


def test_step_log_prints_and_logs_the_mean_loss_of_the_steps_since_the_last_line(
    project, tmp_path, capsys
):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6, 6, 1)).astype("float32"), np.arange(16) % 3
    model = _dense_and_conv_model()  # a rate of 0: every batch's loss is fixed and known
    batch_losses = [
        float(model.evaluate(x[i : i + 4], y[i : i + 4], verbose=0)) for i in range(0, 16, 4)
    ]
    log = project.callbacks.StepLog(3, tmp_path / "tb")
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, callbacks=[log], verbose=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [line.split(":")[0] for line in lines] == ["step 3", "step 6", "step 9", "step 12"]
    # Each line: the batches since the previous line within its epoch (4 batches an epoch).
    b = batch_losses
    expected = {3: np.mean(b[:3]), 6: np.mean(b[:2]), 9: b[0], 12: np.mean(b[1:])}
    logged = {
        step: _number(v)
        for tag, step, p, v in _summaries(tmp_path / "tb" / "train")
        if tag == "batch_loss"
    }
    assert logged == pytest.approx(expected, rel=1e-5)
    assert f"loss {expected[12]:.4f}, learning rate 0" in lines[3]


def test_train_adds_histograms_and_step_logs_only_when_asked(project, make_config, tmp_path):
    config = make_config("data.max_examples=150")
    data = project.data.load(config)
    kinds = (project.callbacks.WeightHistograms, project.callbacks.StepLog)

    def added(*overrides):
        config = make_config("data.max_examples=150", *overrides)
        callbacks, _ = project.train.make_callbacks(config, data, tmp_path / "run", {})
        return [type(c) for c in callbacks if isinstance(c, kinds)]

    assert added() == []
    assert added("train.histograms=true", "train.log_every_steps=5") == list(kinds[::-1])
    with pytest.raises(project.errors.UsageError, match="train.log_every_steps must be >= 0"):
        make_config("train.log_every_steps=-1")
    with pytest.raises(project.errors.UsageError, match="multi_worker runs on JAX"):
        make_config("train.histograms=true", "train.strategy=multi_worker")
