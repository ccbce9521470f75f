"""Distillation (R6.2, T16): the loss, the student next to its teacher and itself alone, and
the one-line refusals."""

import importlib
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def distill(project):
    return importlib.import_module(f"{project.name}.distill")


def test_the_loss_is_cross_entropy_at_alpha_0_and_its_soft_term_vanishes_on_the_teacher(
    distill,
):
    import keras

    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 1, 2])
    student, teacher = rng.normal(size=(2, 4, 3)).astype("float32")
    plain = keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
    alone = distill.distillation_loss(labels, student, teacher, temperature=1.0, alpha=0.0)
    np.testing.assert_allclose(alone, plain, rtol=1e-6)
    # alpha=1 leaves the soft term alone: zero when the student matches the teacher (any
    # constant added to a row of logits changes no probability), positive otherwise.
    same = distill.distillation_loss(labels, teacher + 3.0, teacher, temperature=4.0, alpha=1.0)
    np.testing.assert_allclose(same, 0.0, atol=1e-5)
    soft = np.asarray(distill.distillation_loss(labels, student, teacher, 4.0, 1.0))
    p, q = (np.exp(z / 4) / np.exp(z / 4).sum(axis=1, keepdims=True) for z in (teacher, student))
    np.testing.assert_allclose(soft, 16 * np.sum(p * np.log(p / q), axis=1), rtol=1e-4)
    assert np.all(soft > 0)

    # The compiled loss: teacher logits ride after the label; validation labels come alone.
    loss = distill.DistillationLoss(temperature=2.0, alpha=0.5)
    targets = np.concatenate([labels[:, None], teacher], axis=1).astype("float32")
    expected = distill.distillation_loss(labels, student, teacher, 2.0, 0.5)
    assert float(loss(targets, student)) == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert float(loss(labels, student)) == pytest.approx(float(np.mean(plain)), rel=1e-5)


def _save_run(project, config, data, network):
    """A finished run folder as train leaves one for distill: model.keras (raw inputs),
    config.yaml, data.json."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    model = project.models.with_preprocessing(network, data)
    model.save(config.run_dir / "model.keras")
    project.config.save(config, config.run_dir / "config.yaml")
    project.train.write_data_description(data, config, config.run_dir)


@pytest.fixture
def student_runs(project, distill, make_config):
    """The student's config, a finished run of it on the labels alone (fitted here, quickly),
    and a teacher: that network with its logits rolled by one class, so it predicts the next
    class wherever the student alone is right, a mistake only a distilled student learns."""
    student = make_config(*STUDENT, "run.name=student")
    data = project.data.load(student)
    network = project.models.build_model(student, data)
    project.models.compile_model(network, student, data, steps_per_epoch=10)
    x = data.normalize(data.train.x)
    network.fit(x, data.train.y, epochs=20, batch_size=32, verbose=0)
    _save_run(project, distill.alone_config(student), data, network)
    kernel, bias = network.get_layer("logits").get_weights()
    network.get_layer("logits").set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])
    teacher = make_config(*STUDENT, "run.name=teacher")
    _save_run(project, teacher, data, network)
    return student


STUDENT = (
    "data.source=digits",
    "data.max_examples=300",
    "model.name=mlp",
    "model.width=32",
    "model.depth=1",
    "optimizer.learning_rate=3e-3",
    "distill.teacher=teacher",
    "distill.alone=alone",
)


def test_the_student_learns_its_teacher_and_is_scored_next_to_it_and_itself_alone(
    project, student_runs, capsys, monkeypatch
):
    monkeypatch.chdir(student_runs.run.dir)  # no configs/default.yaml: the overrides alone
    runs_dir = f"run.dir={student_runs.run.dir}"
    args = ["distill", runs_dir, *STUDENT, "run.name=student", "check.before_train=false"]
    # Soft targets only, at T=1: the student should copy the teacher's (rolled) answers.
    learn = ["train.epochs=6", "distill.alpha=1", "distill.temperature=1"]
    assert project.cli.main([*args, *learn]) == 0
    run = student_runs.run_dir
    report = json.loads((run / "metrics.json").read_text())["distillation"]
    assert report["teacher_run"] == "teacher" and report["teacher_models"] == 1
    assert report["test_examples"] == 45
    for name in ("teacher", "student", "student_alone"):
        interval = report[name]["accuracy_interval"]
        assert interval["low"] <= report[name]["accuracy"] <= interval["high"]
    # The student alone is right where the teacher is wrong; the student took the teacher's word.
    assert report["student_alone"]["accuracy"] > 0.8 and report["teacher"]["accuracy"] < 0.2
    assert report["student"]["accuracy"] < 0.3
    assert report["gain_over_alone"] < -0.5
    assert "| student_alone |" in (run / "distill.md").read_text()

    # A rerun reuses the student; a student on another split than the teacher's is refused.
    capsys.readouterr()
    assert project.cli.main([*args, *learn]) == 0
    assert "trained already" in capsys.readouterr().out
    assert project.cli.main([*args, "data.max_examples=200", "run.name=other"]) == 2
    assert "another split (data.max_examples)" in capsys.readouterr().err
    assert project.cli.main([*args, "model.width=16", "run.name=wider"]) == 2
    assert "different config (model.width)" in capsys.readouterr().err


def test_the_same_student_alone_trains_in_the_students_folder(project, distill, make_config):
    config = make_config(*STUDENT[:-1], "run.name=student")
    alone = distill.alone_config(config)
    assert alone.run_dir == config.run_dir / "alone"
    assert alone.model == config.model and alone.data == config.data
    assert alone.distill == project.config.DistillConfig()  # trained on the labels alone


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "distill.teacher is empty"),
        (("distill.teacher=nothing",), "holds no finished run (model.keras) or ensemble"),
        (("distill.teacher=t", "data.augment=noise"), "set data.augment=[]"),
        (("distill.teacher=t", "train.label_smoothing=0.1"), "unset train.label_smoothing"),
        (("distill.teacher=t", "data.sampling=oversample"), "unset data.sampling"),
        (("distill.teacher=t", "distill.alpha=2"), "distill.alpha must be in [0, 1]"),
    ],
)
def test_bad_distill_input_is_one_line(project, tmp_path, capsys, args, message):
    assert project.cli.main(["distill", f"run.dir={tmp_path}", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_ensemble_teacher_is_its_members(distill, make_config):
    config = make_config("distill.teacher=ens", "run.name=student")
    folder = config.run_dir.parent / "ens"
    folder.mkdir(parents=True)
    (folder / "ensemble.json").write_text(json.dumps({"members": {"seed-0": {}, "seed-1": {}}}))
    members = distill.teacher_folders(config)
    assert members == [folder / "members" / "seed-0", folder / "members" / "seed-1"]
