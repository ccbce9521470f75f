"""Strategy, precision and XLA choices: the GPU paths are exercised on the CPU.

MirroredStrategy runs on two logical CPU devices in a fresh process (the CPU can only be
split before TensorFlow starts); GPU detection is faked to test what `auto` picks.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
SPLIT_CPU_AND_TRAIN = textwrap.dedent(
    """
    import importlib
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    config, train = (importlib.import_module(f"{sys.argv[1]}.{m}") for m in ("config", "train"))
    sys.exit(train.train(config.build_config([], sys.argv[2:]), "test"))
    """
)


@pytest.fixture
def float32_afterwards():
    """Mixed precision is a global Keras policy: put it back for the tests that follow."""
    import keras

    yield
    keras.config.set_dtype_policy("float32")


def _train_on_two_cpus(project, tmp_path, strategy):
    args = [
        project.name,
        "data.source=breast_cancer",
        "model.name=mlp",
        "train.epochs=4",
        f"train.strategy={strategy}",
        f"run.dir={tmp_path}",
        f"run.name={strategy}",
    ]
    result = subprocess.run(
        [sys.executable, "-c", SPLIT_CPU_AND_TRAIN, *args],
        env={"PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, json.loads((tmp_path / strategy / "metrics.json").read_text())


@pytest.mark.slow
def test_mirrored_on_two_devices_matches_one_device(project, tmp_path):
    one_out, one = _train_on_two_cpus(project, tmp_path, "one_device")
    two_out, two = _train_on_two_cpus(project, tmp_path, "mirrored")
    assert "1 replica(s) (OneDeviceStrategy)" in one_out
    assert "2 replica(s) (MirroredStrategy)" in two_out
    # The same global batch split in two gives the same model, except that each epoch's
    # last, partial batch is averaged per replica (7 + 6 examples): 4e-4 apart after 4 epochs.
    assert two["loss_at_init"]["measured"] == pytest.approx(one["loss_at_init"]["measured"])
    assert two["model"]["loss"] == pytest.approx(one["model"]["loss"], rel=2e-3)
    assert two["model"]["accuracy"] == pytest.approx(one["model"]["accuracy"], abs=0.02)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_on_workers(project, run_dir, workers):
    """`train` in `workers` processes on 127.0.0.1, as on several machines; all killed at
    the end whatever happens."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(
        PYTHONPATH=str(SRC),
        KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{_free_port()}",
        KERAS_DISTRIBUTION_NUM_PROCESSES=str(workers),
    )
    args = [
        "data.source=breast_cancer",
        "model.name=mlp",
        "train.epochs=3",
        "train.strategy=multi_worker",
        f"run.dir={run_dir}",
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", project.name, "train", *args],
            cwd=run_dir.parent,  # away from the project's configs/default.yaml, which cli reads
            env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(workers)
    ]
    try:
        outputs = [process.communicate(timeout=400)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    return outputs


@pytest.mark.slow
def test_two_workers_train_the_same_model_as_one(project, tmp_path):
    pytest.importorskip(
        "jax", reason="multi_worker needs the extra: pip install -e '.[multiworker]'"
    )
    import keras

    outputs = _train_on_workers(project, tmp_path / "two", 2)
    assert "process 0 of 2 (keras.distribution.DataParallel, JAX)" in outputs[0]
    _train_on_workers(project, tmp_path / "one", 1)
    chief, other = (
        tmp_path / "two" / "default",
        tmp_path / "two" / "default" / "workers" / "process-1",
    )
    single = tmp_path / "one" / "default"
    weights = {
        name: keras.saving.load_model(path / "model.keras").get_weights()
        for name, path in (("chief", chief), ("other", other), ("single", single))
    }
    # Both processes hold the same replicated weights, and two processes with half the
    # batch each reach the weights one process reaches with the whole batch.
    for a, b, c in zip(weights["chief"], weights["other"], weights["single"], strict=True):
        assert np.array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-5)
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["model"]["loss"] < metrics["loss_at_init"]["measured"]  # it trained


def test_multi_worker_refuses_to_start_without_its_cluster(run_cli):
    result = run_cli("train", "train.strategy=multi_worker", "data.source=breast_cancer")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: train.strategy=multi_worker ")
    assert "Traceback" not in result.stderr
    refused = run_cli("tune", "train.strategy=multi_worker")
    assert refused.returncode == 2 and "tune spreads trials" in refused.stderr


def test_auto_strategy_mirrors_only_over_several_gpus(project, monkeypatch):
    import tensorflow as tf

    devices = project.devices
    assert devices.make_strategy("auto").num_replicas_in_sync == 1
    monkeypatch.setattr(devices, "gpus", lambda: ["gpu0", "gpu1"])
    assert isinstance(devices.make_strategy("auto"), tf.distribute.MirroredStrategy)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [(None, "float32"), ((6, 1), "float32"), ((7, 5), "mixed_float16"), ((9, 0), "mixed_bfloat16")],
)
def test_auto_precision_follows_the_gpu(project, monkeypatch, capability, expected):
    devices = project.devices
    if capability:
        monkeypatch.setattr(devices, "gpus", lambda: ["gpu0"])
        monkeypatch.setattr(
            devices.tf.config.experimental,
            "get_device_details",
            lambda gpu: {"compute_capability": capability},
        )
    assert devices.resolve_precision("auto") == expected
    assert devices.resolve_precision("mixed_float16") == "mixed_float16"  # named: as asked


def test_mixed_precision_keeps_the_output_and_loss_at_init_in_float32(
    project, make_config, float32_afterwards
):
    config = make_config("data.source=breast_cancer", "train.precision=mixed_bfloat16")
    data = project.data.load(config)
    assert project.devices.set_precision(config.train.precision) == "mixed_bfloat16"
    model = project.models.build_model(config, data)
    project.models.compile_model(model, config, data, steps_per_epoch=1)
    hidden, output = model.layers[-2], model.layers[-1]
    assert hidden.compute_dtype == "bfloat16" and output.compute_dtype == "float32"
    x = data.normalize(data.val.x)
    logits = model.predict(x, verbose=0)
    assert str(logits.dtype) == "float32"
    measured = model.evaluate(x, data.val.y, verbose=0, return_dict=True)["loss"]
    expected = project.models.expected_initial_loss(data)
    assert measured == pytest.approx(expected, rel=0.05)


def test_xla_and_steps_per_execution_reach_compile(project, make_config):
    config = make_config(
        "data.source=breast_cancer", "train.jit_compile=false", "train.steps_per_execution=4"
    )
    data = project.data.load(config)
    model = project.models.build_model(config, data)
    project.models.compile_model(model, config, data, steps_per_epoch=7)
    assert model.jit_compile is False and model.steps_per_execution == 4
    history = model.fit(
        project.pipeline.make_dataset(data, data.train, 64, shuffle=True),
        epochs=1,
        steps_per_epoch=project.pipeline.steps_per_epoch(data.train, 64),
        verbose=0,
        callbacks=[project.callbacks.NaNGuard()],
    )
    assert history.history["loss"][0] > 0


def test_yaml_booleans_are_accepted_for_jit_compile(project, make_config):
    assert make_config("train.jit_compile=true").train.jit_compile == "true"
    assert make_config("train.jit_compile=off").train.jit_compile == "false"
    with pytest.raises(project.errors.UsageError, match="train.jit_compile must be one of"):
        make_config("train.jit_compile=maybe")
    with pytest.raises(project.errors.UsageError, match="train.strategy must be one of"):
        make_config("train.strategy=tpu")
