"""The typed config: defaults, YAML and key=value layering, and errors named before any work."""

import pytest


def test_defaults_follow_the_recipe(project):
    config = project.config.build_config()
    assert config.optimizer.learning_rate == 3e-4  # R3.2
    assert config.optimizer.schedule == "constant"  # R3.4
    assert config.data.augment == []  # R2.2
    assert config.model.dropout_rate == 0.0
    assert config.run_dir.as_posix() == "runs/default"


def test_yaml_files_layer_then_overrides_win(project, tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("data:\n  source: breast_cancer\ntrain:\n  epochs: 7\n")
    second = tmp_path / "b.yaml"
    second.write_text("train:\n  epochs: 9\n")
    config = project.config.build_config(
        [first, second], ["optimizer.learning_rate=1e-3", "data.image_size=16,16"]
    )
    assert config.data.source == "breast_cancer"
    assert config.train.epochs == 9
    assert config.optimizer.learning_rate == pytest.approx(1e-3)  # YAML reads 1e-3 as text
    assert config.data.image_size == [16, 16]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optimizer.lr=0.1",
            "unknown config key optimizer.lr (did you mean optimizer.learning_rate?)",
        ),
        ("trian.epochs=3", "did you mean train.epochs?"),
        ("train.epochs=three", "train.epochs expects int, got 'three'"),
        ("train.epochs=0", "train.epochs must be >= 1"),
        ("optimizer.learning_rate=-0.1", "optimizer.learning_rate must be > 0"),
        ("data.augment=maybe", "data.augment must be one of flip_horizontal, flip_vertical"),
        ("data.augment=true", "data.augment is a list of names now: data.augment=true meant"),
        ("data.augment=zoom,zoom", "data.augment repeats a name"),
        ("data.task=clustering", "data.task must be one of auto, classification, regression"),
        ("model.name=transformer", "model.name must be one of"),
        ("run.name=a/b", "run.name must be a plain folder name"),
        ("epochs", "expected key=value"),
    ],
)
def test_bad_values_are_named(project, override, message):
    with pytest.raises(project.errors.UsageError) as caught:
        project.config.build_config([], [override])
    assert message in str(caught.value)


def test_bad_yaml_files_are_named(project, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [epochs\n")
    with pytest.raises(project.errors.UsageError, match=r"broken.yaml line \d+ is not valid YAML"):
        project.config.build_config([broken])
    with pytest.raises(project.errors.UsageError, match="does not exist"):
        project.config.build_config([tmp_path / "missing.yaml"])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("optimizer:\n  beta_3: 0.9\n")
    with pytest.raises(project.errors.UsageError, match="unknown config key optimizer.beta_3"):
        project.config.build_config([unknown])


def test_saved_config_reloads_identically(project, tmp_path):
    config = project.config.build_config([], ["seed=3", "model.name=mlp", "data.image_size=8,8"])
    project.config.save(config, tmp_path / "config.yaml")
    assert project.config.build_config([tmp_path / "config.yaml"]) == config


def test_help_lists_every_key_with_its_default_and_reason(project):
    text = project.config.describe()
    for key, _, field in project.config.iter_fields(project.config.Config()):
        assert f"  {key} = " in text
        assert field.metadata["help"] in text
    for key in (
        "seed",
        "data.source",
        "data.label_column",
        "model.name",
        "optimizer.learning_rate",
        "train.epochs",
        "train.batch_size",
        "run.name",
    ):
        assert f"  {key} = " in text
