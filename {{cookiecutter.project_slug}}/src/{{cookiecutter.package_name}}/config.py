"""The one typed config: every default in one place, YAML files and `key=value` overrides on top.

Each field's `help` says why the default is what it is; `python -m <package> --help`
prints them all. Unknown keys, wrong types and impossible values are rejected here,
before any data is loaded or any file is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import runs
from .errors import UsageError

EMBEDDED_SOURCES = ("digits", "breast_cancer", "diabetes")
BUILTIN_MODELS = ("auto", "linear", "mlp", "convnet", "resnet", "backbone")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd")
CLASSIFICATION_LOSSES = ("cross_entropy", "focal")
IMAGE_AUGMENTATIONS = (
    "flip_horizontal",
    "flip_vertical",
    "rotate",
    "translate",
    "zoom",
    "contrast",
    "erase",
    "randaugment",
    "mixup",
    "cutmix",
)
TABLE_AUGMENTATIONS = ("noise",)
LABEL_MIXING = ("mixup", "cutmix")  # augmentations that mix labels: class probabilities out
REGRESSION_LOSSES = ("mse", "mae", "huber")
TRANSFORMS = ("log1p", "tanh")  # data.transform's squashing functions (U7)


def _field(default, help: str):
    """A dataclass field whose help text is the reason for its default."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    source: str = _field(
        "digits",
        "digits | breast_cancer | diabetes (scikit-learn's embedded data, offline), "
        "a folder of images with one sub-folder per class, or a .csv file: a table, or a "
        "list of image files with data.path_column (docs/your-data.md)",
    )
    label_column: str = _field("label", "CSV column holding the label (CSV sources only)")
    path_column: str = _field(
        "",
        "CSV column of image paths (relative to the CSV): set it and the CSV lists image files "
        "with their labels; empty: the CSV is a table",
    )
    task: str = _field(
        "auto",
        "auto infers classification vs regression from the labels; "
        "classification | regression forces it",
    )
    val_fraction: float = _field(0.15, "held out for early stopping and model choice")
    test_fraction: float = _field(
        0.15, "held out and touched once, by evaluate; stratified for classification"
    )
    image_size: list[int] = _field(
        [32, 32], "height, width that folder images are resized to (small first, R3.3)"
    )
    cache: str = _field(
        "none",
        "image files: none decodes every epoch (memory stays flat); memory keeps the decoded "
        "images in RAM; or a folder for tf.data's file cache (docs/your-data.md)",
    )
    augment: list[str] = _field(
        [],
        "augmentations, in order (R4.2, T4): images flip_horizontal, flip_vertical, rotate, "
        "translate, zoom, contrast, erase, randaugment, mixup, cutmix; tables noise (numeric "
        "columns). Empty (off) until the model overfits: no extras in the first runs (R2.2)",
    )
    augment_strength: float = _field(
        1.0, "scales every augmentation's range (docs/configuration.md lists the ranges at 1)"
    )
    sampling: str = _field(
        "none",
        "classification training batches: none | oversample draws every class equally often "
        "(imbalance, T2; epochs keep their length, validation and test stay as they are)",
    )
    transform: dict[str, str] = _field(
        {},
        "tables: squash heavy-tailed numeric columns before normalizing (U7), {column: log1p "
        "| tanh}: log1p is sign(x) log1p(|x|), tanh is tanh((x - median) / C) with C fitted on "
        "the training split; inspect's heavy_tailed_feature names the columns",
    )
    missing: str = _field(
        "error", "missing numeric CSV values: error stops, mean fills with the training mean"
    )
    max_examples: int = _field(0, "use at most this many examples (0 = all); shrinks smoke runs")
    split_seed: int | None = _field(
        None, "seeds the split (null: seed); fixed, seeds vary only init and order (R6.1)"
    )


