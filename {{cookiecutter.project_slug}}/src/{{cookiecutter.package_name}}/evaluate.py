"""Evaluation on the whole test set, always next to two dumb baselines (R2.3, R2.6, R1.6).

Numbers are computed once over every test example (never averaged over batches):
the model, a linear model (logistic / ridge regression) and a majority-class /
mean predictor, the two baselines fitted in the same run on the same split.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import keras
import numpy as np
from sklearn import dummy, linear_model, metrics
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import OneHotEncoder

from . import config as config_lib
from . import pictures, runs
from .config import Config
from .data import Data, ImageFiles, Split, load, scale_targets
from .environment import write_environment
from .errors import UsageError
from .images import broken_file_message, decoded_chunks
from .models import predict_outputs
from .pipeline import make_dataset

WORST_EXAMPLES = 16
# The linear baseline is a baseline, not a second model to wait for: at most this many
# training (and validation) examples, images averaged down to at most this many pixels a side.
BASELINE_EXAMPLES = 5000
BASELINE_SIDE = 8
# Regularization strengths tried from the strongest, the best chosen on the validation split;
# the first that does worse than the one before ends the search, since weak regularization
# on correlated pixels is both where the fits are slow and where they overfit. C of logistic
# regression (smaller = stronger; near 0 it predicts the class priors), alpha of ridge.
LOGISTIC_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
RIDGE_ALPHA = (1000.0, 100.0, 10.0, 1.0, 0.1)
BASELINE_ITERATIONS = 500
# The test metric's uncertainty: a 95% percentile bootstrap over the test examples, seeded so
# the same predictions give the same interval (digits' 270 examples move accuracy 0.37% each).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95
EXACT_BOOTSTRAP_EXAMPLES = 5_000  # above: the resampled sums from their normal limit
CALIBRATION_BINS = 15  # equal-width bins of the top class's probability (Guo et al. 2017)


def predict_split(model, data: Data, split: Split, batch_size: int = 256) -> np.ndarray:
    """The saved (raw-input) model's outputs on every example of a split, streamed."""
    import tensorflow as tf

    dataset = make_dataset(data, split, batch_size, shuffle=False, raw=True)
    try:
        return predict_outputs(model, data, dataset)
    except tf.errors.InvalidArgumentError:
        if isinstance(split.x, ImageFiles):
            raise UsageError(broken_file_message(split.x.paths)) from None
        raise


