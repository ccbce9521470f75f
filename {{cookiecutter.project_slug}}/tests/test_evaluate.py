"""The test metric's uncertainty and the model's calibration, on made-up predictions whose
answers are known."""

import types

import numpy as np
import pytest


def _classifier_outputs(correct: np.ndarray, confidence: float, classes: int = 10):
    """Probabilities whose top class is the label where `correct`, another class elsewhere."""
    labels = np.arange(len(correct)) % classes
    predicted = np.where(correct, labels, (labels + 1) % classes)
    rest = (1.0 - confidence) / (classes - 1)
    outputs = np.full((len(correct), classes), rest)
    outputs[np.arange(len(correct)), predicted] = confidence
    return labels, outputs


# Digits' 270 test examples (resampled), and a test set big enough for the sums' normal limit.
@pytest.mark.parametrize("count", [270, 20_000])
def test_bootstrap_interval_brackets_accuracy_with_the_binomial_width_and_is_seeded(project, count):
    correct = np.arange(count) < round(0.926 * count)
    labels, outputs = _classifier_outputs(correct, 0.9)
    interval = project.evaluate.bootstrap_interval("classification", labels, outputs)
    accuracy = correct.mean()
    half_width = 1.96 * np.sqrt(accuracy * (1 - accuracy) / count)  # the normal approximation
    assert interval["low"] < accuracy < interval["high"]
    assert interval["high"] - interval["low"] == pytest.approx(2 * half_width, rel=0.2)
    assert (interval["level"], interval["resamples"], interval["seed"]) == (0.95, 1000, 0)
    again = project.evaluate.bootstrap_interval("classification", labels, outputs)
    other = project.evaluate.bootstrap_interval("classification", labels, outputs, seed=1)
    assert again == interval and other != interval


@pytest.mark.parametrize("count", [89, 20_000])
def test_bootstrap_interval_of_r2_holds_the_test_r2_and_narrows_with_more_examples(project, count):
    rng = np.random.default_rng(0)
    targets = rng.normal(150, 75, size=count)
    predictions = targets + rng.normal(0, 50, size=count)
    interval = project.evaluate.bootstrap_interval("regression", targets, predictions)
    r2 = 1 - np.sum((targets - predictions) ** 2) / np.sum((targets - targets.mean()) ** 2)
    assert interval["low"] < r2 < interval["high"]
    width = interval["high"] - interval["low"]
    assert 0.05 < width < 0.6 if count < 100 else 0.005 < width < 0.05


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_the_gap_otherwise(
    project,
):
    calibrated = project.evaluate.calibration(*_classifier_outputs(np.arange(100) % 10 < 7, 0.7))
    assert calibrated["ece"] == pytest.approx(0.0, abs=1e-9)
    overconfident = project.evaluate.calibration(
        *_classifier_outputs(np.arange(100) % 2 == 0, 0.99)
    )
    assert overconfident["ece"] == pytest.approx(0.49)
    assert overconfident["bins"] == 15 and sum(overconfident["count"]) == 100
    assert overconfident["count"][14] == 100  # 0.99 falls in the last of 15 bins
    assert overconfident["accuracy"][14] == pytest.approx(0.5)
    assert overconfident["accuracy"][0] is None  # empty bins are left blank, not zero


def test_a_rare_positive_class_gets_its_threshold_from_validation(project):
    """Binary tasks (T2, T18): the model ranks the rare positives first but never gives them
    0.5, so argmax misses all of them; the F1-best threshold on validation finds them, and
    score reports macro F1 and PR-AUC beside accuracy."""
    rng = np.random.default_rng(0)

    def split(count):
        y = (rng.random(count) < 0.1).astype(int)
        positive = np.where(y == 1, rng.uniform(0.25, 0.4, count), rng.uniform(0.0, 0.2, count))
        return y, np.stack([1 - positive, positive], axis=1)

    (val_y, val_out), (test_y, test_out) = split(400), split(400)
    data = types.SimpleNamespace(
        task="classification",
        num_outputs=2,
        class_names=["common", "rare"],
        val=types.SimpleNamespace(y=val_y),
        test=types.SimpleNamespace(y=test_y),
    )
    chosen = project.evaluate.decision_threshold(data, val_out, test_out)
    assert chosen["positive_class"] == "rare" and 0.25 <= chosen["threshold"] <= 0.4
    assert chosen["test_f1"] == pytest.approx(1.0) and chosen["test_f1_at_0.5"] == 0.0
    scores = project.evaluate.score(data, test_y, test_out)
    assert scores["pr_auc"] == pytest.approx(1.0) and scores["macro_f1"] < 0.5