@dataclass
class ModelConfig:
    name: str = _field(
        "auto",
        "auto (convnet for images, mlp for tables) | linear | mlp | convnet | resnet | "
        "backbone (pretrained, R3.1, R4.4), or your own builder as module:function or "
        "path/to/file.py:function",
    )
    backbone: str = _field(
        "MobileNetV3Small",
        "the keras.applications network of model.name=backbone: MobileNetV3Small (the "
        "smallest), EfficientNetV2B0, ResNet50V2, ConvNeXtTiny",
    )
    weights: str = _field(
        "imagenet",
        "the backbone's starting weights: imagenet (downloaded once into ~/.keras/models/), "
        "none (random init), or the path of a weights file",
    )
    head_epochs: int = _field(
        5, "backbone: epochs training the new head with the backbone frozen, before fine-tuning"
    )
    fine_tune_layers: int = _field(
        20, "backbone: top layers unfrozen for fine-tuning (batch norm stays frozen); 0 = never"
    )
    fine_tune_learning_rate: float = _field(
        1e-5, "backbone: a rate ~30x below the head's, so fine-tuning nudges the features"
    )
    width: int = _field(64, "hidden units per dense layer; multiples of 64 suit accelerators (T9)")
    depth: int = _field(2, "hidden dense layers of the mlp; small first, grow once it trains")
    filters: int = _field(32, "filters of the first conv stage, doubled per stage (U9)")
    dropout_rate: float = _field(0.0, "no regularization until the model overfits (R4.9, T10)")
    input_dropout: float = _field(
        0.0, "linear and mlp: drop input features while training (R4.9); 0 = off"
    )
    spatial_dropout: float = _field(
        0.0, "convnet and resnet: drop whole feature maps after each conv stage (R4.9); 0 = off"
    )


@dataclass
class OptimizerConfig:
    name: str = _field(
        "adam", "adam (R3.2) | adamw | sgd: a tuned SGD with momentum can beat Adam on convnets"
    )
    learning_rate: float = _field(3e-4, "Adam at 3e-4 is the safe default (R3.2)")
    weight_decay: float = _field(
        0.0, "decoupled weight decay; turns adam into adamw when > 0 (R4.10)"
    )
    momentum: float = _field(0.9, "sgd only: the usual heavy-ball momentum")
    nesterov: bool = _field(False, "sgd only: Nesterov momentum")
    clipnorm: float = _field(
        0.0, "clip each gradient to this norm (0 = off): hides bad init and bad rates (U19)"
    )
    schedule: str = _field(
        "constant",
        "constant (R3.4, U8) | warmup_cosine: linear warmup, then cosine decay to zero (T11)",
    )
    warmup_epochs: int = _field(1, "length of the warmup of warmup_cosine")
    ema: bool = _field(False, "keep an exponential moving average of the weights (T17)")


@dataclass
class TrainConfig:
    epochs: int = _field(100, "an upper bound; early stopping usually ends the run first")
    batch_size: int = _field(64, "global batch size; a multiple of 8 (T9)")
    patience: int = _field(10, "epochs without a better val loss before stopping (R4.11, T15)")
    deterministic: bool = _field(True, "same seed, same losses (R2.1); costs a little speed on GPU")
    prediction_examples: int = _field(
        16, "size of the fixed validation batch drawn every epoch (R2.11)"
    )
    strategy: str = _field(
        "auto",
        "auto mirrors over every GPU when there are several; one_device; mirrored; multi_worker "
        "(processes on several machines, JAX backend; docs/scaling.md)",
    )
    precision: str = _field(
        "auto", "auto: mixed bfloat16/float16 on a capable GPU, float32 on the CPU; or name one"
    )
    jit_compile: str = _field(
        "auto", "XLA: auto (Keras: on for one GPU unless train.deterministic), true or false"
    )
    steps_per_execution: int = _field(
        1, "train steps per call into TensorFlow; raise it when small steps leave a GPU idle"
    )
    fraction: float = _field(
        1.0, "train on this share of the training split, per class, same val and test (R4.1)"
    )
    loss: str = _field(
        "auto",
        "auto: cross_entropy for classes, mse for targets | focal (hard examples, imbalance; "
        "T18) | mae | huber (targets with outliers; U17)",
    )
    label_smoothing: float = _field(
        0.0, "classification: soft targets, (1 - s) on the label and s spread over all (T7)"
    )
    class_weight: str | dict[str, float] = _field(
        "none",
        "none | balanced: each class weighs as much in the loss as the others (T2) | a mapping "
        "{label: weight} (labels as the data names them; a label left out weighs 1)",
    )
    histograms: bool = _field(
        False,
        "TensorBoard: every weight's histogram and every gradient's norm (on one fixed "
        "training batch) at each epoch's end",
    )
    log_every_steps: int = _field(
        0, "print and log to TensorBoard the training loss and rate every N steps (U13); 0 = off"
    )


