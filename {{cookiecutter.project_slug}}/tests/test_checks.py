"""Recipe checks: each passes on a correct setup and names the planted bug that makes it fail."""

import json
import math

import keras
import numpy as np
import pytest

# Users' own builders (model.name=path/to/file.py:function), each with one planted bug.
USER_MODELS = """
import keras
import numpy as np


def _head(num_outputs, output_bias, **kwargs):
    kwargs.setdefault("kernel_initializer", keras.initializers.RandomNormal(stddev=1e-3, seed=1))
    kwargs.setdefault("bias_initializer", keras.initializers.Constant(output_bias))
    return keras.layers.Dense(num_outputs, **kwargs)


def _body(input_shape):
    inputs = keras.Input(input_shape)
    return inputs, keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))


def good(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, _head(num_outputs, output_bias)(x))


def softmax(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    head = _head(num_outputs, output_bias, activation="softmax", name="probabilities")
    return keras.Model(inputs, head(x))


class Squash(keras.layers.Layer):
    def call(self, x):
        return keras.ops.tanh(x)


def hidden_tanh(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, Squash(name="squash")(_head(num_outputs, output_bias)(x)))


class BatchCenter(keras.layers.Layer):
    def call(self, x):
        return x - keras.ops.mean(x, axis=0, keepdims=True)


def batch_mixing(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, _head(num_outputs, output_bias)(BatchCenter(name="batch_center")(x)))


def big_init(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    big = keras.initializers.RandomNormal(stddev=3.0, seed=1)
    return keras.Model(inputs, _head(num_outputs, output_bias, kernel_initializer=big)(x))


def bad_bias(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    wrong = keras.initializers.Constant(2.0 * np.arange(num_outputs))
    return keras.Model(inputs, _head(num_outputs, output_bias, bias_initializer=wrong)(x))


def no_priors(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, _head(num_outputs, output_bias, bias_initializer="zeros")(x))


def half_dead(input_shape, num_outputs, output_bias):
    inputs = keras.Input(input_shape)
    # A large negative bias on 24 of 32 units: their inputs never reach zero.
    bias = keras.initializers.Constant(np.where(np.arange(32) < 24, -10.0, 0.0))
    hidden = keras.layers.Dense(32, activation="relu", bias_initializer=bias, name="half_dead")
    x = hidden(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, _head(num_outputs, output_bias)(x))


class AlwaysDropout(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1)

    def call(self, x, training=None):
        return keras.random.dropout(x, 0.5, seed=self.seed_generator)  # whatever `training` says


def dropout_always(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, _head(num_outputs, output_bias)(AlwaysDropout(name="always_on")(x)))


def dropout(input_shape, num_outputs, output_bias):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, _head(num_outputs, output_bias)(keras.layers.Dropout(0.5)(x)))
"""

ALL = [
    "determinism",
    "init_loss",
    "output_activation",
    "batch_independence",
    "inference_repeatable",
    "lr_schedule",
    "overfit_one_batch",
    "loss_decreases",
    "input_independent_baseline",
    "dead_units",
    "update_ratio",
    "human_baseline",
]
FAST = [
    "init_loss",
    "output_activation",
    "batch_independence",
    "lr_schedule",
    "overfit_one_batch",
    "human_baseline",
]


@pytest.fixture
def user_model(tmp_path):
    """model.name=... for one of the builders in USER_MODELS."""
    path = tmp_path / "user_models.py"
    path.write_text(USER_MODELS)
    return lambda function: f"model.name={path}:{function}"


@pytest.fixture
def setup_for(project, make_config):
    """A check setup on 300 digits (or other overrides), optionally with hand-made data."""

    def make(*overrides, data=None):
        config = make_config("data.max_examples=300", *overrides)
        return project.checks.make_setup(
            config, data if data is not None else project.data.load(config)
        )

    return make


def _run(project, setup, name):
    return getattr(project.checks, name)(setup)


# ---------------------------------------------------------------- the whole command


def test_check_passes_on_default_digits_and_writes_results_and_pictures(
    project, make_config, capsys
):
    config = make_config("run.name=digits")
    assert project.checks.check(config) == 0
    out = capsys.readouterr().out
    written = json.loads((config.run_dir / "checks.json").read_text())
    assert [r["name"] for r in written] == ALL
    assert {r["status"] for r in written} == {"PASS"}, out
    assert set(written[0]) == {"name", "status", "measured", "expected", "diagnosis"}
    for name in ALL:
        assert f"PASS {name}: measured " in out
    for picture in ("input_batch.png", "overfit_one_batch.png", "first_layer_weights.png"):
        assert (config.run_dir / "checks" / picture).stat().st_size > 1000, picture


