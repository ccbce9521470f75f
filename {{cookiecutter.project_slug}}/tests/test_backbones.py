"""Pretrained backbones: their own preprocessing, frozen then fine-tuned, weights or an error."""

import os
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import applications, layers
from keras.src.utils import file_utils

# Image work the other bakes need not repeat: it builds keras.applications networks.
pytestmark = pytest.mark.slow

NAMES = ("MobileNetV3Small", "EfficientNetV2B0", "ResNet50V2", "ConvNeXtTiny")
FEATURE_SIZES = {
    "MobileNetV3Small": 576,
    "EfficientNetV2B0": 1280,
    "ResNet50V2": 2048,
    "ConvNeXtTiny": 768,
}
# the keras.applications module whose preprocess_input each backbone was trained with
PREPROCESS_MODULES = {
    "MobileNetV3Small": applications.mobilenet_v3,
    "EfficientNetV2B0": applications.efficientnet_v2,
    "ResNet50V2": applications.resnet_v2,
    "ConvNeXtTiny": applications.convnext,
}


@pytest.fixture(scope="module")
def built(project):
    """Each backbone built once at its minimum size, random weights; tests must not mutate it."""
    cache = {}

    def build(name):
        if name not in cache:
            size = project.backbones.BACKBONES[name].min_size
            cache[name] = project.backbones.backbone_features((size, size, 3), name, "none")
        return cache[name]

    return build


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def _entering_base(project, features, pixels):
    """The tensor the base model receives: raw pixels after everything in front of it."""
    model = keras.Model(features.inputs, features.features)
    wrapper = next(x for x in model.layers if isinstance(x, project.backbones.InferenceMode))
    return keras.Model(features.inputs, wrapper.input).predict(pixels, verbose=0)


def _preprocessed(project, features, pixels):
    """What the base's first real layer sees: also through its own Rescaling/Normalization."""
    x = _entering_base(project, features, pixels)
    for layer in features.base.layers[1:]:
        if not isinstance(layer, layers.Rescaling | layers.Normalization):
            break
        x = layer(x)
    return keras.ops.convert_to_numpy(x)


def _head(features, outputs=3):
    return keras.Model(features.inputs, layers.Dense(outputs)(features.features))


@pytest.mark.parametrize("name", NAMES)
def test_each_backbone_gives_a_feature_vector_at_its_minimum_size(project, built, name):
    features = built(name)
    size = project.backbones.BACKBONES[name].min_size
    assert features.base.input_shape == (None, size, size, 3)
    out = keras.Model(features.inputs, features.features).predict(_pixels((2, size, size, 3)))
    assert out.shape == (2, FEATURE_SIZES[name]) and np.isfinite(out).all()
    # the table's minimum is Keras's: one pixel less is refused
    constructor = project.backbones.BACKBONES[name].constructor
    with pytest.raises(ValueError, match="at least"):
        constructor(input_shape=(size - 1, size - 1, 3), include_top=False, weights=None)