@dataclass
class CheckConfig:
    before_train: bool = _field(
        True, "train runs the fast recipe checks first, so a broken setup never burns hours"
    )
    sample: int = _field(
        2000, "inspect and check look at at most this many examples of bigger data (and say so)"
    )
    human_baseline: float | None = _field(
        None, "human accuracy (or error) on this task, to compare against (R2.6); null if unknown"
    )


@dataclass
class TuneConfig:
    max_trials: int = _field(
        10, "random-search trials (R5.1); rerun with more to extend a finished search"
    )
    epochs: int = _field(30, "upper bound per trial; early stopping on val_loss ends most first")
    patience: int = _field(5, "epochs without a better val loss before a trial stops (T15)")
    objective: str = _field(
        "val_loss", "val_loss (lower wins) | val_accuracy (higher wins) | val_mae (regression)"
    )


@dataclass
class EnsembleConfig:
    members: int = _field(
        5, "models trained with seeds seed, seed+1, ... on one split; 3-5 give most of the gain"
    )
    from_search: str = _field(
        "",
        "a finished make tune's run.name: its ensemble.top_k best trials are the members, "
        "their saved weights reused (no retraining); empty: ensemble.members seeds",
    )
    top_k: int = _field(3, "with ensemble.from_search: how many of the best trials to average")


@dataclass
class DistillConfig:
    teacher: str = _field(
        "",
        "run.name (under run.dir) of a finished train or ensemble run whose softened "
        "probabilities the student learns (R6.2, T16); the student is the model.* config",
    )
    temperature: float = _field(
        4.0, "softens both distributions, so the teacher's small probabilities carry weight"
    )
    alpha: float = _field(
        0.9, "weight of the soft (teacher) term; 1 - alpha goes to cross-entropy on the labels"
    )
    alone: str = _field(
        "",
        "run.name of the same student config trained on the labels alone, to compare with; "
        "empty: distill trains it too, into <run.dir>/<run.name>/alone/",
    )


@dataclass
class PredictConfig:
    input: str = _field(
        "", "an image, a folder of images (searched recursively) or a CSV of rows or paths"
    )
    output: str = _field("", "the predictions CSV; empty: <run.dir>/<run.name>/predictions.csv")


@dataclass
class ExportConfig:
    onnx: bool = _field(False, "also write model.onnx, logits out (needs the onnx extra: tf2onnx)")
    litert: bool = _field(False, "also write model.tflite, logits out (TensorFlow's converter)")


@dataclass
class CompareConfig:
    runs: list[str] = _field(
        [], "run names under run.dir to compare; empty: every finished run there"
    )


@dataclass
class RunConfig:
    name: str = _field("default", "outputs go to <run.dir>/<run.name>; rerun a name to resume")
    dir: str = _field("runs", "parent folder of all runs")
    overwrite: bool = _field(False, "replace a finished run of the same name instead of refusing")
    extend: bool = _field(
        False, "continue a finished run up to train.epochs, optimizer state included (R6.3)"
    )


@dataclass
class Config:
    seed: int = _field(0, "seeds the split, the init, the shuffling and dropout (R2.1)")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.dir) / self.run.name


