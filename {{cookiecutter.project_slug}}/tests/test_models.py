"""Builders: output shapes, the loss at init, and a user's own builder."""

import keras
import numpy as np
import pytest


def _initial_loss(project, config):
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    project.models.compile_model(model, config, data, steps_per_epoch=1)
    dataset = project.pipeline.make_dataset(data, data.val, 256, shuffle=False)
    measured = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    return data, model, measured, project.models.expected_initial_loss(data)


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
def test_loss_at_init_matches_the_priors_within_5_percent(project, make_config, source, model_name):
    config = make_config(f"data.source={source}", f"model.name={model_name}")
    data, model, measured, expected = _initial_loss(project, config)
    assert model.output_shape == (None, data.num_outputs)
    assert measured == pytest.approx(expected, rel=0.05)


def test_expected_loss_is_log_c_for_balanced_and_prior_entropy_for_imbalanced(project, make_config):
    digits = project.data.load(make_config())
    assert project.models.expected_initial_loss(digits) == pytest.approx(np.log(10), rel=0.01)
    cancer = project.data.load(make_config("data.source=breast_cancer"))
    assert project.models.expected_initial_loss(cancer) == pytest.approx(0.661, abs=0.01)
    np.testing.assert_allclose(np.exp(cancer.output_bias), cancer.class_priors, rtol=1e-5)


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