def shrink(images: np.ndarray, side: int = BASELINE_SIDE) -> np.ndarray:
    """Images averaged over blocks down to at most `side` pixels a side (area downsampling)."""
    n, height, width, channels = images.shape
    fy, fx = math.ceil(height / side), math.ceil(width / side)
    h, w = height // fy * fy, width // fx * fx
    blocks = images[:, :h, :w].reshape(n, h // fy, fy, w // fx, fx, channels)
    return blocks.mean(axis=(2, 4))


def baseline_features(data: Data, x: np.ndarray, encoder: OneHotEncoder | None) -> np.ndarray:
    """Normalized, flattened inputs (images shrunk); categorical columns one-hot encoded."""
    normalized = data.normalize(x)
    if data.kind == "image":
        normalized = shrink(normalized)
    # float64: scikit-learn's probabilities are then exact enough for its own log_loss check.
    flat = normalized.reshape(len(x), -1).astype(np.float64)
    if not data.categorical:
        return flat
    columns = list(data.categorical)
    numeric = np.delete(flat, columns, axis=1)
    return np.hstack([numeric, encoder.transform(x[:, columns]).toarray()])


def split_features(data: Data, split: Split, encoder, index=None) -> np.ndarray:
    """baseline_features of a split (or its examples at `index`), image files chunk by chunk."""
    index = np.arange(len(split.y)) if index is None else index
    if isinstance(split.x, ImageFiles):
        chunks = decoded_chunks(split.x.subset(index))
        return np.concatenate(
            [baseline_features(data, chunk.astype(np.float32), encoder) for chunk in chunks]
        )
    return baseline_features(data, split.x[index], encoder)


def _sample(count: int, rng) -> np.ndarray:
    if count <= BASELINE_EXAMPLES:
        return np.arange(count)
    return np.sort(rng.choice(count, BASELINE_EXAMPLES, replace=False))


def fit_baselines(data: Data) -> tuple[dict, OneHotEncoder | None]:
    """The linear and the input-blind baselines, fitted on (a seeded sample of) the training
    split; the linear one's regularization strength is the one with the lowest validation loss,
    so it stays a fair baseline on wide inputs (raw pixels overfit unregularized). Returns
    the fitted baselines by name and the categorical columns' encoder they share."""
    rng = np.random.default_rng(0)
    train_index, val_index = _sample(len(data.train.y), rng), _sample(len(data.val.y), rng)
    y, y_val = data.train.y[train_index], data.val.y[val_index]
    encoder = None
    if data.categorical:
        columns = list(data.categorical)
        encoder = OneHotEncoder(handle_unknown="ignore").fit(data.train.x[train_index][:, columns])
    features = split_features(data, data.train, encoder, train_index)
    val_features = split_features(data, data.val, encoder, val_index)
    if data.task == "classification":
        candidates = [
            linear_model.LogisticRegression(C=c, max_iter=BASELINE_ITERATIONS) for c in LOGISTIC_C
        ]
        blind = dummy.DummyClassifier(strategy="prior")
    else:
        candidates = [linear_model.Ridge(alpha=a) for a in RIDGE_ALPHA]
        blind = dummy.DummyRegressor(strategy="mean")
    best, best_loss = None, math.inf
    for candidate in candidates:
        with warnings.catch_warnings():  # a baseline within its iteration budget is still one
            warnings.simplefilter("ignore", ConvergenceWarning)
            candidate.fit(features, y)
        loss = score(data, y_val, _outputs(data, candidate, val_features))["loss"]
        if loss >= best_loss:
            break
        best, best_loss = candidate, loss
    blind.fit(features, y)
    name = "majority_baseline" if data.task == "classification" else "mean_baseline"
    return {"linear_baseline": best, name: blind}, encoder


def _outputs(data: Data, model, features: np.ndarray) -> np.ndarray:
    if data.task == "classification":
        # A class missing from the training split gets probability 0 -> align to all classes.
        probabilities = np.zeros((len(features), data.num_outputs))
        probabilities[:, model.classes_] = model.predict_proba(features)
        return probabilities
    return model.predict(features)


def baseline_outputs(data: Data, baselines: dict, encoder, split: Split) -> dict:
    """Each baseline's outputs on a split, BASELINE_EXAMPLES at a time: a chunk's features
    (decoded images; float64 with one-hot codes, wider than the table) made once for all
    baselines, and never the whole split's at once."""
    outputs = {name: [] for name in baselines}
    for start in range(0, len(split.y), BASELINE_EXAMPLES):
        index = np.arange(start, min(start + BASELINE_EXAMPLES, len(split.y)))
        features = split_features(data, split, encoder, index)
        for name, model in baselines.items():
            outputs[name].append(_outputs(data, model, features))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def score(data: Data, labels: np.ndarray, outputs: np.ndarray) -> dict:
    """Loss and headline metrics over every example given (no batch averaging)."""
    if data.task == "classification":
        predicted = outputs.argmax(axis=1)
        result = {
            "loss": float(metrics.log_loss(labels, outputs, labels=range(data.num_outputs))),
            "accuracy": float(metrics.accuracy_score(labels, predicted)),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predicted)),
            "macro_f1": float(
                metrics.f1_score(
                    labels,
                    predicted,
                    labels=range(data.num_outputs),
                    average="macro",
                    zero_division=0,
                )
            ),
        }
        if data.num_outputs == 2:  # the positive class is the second name
            result["pr_auc"] = float(metrics.average_precision_score(labels, outputs[:, 1]))
        return result
    scaled = scale_targets(data, outputs)
    return {
        "loss": float(
            np.mean((scaled - scale_targets(data, labels)) ** 2)
        ),  # MSE in standard units
        "mae": float(metrics.mean_absolute_error(labels, outputs)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(labels, outputs))),
        "r2": float(metrics.r2_score(labels, outputs)),
    }