def iter_fields(obj, prefix: str = ""):
    """Yields (dotted key, value, dataclass field) for every leaf of a config."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, f


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def describe() -> str:
    """Every config key with its default and the reason for it, for --help."""
    lines = []
    for key, value, f in iter_fields(Config()):
        shown = "null" if value is None else yaml.safe_dump(value, default_flow_style=True).strip()
        shown = shown.removesuffix("\n...").strip()
        lines.append(f"  {key} = {shown}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


@functools.cache  # the classes never change; every key set asks, so a saved config is fast
def _leaf_types() -> dict[str, type]:
    hints = {}
    for key, _, f in iter_fields(Config()):
        owner = _owner_class(key)
        hints[key] = typing.get_type_hints(owner)[f.name]
    return hints


def _owner_class(key: str):
    cls = Config
    for part in key.split(".")[:-1]:
        cls = typing.get_type_hints(cls)[part]
    return cls


def _coerce(key: str, value, kind):
    """Converts a YAML or command-line value to the field's type, or says what was expected."""
    text = repr(value)
    if typing.get_origin(kind) is types.UnionType and type(None) not in typing.get_args(kind):
        # str | dict[str, float]: a mapping, or text of label:weight pairs, takes the dict arm
        plain, mapping = typing.get_args(kind)
        kind = mapping if isinstance(value, dict) or ":" in str(value) else plain
    if typing.get_origin(kind) is types.UnionType:  # X | None: null clears it
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "")):
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # YAML reads 1e-3 (no dot) as a string
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, bool):  # YAML reads true/false/on/off as booleans
            return str(value).lower()
        if isinstance(value, str | int | float):
            return str(value)
    elif kind == list[str]:
        if key == "data.augment" and isinstance(value, bool):  # the yes/no switch it once was
            if value:
                raise UsageError(
                    "config key data.augment is a list of names now: data.augment=true meant "
                    "[translate, zoom] for images and [noise] for tables"
                )
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
    elif kind == dict[str, float]:
        if isinstance(value, dict) and all(v is None for v in value.values()):
            value = ",".join(map(str, value))  # YAML reads {cat:3,dog:1} as keys "cat:3", "dog:1"
        if isinstance(value, str):
            pairs = [pair.rpartition(":") for pair in value.strip("{} ").split(",") if pair.strip()]
            value = {label.strip(): weight.strip() for label, _, weight in pairs}
        if isinstance(value, dict):
            try:  # YAML reads labels such as 1 or yes as numbers or booleans: labels are text
                return {
                    (str(k).lower() if isinstance(k, bool) else str(k)): _coerce(key, v, float)
                    for k, v in value.items()
                }
            except UsageError:
                pass
        raise UsageError(f"config key {key} expects a mapping of label: number, got {text}")
    elif kind == dict[str, str]:
        if value is None or isinstance(value, str):  # also column:function,column:function
            value = dict.fromkeys(part for part in (value or "").strip("{} ").split(",") if part)
        if isinstance(value, dict):
            pairs = {}
            for column, function in value.items():
                if function is None:  # YAML reads {income:log1p} (no space) as one key
                    column, _, function = str(column).rpartition(":")
                pairs[str(column).strip()] = str(function).strip()
            return pairs
    elif kind == list[int]:
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if isinstance(value, list | tuple):
            try:
                return [_coerce(key, v, int) for v in value]
            except UsageError:
                pass
    name = getattr(kind, "__name__", str(kind))
    raise UsageError(f"config key {key} expects {name}, got {text}")


def _set(config: Config, key: str, value) -> None:
    types = _leaf_types()
    if key not in types:
        # Abbreviations first (optimizer.lr -> optimizer.learning_rate), then spelling.
        prefix, _, leaf = key.rpartition(".")
        close = [
            k
            for k in types
            if k.rpartition(".")[0] == prefix
            and "".join(w[0] for w in k.rpartition(".")[2].split("_")) == leaf
        ]
        close = close or difflib.get_close_matches(key, list(types), n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (see --help for every key)"
        raise UsageError(f"unknown config key {key}{hint}")
    obj = config
    *parents, leaf = key.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, leaf, _coerce(key, value, types[key]))


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    leaves = _leaf_types()  # a key whose value is a mapping (train.class_weight) stays whole
    for key, value in mapping.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in leaves:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"config file {path}{where} is not valid YAML") from None
    if not isinstance(content, dict):
        raise UsageError(f"config file {path} must hold a mapping of keys to values")
    return _flatten(content)


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise UsageError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip(), value


def build_config(files: list[str] | tuple = (), overrides: list[str] | tuple = ()) -> Config:
    """Defaults, then each YAML file in order, then key=value overrides; validated."""
    config = Config()
    for path in files:
        for key, value in load_yaml(path).items():
            _set(config, key, value)
    for text in overrides:
        _set(config, *parse_override(text))
    validate(config)
    return config


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _one_of(key: str, value: str, choices) -> None:
    _check(value in choices, f"{key} must be one of {', '.join(choices)}; got {value!r}")