def test_cli_exits_1_on_a_failing_check_and_records_it(run_cli, tmp_path, user_model):
    result = run_cli("check", user_model("softmax"), "data.max_examples=200", "run.name=bad")
    assert result.returncode == 1, result.stderr
    assert "FAIL output_activation: measured output layer 'probabilities'" in result.stdout
    written = {
        r["name"]: r for r in json.loads((tmp_path / "runs" / "bad" / "checks.json").read_text())
    }
    assert (
        written["output_activation"]["status"] == "FAIL"
        and "softmax" in written["output_activation"]["diagnosis"]
    )
    assert "Traceback" not in result.stderr


def test_a_users_correct_builder_passes_the_model_checks(project, setup_for, user_model):
    setup = setup_for(user_model("good"))
    for name in ("init_loss", "output_activation", "batch_independence", "overfit_one_batch"):
        assert _run(project, setup, name).status == "PASS", name


# ---------------------------------------------------------------- one planted bug per check


def test_determinism_fails_when_nothing_is_seeded(project, setup_for, monkeypatch):
    setup = setup_for()
    assert _run(project, setup, "determinism").status == "PASS"
    monkeypatch.setattr(project.seeding, "seed_everything", lambda config: None)
    result = _run(project, setup, "determinism")
    assert result.status == "FAIL" and "initial weights differ" in result.diagnosis
    assert result.measured.startswith("step 1:")


@pytest.mark.parametrize(
    ("builder", "words"),
    [
        ("big_init", "init scale is too large"),
        ("bad_bias", "output bias is not set or wrong"),
        ("softmax", "already probabilities"),
    ],
)
def test_init_loss_fails_and_names_the_cause(project, setup_for, user_model, builder, words):
    result = _run(project, setup_for(user_model(builder)), "init_loss")
    assert result.status == "FAIL" and words in result.diagnosis
    assert result.expected == pytest.approx(math.log(10), rel=0.01)


def test_init_loss_says_which_prior_a_users_builder_matches(project, setup_for, user_model):
    setup = setup_for(user_model("no_priors"), "data.source=breast_cancer")
    result = _run(project, setup, "init_loss")
    assert result.status == "WARN" and "matches -log(1/2)" in result.diagnosis
    assert result.measured == pytest.approx(math.log(2), rel=0.02)
    builtin = _run(project, setup_for("data.source=breast_cancer"), "init_loss")
    assert builtin.status == "PASS" and "prior entropy" in builtin.diagnosis
    assert builtin.expected == pytest.approx(0.661, abs=0.01)


def test_init_loss_for_regression_is_the_target_variance(project, setup_for):
    result = _run(project, setup_for("data.source=diabetes"), "init_loss")
    assert result.status == "PASS" and "variance of the targets" in result.diagnosis
    assert result.measured == pytest.approx(result.expected, rel=0.05)


def test_output_activation_names_a_softmax_output_layer(project, setup_for, user_model):
    result = _run(project, setup_for(user_model("softmax")), "output_activation")
    assert result.status == "FAIL"
    assert "'probabilities'" in result.measured and "rows sum to 1" in result.measured
    assert "softmax" in result.diagnosis and "U3" in result.diagnosis


def test_the_output_op_is_found_through_keras_history_not_the_last_layer(project):
    """checks/model.py's _output_layer reads KerasTensor._keras_history, private to Keras: the
    op that made the output. keras.ops.softmax in a functional model is no layer, so the
    fallback, model.layers[-1], would name the Dense before it. If this fails, Keras changed
    _keras_history, and output_activation no longer names an activation applied by an op."""
    import importlib

    model_checks = importlib.import_module(f"{project.name}.checks.model")
    inputs = keras.Input((4,))
    inner = keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(3, name="logits")(inputs)))
    outer_inputs = keras.Input((4,))
    outer = keras.Model(outer_inputs, inner(outer_inputs))
    for model in (inner, outer):  # a nested model is looked into
        layer = model_checks._output_layer(model)
        assert model_checks.activation_name(layer) == "softmax", (model.name, layer)