def _resampled_sums(terms: np.ndarray, resamples: int, rng) -> np.ndarray:
    """The column sums of `terms` (examples x columns) over each of `resamples` bootstrap
    resamples of its rows. Up to EXACT_BOOTSTRAP_EXAMPLES rows the resamples are drawn, in
    chunks of at most ~10M indices; above that each sum adds that many independent draws and
    is drawn from its normal limit (the same sums, without n draws per resample)."""
    count = len(terms)
    if count > EXACT_BOOTSTRAP_EXAMPLES:
        mean, covariance = terms.mean(axis=0), np.atleast_2d(np.cov(terms, rowvar=False))
        return rng.multivariate_normal(count * mean, count * covariance, size=resamples)
    chunk = max(1, 10_000_000 // count)
    sums = []
    for start in range(0, resamples, chunk):
        index = rng.integers(0, count, size=(min(chunk, resamples - start), count))
        sums.append(terms[index].sum(axis=1))
    return np.concatenate(sums)


def _resampled_metric(task: str, labels, outputs, resamples: int, rng) -> np.ndarray:
    """The test metric (accuracy; R^2 for regression) on each bootstrap resample."""
    count = len(labels)
    if task == "classification":
        correct = (outputs.argmax(axis=1) == labels).astype(np.float64)
        return _resampled_sums(correct[:, None], resamples, rng)[:, 0] / count
    y = np.asarray(labels, dtype=np.float64)
    squared_errors = (np.asarray(outputs, dtype=np.float64).reshape(count) - y) ** 2
    y = y - y.mean()  # R^2 ignores a shift, and the spread below then loses no digits
    terms = np.stack([squared_errors, y, y * y], axis=1)
    errors, total, total_of_squares = _resampled_sums(terms, resamples, rng).T
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample of one target value
        return 1.0 - errors / (total_of_squares - total**2 / count)


def bootstrap_interval(
    task: str,
    labels: np.ndarray,
    outputs: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """The 95% percentile bootstrap interval of the test metric: the test examples resampled
    with replacement `resamples` times (seeded), the metric on each resample."""
    rng = np.random.default_rng(seed)
    values = _resampled_metric(task, labels, outputs, resamples, rng)
    tail = 100 * (1 - BOOTSTRAP_LEVEL) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "level": BOOTSTRAP_LEVEL,
        "resamples": resamples,
        "seed": seed,
    }


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS):
    """Expected calibration error: the test examples binned by confidence (the top class's
    probability, `bins` equal-width bins), the gap between each bin's accuracy and its mean
    confidence, weighted by the bin's share of examples. Also each bin's count, accuracy and
    mean confidence (None when empty), which the reliability diagram draws."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.digitize(confidence, edges[1:-1], right=True)  # bin b holds (b/bins, (b+1)/bins]
    count = np.bincount(which, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
    filled = count > 0
    gaps = np.abs(accuracy[filled] - mean_confidence[filled])
    return {
        "ece": float((count[filled] / len(labels) * gaps).sum()),
        "bins": bins,
        "count": count.tolist(),
        "accuracy": [float(a) if n else None for a, n in zip(accuracy, count, strict=True)],
        "confidence": [
            float(c) if n else None for c, n in zip(mean_confidence, count, strict=True)
        ],
    }


def per_class(data: Data, labels: np.ndarray, predicted: np.ndarray) -> dict:
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=range(data.num_outputs), zero_division=0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "support": int(s)}
        for name, p, r, s in zip(data.class_names, precision, recall, support, strict=True)
    }


def example_losses(data: Data, labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    if data.task == "classification":
        return -np.log(np.clip(outputs[np.arange(len(labels)), labels], 1e-12, 1.0))
    return np.abs(outputs - labels)


def label_text(data: Data, values) -> list[str]:
    if data.task == "classification":
        return [data.class_names[int(v)] for v in values]
    return [f"{float(v):.4g}" for v in values]


def write_predictions(data: Data, outputs: np.ndarray, path: Path) -> None:
    """Every test example with its true and predicted label in the data's own terms."""
    predicted = outputs.argmax(axis=1) if data.task == "classification" else outputs
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["id", "true", "predicted"]
        header += ["probability"] if data.task == "classification" else []
        writer.writerow(header)
        true_text, predicted_text = label_text(data, data.test.y), label_text(data, predicted)
        for i, example in enumerate(data.test.ids):
            row = [example, true_text[i], predicted_text[i]]
            row += [f"{outputs[i].max():.4f}"] if data.task == "classification" else []
            writer.writerow(row)


