"""End to end: train + evaluate on each embedded dataset, resume, and bad input from the CLI."""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RUN_FILES = (
    "config.yaml",
    "command.txt",
    "metrics.json",
    "history.csv",
    "history.png",
    "model.keras",
    "checkpoints/best.keras",
    "checkpoints/last.keras",
    "checkpoints/last_seed_states.npy",
    "test_predictions.csv",
    "worst_examples.csv",
    "worst_examples.png",
)


def _train(project, config):
    status = project.train.train(config, "pytest")
    assert status == 0
    return json.loads((config.run_dir / "metrics.json").read_text())


def _last_weights(config):
    import keras

    return keras.saving.load_model(config.run_dir / "checkpoints" / "last.keras").get_weights()


def _assert_same_weights(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other, rtol=0, atol=1e-6)


# With dropout: its masks after a resume must be the ones the first run would draw.
SHRUNK = ("data.max_examples=300", "train.epochs=6", "model.dropout_rate=0.3")


@pytest.fixture(scope="module")
def uninterrupted(project, tmp_path_factory):
    """The last weights of a SHRUNK run never stopped: a resumed one must end with them."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    config = project.config.build_config([], [f"run.dir={folder}", *SHRUNK, "run.name=whole"])
    _train(project, config)
    return _last_weights(config)


def _crash_at_the_end_of(epoch_index, project, monkeypatch):
    """train's fits raise at the end of an epoch, after every saver ran (a power cut)."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == epoch_index:
                raise RuntimeError("power cut")

    original = project.train.make_callbacks

    def crashing(*args, **kwargs):
        callbacks, guard = original(*args, **kwargs)
        return callbacks + [Crash()], guard

    monkeypatch.setattr(project.train, "make_callbacks", crashing)
    return original


