"""Builders: output shapes, the loss at init, and a user's own builder."""

import keras
import numpy as np
import pytest
from PIL import Image


def _initial_loss(project, config):
    project.seeding.seed_everything(config)  # the init, whichever tests ran before
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    project.models.compile_model(model, config, data, steps_per_epoch=1)
    dataset = project.pipeline.make_dataset(data, data.val, 256, shuffle=False)
    measured = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    t = config.train
    return (
        data,
        model,
        measured,
        project.models.expected_initial_loss(data, t.loss, t.label_smoothing),
    )


@pytest.mark.parametrize(
    ("source", "model_name"),
    [
        ("digits", "linear"),
        ("digits", "mlp"),
        ("digits", "convnet"),
        ("digits", "resnet"),
        ("breast_cancer", "mlp"),
        ("breast_cancer", "linear"),
        ("diabetes", "mlp"),
    ],
)
def test_loss_at_init_matches_the_priors_within_2_5_percent(
    project, make_config, source, model_name
):
    """R2.4: the validation loss before any step is the priors' loss. Within 2.5%, half the
    gap between ln 2 and the prior entropy on breast_cancer (0.693 vs 0.661), so an output
    that ignored the priors fails; the small output kernel's random projection of the inputs
    moves it by up to ~2% on the tables (0.1% on digits)."""
    config = make_config(f"data.source={source}", f"model.name={model_name}")
    data, model, measured, expected = _initial_loss(project, config)
    assert model.output_shape == (None, data.num_outputs)
    assert measured == pytest.approx(expected, rel=0.025)
    uniform = np.log(data.num_outputs)  # what an output blind to the priors starts at
    if data.task == "classification" and abs(uniform - expected) > 0.01 * expected:
        assert abs(measured - expected) < abs(measured - uniform)


@pytest.mark.parametrize(
    ("source", "overrides"),
    [
        ("breast_cancer", ["train.label_smoothing=0.6"]),  # on balanced digits: no change
        ("digits", ["train.loss=focal"]),
        ("breast_cancer", ["train.loss=focal", "train.label_smoothing=0.2"]),
        ("breast_cancer", ["train.class_weight=balanced"]),
        ("diabetes", ["train.loss=mae"]),
        ("diabetes", ["train.loss=huber"]),
    ],
)
def test_every_loss_starts_at_its_expected_value(project, make_config, source, overrides):
    """The loss at init (R2.4) for each train.loss, label smoothing (T7) and class weights (T2):
    what the compiled loss measures on the validation split is what the formula says, and
    each option moves it away from the plain loss's value."""
    config = make_config(f"data.source={source}", "model.name=mlp", *overrides)
    data, _, measured, expected = _initial_loss(project, config)
    assert measured == pytest.approx(expected, rel=0.02)
    plain = project.models.expected_initial_loss(
        project.data.load(make_config(f"data.source={source}"))
    )
    assert abs(expected - plain) > 0.04 * plain  # twice the tolerance above


def test_balanced_class_weights_start_the_output_uniform_and_weigh_the_rare_class_up(
    project, make_config
):
    data = project.data.load(
        make_config("data.source=breast_cancer", "train.class_weight=balanced")
    )
    assert np.ptp(data.output_bias) == pytest.approx(0.0, abs=1e-6)  # the weighted priors: 1/2 each
    weights = project.models.class_weights(data)
    rare = int(np.argmin(data.class_priors))
    assert weights[rare] > 1 > weights[1 - rare]
    assert sum(
        w * p for w, p in zip(weights.values(), data.class_priors, strict=True)
    ) == pytest.approx(1.0)
    assert (
        project.models.class_weights(project.data.load(make_config("data.source=breast_cancer")))
        is None
    )