def draw_worst(data: Data, outputs: np.ndarray, run_dir: Path) -> Path:
    """The test examples the model gets most wrong, with their labels (R1.6)."""
    losses = example_losses(data, data.test.y, outputs)
    worst = np.argsort(-losses)[:WORST_EXAMPLES]
    predicted = outputs.argmax(axis=1) if data.task == "classification" else outputs
    true_text, predicted_text = (
        label_text(data, data.test.y[worst]),
        label_text(data, predicted[worst]),
    )
    with (run_dir / "worst_examples.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "true", "predicted", "loss" if data.task == "classification" else "abs_error"]
        )
        for i, t, p in zip(worst, true_text, predicted_text, strict=True):
            writer.writerow([data.test.ids[i], t, p, f"{losses[i]:.4f}"])
    path = run_dir / "worst_examples.png"
    captions = [
        f"{data.test.ids[i][-14:]}\ntrue {t} pred {p}"
        for i, t, p in zip(worst, true_text, predicted_text, strict=True)
    ]
    if data.kind == "image":
        images = pictures.to_uint8(data.test.x[worst], data.value_range)
        grid = pictures.image_grid_array(images, captions, "worst-predicted test examples")
        pictures.save_array(grid, path)
        return path
    labels = [c.replace("\n", ": ") for c in captions]
    names = data.feature_names or [str(i) for i in range(data.test.x.shape[1])]
    return pictures.table_heatmap_figure(
        data.normalize(data.test.x[worst]), labels, names, path, "worst-predicted test examples"
    )


def evaluate_run(model, data: Data, run_dir: Path) -> dict:
    """Scores the saved model (raw inputs, models.with_preprocessing) and both baselines on the
    whole test set; writes metrics and pictures."""
    outputs = predict_split(model, data, data.test)
    results = {"model": score(data, data.test.y, outputs)}
    metric = "accuracy" if data.task == "classification" else "r2"
    interval = bootstrap_interval(data.task, data.test.y, outputs)
    results["model"][f"{metric}_interval"] = interval
    baselines, encoder = fit_baselines(data)
    for name, predicted in baseline_outputs(data, baselines, encoder, data.test).items():
        results[name] = score(data, data.test.y, predicted)

    report = {
        "task": data.task,
        "source": data.source,
        "test_examples": int(len(data.test.y)),
        **results,
    }
    if data.task == "classification":
        predicted = outputs.argmax(axis=1)
        report["per_class"] = per_class(data, data.test.y, predicted)
        if data.num_outputs == 2:
            val_outputs = predict_split(model, data, data.val)
            report["decision_threshold"] = decision_threshold(data, val_outputs, outputs)
        matrix = metrics.confusion_matrix(data.test.y, predicted, labels=range(data.num_outputs))
        report["confusion_matrix"] = matrix.tolist()
        report["calibration"] = calibration(data.test.y, outputs)
        report["model"]["ece"] = report["calibration"]["ece"]
        pictures.calibration_figure(
            report["calibration"],
            run_dir / "calibration.png",
            f"test set, expected calibration error {report['model']['ece']:.3f}",
        )
        pictures.confusion_matrix_figure(
            matrix,
            data.class_names,
            run_dir / "confusion_matrix.png",
            f"test set, accuracy {results['model']['accuracy']:.3f}",
        )
    else:
        pictures.predicted_vs_true_figure(
            data.test.y,
            outputs,
            run_dir / "pred_vs_true.png",
            f"test set, R^2 {results['model']['r2']:.3f}",
        )
    write_predictions(data, outputs, run_dir / "test_predictions.csv")
    draw_worst(data, outputs, run_dir)
    return report