def validate(config: Config) -> None:
    """Rejects impossible values with a message naming the key."""
    d, m, o, t, r = config.data, config.model, config.optimizer, config.train, config.run
    _check(config.seed >= 0, f"seed must be >= 0; got {config.seed}")
    _check(bool(d.source.strip()), "data.source is empty; name a dataset, a folder or a CSV")
    _one_of("data.task", d.task, ("auto", "classification", "regression"))
    _one_of("data.missing", d.missing, ("error", "mean"))
    for key, fraction in (
        ("data.val_fraction", d.val_fraction),
        ("data.test_fraction", d.test_fraction),
    ):
        _check(0 < fraction < 0.5, f"{key} must be between 0 and 0.5; got {fraction}")
    _check(
        len(d.image_size) == 2 and min(d.image_size) >= 4,
        f"data.image_size must be two sizes >= 4 (height, width); got {d.image_size}",
    )
    _check(bool(d.cache.strip()), "data.cache is empty; use none, memory or a folder")
    _check(d.max_examples >= 0, f"data.max_examples must be >= 0; got {d.max_examples}")
    for column, function in d.transform.items():
        _check(bool(column), "data.transform takes {column: function} pairs, e.g. {income: log1p}")
        _one_of(f"data.transform of {column!r}", function, TRANSFORMS)
    for name in d.augment:
        _one_of("data.augment", name, (*IMAGE_AUGMENTATIONS, *TABLE_AUGMENTATIONS))
    _check(len(set(d.augment)) == len(d.augment), f"data.augment repeats a name: {d.augment}")
    _check(
        0 < d.augment_strength <= 3,
        f"data.augment_strength must be in (0, 3]; got {d.augment_strength}",
    )
    _check(
        m.name in BUILTIN_MODELS or ":" in m.name,
        f"model.name must be one of {', '.join(BUILTIN_MODELS)} or module:function; got {m.name!r}",
    )
    for key, value in (
        ("model.width", m.width),
        ("model.depth", m.depth),
        ("model.filters", m.filters),
    ):
        _check(value >= 1, f"{key} must be >= 1; got {value}")
    _check(m.head_epochs >= 0, f"model.head_epochs must be >= 0; got {m.head_epochs}")
    _check(
        m.fine_tune_layers >= 0, f"model.fine_tune_layers must be >= 0; got {m.fine_tune_layers}"
    )
    _check(
        m.fine_tune_learning_rate > 0,
        f"model.fine_tune_learning_rate must be > 0; got {m.fine_tune_learning_rate}",
    )
    for key, rate in (
        ("model.dropout_rate", m.dropout_rate),
        ("model.input_dropout", m.input_dropout),
        ("model.spatial_dropout", m.spatial_dropout),
    ):
        _check(0 <= rate < 1, f"{key} must be in [0, 1); got {rate}")
    _check(o.learning_rate > 0, f"optimizer.learning_rate must be > 0; got {o.learning_rate}")
    _check(o.weight_decay >= 0, f"optimizer.weight_decay must be >= 0; got {o.weight_decay}")
    _one_of("optimizer.name", o.name, OPTIMIZERS)
    _check(0 <= o.momentum < 1, f"optimizer.momentum must be in [0, 1); got {o.momentum}")
    _check(o.clipnorm >= 0, f"optimizer.clipnorm must be >= 0 (0 = off); got {o.clipnorm}")
    _one_of("optimizer.schedule", o.schedule, ("constant", "warmup_cosine"))
    _check(o.warmup_epochs >= 0, f"optimizer.warmup_epochs must be >= 0; got {o.warmup_epochs}")
    _check(t.epochs >= 1, f"train.epochs must be >= 1; got {t.epochs}")
    _check(t.batch_size >= 1, f"train.batch_size must be >= 1; got {t.batch_size}")
    _check(t.patience >= 1, f"train.patience must be >= 1; got {t.patience}")
    _check(t.prediction_examples >= 1, "train.prediction_examples must be >= 1")
    _one_of("train.strategy", t.strategy, STRATEGIES)
    _one_of("train.precision", t.precision, PRECISIONS)
    _one_of("train.jit_compile", t.jit_compile, ("auto", "true", "false"))
    _check(t.steps_per_execution >= 1, "train.steps_per_execution must be >= 1")
    _check(t.log_every_steps >= 0, f"train.log_every_steps must be >= 0; got {t.log_every_steps}")
    _check(
        not (t.histograms and t.strategy == "multi_worker"),
        "train.histograms takes gradients with TensorFlow; multi_worker runs on JAX",
    )
    _check(0 < t.fraction <= 1, f"train.fraction must be in (0, 1]; got {t.fraction}")
    _one_of("train.loss", t.loss, ("auto", *CLASSIFICATION_LOSSES, *REGRESSION_LOSSES))
    _check(
        0 <= t.label_smoothing < 1,
        f"train.label_smoothing must be in [0, 1); got {t.label_smoothing}",
    )
    if isinstance(t.class_weight, dict):
        for label, weight in t.class_weight.items():
            _check(
                0 < weight < float("inf"),
                f"train.class_weight: the weight of {label!r} must be > 0; got {weight}",
            )
    else:
        _one_of("train.class_weight", t.class_weight, ("none", "balanced"))
    _one_of("data.sampling", d.sampling, ("none", "oversample"))
    _check(
        d.sampling == "none" or d.task != "regression",
        "data.sampling=oversample balances classes; data.task=regression has none",
    )
    _check(
        d.sampling == "none" or t.class_weight == "none",
        "data.sampling=oversample and train.class_weight both correct the imbalance; use one",
    )
    for key, value in (
        ("tune.max_trials", config.tune.max_trials),
        ("tune.epochs", config.tune.epochs),
        ("tune.patience", config.tune.patience),
    ):
        _check(value >= 1, f"{key} must be >= 1; got {value}")
    _one_of("tune.objective", config.tune.objective, ("val_loss", "val_accuracy", "val_mae"))
    _check(d.split_seed is None or d.split_seed >= 0, "data.split_seed must be >= 0 or null")
    _check(config.ensemble.members >= 2, "ensemble.members must be >= 2")
    _check(config.ensemble.top_k >= 2, f"ensemble.top_k must be >= 2; got {config.ensemble.top_k}")
    _check(
        config.distill.temperature > 0,
        f"distill.temperature must be > 0; got {config.distill.temperature}",
    )
    _check(
        0 <= config.distill.alpha <= 1,
        f"distill.alpha must be in [0, 1]; got {config.distill.alpha}",
    )
    _check(config.check.sample >= 10, f"check.sample must be >= 10; got {config.check.sample}")
    _check(
        bool(r.name) and "/" not in r.name and r.name not in (".", ".."),
        f"run.name must be a plain folder name; got {r.name!r}",
    )
    if o.schedule == "warmup_cosine":
        _check(
            o.warmup_epochs < t.epochs,
            f"optimizer.warmup_epochs ({o.warmup_epochs}) must be < train.epochs ({t.epochs})",
        )