@pytest.mark.parametrize("name", NAMES)
def test_the_base_receives_the_backbones_own_preprocess_input(project, built, name):
    features = built(name)
    pixels = _pixels((2, 32, 32, 3))
    expected = PREPROCESS_MODULES[name].preprocess_input(pixels.copy())
    np.testing.assert_allclose(_entering_base(project, features, pixels), expected, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_raw_pixels_in_0_255_map_onto_the_stated_preprocessed_range(project, built, name):
    assert project.backbones.input_range(name) == (0.0, 255.0)
    features = built(name)
    black = _preprocessed(project, features, np.zeros((1, 32, 32, 3), "float32"))
    white = _preprocessed(project, features, np.full((1, 32, 32, 3), 255.0, "float32"))
    low, high = project.backbones.preprocessed_range(name)
    # without the backbone's own preprocessing, black would stay 0 and white 255
    assert black.min() == pytest.approx(low, abs=1e-4)
    assert white.max() == pytest.approx(high, abs=1e-4)


def test_mobilenet_keeps_its_own_rescaling_and_adds_nothing_in_front(project, built):
    features = built("MobileNetV3Small")
    rescaling = features.base.layers[1]
    assert isinstance(rescaling, layers.Rescaling)
    assert (rescaling.scale, rescaling.offset) == (pytest.approx(1 / 127.5), -1.0)
    model = keras.Model(features.inputs, features.features)
    assert [type(x).__name__ for x in model.layers] == ["InputLayer", "InferenceMode"]


def test_grey_and_small_images_become_rgb_at_the_minimum_size(project):
    features = project.backbones.backbone_features((8, 12, 1), "MobileNetV3Small", "none")
    # one scale for both sides: the short side reaches 32, the aspect ratio stays
    assert features.base.input_shape == (None, 32, 48, 3)
    entering = _entering_base(project, features, _pixels((2, 8, 12, 1)))
    assert entering.shape == (2, 32, 48, 3)
    np.testing.assert_array_equal(entering[..., 0], entering[..., 1])
    np.testing.assert_array_equal(entering[..., 0], entering[..., 2])
    out = keras.Model(features.inputs, features.features).predict(_pixels((2, 8, 12, 1)), verbose=0)
    assert out.shape == (2, 576)


def test_unknown_backbones_and_channel_counts_are_usage_errors(project):
    with pytest.raises(project.errors.UsageError, match="model.backbone") as error:
        project.backbones.backbone_features((32, 32, 3), "VGG16", "none")
    assert all(name in str(error.value) for name in NAMES)
    with pytest.raises(project.errors.UsageError, match="1 or 3 image channels; got 4"):
        project.backbones.backbone_features((32, 32, 4), "MobileNetV3Small", "none")


def test_weights_from_a_file_reproduce_the_saved_backbone(project, tmp_path):
    backbone_features = project.backbones.backbone_features
    keras.utils.set_random_seed(1)
    saved = backbone_features((32, 32, 3), "MobileNetV3Small", "none").base
    saved.save_weights(tmp_path / "mobilenet.weights.h5")
    keras.utils.set_random_seed(2)
    fresh = backbone_features((32, 32, 3), "MobileNetV3Small", "none").base
    loaded = backbone_features((32, 32, 3), "MobileNetV3Small", tmp_path / "mobilenet.weights.h5")
    assert not all(np.array_equal(a, b) for a, b in zip(saved.weights, fresh.weights, strict=True))
    for a, b in zip(saved.weights, loaded.base.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_missing_or_unreadable_weights_file_is_a_one_line_usage_error(project, tmp_path):
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(project.errors.UsageError, match="is not a file") as error:
        project.backbones.backbone_features((32, 32, 3), "MobileNetV3Small", missing)
    assert str(missing) in str(error.value) and "\n" not in str(error.value)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_text("not weights")
    with pytest.raises(project.errors.UsageError, match="does not load into") as error:
        project.backbones.backbone_features((32, 32, 3), "MobileNetV3Small", garbage)
    assert str(garbage) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_offline_imagenet_is_one_line_naming_the_file_and_the_folder(
    project, monkeypatch, tmp_path, name
):
    asked = []

    def offline(fname, origin, **kwargs):
        asked.append(fname)
        # what keras/src/utils/file_utils.py raises when urlretrieve fails
        raise Exception(
            f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known"
        )

    # keras.applications call file_utils.get_file, so patching keras.utils.get_file would miss
    monkeypatch.setattr(file_utils, "get_file", offline)
    (tmp_path / "keras").mkdir()  # Keras makes KERAS_HOME when it is imported
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(project.errors.UsageError) as error:
        project.backbones.backbone_features((32, 32, 3), name, "imagenet")
    message = str(error.value)
    assert asked == [project.backbones.BACKBONES[name].weights_file]
    assert "\n" not in message
    assert f"needs {asked[0]}, which cannot be downloaded here" in message
    assert f"put it in {tmp_path / 'keras' / 'models'}/" in message
    assert "Name or service not known" in message and "model.weights=none" in message


def test_the_real_download_fails_fast_offline_with_the_same_error(project, monkeypatch):
    """Keras's own get_file and urlretrieve, cut off by a proxy that refuses connections."""
    file_name = project.backbones.BACKBONES["MobileNetV3Small"].weights_file
    if (project.backbones.weights_folder() / file_name).exists():
        pytest.skip(f"{file_name} is already in Keras's cache")
    for variable in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    # urlopen caches its opener, with the proxies of its first call
    monkeypatch.setattr(urllib.request, "_opener", None)
    start = time.monotonic()
    with pytest.raises(project.errors.UsageError) as error:
        project.backbones.backbone_features((32, 32, 3), "MobileNetV3Small", "imagenet")
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "\n" not in message and file_name in message
    assert f"{project.backbones.weights_folder()}/" in message


def test_the_weights_folder_is_where_keras_looks_for_weights(project):
    """weights_folder() repeats the cache logic of Keras's get_file (keras_home() is private
    to Keras): it is the folder the offline error tells a user to put a weights file in. If
    this fails, Keras looks elsewhere and that advice is wrong."""
    folder = project.backbones.weights_folder()
    name = f"recipe-weights-folder-test-{os.getpid()}.weights.h5"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"not weights")
    try:  # a file in the cache is not downloaded: the origin is never asked
        found = keras.utils.get_file(name, origin="http://127.0.0.1:9/none", cache_subdir="models")
    finally:
        (folder / name).unlink()
    assert Path(found) == folder / name


def test_keras_3_overrides_training_false_on_a_nested_base(built):
    """Why InferenceMode exists: fit's training=True reaches EfficientNetV2's Dropout anyway.

    If this starts failing, Keras respects base(x, training=False) and InferenceMode can go.
    """
    base = built("EfficientNetV2B0").base
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, base(inputs, training=False))
    pixels = _pixels((4, 32, 32, 3))
    assert not np.allclose(plain(pixels, training=True), plain(pixels, training=False))


