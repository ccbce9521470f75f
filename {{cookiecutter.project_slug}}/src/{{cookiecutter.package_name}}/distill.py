"""Knowledge distillation (R6.2, T16): a student network learns a finished teacher's softened
probabilities (a run, or an ensemble's averaged members) besides the labels, and is scored on
the whole test set next to the teacher and the same student trained on the labels alone.

The teacher is frozen, so its outputs on the training split are computed once and ride along
as extra target columns; train.py trains the student with its own data, model, callbacks and
fit, given this loss (`compile_with`) and these targets (`training_data`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import keras
import numpy as np

from . import config as config_lib
from . import runs
from .config import Config, DistillConfig
from .data import Data, Split, load
from .ensemble import split_differences
from .errors import UsageError
from .evaluate import bootstrap_interval, load_trained, predict_split, score
from .models import make_optimizer
from .pipeline import training_stream
from .tables import markdown_table
from .train import train

# The teacher's probabilities are clipped here before their log: a zero would be -inf.
PROBABILITY_FLOOR = 1e-7


def distillation_loss(labels, student_logits, teacher_logits, temperature: float, alpha: float):
    """Per example: alpha T^2 KL(softmax(teacher/T) || softmax(student/T)) plus (1 - alpha)
    times the cross-entropy of the labels (Hinton et al. 2015). T^2 keeps the soft term's
    gradients as large as the hard term's whatever T. Teacher logits may be log-probabilities:
    a softmax ignores a constant added to every logit."""
    ops = keras.ops
    teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student = ops.log_softmax(student_logits / temperature, axis=-1)
    soft = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1)
    hard = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def _with_teacher(y_true, y_pred) -> bool:
    """Training targets carry the label then the teacher's logits; validation's the label alone."""
    return len(y_true.shape) == 2 and y_true.shape[-1] == y_pred.shape[-1] + 1


@keras.saving.register_keras_serializable(package="recipe")
class DistillationLoss(keras.losses.Loss):
    """distillation_loss on [label, teacher logits...] targets; plain cross-entropy on labels
    alone, so val_loss (early stopping, the best checkpoint) is the one train reports."""

    def __init__(self, temperature=4.0, alpha=0.9, name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature, self.alpha = float(temperature), float(alpha)

    def call(self, y_true, y_pred):
        if not _with_teacher(y_true, y_pred):
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        labels, teacher = y_true[:, 0], y_true[:, 1:]
        return distillation_loss(labels, y_pred, teacher, self.temperature, self.alpha)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="recipe")
def label_accuracy(y_true, y_pred):
    """Accuracy on the labels, which the training targets hold in their first column."""
    if _with_teacher(y_true, y_pred):
        y_true = y_true[:, 0]
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)


def compile_student(settings: DistillConfig):
    """train's compile_with: models.compile_model's optimizer and settings, this loss."""

    def compile_with(model: keras.Model, config: Config, data: Data, steps: int) -> keras.Model:
        model.compile(
            optimizer=make_optimizer(config, steps),
            loss=DistillationLoss(settings.temperature, settings.alpha),
            metrics=[keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")],
            jit_compile={"true": True, "false": False}.get(config.train.jit_compile, "auto"),
            steps_per_execution=config.train.steps_per_execution,
        )
        return model

    return compile_with


def teacher_probabilities(teachers: list[keras.Model], data: Data, split: Split) -> np.ndarray:
    """The teacher's class probabilities on a split: an ensemble's averaged over its members."""
    return np.mean([predict_split(model, data, split) for model in teachers], axis=0)


def with_teacher_targets(teachers: list[keras.Model]):
    """train's training_data: the training stream whose targets are [label, teacher logits],
    the teacher run once over the training split that train loaded."""

    def training_data(config: Config, data: Data, first_epoch: int):
        probabilities = teacher_probabilities(teachers, data, data.train)
        logits = np.log(np.clip(probabilities, PROBABILITY_FLOOR, 1.0)).astype(np.float32)
        targets = np.concatenate([data.train.y[:, None].astype(np.float32), logits], axis=1)
        split = Split(data.train.x, targets, data.train.ids)
        return training_stream(config, dataclasses.replace(data, train=split), first_epoch)

    return training_data


def teacher_folders(config: Config) -> list[Path]:
    """The teacher's model folders: a finished run, or an ensemble run's members."""
    name = config.distill.teacher
    if not name:
        raise UsageError("distill.teacher is empty; name a finished run: distill.teacher=RUN")
    if name == config.run.name:
        raise UsageError(f"run.name={name} is the teacher's; name the student's run another way")
    folder = Path(config.run.dir) / name
    if (folder / "model.keras").is_file():
        return [folder]
    if (folder / "ensemble.json").is_file():
        members = json.loads((folder / "ensemble.json").read_text())["members"]
        return [folder / "members" / member for member in members]
    raise UsageError(
        f"distill.teacher={name}: {folder} holds no finished run (model.keras) or ensemble "
        "(ensemble.json); train one first (make train, make ensemble)"
    )


def refuse_unsupported(config: Config) -> None:
    """What distillation cannot honour, in one line each."""
    d, t = config.data, config.train
    if d.augment:
        # The teacher's outputs are computed once per training example; an augmented input is
        # another example, which the teacher never saw.
        raise UsageError(
            f"data.augment={','.join(d.augment)}: distill gives each training example the "
            "teacher's outputs on it as it is, computed once; set data.augment=[]"
        )
    own = {
        "train.loss": t.loss not in ("auto", "cross_entropy"),
        "train.label_smoothing": t.label_smoothing > 0,
        "train.class_weight": t.class_weight != "none",
        "data.sampling": d.sampling != "none",  # it draws by the label: the targets hold more
        "model.name=backbone": config.model.name == "backbone",
    }
    taken = [key for key, set_ in own.items() if set_]
    if taken:
        raise UsageError(
            f"distill trains the student from scratch on its own loss (teacher plus "
            f"cross-entropy) and plain batches; unset {', '.join(taken)}"
        )


def check_teacher(config: Config, folders: list[Path], data: Data) -> None:
    """The teacher learned this task on this split: its test set is the student's, unseen."""
    name = config.distill.teacher
    if data.task != "classification":
        raise UsageError(
            f"distill needs classes to soften; {data.source} is {data.task} (distill.teacher)"
        )
    teacher = config_lib.build_config([folders[0] / "config.yaml"])
    differences = split_differences(teacher, config)
    if differences:
        raise UsageError(
            f"distill.teacher={name} was trained on other data or another split "
            f"({', '.join(differences)}); the student must share its data.source and split"
        )
    classes = json.loads((folders[0] / "data.json").read_text())["class_names"]
    if classes != data.class_names:
        raise UsageError(
            f"distill.teacher={name} has classes {classes}; the student's are {data.class_names}"
        )