@pytest.mark.slow
def test_digits_end_to_end(project, make_config):
    config = make_config(
        "data.source=digits", "model.name=convnet", "train.epochs=12", "run.name=digits"
    )
    metrics = _train(project, config)
    run = config.run_dir
    for name in RUN_FILES + ("confusion_matrix.png", "calibration.png", "environment.json"):
        assert (run / name).exists(), name
    assert metrics["model"]["accuracy"] >= 0.9
    interval = metrics["model"]["accuracy_interval"]
    assert interval["low"] < metrics["model"]["accuracy"] < interval["high"] <= 1.0
    assert 0 <= metrics["model"]["ece"] == metrics["calibration"]["ece"] < 0.1
    assert sum(metrics["calibration"]["count"]) == 270
    assert metrics["majority_baseline"]["accuracy"] < 0.2
    assert metrics["test_examples"] == 270 and len(metrics["per_class"]) == 10
    assert metrics["loss_at_init"]["measured"] == pytest.approx(
        metrics["loss_at_init"]["expected"], rel=0.05
    )
    pictures = sorted(p.name for p in (run / "predictions").iterdir())
    assert pictures[0] == "epoch_000.png" and len(pictures) == metrics["epochs"] + 1
    import tensorflow as tf

    events = sorted((run / "tensorboard").glob("events.out.tfevents*"))
    plugins = {
        value.metadata.plugin_data.plugin_name
        for path in events
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert "hparams" in plugins  # the run's config and final metrics for TensorBoard's HParams


@pytest.mark.slow
def test_breast_cancer_end_to_end(project, make_config):
    config = make_config(
        "data.source=breast_cancer", "model.name=mlp", "train.epochs=30", "run.name=bc"
    )
    metrics = _train(project, config)
    assert metrics["model"]["accuracy"] >= 0.93
    assert (config.run_dir / "confusion_matrix.png").exists()
    assert metrics["per_class"].keys() == {"malignant", "benign"}


@pytest.mark.slow
def test_diabetes_end_to_end(project, make_config):
    config = make_config(
        "data.source=diabetes", "model.name=mlp", "train.epochs=40", "run.name=dia"
    )
    metrics = _train(project, config)
    assert (config.run_dir / "pred_vs_true.png").exists()
    assert metrics["model"]["r2"] > 0.25
    interval = metrics["model"]["r2_interval"]
    assert interval["low"] < metrics["model"]["r2"] < interval["high"]
    assert "ece" not in metrics["model"] and "calibration" not in metrics
    assert abs(metrics["mean_baseline"]["r2"]) < 0.1
    assert metrics["model"]["r2"] > metrics["mean_baseline"]["r2"] + 0.2


@pytest.mark.slow
def test_csv_with_string_labels_maps_back_to_names(project, make_config, csv_file):
    config = make_config(
        f"data.source={csv_file}",
        "data.label_column=kind",
        "train.epochs=40",
        "optimizer.learning_rate=3e-3",
        "run.name=csv",
    )
    metrics = _train(project, config)
    assert metrics["model"]["accuracy"] >= 0.9  # the colour decides the kind
    lines = (config.run_dir / "test_predictions.csv").read_text().splitlines()
    assert lines[0] == "id,true,predicted,probability"
    assert {line.split(",")[1] for line in lines[1:]} <= {"apple", "pear"}


@pytest.mark.slow
def test_image_folder_end_to_end(project, make_config, image_folder):
    config = make_config(
        f"data.source={image_folder}",
        "data.image_size=12,10",
        "train.epochs=3",
        "train.batch_size=8",
        "run.name=folder",
    )
    _train(project, config)
    assert (config.run_dir / "worst_examples.png").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(
    project, make_config, monkeypatch, capsys, uninterrupted
):
    config = make_config(*SHRUNK, "run.name=resume")
    original = _crash_at_the_end_of(2, project, monkeypatch)  # after the backup saved epoch 3
    # Every epoch saves, so the backup holds epoch 3 when the crash comes.
    monkeypatch.setattr(project.callbacks.SaveBudget, "due", lambda self, epoch: True)
    with pytest.raises(RuntimeError, match="power cut"):
        project.train.train(config, "pytest")
    # The newest backup and the one before it, each complete.
    backups = project.runs.generations(config.run_dir / "backup")
    assert [generation.epoch for generation in backups] == [3, 2]
    monkeypatch.setattr(project.train, "make_callbacks", original)

    assert project.train.train(config, "pytest") == 0
    assert "after epoch 3, its last backup" in capsys.readouterr().out
    rows = project.callbacks.read_history(config.run_dir / "history.csv")
    epochs = [row["epoch"] for row in rows]
    assert epochs == sorted(set(epochs)) and epochs[:4] == [0, 1, 2, 3]
    # The best checkpoint went on from the file's best, and says which epoch it holds.
    best = json.loads((config.run_dir / "checkpoints" / "best.json").read_text())
    val = {row["epoch"]: row["val_loss"] for row in rows if row["epoch"] > 0}
    assert best["val_loss"] == pytest.approx(min(val.values()), rel=1e-4)
    assert val[best["epoch"]] == pytest.approx(best["val_loss"], rel=1e-4)
    assert not (config.run_dir / "backup").exists()
    pictures = sorted(p.name for p in (config.run_dir / "predictions").iterdir())
    assert len(pictures) == len(set(pictures)) == epochs[-1] + 1
    # Weights, optimizer state, dropout's seeds and the data order of epochs 4-6 go on where
    # the crash left them (T14): the same weights as a run never killed, on deterministic ops.
    _assert_same_weights(_last_weights(config), uninterrupted)


# A training process that sends itself a stop signal, as a scheduler or Ctrl-C would, at
# one step of one epoch (STOP_AT="epoch:batch:SIGNAL").
STOPPING = """
import os, signal, sys
import keras
from {package} import callbacks, cli, train

epoch_at, batch_at, name = os.environ["STOP_AT"].split(":")


class Stopper(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (int(epoch_at), int(batch_at)):
            os.kill(os.getpid(), getattr(signal, name))


def with_stopper(*args, original=train.make_callbacks, **kwargs):
    found, guard = original(*args, **kwargs)
    return found + [Stopper()], guard


train.make_callbacks = with_stopper
if os.environ.get("SAVE_EVERY_EPOCH"):
    callbacks.SaveBudget.due = lambda self, epoch: True
else:  # no save is due by the clock: only the stop makes one
    callbacks.SaveBudget.FIRST_GUESS = 1e6
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_and_sigint_stop_at_a_safe_point_and_the_rerun_ends_as_if_never_stopped(
    project, make_config, tmp_path, capsys, uninterrupted
):
    script = tmp_path / "stopping.py"
    script.write_text(STOPPING.format(package=project.name))
    args = ["train", f"run.dir={tmp_path / 'runs'}", *SHRUNK, "check.before_train=false"]

    def stopped_at(stop_at, **env):
        src = str(Path(__file__).resolve().parents[1] / "src")
        return subprocess.run(
            [sys.executable, str(script), *args, "run.name=stop"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": src, "STOP_AT": stop_at, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    run_dir = tmp_path / "runs" / "stop"
    # SIGTERM in the second epoch, whose start no backup holds (the budget saved none): the
    # epoch runs to its end, which is backed up at once.
    first = stopped_at("1:1:SIGTERM")
    assert first.returncode == 143, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last == "stopped by SIGTERM after epoch 2; rerun the same command to resume"
    assert [g.epoch for g in project.runs.generations(run_dir / "backup")] == [2]
    assert not (run_dir / ".lock").exists()
    # SIGINT (Ctrl-C) in the fourth epoch, whose start is backed up: cut after that step.
    second = stopped_at("3:1:SIGINT", SAVE_EVERY_EPOCH="1")
    assert second.returncode == 130, second.stderr[-3000:]
    assert "resuming" in second.stdout and "after epoch 2, its last backup" in second.stdout
    last = second.stderr.strip().splitlines()[-1]
    assert last == "stopped by SIGINT after epoch 3; rerun the same command to resume"
    assert [g.epoch for g in project.runs.generations(run_dir / "backup")] == [3, 2]
    # The rerun loses no finished epoch: the weights of a run never stopped.
    config = make_config(*SHRUNK, "check.before_train=false", "run.name=stop")
    assert project.train.train(config, "pytest") == 0
    assert "after epoch 3, its last backup" in capsys.readouterr().out
    epochs = [row["epoch"] for row in project.callbacks.read_history(run_dir / "history.csv")]
    assert epochs == list(range(7))
    _assert_same_weights(_last_weights(config), uninterrupted)


@pytest.mark.slow
def test_a_damaged_backup_falls_back_to_the_one_before_or_starts_over(
    project, make_config, monkeypatch, capsys, uninterrupted
):
    config = make_config(*SHRUNK, "check.before_train=false", "run.name=torn")
    original = _crash_at_the_end_of(3, project, monkeypatch)
    monkeypatch.setattr(project.callbacks.SaveBudget, "due", lambda self, epoch: True)
    with pytest.raises(RuntimeError, match="power cut"):
        project.train.train(config, "pytest")
    monkeypatch.setattr(project.train, "make_callbacks", original)
    newest = project.runs.generations(config.run_dir / "backup")[0]
    assert newest.epoch == 4
    for damaged in (newest.path / "weights.weights.h5", config.run_dir / "checkpoints/best.keras"):
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # truncated
    capsys.readouterr()
    assert project.train.train(config, "pytest") == 0
    out = capsys.readouterr().out
    assert "passed over the damaged backup (epoch-000004: OSError: " in out
    assert "resuming from the one before, epoch-000003" in out
    assert "best.keras is damaged (BadZipFile" in out
    assert "after epoch 3, its last backup" in out
    _assert_same_weights(_last_weights(config), uninterrupted)

    # No backup reads back: the run starts over, saying so, instead of a traceback.
    over = make_config(
        "data.max_examples=300", "train.epochs=2", "check.before_train=false", "run.name=over"
    )
    damaged = over.run_dir / "backup" / "epoch-000001"
    damaged.mkdir(parents=True)
    (damaged / "epoch.json").write_text('{"ep')  # a save cut short in an older version
    assert project.train.train(over, "pytest") == 0
    out = capsys.readouterr().out
    assert "no backup reads back (epoch-000001: JSONDecodeError" in out
    assert "training it again" in out and "loss at init" in out
    epochs = [row["epoch"] for row in project.callbacks.read_history(over.run_dir / "history.csv")]
    assert epochs == [0, 1, 2]


@pytest.mark.slow
def test_a_full_disk_during_a_backup_is_one_line_and_the_rerun_resumes(
    project, tmp_path, monkeypatch, capsys, uninterrupted
):
    import keras

    monkeypatch.chdir(tmp_path)  # away from the project's configs/default.yaml
    monkeypatch.setattr(project.callbacks.SaveBudget, "due", lambda self, epoch: True)
    save_weights = keras.Model.save_weights

    def fills_the_disk(model, filepath, *args, **kwargs):
        if "epoch-000003" in str(filepath):  # the disk fills during the third backup
            Path(filepath).write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return save_weights(model, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", fills_the_disk)
    args = ["train", f"run.dir={tmp_path / 'runs'}", *SHRUNK, "check.before_train=false"]
    assert project.cli.main([*args, "run.name=full"]) == 1
    err = capsys.readouterr().err
    backup = tmp_path / "runs" / "full" / "backup"
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: no space left on the device writing {backup / 'epoch-000003'}")
    assert re.search(r"\(it needs more than 4\.\d kB, [\d.]+ [kMGT]?B free there\)", line)
    assert line.endswith("free some space and rerun the same command to resume")
    # The backups before it are whole, and nothing half-written is left.
    assert [g.epoch for g in project.runs.generations(backup)] == [2, 1]
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-000001", "epoch-000002"]

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)  # space freed
    assert project.cli.main([*args, "run.name=full"]) == 0
    assert "after epoch 2, its last backup" in capsys.readouterr().out
    config = project.config.build_config([], args[1:] + ["run.name=full"])
    _assert_same_weights(_last_weights(config), uninterrupted)


@pytest.mark.slow
def test_a_run_killed_before_its_first_backup_says_it_starts_again(
    project, make_config, monkeypatch, capsys
):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("power cut")

    original = project.train.make_callbacks

    def crashing(*args, **kwargs):
        callbacks, guard = original(*args, **kwargs)
        return [Crash(), *callbacks], guard  # ahead of the backup's first save

    config = make_config(
        "data.source=breast_cancer", "train.epochs=2", "check.before_train=false", "run.name=k"
    )
    monkeypatch.setattr(project.train, "make_callbacks", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        project.train.train(config, "pytest")
    assert not (config.run_dir / "backup").exists()
    assert "no backup" not in capsys.readouterr().out  # a first run has nothing to say
    monkeypatch.setattr(project.train, "make_callbacks", original)

    assert project.train.train(config, "pytest") == 0
    out = capsys.readouterr().out
    assert "holds an unfinished run with no backup: training it from the start" in out
    assert "loss at init" in out  # started over, not resumed


@pytest.mark.slow
def test_a_finished_run_is_never_overwritten_by_accident(project, make_config):
    config = make_config("data.max_examples=200", "train.epochs=2", "run.name=done")
    _train(project, config)
    before = (config.run_dir / "metrics.json").read_bytes()
    with pytest.raises(project.errors.UsageError, match="already holds a finished run"):
        project.train.train(config, "pytest")
    assert (config.run_dir / "metrics.json").read_bytes() == before
    again = make_config(
        "data.max_examples=200", "train.epochs=2", "run.name=done", "run.overwrite=true"
    )
    _train(project, again)


@pytest.mark.slow
def test_a_finished_run_continues_with_its_optimizer_state(project, make_config, capsys):
    import keras

    shape = ("data.source=breast_cancer", "model.name=mlp", "model.dropout_rate=0.3")
    base = (*shape, "run.name=long")
    config = make_config(*base, "train.epochs=3")
    _train(project, config)
    steps = project.pipeline.steps_per_epoch(project.data.load(config).train, 64)

    bigger = make_config(*base, "train.epochs=6", "model.width=128", "run.extend=true")
    with pytest.raises(project.errors.UsageError, match=r"different config \(model.width\)"):
        project.train.train(bigger, "pytest")
    with pytest.raises(project.errors.UsageError, match="trained 3 epochs already"):
        project.train.train(make_config(*base, "train.epochs=3", "run.extend=true"), "pytest")

    metrics = _train(project, make_config(*base, "train.epochs=6", "run.extend=true"))
    assert "continuing" in capsys.readouterr().out and metrics["epochs"] == 6
    rows = project.callbacks.read_history(config.run_dir / "history.csv")
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3, 4, 5, 6]
    # Continued, not restarted: the weights train on from epoch 3 (a restart would repeat
    # epoch 1's loss) and Adam's step count and moments carry over (U1).
    assert rows[4]["loss"] < rows[1]["loss"]
    last = keras.saving.load_model(config.run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 6 * steps
    # 3 epochs and 3 more are 6 epochs: the same weights as one run of 6 (R6.3).
    straight = make_config(*shape, "train.epochs=6", "run.name=straight")
    _train(project, straight)
    _assert_same_weights(last.get_weights(), _last_weights(straight))


@pytest.mark.slow
def test_ema_weights_are_the_ones_validated_and_saved(project, make_config):
    import keras

    base = ("data.source=breast_cancer", "model.name=mlp", "train.epochs=3")
    plain = make_config(*base, "run.name=plain")
    averaged = make_config(*base, "optimizer.ema=true", "run.name=ema")
    _train(project, plain)
    _train(project, averaged)
    val = {
        config.run.name: project.callbacks.read_history(config.run_dir / "history.csv")
        for config in (plain, averaged)
    }
    # Momentum 0.99 over ~20 steps: the average still lags near the initial weights, so
    # validated averaged weights show a higher loss than the raw ones at the same step.
    assert val["ema"][-1]["val_loss"] > val["plain"][-1]["val_loss"] + 0.01
    # The saved model is the averaged model that was validated at its best epoch.
    data = project.data.load(averaged)
    model = keras.saving.load_model(averaged.run_dir / "model.keras")
    logits = model.predict(data.val.x, verbose=0)  # raw inputs
    measured = float(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)(data.val.y, logits)
    )
    assert measured == pytest.approx(min(row["val_loss"] for row in val["ema"]), rel=1e-4)


@pytest.mark.slow
def test_evaluate_command_rescores_a_finished_run(project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["data.source=breast_cancer", "train.epochs=3", "run.name=ev"]
    assert project.cli.main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "test set (86 examples)" in out and "linear_baseline" in out
    metrics_path = tmp_path / "runs" / "ev" / "metrics.json"
    first = json.loads(metrics_path.read_text())
    metrics_path.unlink()
    assert project.cli.main(["evaluate", "run.name=ev"]) == 0
    assert json.loads(metrics_path.read_text())["model"] == first["model"]


BAD_INPUT = [
    (["train", "optimizer.lr=1"], "error: unknown config key optimizer.lr"),
    (["train", "train.epochs=0"], "error: train.epochs must be >= 1"),
    (["train", "data.source=no/such/folder"], "error: data.source 'no/such/folder' is neither"),
    (["train", "data.source=table.csv"], "error: CSV table.csv has no column 'label'"),
    (["evaluate", "run.name=never"], "error: runs/never has no model.keras"),
    (["train", "--config", "missing.yaml"], "error: config file missing.yaml does not exist"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(project, tmp_path, monkeypatch, capsys, args, message):
    # In-process: cli.main is what the process runs; the subprocess test below proves that.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n3,4\n")
    assert project.cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written by a failed command


def test_bad_input_in_a_process_is_one_line_exit_2_and_the_help_lists_keys(run_cli, tmp_path):
    args, message = BAD_INPUT[3]
    (tmp_path / "table.csv").write_text("a,b\n1,2\n3,4\n")
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
    result = run_cli("--help")
    assert result.returncode == 0
    assert "train" in result.stdout and "optimizer.learning_rate = 0.0003" in result.stdout


@pytest.fixture
def photo_folder(tmp_path):
    """30 RGB 36x36 JPEGs of three classes (a bright band each), for the smallest backbone."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "owl"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 80, size=(36, 36, 3), dtype=np.uint8)
            pixels[c * 12 : c * 12 + 12] = 240
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.jpg")
    return tmp_path / "photos"


@pytest.mark.slow
def test_a_backbone_trains_its_head_then_fine_tunes_and_resumes_in_either_phase(
    project, make_config, photo_folder, tmp_path, monkeypatch, capsys
):
    """Both phases of the Keras transfer-learning guide in one run, from a weights file saved
    here (no download); a run killed while fine-tuning ends with the weights of one never
    killed."""
    import keras

    base = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg"
    )
    base.save_weights(tmp_path / "mobilenet.weights.h5")
    shrunk = (
        f"data.source={photo_folder}",
        "data.image_size=[32,32]",
        "model.name=backbone",
        "model.backbone=MobileNetV3Small",
        f"model.weights={tmp_path / 'mobilenet.weights.h5'}",
        "model.head_epochs=2",
        "model.fine_tune_layers=6",
        "train.epochs=4",
        "train.batch_size=8",
        # A frozen backbone of random weights gives the head nothing to fit: overfit_one_batch
        # rightly fails on it (ImageNet weights pass); the other checks are tested below.
        "check.before_train=false",
    )
    whole = make_config(*shrunk, "run.name=whole")
    metrics = _train(project, whole)
    out = capsys.readouterr().out
    assert "fine-tuning from epoch 2: the top 6 layers of MobileNetV3Small" in out
    rows = project.callbacks.read_history(whole.run_dir / "history.csv")
    assert [row.get("fine_tuning") for row in rows] == [None, 0.0, 0.0, 1.0, 1.0]
    assert rows[3]["learning_rate"] == pytest.approx(1e-5)
    assert metrics["loss_at_init"]["measured"] == pytest.approx(
        metrics["loss_at_init"]["expected"], rel=0.05
    )
    frozen_at_start = keras.saving.load_model(whole.run_dir / "model.keras")
    assert frozen_at_start.predict(np.zeros((1, 50, 40, 3)), verbose=0).shape == (1, 3)

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:  # the first fine-tuning epoch, backed up
                raise RuntimeError("power cut")

    original = project.train.make_callbacks

    def crashing(*args, **kwargs):
        callbacks, guard = original(*args, **kwargs)
        return callbacks + [Crash()], guard

    killed = make_config(*shrunk, "run.name=killed")
    monkeypatch.setattr(project.train, "make_callbacks", crashing)
    monkeypatch.setattr(project.callbacks.SaveBudget, "due", lambda self, epoch: True)
    with pytest.raises(RuntimeError, match="power cut"):
        project.train.train(killed, "pytest")
    monkeypatch.setattr(project.train, "make_callbacks", original)
    capsys.readouterr()
    assert project.train.train(killed, "pytest") == 0
    assert "after epoch 3, its last backup" in capsys.readouterr().out
    _assert_same_weights(_last_weights(killed), _last_weights(whole))


@pytest.mark.slow
def test_a_backbone_fed_pixels_scaled_to_one_fails_its_input_check(
    project, make_config, photo_folder
):
    config = make_config(
        f"data.source={photo_folder}",
        "data.image_size=[32,32]",
        "model.name=backbone",
        "model.weights=none",
    )
    data = project.data.load(config)
    assert data.mean.tolist() == [0, 0, 0] and data.std.tolist() == [1, 1, 1]
    setup = project.checks.make_setup(config, data)
    for check in ("init_loss", "batch_independence", "backbone_input_range"):
        assert getattr(project.checks, check)(setup).status == "PASS", check
    setup.data.std = np.full(3, 255.0, dtype=np.float32)  # the bug: pixels / 255 before it
    result = project.checks.backbone_input_range(setup)
    assert result.status == "FAIL" and "scaled to [0, 1]" in result.diagnosis
    setup.data.mean = np.full(3, 128.0, dtype=np.float32)  # standardized: negative values
    assert project.checks.backbone_input_range(setup).status == "FAIL"
    convnet = make_config(f"data.source={photo_folder}", "data.image_size=[32,32]")
    assert project.checks.backbone_input_range(project.checks.make_setup(convnet, data)) is None