def test_output_activation_catches_squashing_inside_a_layer_and_overfit_plateaus(
    project, setup_for, user_model
):
    setup = setup_for(user_model("hidden_tanh"))
    result = _run(project, setup, "output_activation")
    assert (
        result.status == "FAIL"
        and "squashed into [-1, 1]" in result.diagnosis
        and "'squash'" in result.measured
    )
    overfit = _run(project, setup, "overfit_one_batch")
    assert overfit.status == "FAIL" and overfit.diagnosis.startswith("plateau")
    assert "check the output layer" in overfit.diagnosis


def test_input_independent_baseline_fails_when_labels_are_shuffled(project, make_config, setup_for):
    config = make_config("data.max_examples=500")
    good = project.data.load(config)
    setup = setup_for("data.max_examples=500", data=good)
    assert _run(project, setup, "input_independent_baseline").status == "PASS"
    shuffled = project.data.load(config)
    shuffled.train.y = np.random.default_rng(0).permutation(shuffled.train.y)
    result = _run(
        project, setup_for("data.max_examples=500", data=shuffled), "input_independent_baseline"
    )
    assert result.status == "FAIL"
    assert "no usable signal" in result.diagnosis and "labels line up" in result.diagnosis


def test_batch_independence_fails_and_names_the_mixing_layer(project, setup_for, user_model):
    result = _run(project, setup_for(user_model("batch_mixing")), "batch_independence")
    assert result.status == "FAIL"
    assert "'batch_center' (BatchCenter)" in result.diagnosis and "axis 0" in result.diagnosis


def test_overfit_one_batch_passes_and_draws_labels_next_to_predictions(project, setup_for):
    setup = setup_for()
    result = _run(project, setup, "overfit_one_batch")
    assert result.status == "PASS" and "16/16 predictions match" in result.measured
    assert (setup.folder / "overfit_one_batch.png").is_file()


def test_overfit_one_batch_explodes_at_learning_rate_10(project, setup_for):
    setup = setup_for("optimizer.learning_rate=10", "model.name=mlp", "model.width=32")
    result = _run(project, setup, "overfit_one_batch")
    assert result.status == "FAIL" and result.diagnosis.startswith("exploding")
    assert "learning rate is too high" in result.diagnosis
    falls = _run(project, setup, "loss_decreases")
    assert falls.status == "FAIL" and "learning rate is too high" in falls.diagnosis


def test_overfit_one_batch_rises_when_the_loss_sign_is_flipped(project, setup_for, monkeypatch):
    original = project.models.loss_for

    def flipped(data, config):
        loss = original(data, config)
        return lambda y, outputs: -loss(y, outputs)

    monkeypatch.setattr(project.models, "loss_for", flipped)
    setup = setup_for("model.name=mlp", "model.width=32")
    result = _run(project, setup, "overfit_one_batch")
    assert result.status == "FAIL" and result.diagnosis.startswith("rising")
    assert "a sign is flipped" in result.diagnosis and "optimized loss falls" in result.diagnosis
    assert _run(project, setup, "loss_decreases").status == "FAIL"


def test_loss_decreases_warns_when_the_rate_is_far_too_low(project, setup_for):
    setup = setup_for("optimizer.learning_rate=1e-6", "model.name=mlp")
    result = _run(project, setup, "loss_decreases")
    assert result.status == "WARN" and "raise the learning rate" in result.diagnosis
    updates = _run(project, setup, "update_ratio")
    assert updates.status == "WARN" and "'dense_0' (" in updates.diagnosis
    assert "barely learn" in updates.diagnosis
    assert "raise optimizer.learning_rate" in updates.diagnosis


def test_update_ratio_warns_and_names_the_layers_when_the_rate_is_far_too_high(project, setup_for):
    healthy = _run(project, setup_for("model.name=mlp"), "update_ratio")
    assert healthy.status == "PASS" and "2 layers" in healthy.measured, healthy.line()
    too_high = setup_for("model.name=mlp", "optimizer.learning_rate=0.3")
    result = _run(project, too_high, "update_ratio")
    assert result.status == "WARN" and "learning rate is far too high" in result.diagnosis
    assert "'dense_0' (" in result.diagnosis and "'dense_1' (" in result.diagnosis
    assert "left out: 1" in result.measured  # the small output kernel is not judged


def test_dead_units_warns_and_names_a_half_dead_layer(project, setup_for, user_model):
    healthy = _run(project, setup_for(user_model("good")), "dead_units")
    assert healthy.status == "PASS", healthy.line()
    result = _run(project, setup_for(user_model("half_dead")), "dead_units")
    assert result.status == "WARN" and "'half_dead' (Dense, 24/32)" in result.diagnosis
    assert result.measured.startswith("'half_dead': 24/32 units never fire")