def test_a_loss_of_the_other_task_is_refused_in_one_line(project, make_config):
    for source, overrides, message in [
        ("digits", ["train.loss=mae"], "train.loss=mae does not fit classification"),
        ("diabetes", ["train.loss=focal"], "train.loss=focal does not fit regression"),
        ("diabetes", ["train.label_smoothing=0.1"], "label_smoothing applies to classification"),
    ]:
        config = make_config(f"data.source={source}", *overrides)
        with pytest.raises(project.errors.UsageError, match=message):
            project.models.loss_for(project.data.load(config), config)
    with pytest.raises(project.errors.UsageError, match="train.loss must be one of"):
        make_config("train.loss=hinge")


def test_the_one_hot_loss_survives_a_checkpoint(project, make_config, tmp_path):
    """Focal and smoothed losses are a class of the package: a resumed run reloads it."""
    config = make_config("model.name=linear", "train.loss=focal", "train.label_smoothing=0.1")
    data = project.data.load(config)
    model = project.models.compile_model(project.models.build_model(config, data), config, data, 1)
    model.save(tmp_path / "last.keras")
    loss = keras.saving.load_model(tmp_path / "last.keras").loss
    assert isinstance(loss, project.models.OneHotCrossentropy)
    assert loss.focal and loss.label_smoothing == pytest.approx(0.1) and loss.num_classes == 10


def test_expected_loss_is_log_c_for_balanced_and_prior_entropy_for_imbalanced(project, make_config):
    digits = project.data.load(make_config())
    assert project.models.expected_initial_loss(digits) == pytest.approx(np.log(10), rel=0.01)
    cancer = project.data.load(make_config("data.source=breast_cancer"))
    assert project.models.expected_initial_loss(cancer) == pytest.approx(0.661, abs=0.01)
    np.testing.assert_allclose(np.exp(cancer.output_bias), cancer.class_priors, rtol=1e-5)


def _imbalanced_folder(root):
    """Three classes of 24, 12 and 6 small images: priors far from uniform."""
    rng = np.random.default_rng(0)
    for name, count in (("cat", 24), ("dog", 12), ("owl", 6)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("source", "model_name"),
    [
        ("breast_cancer", "linear"),
        ("breast_cancer", "mlp"),
        ("folder", "linear"),
        ("folder", "mlp"),
        ("folder", "convnet"),
        ("folder", "resnet"),
        pytest.param("folder", "backbone", marks=pytest.mark.slow),
        ("diabetes", "linear"),
        ("diabetes", "mlp"),
    ],
)
def test_each_built_in_model_starts_its_output_bias_at_the_priors_or_the_target_mean(
    project, make_config, tmp_path, source, model_name
):
    """R2.5, T3, read from the built model's output layer: softmax(bias) is the training
    split's class frequencies (two classes: the bias difference is log(pos/neg)); for
    regression the bias is the target mean, 0 in the standard units trained in."""
    if source == "folder":
        folder = _imbalanced_folder(tmp_path / "pics")
        overrides = [f"data.source={folder}", "data.image_size=32,32", "model.weights=none"]
    else:
        overrides = [f"data.source={source}"]
    config = make_config(*overrides, f"model.name={model_name}")
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    bias = model.get_layer("logits").bias.numpy().astype(np.float64)
    if data.task == "regression":
        assert bias[0] == pytest.approx(0.0, abs=1e-4)
        in_units = project.data.unscale_targets(data, bias[0])
        assert in_units == pytest.approx(np.mean(data.train.y, dtype=np.float64), rel=1e-4)
        return
    frequencies = np.bincount(data.train.y, minlength=data.num_outputs) / len(data.train.y)
    assert np.ptp(frequencies) > 0.2  # imbalanced: a uniform start would be off
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), frequencies, atol=1e-4)
    if data.num_outputs == 2:
        log_odds = np.log(frequencies[1] / frequencies[0])
        assert bias[1] - bias[0] == pytest.approx(log_odds, abs=1e-4)


