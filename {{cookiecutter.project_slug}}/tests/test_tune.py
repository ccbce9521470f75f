"""Random search: the thin build_model(hp), the report files, resume, failed trials, edges."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Tiny: 200 digits, two epochs, a small space, so a trial takes about a second.
SHRINK = ("data.max_examples=200", "model.name=convnet", "tune.epochs=2", "check.sample=200")


@pytest.fixture
def small_space(project):
    tune = project.tune
    return {
        "optimizer.learning_rate": tune.Range(1e-3, 3e-3, log=True),
        "model.width": tune.Choice((8, 16)),
        "model.filters": tune.Choice((4, 8)),
        "model.dropout_rate": tune.Range(0.0, 0.3),
        "train.batch_size": tune.Choice((32, 64)),
    }


def _rows(run_dir):
    with open(run_dir / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_build_model_from_hyperparameters_is_compiled(project, make_config):
    import keras_tuner

    config = make_config(*SHRINK)
    data = project.data.load(config)
    space = project.tune.search_space(config, data)
    assert "model.depth" not in space  # the convnet has no depth: not searched
    hypermodel = project.tune.RecipeHyperModel(config, data, space)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("optimizer.learning_rate", 1e-3)
    hp.Fixed("optimizer.weight_decay", 1e-2)
    model = hypermodel.build(hp)
    assert model.compiled and model.name == "convnet"
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.optimizer.__class__.__name__ == "AdamW"  # weight decay > 0, as in train
    assert set(hp.values) == set(space)  # every key of the space was sampled
    assert model.output_shape == (None, 10)


def test_search_writes_report_best_yaml_loads_and_resume_skips_done(
    project, make_config, small_space, capsys
):
    config = make_config(*SHRINK, "tune.max_trials=2", "run.name=search")
    assert project.tune.tune(config, "pytest", space=small_space) == 0
    run = config.run_dir
    for name in ("trials.csv", "trials.md", "tuning.png", "best.yaml", "tuning.json"):
        assert (run / name).is_file(), name
    first = _rows(run)
    assert [row["status"] for row in first] == ["COMPLETED", "COMPLETED"]
    assert "| trial | status | optimizer.learning_rate" in (run / "trials.md").read_text()
    out = capsys.readouterr().out
    assert out.count("\ntrial ") + out.startswith("trial ") == 2 and "best: trial" in out

    summary = json.loads((run / "tuning.json").read_text())
    trained = project.config.build_config([run / "best.yaml"])
    best = summary["best"]
    assert trained.optimizer.learning_rate == pytest.approx(best["optimizer"]["learning_rate"])
    assert trained.model.width == best["model"]["width"] in (8, 16)
    assert trained.train.batch_size == best["train"]["batch_size"]
    assert trained.data.source == "digits" and trained.model.name == "convnet"

    # Resume: one more trial runs; the two finished ones are not repeated.
    config = make_config(*SHRINK, "tune.max_trials=3", "run.name=search")
    assert project.tune.tune(config, "pytest", space=small_space) == 0
    out = capsys.readouterr().out
    assert "2 already done" in out
    assert out.count("trial 2:") == 1 and "trial 0:" not in out and "trial 1:" not in out
    again = _rows(run)
    assert len(again) == 3 and again[:2] == first


@pytest.mark.slow
def test_a_stop_signal_ends_the_search_between_trials_and_the_rerun_goes_on(
    project, make_config, small_space, monkeypatch, capsys
):
    fit = project.tune.RecipeHyperModel.fit

    def signalled(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first trial trains
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(project.tune.RecipeHyperModel, "fit", signalled)
    config = make_config(*SHRINK, "tune.max_trials=2", "run.name=stop")
    with project.runs.stop_on_signals():  # as the command line runs every command
        assert project.tune.tune(config, "pytest", space=small_space) == 143
    captured = capsys.readouterr()
    assert "stopped by SIGTERM after trial 0; rerun the same command to resume" in captured.err
    # The trial training when the signal came ran to its end; no other began.
    assert "trial 0:" in captured.out and "trial 1:" not in captured.out
    monkeypatch.setattr(project.tune.RecipeHyperModel, "fit", fit)
    assert project.tune.tune(config, "pytest", space=small_space) == 0
    out = capsys.readouterr().out
    assert "1 already done" in out and "trial 1:" in out and "trial 0:" not in out
    assert [row["status"] for row in _rows(config.run_dir)] == ["COMPLETED", "COMPLETED"]


def test_resume_with_a_different_problem_is_refused(project, make_config):
    config = make_config(*SHRINK, "run.name=search")
    (config.run_dir / "tuner").mkdir(parents=True)
    project.config.save(config, config.run_dir / "tune_config.yaml")
    changed = make_config(*SHRINK, "run.name=search", "data.source=breast_cancer")
    with pytest.raises(project.errors.UsageError, match="data.source"):
        project.tune.tune(changed, "pytest")


def test_a_failing_trial_is_recorded_and_the_search_goes_on(
    project, make_config, small_space, monkeypatch
):
    real = project.models.build_model
    calls = []

    def fails_first(config, data):
        calls.append(config.model.width)
        if len(calls) == 2:  # call 1 is the tuner's own build that declares the space
            raise ValueError("made-up builder failure")
        return real(config, data)

    monkeypatch.setattr(project.tune.models, "build_model", fails_first)
    config = make_config(*SHRINK, "tune.max_trials=2", "run.name=fail")
    assert project.tune.tune(config, "pytest", space=small_space) == 0
    rows = _rows(config.run_dir)
    assert [row["status"] for row in rows] == ["FAILED", "COMPLETED"]
    assert "made-up builder failure" in rows[0]["error"] and rows[0]["objective"] == ""
    assert json.loads((config.run_dir / "tuning.json").read_text())["failed"] == 1


def test_nan_loss_fails_trials_and_consecutive_failures_stop_the_search(
    project, make_config, small_space, monkeypatch
):
    real_load = project.tune.load

    def with_nan(config):
        data = real_load(config)
        data.train.x[0] = float("nan")  # every epoch's loss becomes NaN
        return data

    monkeypatch.setattr(project.tune, "load", with_nan)
    config = make_config(*SHRINK, "tune.max_trials=5", "run.name=nan")
    assert project.tune.tune(config, "pytest", space=small_space) == 1
    rows = _rows(config.run_dir)
    assert len(rows) == project.tune.MAX_CONSECUTIVE_FAILURES
    assert all(row["status"] == "FAILED" for row in rows)
    assert "lower optimizer.learning_rate" in rows[0]["error"]  # NaNGuard's diagnosis


def test_edge_warnings(project):
    tune = project.tune
    space = {
        "optimizer.learning_rate": tune.Range(1e-4, 1e-2, log=True),
        "model.dropout_rate": tune.Range(0.0, 0.5),
        "model.width": tune.Choice((32, 64, 128)),
    }
    middle = {"optimizer.learning_rate": 1e-3, "model.dropout_rate": 0.25, "model.width": 64}
    assert tune.edge_warnings(middle, space) == []
    # 8e-3 is 95% of the way up the log range, 0.02 is 4% up the linear one.
    edges = {"optimizer.learning_rate": 8e-3, "model.dropout_rate": 0.02, "model.width": 128}
    warnings = tune.edge_warnings(edges, space)
    assert len(warnings) == 3 and all("widen the range" in w for w in warnings)
    assert "high end" in warnings[0] and "low end" in warnings[1] and "highest" in warnings[2]


def test_the_optimizer_is_searched_by_name_with_no_edge(
    project, make_config, tmp_path, monkeypatch
):
    """optimizer.name: an unordered KerasTuner choice, set in the trial's config, never "the
    lowest choice", and the figure gives each name its own column in the space's order."""
    import keras_tuner
    import matplotlib.pyplot as plt

    tune = project.tune
    spec = tune.Choice(("adam", "sgd"), ordered=False)
    hp = keras_tuner.HyperParameters()
    assert tune.sample(hp, "optimizer.name", spec) == "adam"
    assert hp.space[0].values == ["adam", "sgd"] and not hp.space[0].ordered
    config = tune.with_values(make_config(), {"optimizer.name": "sgd"})
    assert type(project.models.make_optimizer(config, 10)).__name__ == "SGD"
    space = {"optimizer.name": spec, "model.width": tune.Choice((32, 64, 128))}
    assert tune.edge_warnings({"optimizer.name": "adam", "model.width": 64}, space) == []
    rows = [
        {"optimizer.name": name, "model.width": width, "objective": loss}
        for name, width, loss in (("sgd", 32, 0.9), ("adam", 64, 0.5), ("sgd", 128, 0.7))
    ]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert tune.tuning_figure(rows, space, "val_loss", tmp_path / "tuning.png").is_file()
    labels = [label.get_text() for label in figures[0].axes[0].get_xticklabels()]
    assert labels == ["adam", "sgd"]


def test_cli_rejects_an_unknown_objective(run_cli):
    result = run_cli("tune", "tune.objective=accuracy")
    assert result.returncode == 2
    assert "tune.objective must be one of val_loss, val_accuracy, val_mae" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_one_chief_two_workers(project, tmp_path):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        project.name,
        "tune",
        *SHRINK,
        "tune.max_trials=4",
        f"run.dir={tmp_path / 'runs'}",
        "run.name=dist",
    ]
    base = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    base.update(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    processes = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            processes[tuner_id] = subprocess.Popen(
                command,
                cwd=tmp_path,
                env={**base, "KERASTUNER_TUNER_ID": tuner_id},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if tuner_id == "chief":
                time.sleep(3)  # let the chief's oracle server start listening
        # The chief blocks until the workers finish; a hung search fails here, not forever.
        outputs = {name: p.communicate(timeout=240)[0] for name, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
    rows = _rows(tmp_path / "runs" / "dist")
    assert len(rows) == 4 and all(row["status"] == "COMPLETED" for row in rows)
    assert "worker tuner0 done" in outputs["tuner0"] and "worker tuner1 done" in outputs["tuner1"]
    assert (tmp_path / "runs" / "dist" / "best.yaml").is_file()