# What may change between the parts of one experiment; any other change is a different
# experiment, so another run.name. A killed run resumed: how long and where it runs. A
# finished run continued (run.extend) may also lower its rate: "constant, then a short drop
# at the end" (R3.4, U8). A search resumed: how many trials, how long each. A finished
# ensemble member or learning-curve point reused: as resumed, and an ensemble may grow.
RESUMABLE = (
    "train.epochs",
    "train.patience",
    "train.strategy",
    "train.jit_compile",
    "train.steps_per_execution",
    "train.histograms",
    "train.log_every_steps",
    "check.before_train",
    "run.overwrite",
    "run.extend",
)
MAY_CHANGE = {
    "resume": RESUMABLE,
    "continue": (*RESUMABLE, "optimizer.learning_rate"),
    "search": ("tune.max_trials", "tune.epochs", "run.overwrite"),
    "reuse": (*RESUMABLE, "ensemble.members"),
}


def changed_keys(saved: Path, config: Config, allowed: tuple[str, ...]) -> list[str]:
    """Keys whose value differs from the config saved at `saved`, except the allowed ones."""
    before = {key: value for key, value, _ in iter_fields(build_config([saved]))}
    return [
        key
        for key, value, _ in iter_fields(config)
        if value != before.get(key) and key not in allowed
    ]


def refuse_changes(saved: Path, config: Config, part: str, advice: str) -> None:
    """Raises a one-line UsageError when `config` differs from the one saved at `saved` in a
    key that MAY_CHANGE[part] does not allow: a resumed, continued or reused run must be the
    same experiment. `advice` ends the line (what to do instead)."""
    if not saved.is_file():
        return
    changed = changed_keys(saved, config, MAY_CHANGE[part])
    if changed:
        raise UsageError(
            f"{saved.parent} was started with a different config ({', '.join(changed)}); {advice}"
        )


def save(config: Config, path: Path) -> None:
    runs.write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