def test_hidden_layers_use_he_init_and_biases_and_the_output_is_linear(project, make_config):
    config = make_config("model.name=mlp", "data.source=breast_cancer")
    model = project.models.build_model(config, project.data.load(config))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert all(layer.use_bias for layer in dense)
    hidden, output = dense[:-1], dense[-1]
    assert all(layer.kernel_initializer.__class__.__name__ == "HeNormal" for layer in hidden)
    assert all(layer.activation.__name__ == "relu" for layer in hidden)
    assert output.activation.__name__ == "linear" and output.dtype == "float32"


def test_categorical_columns_get_embeddings_and_survive_save_and_load(
    project, make_config, csv_file, tmp_path
):
    config = make_config(f"data.source={csv_file}", "data.label_column=kind", "model.name=mlp")
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    assert any(isinstance(layer, project.models.TabularInput) for layer in model.layers)
    x = data.normalize(data.test.x)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    after = keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)
    np.testing.assert_allclose(before, after, rtol=1e-6)


USER_MODULE = """
import keras

def build(input_shape, num_outputs, output_bias):
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    bias = keras.initializers.Constant(output_bias)
    outputs = keras.layers.Dense(num_outputs, bias_initializer=bias)(x)
    return keras.Model(inputs, outputs)

def wrong_shape(input_shape, num_outputs, output_bias):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(num_outputs + 1)(keras.layers.Flatten()(inputs)))

def not_a_model(input_shape, num_outputs, output_bias):
    return "model"
"""