def test_phase_1_freezes_the_base_and_runs_it_in_inference_mode(project, built):
    features = built("EfficientNetV2B0")  # has BatchNormalization and stochastic-depth Dropout
    assert features.base.trainable_weights == []
    model = _head(features)
    assert len(model.trainable_weights) == 2  # the head's kernel and bias
    norms = [x for x in features.base.layers if isinstance(x, layers.BatchNormalization)]
    before = [keras.ops.convert_to_numpy(x.moving_mean) for x in norms]
    pixels = _pixels((4, 32, 32, 3))
    trained = keras.ops.convert_to_numpy(model(pixels, training=True))
    np.testing.assert_allclose(trained, keras.ops.convert_to_numpy(model(pixels, training=False)))
    for norm, mean in zip(norms, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.moving_mean), mean)


def test_fine_tune_unfreezes_the_top_layers_except_batch_norm(project):
    features = project.backbones.backbone_features((32, 32, 3), "MobileNetV3Small", "none")
    base, model = features.base, _head(features)
    fine_tune = project.backbones.fine_tune
    candidates = base.layers[1:]  # without the InputLayer
    top = candidates[-10:]
    expected = [x for x in top if not isinstance(x, layers.BatchNormalization)]
    assert any(isinstance(x, layers.BatchNormalization) for x in top)
    assert fine_tune(base, 10) == len(expected)
    assert base.trainable
    assert [x for x in candidates if x.trainable] == expected
    expected_weights = {id(v) for x in expected for v in x.trainable_weights}
    assert expected_weights and {id(v) for v in base.trainable_weights} == expected_weights
    assert len(model.trainable_weights) == len(expected_weights) + 2
    # batch norm still uses ImageNet's statistics during fit
    norms = [x for x in base.layers if isinstance(x, layers.BatchNormalization)]
    before = [keras.ops.convert_to_numpy(x.moving_variance) for x in norms]
    model(_pixels((4, 32, 32, 3)), training=True)
    for norm, variance in zip(norms, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.moving_variance), variance)
    all_but_norms = [x for x in candidates if not isinstance(x, layers.BatchNormalization)]
    assert fine_tune(base, 10_000) == len(all_but_norms)
    assert fine_tune(base, 0) == 0 and not base.trainable and base.trainable_weights == []


def test_a_backbone_model_saves_and_loads_in_safe_mode(project, tmp_path):
    features = project.backbones.backbone_features((8, 12, 1), "MobileNetV3Small", "none")
    model = _head(features)
    project.backbones.fine_tune(features.base, 5)
    pixels = _pixels((3, 8, 12, 1))
    before = model.predict(pixels, verbose=0)
    model.save(tmp_path / "backbone.keras")
    loaded = keras.saving.load_model(tmp_path / "backbone.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), before, rtol=1e-5, atol=1e-6)
    # still in inference mode, and the same layers trainable
    np.testing.assert_allclose(loaded(pixels, training=True), before, rtol=1e-5, atol=1e-6)
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
