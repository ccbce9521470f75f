"""Callbacks fed made-up logs, the way Keras tests its own."""

import math

import keras
import numpy as np
import pytest


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


def test_nan_guard_stops_a_real_exploding_run(project):
    model = _tiny_model(1)
    model.compile(optimizer=keras.optimizers.SGD(1e12), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32") * 1e3
    guard = project.callbacks.NaNGuard()
    model.fit(x, x[:, :1], epochs=5, batch_size=8, callbacks=[guard], verbose=0)
    assert guard.message is not None and "became" in guard.message


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


def test_classification_panel_marks_right_and_wrong(project):
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2]])
    panel = project.pictures.classification_panel(probabilities, np.array([0, 1]), ["a", "b"], "t")
    assert panel.dtype == np.uint8 and panel.ndim == 3

    def near(color):  # text is anti-aliased: match by distance, per row
        return (np.abs(panel.astype(int) - color).sum(axis=-1) < 40).any(axis=1)

    greens, reds = near(project.pictures.GREEN), near(project.pictures.RED)
    middle = 20 + 20  # title strip, then one 20-pixel row per example
    assert greens[:middle].any() and not greens[middle:].any()
    assert reds[middle:].any() and not reds[:middle].any()


def test_images_keep_one_fixed_range(project):
    images = np.array([[[[0.0]]], [[[8.0]]], [[[16.0]]]])
    pixels = project.pictures.to_uint8(images, (0.0, 16.0))
    assert pixels.ravel().tolist() == [0, 127, 255]  # not stretched per image (U18)


def test_save_budget_spaces_saves_by_their_cost(project, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(project.callbacks.time, "monotonic", lambda: clock[0])
    budget = project.callbacks.SaveBudget(fraction=0.01)
    assert not budget.due()  # the first save waits for 10 s of training (0.1 s guessed at 1%)
    clock[0] += 10.0
    assert budget.due()

    def save():
        clock[0] += 0.05  # a 50 ms save

    budget.spend(save)
    clock[0] += 4.0
    assert not budget.due()  # 50 ms at 1% -> at most one save per 5 s
    clock[0] += 1.0
    assert budget.due()


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
