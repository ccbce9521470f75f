"""predict and export on a finished run: the same numbers as evaluate, from raw inputs alone."""

import copy
import csv
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

# Image work the other bakes need not repeat: it trains a run and starts processes.
pytestmark = pytest.mark.slow


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def image_run(project, tmp_path_factory):
    """A short convnet run on a folder of 60 small images of mixed sizes (PNG and JPEG)."""
    root = tmp_path_factory.mktemp("image_run")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "owl"]):
        (root / "pics" / name).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 60, size=(18 + i % 4, 14 + i % 3, 3), dtype=np.uint8)
            pixels[c * 6 : c * 6 + 6] = 250
            suffix = "jpg" if i % 2 else "png"
            Image.fromarray(pixels).save(root / "pics" / name / f"{i}.{suffix}")
    config = project.config.build_config(
        [],
        [
            f"data.source={root / 'pics'}",
            "data.image_size=[16,16]",
            "model.name=convnet",
            "model.filters=8",
            "model.width=16",
            "train.epochs=3",
            "check.before_train=false",
            f"run.dir={root / 'runs'}",
        ],
    )
    assert project.train.train(config, "pytest") == 0
    return config


def test_predict_on_the_test_files_gives_the_runs_test_predictions(project, image_run, tmp_path):
    expected = {row["id"]: row for row in _rows(image_run.run_dir / "test_predictions.csv")}
    listing = tmp_path / "files.csv"
    listing.write_text("path\n" + "\n".join(expected) + "\n")  # absolute paths
    output = tmp_path / "out" / "predictions.csv"
    config = project.config.build_config(
        [image_run.run_dir / "config.yaml"],
        [f"predict.input={listing}", f"predict.output={output}"],
    )
    assert project.predict.predict(config) == 0
    rows = _rows(output)
    assert list(rows[0]) == ["id", "prediction"] + [
        f"probability_{c}" for c in ("cat", "dog", "owl")
    ]
    assert [row["id"] for row in rows] == list(expected)
    for row in rows:
        assert row["prediction"] == expected[row["id"]]["predicted"]
        probabilities = [float(row[f"probability_{c}"]) for c in ("cat", "dog", "owl")]
        assert max(probabilities) == pytest.approx(
            float(expected[row["id"]]["probability"]), abs=1e-4
        )
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_predict_takes_a_folder_or_one_image_of_any_size(project, image_run, tmp_path):
    source = sorted((image_run.run_dir.parent.parent / "pics" / "owl").glob("*.png"))[0]
    big = tmp_path / "new" / "deep" / "big_owl.png"
    big.parent.mkdir(parents=True)
    Image.open(source).resize((160, 130)).save(big)  # 10x the training size
    config = project.config.build_config(
        [image_run.run_dir / "config.yaml"], [f"predict.input={tmp_path / 'new'}"]
    )
    assert project.predict.predict(config) == 0
    rows = _rows(image_run.run_dir / "predictions.csv")
    assert [row["id"] for row in rows] == [str(big)]
    assert rows[0]["prediction"] in ("cat", "dog", "owl")


def test_bad_predict_inputs_say_one_line_and_write_nothing(project, image_run, capsys, tmp_path):
    # In-process through cli.main, the function the process runs (test_train runs one).
    run = ["predict", "--config", str(image_run.run_dir / "config.yaml")]
    output = tmp_path / "never.csv"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    for extra, message in (
        ([], "set predict.input=PATH"),
        ([f"predict.input={tmp_path / 'nowhere'}"], "does not exist"),
        ([f"predict.input={broken}"], f"cannot decode image {broken}"),
        ([f"predict.input={tmp_path / 'x.txt'}"], "does not exist"),
    ):
        assert project.cli.main([*run, *extra, f"predict.output={output}"]) == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err
        assert not output.exists()


def test_the_saved_model_serves_raw_pixels_like_model_keras(project, image_run, tmp_path, capsys):
    """The SavedModel, loaded by a process that imports TensorFlow alone, gives model.keras's
    probabilities on the whole test set (uint8 pixels in, probabilities out)."""
    import keras

    config = copy.deepcopy(image_run)
    config.export.litert = config.export.onnx = True
    assert project.predict.export(config) == 0
    assert (image_run.run_dir / "export" / "model.tflite").stat().st_size > 0
    if importlib.util.find_spec("tf2onnx") is None:  # not in the dev extra: said, not raised
        assert "export.onnx: skipped, tf2onnx is not installed" in capsys.readouterr().out
    data = project.data.load(project.config.build_config([image_run.run_dir / "config.yaml"]))
    pixels = np.concatenate(list(project.images.decoded_chunks(data.test.x)))
    np.save(tmp_path / "pixels.npy", pixels)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        served = tf.saved_model.load({str(image_run.run_dir / "export")!r})
        pixels = np.load({str(tmp_path / "pixels.npy")!r})
        np.save({str(tmp_path / "served.npy")!r}, served.serve(tf.constant(pixels)).numpy())
        print(sorted(k for k in sys.modules if k.split(".")[0] == "{project.name}"))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"  # no custom layer of the package
    served = np.load(tmp_path / "served.npy")
    model = keras.saving.load_model(image_run.run_dir / "model.keras")
    expected = project.models.predict_outputs(model, data, pixels.astype(np.float32))
    assert served.shape == expected.shape == (len(data.test.y), 3)
    assert np.abs(served - expected).max() <= 1e-5


def test_a_table_run_predicts_on_rows_with_categories_and_gaps(project, make_config, tmp_path):
    lines = ["size,color,kind"]
    rng = np.random.default_rng(0)
    for i in range(90):
        color = ["red", "green", "blue"][i % 3]
        lines.append(f"{rng.normal():.3f},{color},{'apple' if color == 'red' else 'pear'}")
    source = tmp_path / "fruit.csv"
    source.write_text("\n".join(lines) + "\n")
    config = make_config(
        f"data.source={source}",
        "data.label_column=kind",
        "model.name=mlp",
        "train.epochs=40",
        "optimizer.learning_rate=0.01",
        "check.before_train=false",
    )
    assert project.train.train(config, "pytest") == 0
    description = json.loads((config.run_dir / "data.json").read_text())
    assert description["vocabularies"] == {"color": ["blue", "green", "red"]}
    new = tmp_path / "new.csv"
    new.write_text("color,size\nred,0.1\ngreen,\npurple,2\n")  # any column order, a gap, unseen
    config.predict.input = str(new)
    assert project.predict.predict(config) == 0
    rows = _rows(config.run_dir / "predictions.csv")
    assert [row["id"] for row in rows] == ["2", "3", "4"]
    assert rows[0]["prediction"] == "apple" and rows[1]["prediction"] == "pear"

    # The SavedModel takes the same rows as CSV cells (strings) and encodes them itself.
    import tensorflow as tf

    assert project.predict.export(config) == 0
    served = tf.saved_model.load(str(config.run_dir / "export"))
    cells = tf.constant([["0.1", "red"], ["", "green"], [" 2 ", "purple"]])  # size, color
    probabilities = served.serve(cells).numpy()
    expected = [[float(row[f"probability_{name}"]) for name in ("apple", "pear")] for row in rows]
    assert np.abs(probabilities - np.array(expected)).max() <= 1e-5