def test_inference_repeatable_fails_and_names_dropout_left_on(project, setup_for, user_model):
    healthy = _run(project, setup_for(user_model("dropout")), "inference_repeatable")
    assert healthy.status == "PASS" and "difference 0 " in healthy.measured
    result = _run(project, setup_for(user_model("dropout_always")), "inference_repeatable")
    assert result.status == "FAIL" and "layer 'always_on' (AlwaysDropout)" in result.diagnosis


def test_lr_schedule_warns_when_the_rate_decays_early(project, setup_for, monkeypatch):
    assert _run(project, setup_for(), "lr_schedule").status == "PASS"
    assert (
        _run(project, setup_for("optimizer.schedule=warmup_cosine"), "lr_schedule").status == "PASS"
    )

    def short_decay(config, steps_per_epoch):
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=2 * steps_per_epoch,
            warmup_target=config.optimizer.learning_rate,
            warmup_steps=steps_per_epoch,
        )

    monkeypatch.setattr(project.models, "learning_rate", short_decay)
    result = _run(project, setup_for("optimizer.schedule=warmup_cosine"), "lr_schedule")
    assert result.status == "WARN" and "below 10% of its base by epoch" in result.diagnosis


def test_human_baseline_is_recorded_next_to_the_dumb_baseline(project, setup_for):
    unset = _run(project, setup_for(), "human_baseline")
    assert (
        unset.status == "PASS"
        and unset.measured is None
        and "check.human_baseline" in unset.diagnosis
    )
    result = _run(project, setup_for("check.human_baseline=0.98"), "human_baseline")
    assert result.status == "PASS" and result.measured == 0.98
    assert result.expected.startswith("majority-class accuracy 0.")


@pytest.mark.parametrize(
    ("curve", "shape"),
    [
        ([2.3, 2.0, float("nan")], "exploding"),
        ([2.3, 5e8, 3e7, 9.0, 2.25, 2.25, 2.25], "exploding"),
        (list(np.linspace(2.3, 50, 100)), "rising"),
        ([2.3] + [1.0 + 0.6 * (k % 2) for k in range(99)], "oscillating"),
        (list(np.linspace(2.3, 1.5, 100)), "plateau"),
    ],
)
def test_classify_curve_names_each_shape(project, curve, shape):
    found, diagnosis = project.checks.classify_curve(curve)
    assert found == shape and diagnosis.startswith(shape)


# ---------------------------------------------------------------- sampling, pictures, train


def test_bigger_data_is_sampled_and_the_sample_is_announced(project, make_config):
    data = project.data.load(make_config())
    sampled, note = project.checks.sample(data, 100, seed=0)
    assert len(sampled.train.y) == 100 and len(sampled.val.y) == 100
    assert note == f"checks use 100 of {len(data.train.y)} training examples (check.sample=100)"
    assert project.checks.sample(data, 5000, seed=0) == (data, "")


def test_input_batch_of_a_table_is_a_heatmap_of_normalized_values(project, setup_for):
    setup = setup_for("data.source=breast_cancer")
    path = project.checks.draw_input_batch(setup)
    assert path.name == "input_batch.png" and path.stat().st_size > 1000
    assert project.checks.draw_first_layer_weights(setup) is None  # no convolution in an mlp


def test_before_training_runs_the_fast_subset(project, make_config, capsys):
    config = make_config("run.name=fast")
    data = project.data.load(config)
    assert project.checks.before_training(config, data) == 0
    out = capsys.readouterr().out
    written = json.loads((config.run_dir / "checks.json").read_text())
    assert [r["name"] for r in written] == FAST and {r["status"] for r in written} == {"PASS"}
    assert (config.run_dir / "checks" / "input_batch.png").is_file()
    assert "6 passed, 0 warned, 0 failed" in out


def test_train_stops_before_fitting_when_a_fast_check_fails(
    project, make_config, user_model, capsys
):
    config = make_config(
        user_model("softmax"), "data.max_examples=200", "train.epochs=1", "run.name=stop"
    )
    assert project.train.train(config, "pytest") == 1
    assert "FAIL output_activation" in capsys.readouterr().out
    assert not (config.run_dir / "model.keras").exists()
    skipped = make_config(
        user_model("softmax"),
        "data.max_examples=200",
        "train.epochs=1",
        "run.name=skip",
        "check.before_train=false",
    )
    assert project.train.train(skipped, "pytest") == 0
    assert not (skipped.run_dir / "checks.json").exists()
