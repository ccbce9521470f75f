"""Pictures are tested by what they show: curves on the axes, captions drawn to their end."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

# history.csv as train writes it: row 0, before any step, has validation values only.
HISTORY = """epoch,val_loss,val_{metric},loss,{metric},learning_rate
0,2.30,0.10,,,
1,1.50,0.60,1.90,0.40,0.0003
2,1.00,0.80,1.20,0.70,0.0003
"""


@pytest.mark.parametrize("metric", ["accuracy", "mae"])
def test_history_draws_loss_and_metric_curves_though_row_zero_lacks_the_metric(
    project, tmp_path, metric
):
    path = tmp_path / "history.csv"
    path.write_text(HISTORY.format(metric=metric))
    figure = project.pictures.draw_history(project.callbacks.read_history(path), "run")
    try:
        curves = {
            axis.get_title(): sorted(line.get_label() for line in axis.get_lines())
            for axis in figure.axes
        }
        points = [len(line.get_xdata()) for axis in figure.axes for line in axis.get_lines()]
    finally:
        plt.close(figure)
    assert curves == {"loss": ["loss", "val_loss"], metric: [metric, f"val_{metric}"]}
    assert points == [2, 3, 2, 3]  # training curves start at epoch 1, validation at 0


def _grid(project, captions):
    images = np.full((len(captions), 8, 8, 1), 128, np.uint8)
    return project.pictures.image_grid_array(images, captions, "worst-predicted test examples")


@pytest.mark.parametrize(
    ("caption", "other_prediction"),
    [
        ("1628\ntrue 4 pred 8", "1628\ntrue 4 pred 3"),  # digits, as evaluate captions them
        (
            "golden_0001.jpg\ntrue golden_retriever pred labrador_retriever",
            "golden_0001.jpg\ntrue golden_retriever pred labrador_retrievez",
        ),
    ],
)
def test_a_caption_is_drawn_to_its_last_character(project, caption, other_prediction):
    # The predicted label ends the caption: if it were cut off, or drawn past the
    # picture's edge, the two pictures would be the same.
    first = _grid(project, [caption, "77\ntrue 2 pred 7"])
    second = _grid(project, [other_prediction, "77\ntrue 2 pred 7"])
    assert first.shape == second.shape
    changed_columns = np.flatnonzero((first != second).any(axis=(0, 2)))
    assert changed_columns.size > 0
    assert changed_columns.max() < first.shape[1] - 1  # inside the picture, not at its edge


def test_reliability_diagram_draws_each_filled_bin_under_the_diagonal(project):
    table = {
        "bins": 15,
        "count": [0] * 9 + [10, 0, 0, 0, 20, 70],
        "accuracy": [None] * 9 + [0.5, None, None, None, 0.6, 0.8],
        "confidence": [None] * 9 + [0.63, None, None, None, 0.9, 0.98],
    }
    figure = project.pictures.draw_calibration(table, "test set")
    try:
        (axis,) = figure.axes
        bars = [(round(p.get_x() * 15), p.get_height()) for p in axis.patches]
        lines = {line.get_label(): line for line in axis.get_lines()}
        diagonal = lines["perfectly calibrated"]
        dots = lines["mean confidence of the bin"]
        limits = axis.get_xlim(), axis.get_ylim()
    finally:
        plt.close(figure)
    assert bars == [(9, 0.5), (13, 0.6), (14, 0.8)]  # one bar per filled bin, at its left edge
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert list(dots.get_ydata()) == [0.63, 0.9, 0.98]
    assert limits == ((0, 1), (0, 1))