def alone_config(config: Config) -> Config:
    """The same student trained on the labels alone: the run distill.alone, or one in the
    student's run folder."""
    alone = copy.deepcopy(config)
    alone.distill = DistillConfig()  # a plain train run: a new teacher does not retrain it
    if config.distill.alone:
        alone.run.name = config.distill.alone
        return alone
    alone.run.dir = str(config.run_dir)
    alone.run.name = "alone"
    alone.check.before_train = False  # the student's run checked the same data and model
    return alone


def finished(config: Config, named: bool = False) -> bool:
    """A finished run to reuse (unless run.overwrite), refused if its config differs; a
    `named` one (distill.alone) must be there, and is never retrained here."""
    if named and not (config.run_dir / "model.keras").is_file():
        raise UsageError(
            f"distill.alone={config.run.name}: {config.run_dir} holds no finished run; "
            "train the student config there, or leave distill.alone empty"
        )
    if (config.run.overwrite and not named) or not (config.run_dir / "model.keras").is_file():
        return False
    config_lib.refuse_changes(
        config.run_dir / "config.yaml",
        config,
        "reuse",
        "distill.alone must name a run of the student's config"
        if named
        else "set run.overwrite=true to retrain it, or choose another run.name",
    )
    print(f"{config.run_dir}: trained already")
    return True


def scored(data: Data, outputs: np.ndarray) -> dict:
    result = score(data, data.test.y, outputs)
    result["accuracy_interval"] = bootstrap_interval(data.task, data.test.y, outputs)
    return result


def distill(config: Config, command: str = "") -> int:
    """`python -m <package> distill`: trains the student on the teacher, then the student
    alone, and adds all three test scores to the student's metrics.json."""
    refuse_unsupported(config)
    folders = teacher_folders(config)
    data = load(config)
    check_teacher(config, folders, data)
    # Each freshly loaded model traces its own predict function; TensorFlow's warning about
    # that retracing is expected here and only noise.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    teachers = [load_trained(folder) for folder in folders]
    print(
        f"teacher: {config.distill.teacher} ({len(teachers)} model(s)); "
        f"temperature {config.distill.temperature:g}, alpha {config.distill.alpha:g}"
    )

    alone = alone_config(config)
    # Before any training: a named run that is missing or of another config is refused first.
    alone_done = finished(alone, named=bool(config.distill.alone))
    if not finished(config):
        print(f"\n== student, distilled -> {config.run_dir}", flush=True)
        status = train(
            config,
            command,
            compile_with=compile_student(config.distill),
            training_data=with_teacher_targets(teachers),
        )
        if status:
            return status
    if not alone_done:
        print(f"\n== the same student on the labels alone -> {alone.run_dir}", flush=True)
        status = train(alone, command)
        if status:
            return status

    outputs = {
        "teacher": teacher_probabilities(teachers, data, data.test),
        "student": predict_split(load_trained(config.run_dir), data, data.test),
        "student_alone": predict_split(load_trained(alone.run_dir), data, data.test),
    }
    models = {name: scored(data, out) for name, out in outputs.items()}
    report = {
        "teacher_run": config.distill.teacher,
        "teacher_models": len(teachers),
        "temperature": config.distill.temperature,
        "alpha": config.distill.alpha,
        "test_examples": int(len(data.test.y)),
        **models,
        "gain_over_alone": models["student"]["accuracy"] - models["student_alone"]["accuracy"],
    }
    path = config.run_dir / "metrics.json"
    runs.write_json(path, {**json.loads(path.read_text()), "distillation": report})
    rows = [
        {"model": name, **{key: values[key] for key in ("loss", "accuracy")}}
        | {"95% interval": "{low:.4f}-{high:.4f}".format(**values["accuracy_interval"])}
        for name, values in models.items()
    ]
    table = markdown_table(rows, ["model", "loss", "accuracy", "95% interval"])
    runs.write_text(
        config.run_dir / "distill.md",
        f"# {config.run.name}: distilled from {config.distill.teacher} on {data.source} "
        f"({report['test_examples']} test examples)\n\n{table}\n",
    )
    print(f"\ntest set ({report['test_examples']} examples):\n{table}")
    print(
        f"student {report['gain_over_alone']:+.4f} accuracy over the same student alone\n"
        f"run: {config.run_dir}/  (metrics.json 'distillation', distill.md, alone/)"
    )
    return 0