def decision_threshold(data: Data, val_outputs: np.ndarray, outputs: np.ndarray) -> dict:
    """Binary tasks: the probability of the second class above which it is predicted, chosen
    to maximize F1 on the validation split (T2, T18: with rare positives 0.5 is rarely
    best), and the test F1 at it next to the test F1 at 0.5."""
    precision, recall, thresholds = metrics.precision_recall_curve(data.val.y, val_outputs[:, 1])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    threshold = float(thresholds[best]) if len(thresholds) else 0.5

    def test_f1(at: float) -> float:
        return float(metrics.f1_score(data.test.y, outputs[:, 1] >= at, zero_division=0))

    return {
        "positive_class": data.class_names[1],
        "threshold": threshold,
        "val_f1": float(f1[best]),
        "test_f1": test_f1(threshold),
        "test_f1_at_0.5": test_f1(0.5),
    }


def write_metrics(report: dict, run_dir: Path) -> Path:
    path = run_dir / "metrics.json"
    runs.write_json(path, report)
    return path


def headline(report: dict) -> str:
    """One line per model: the numbers a person compares first."""
    keys = ("loss", "accuracy") if report["task"] == "classification" else ("loss", "r2", "mae")
    names = [k for k in report if k == "model" or k.endswith("_baseline")]
    lines = []
    for name in names:
        line = f"  {name:<18}" + "  ".join(f"{k} {report[name][k]:.4f}" for k in keys)
        interval = report[name].get(f"{keys[1]}_interval")
        if interval:
            line += f" (95% interval {interval['low']:.4f}-{interval['high']:.4f})"
        if "ece" in report[name]:
            line += f"  ece {report[name]['ece']:.4f}"
        lines.append(line)
    return "\n".join(lines)


def load_trained(run_dir: Path) -> keras.Model:
    try:
        return keras.saving.load_model(run_dir / "model.keras")
    except Exception as err:  # a user's model: say why in one line instead of a traceback
        raise UsageError(
            f"cannot load {run_dir / 'model.keras'} ({err.__class__.__name__}: {err}); a custom "
            "layer needs @keras.saving.register_keras_serializable()"
        ) from None


def evaluate(config: Config) -> int:
    """Re-scores a finished run's model.keras with the run's own saved config."""
    run_dir = config.run_dir
    if not (run_dir / "model.keras").is_file():
        raise UsageError(f"{run_dir} has no model.keras; train first (make train) or set run.name")
    saved = config_lib.build_config([run_dir / "config.yaml"])
    data = load(saved)
    model = load_trained(run_dir)
    report = evaluate_run(model, data, run_dir)
    previous = run_dir / "metrics.json"
    if previous.is_file():  # keep what training recorded (epochs, time, loss at init)
        try:
            report = {**json.loads(previous.read_text()), **report}
        except ValueError:  # damaged (written by a version that wrote it in place)
            print(f"{previous} is damaged: rewriting it from this evaluation alone")
    write_metrics(report, run_dir)
    write_environment(run_dir, command="evaluate")  # beside the training's environment.json
    print(f"test set ({report['test_examples']} examples):\n{headline(report)}")
    return 0
