"""data.augment (R4.2, T4): the catalogue in the pipeline, seeded and resume-exact, table noise
on numeric columns only, MixUp/CutMix labels, and the check that augmentation keeps labels."""

import numpy as np
import pytest


def _first_batch(project, data, names, seed=0):
    stream = project.pipeline.make_dataset(
        data, data.train, 16, shuffle=False, seed=seed, augment=names
    )
    x, y = next(iter(stream))
    return x.numpy(), y.numpy()


def test_augmentation_is_off_by_default_and_each_name_changes_inputs_when_on(project, make_config):
    config = make_config("data.source=digits", "data.max_examples=200")
    assert config.data.augment == []  # R2.2
    data = project.data.load(config)
    plain, labels = _first_batch(project, data, ())
    for name in project.config.IMAGE_AUGMENTATIONS:
        x, y = _first_batch(project, data, [name])
        assert x.shape == plain.shape and x.dtype == np.float32, name
        assert not np.allclose(x, plain), name
        assert np.array_equal(x, _first_batch(project, data, [name])[0]), name  # seeded
        if name in project.config.LABEL_MIXING:  # class probabilities, mixed for some rows
            assert y.shape == (16, 10) and np.allclose(y.sum(axis=1), 1.0), name
            assert (y.max(axis=1) < 0.99).any(), name
        else:
            assert np.array_equal(y, labels), name


def test_table_noise_changes_numeric_columns_and_never_category_indices(
    project, make_config, csv_file
):
    # Noise on a category index turned it into another category (TabularInput truncates it).
    config = make_config(f"data.source={csv_file}", "data.label_column=kind")
    data = project.data.load(config)
    (column,) = data.categorical
    plain, _ = _first_batch(project, data, ())
    noisy, _ = _first_batch(project, data, ["noise"])
    np.testing.assert_array_equal(noisy[:, column], plain[:, column])
    numeric = [c for c in range(plain.shape[1]) if c != column]
    assert not np.allclose(noisy[:, numeric], plain[:, numeric])
    with pytest.raises(project.errors.UsageError, match="flip_horizontal does not apply"):
        _first_batch(project, data, ["flip_horizontal"])


def test_a_resumed_stream_augments_as_the_uninterrupted_one(project, make_config):
    """Each batch's draws are seeded by its place in the stream, not by a state that a
    restarted process would start again from zero (T14)."""
    data = project.data.load(make_config("data.max_examples=300"))
    steps = project.pipeline.steps_per_epoch(data.train, 32)

    def stream(first_epoch):
        return project.pipeline.make_dataset(
            data,
            data.train,
            32,
            shuffle=True,
            seed=3,
            augment=["rotate", "mixup"],
            first_epoch=first_epoch,
        )

    whole = [(x.numpy(), y.numpy()) for x, y in stream(0).take(steps + 2)][steps:]
    resumed = [(x.numpy(), y.numpy()) for x, y in stream(1).take(2)]
    for (x, y), (other_x, other_y) in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(x, other_x)
        np.testing.assert_array_equal(y, other_y)


def test_mixed_labels_are_probabilities_the_loss_and_accuracy_take(project, make_config):
    config = make_config("data.max_examples=200", "data.augment=cutmix")
    data = project.data.load(config)
    x, y = (t.numpy() for t in next(iter(project.pipeline.training_stream(config, data, 0))))
    logits = np.random.default_rng(0).normal(size=y.shape).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = project.models.loss_for(data, config)
    assert float(loss(y, logits)) == pytest.approx(-(y * log_p).sum(axis=1).mean(), rel=1e-5)
    indices = np.arange(len(y)) % 10  # validation keeps class indices: the same loss as one-hot
    assert float(loss(indices, logits)) == pytest.approx(float(loss(np.eye(10)[indices], logits)))
    (accuracy,) = project.models.metrics_for(data, project.models.mixes_labels(config))
    accuracy.update_state(y, logits)
    assert float(accuracy.result()) == pytest.approx(np.mean(y.argmax(1) == logits.argmax(1)))


def test_augmentation_keeps_labels_fails_on_flipped_digits_and_passes_a_small_shift(
    project, make_config
):
    """Karpathy's "flipped the image but not the label": a mirrored or upside-down digit is
    another digit or none; a shift by a fraction of a pixel is the same digit."""

    def setup_for(*overrides):
        config = make_config(*overrides)
        return project.checks.make_setup(config, project.data.load(config))

    flipped = setup_for("data.augment=flip_horizontal,flip_vertical")
    result = project.checks.augmentation_keeps_labels(flipped)
    assert result.status == "FAIL", result.line()
    assert result.diagnosis.startswith("flip_horizontal, flip_vertical destroy the labels")
    shifted = setup_for("data.augment=translate,mixup", "data.augment_strength=0.5")
    result = project.checks.augmentation_keeps_labels(shifted)
    assert result.status == "PASS", result.line()
    assert "translate" in result.measured and "mixup" not in result.measured
    path = project.checks.draw_augmented_batch(shifted)
    assert path.name == "augmented_batch.png" and path.stat().st_size > 1000
    off = setup_for("data.max_examples=200")
    assert project.checks.augmentation_keeps_labels(off) is None  # nothing to judge
    assert project.checks.draw_augmented_batch(off) is None


def test_augment_is_a_list_of_names_and_the_old_off_switch_still_reads(project):
    build = project.config.build_config
    assert build([], ["data.augment=translate,zoom"]).data.augment == ["translate", "zoom"]
    assert build([], ["data.augment=[rotate]"]).data.augment == ["rotate"]
    assert build([], ["data.augment=false"]).data.augment == []  # a config saved before