def test_a_users_builder_by_module_or_by_file(project, make_config, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    for name in ("my_models:build", f"{tmp_path / 'my_models.py'}:build"):
        config = make_config(f"model.name={name}")
        data = project.data.load(config)
        model = project.models.build_model(config, data)
        assert model.output_shape == (None, 10)
        np.testing.assert_allclose(model.layers[-1].bias.numpy(), data.output_bias)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_models:wrong_shape", r"returned outputs of shape \(None, 11\); expected \(None, 10\)"),
        ("my_models:not_a_model", "returned str, not a keras.Model"),
        ("my_models:absent", "has no function 'absent'"),
        ("no_such_module:build", "cannot import module 'no_such_module'"),
        ("missing.py:build", "file missing.py does not exist"),
    ],
)
def test_a_broken_builder_is_named(project, make_config, tmp_path, monkeypatch, name, message):
    (tmp_path / "my_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    config = make_config(f"model.name={name}")
    with pytest.raises(project.errors.UsageError, match=message):
        project.models.build_model(config, project.data.load(config))


def test_image_models_refuse_tables(project, make_config):
    config = make_config("data.source=breast_cancer", "model.name=convnet")
    with pytest.raises(project.errors.UsageError, match="needs images"):
        project.models.build_model(config, project.data.load(config))


def test_optimizer_is_constant_adam_unless_asked(project, make_config):
    plain = project.models.make_optimizer(make_config(), steps_per_epoch=10)
    assert isinstance(plain, keras.optimizers.Adam) and float(plain.learning_rate) == pytest.approx(
        3e-4
    )
    decayed = project.models.make_optimizer(make_config("optimizer.weight_decay=1e-4"), 10)
    assert isinstance(decayed, keras.optimizers.AdamW)
    config = make_config(
        "optimizer.schedule=warmup_cosine", "optimizer.warmup_epochs=2", "train.epochs=10"
    )
    schedule = project.models.learning_rate(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert rates[0] == 0 and rates[1] == pytest.approx(1.5e-4) and rates[2] == pytest.approx(3e-4)
    assert rates[2] > rates[3] > rates[4]


def test_sgd_adamw_and_clipping_are_what_the_config_names(project, make_config):
    sgd = project.models.make_optimizer(
        make_config("optimizer.name=sgd", "optimizer.nesterov=true", "optimizer.clipnorm=1.0"), 10
    )
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == pytest.approx(0.9) and sgd.nesterov and sgd.clipnorm == 1.0
    adamw = project.models.make_optimizer(make_config("optimizer.name=adamw"), 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay > 0
    assert project.models.make_optimizer(make_config(), 10).clipnorm is None


@pytest.mark.parametrize(
    ("overrides", "layer", "rate"),
    [
        (["data.source=breast_cancer", "model.name=mlp"], "input_dropout", 0.2),
        (["data.source=breast_cancer", "model.name=linear"], "input_dropout", 0.2),
        (["model.name=convnet"], "spatial_dropout", 0.1),
        (["model.name=resnet"], "spatial_dropout", 0.1),
    ],
)
def test_dropout_sits_where_it_is_asked_for_and_nowhere_by_default(
    project, make_config, overrides, layer, rate
):
    """Input dropout for tables, spatial dropout for conv stages (R4.9): absent by default."""
    kind = keras.layers.SpatialDropout2D if layer == "spatial_dropout" else keras.layers.Dropout

    def droppers(*extra):
        config = make_config(*overrides, *extra)
        model = project.models.build_model(config, project.data.load(config))
        return [x for x in model.layers if isinstance(x, kind | keras.layers.Dropout)]

    assert droppers() == []
    asked = droppers(f"model.{layer}={rate}")
    assert asked and all(isinstance(x, kind) and x.rate == rate for x in asked)
    if "model.name=resnet" in overrides:  # after each of its three stages
        assert len(asked) == 3
    with pytest.raises(project.errors.UsageError, match=f"model.{layer} applies to"):
        wrong = "convnet" if layer == "input_dropout" else "mlp"
        config = make_config(f"model.name={wrong}", f"model.{layer}={rate}")
        project.models.build_model(config, project.data.load(config))


@pytest.mark.parametrize(
    ("model_name", "after"),
    [
        ("mlp", [("Dense", 0.4), ("Dense", 0.4)]),  # after each of its two layers
        ("convnet", [("MaxPooling2D", 0.2), ("Dense", 0.4)]),  # half before its dense layer
        ("resnet", [("GlobalAveragePooling2D", 0.4)]),
        pytest.param("backbone", [("InferenceMode", 0.4)], marks=pytest.mark.slow),
    ],
)
def test_dropout_rate_sits_after_the_hidden_layers_once_asked(
    project, make_config, model_name, after
):
    """R4.9, T10: model.dropout_rate=0.4 puts Dropout after the dense layers (the pooled
    features of the resnet, a backbone's feature vector); none by default (the test above)."""
    source = "breast_cancer" if model_name == "mlp" else "digits"
    config = make_config(
        f"data.source={source}",
        f"model.name={model_name}",
        "model.dropout_rate=0.4",
        "model.weights=none",  # a backbone's random init: nothing to download
    )
    model = project.models.build_model(config, project.data.load(config))
    found = [
        (type(model.layers[i - 1]).__name__, layer.rate)
        for i, layer in enumerate(model.layers)
        if type(layer) is keras.layers.Dropout
    ]
    assert found == after


def test_the_convnet_and_resnet_are_built_as_their_rows_say(project, make_config):
    """U9: convnet 32 then 64 filters, resnet stages of 32-64-128; U10: max pooling in the
    convnet, strided stages and global average pooling in the resnet, whose pooled features
    go straight to the logits (R4.7); T12: a residual addition ends each of its six blocks;
    U14: batch norm in the resnet only."""

    def build(name):
        config = make_config(f"model.name={name}")  # digits, 8x8
        return project.models.build_model(config, project.data.load(config))

    convnet, resnet = build("convnet"), build("resnet")
    convs = [layer for layer in convnet.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [32, 64]
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in convnet.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in convnet.layers)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in resnet.layers)
    convs = [layer for layer in resnet.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted({layer.filters for layer in convs}) == [32, 64, 128]
    assert sum(layer.strides == (2, 2) for layer in convs) >= 2  # the stages downsample
    assert isinstance(resnet.layers[-2], keras.layers.GlobalAveragePooling2D)
    assert sum(isinstance(layer, keras.layers.Add) for layer in resnet.layers) == 6
