"""predict and export: a finished run's model.keras on new inputs, and as a SavedModel to serve.

Both need only the run folder: model.keras takes raw inputs (models.with_preprocessing)
and data.json, written by train, holds the class names, the target's units and, for
tables, the column vocabularies.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .config import Config
from .data import IMAGE_SUFFIXES, ImageFiles, read_csv
from .errors import UsageError
from .evaluate import load_trained
from .images import decoded_chunks
from .models import outputs_from_logits

BATCH = 256


def read_description(run_dir: Path) -> dict:
    path = run_dir / "data.json"
    if not (run_dir / "model.keras").is_file():
        raise UsageError(f"{run_dir} has no model.keras; train first (make train) or set run.name")
    if not path.is_file():
        raise UsageError(f"{run_dir} has no data.json (trained by an older version); retrain it")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- inputs


def image_paths(source: Path, info: dict) -> list[Path]:
    """An image, every image under a folder, or the files a CSV lists (relative to it)."""
    if source.is_dir():
        paths = sorted(
            p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not paths:
            raise UsageError(f"predict.input {source} holds no image files")
        return paths
    if source.suffix.lower() == ".csv":
        column = info.get("path_column") or "path"
        header, rows = read_csv(source)
        if column not in header:
            raise UsageError(f"CSV {source} has no column {column!r} of image paths")
        at = header.index(column)
        paths = [source.parent / row[at].strip() for row in rows]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UsageError(f"CSV {source} lists {len(missing)} missing files, first {missing[0]}")
        return paths
    if source.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(
            f"predict.input {source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), "
            "a folder or a .csv"
        )
    return [source]


def table_rows(source: Path, info: dict) -> tuple[list[str], np.ndarray]:
    """A CSV's rows encoded as the model takes them: numbers, category indices (0 = unseen),
    missing numbers filled with the training mean. Ids are the CSV's line numbers."""
    if source.suffix.lower() != ".csv" or not source.is_file():
        raise UsageError(f"predict.input {source} must be a .csv of rows for a table model")
    header, rows = read_csv(source)
    names = info["feature_names"]
    missing = [name for name in names if name not in header]
    if missing:
        raise UsageError(f"CSV {source} lacks the column {missing[0]!r} the model was trained on")
    x = np.zeros((len(rows), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        at, vocabulary = header.index(name), info["vocabularies"].get(name)
        lookup = {v: i + 1 for i, v in enumerate(vocabulary or [])}
        for i, row in enumerate(rows):
            cell = row[at].strip()
            if vocabulary is not None:
                x[i, j] = lookup.get(cell, 0)
            elif not cell:
                x[i, j] = info["fill"][j]
            else:
                try:
                    x[i, j] = float(cell)
                except ValueError:
                    raise UsageError(
                        f"CSV {source} line {i + 2} column {name!r}: {cell!r} is not a number"
                    ) from None
    return [str(n) for n in range(2, len(rows) + 2)], x


# ---------------------------------------------------------------- predict


def predict(config: Config) -> int:
    """`python -m <package> predict`: writes predict.output with one row per input."""
    run_dir = config.run_dir
    info = read_description(run_dir)
    if not config.predict.input:
        raise UsageError("set predict.input=PATH (an image, a folder of images or a CSV)")
    source = Path(config.predict.input).expanduser()
    if not source.exists():
        raise UsageError(f"predict.input {source} does not exist")
    output = Path(config.predict.output or run_dir / "predictions.csv")
    if info["kind"] == "image":
        paths = image_paths(source, info)
        ids = [str(p) for p in paths]
        height, width, channels = info["input_shape"]
        files = ImageFiles(np.array(ids), (height, width), channels)
        model = load_trained(run_dir)
        # Every file is decoded before anything is written: an unreadable one stops it here.
        logits = np.concatenate(
            [
                model.predict(chunk.astype(np.float32), batch_size=BATCH, verbose=0)
                for chunk in decoded_chunks(files)
            ]
        )
    else:
        ids, x = table_rows(source, info)
        logits = load_trained(run_dir).predict(x, batch_size=BATCH, verbose=0)
    outputs = outputs_from_logits(logits, info["task"], info["target_mean"], info["target_std"])
    write_predictions(ids, outputs, info, output)
    print(f"predictions for {len(ids)} inputs: {output}")
    return 0


def write_predictions(ids: list[str], outputs: np.ndarray, info: dict, path: Path) -> None:
    """id, prediction (a class name or a value in the target's units), then one probability
    column per class; written whole, then renamed into place."""
    names = info["class_names"]
    header = ["id", "prediction"] + [f"probability_{name}" for name in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for example, output in zip(ids, outputs, strict=True):
            if info["task"] == "classification":
                row = [example, names[int(np.argmax(output))], *(f"{p:.6f}" for p in output)]
            else:
                row = [example, f"{float(output):.6g}"]
            writer.writerow(row)
    os.replace(partial, path)


# ---------------------------------------------------------------- export


def export(config: Config) -> int:
    """`python -m <package> export`: runs/<name>/export/, a SavedModel whose `serve` takes raw
    inputs and returns probabilities (classification) or values in the target's units
    (regression). Images: uint8 [batch, height, width, channels] of any size. Tables: the
    CSV cells as strings [batch, columns], columns in data.json's feature_names order."""
    import keras
    import tensorflow as tf

    run_dir = config.run_dir
    info = read_description(run_dir)
    model = load_trained(run_dir)
    if info["kind"] == "image":
        spec = tf.TensorSpec((None, None, None, info["input_shape"][-1]), tf.uint8, name="pixels")
        encode, lookups = functools.partial(tf.cast, dtype=tf.float32), []
    else:
        spec = tf.TensorSpec((None, len(info["feature_names"])), tf.string, name="cells")
        encode, lookups = cells_encoder(info)
    classification = info["task"] == "classification"
    target_mean, target_std = info["target_mean"], info["target_std"]

    def serve(x):
        logits = model(encode(x), training=False)
        if classification:
            return tf.nn.softmax(tf.cast(logits, tf.float64))
        return logits[:, 0] * target_std + target_mean

    archive = keras.export.ExportArchive()
    for layer in [model, *lookups]:  # the lookups' tables go into the SavedModel too
        archive.track(layer)
    archive.add_endpoint("serve", serve, input_signature=[spec])
    folder = run_dir / "export"
    partial = run_dir / "export.partial"
    shutil.rmtree(partial, ignore_errors=True)
    archive.write_out(str(partial), verbose=False)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    print(f"SavedModel: {folder} (endpoint serve: {spec.dtype.name} {list(spec.shape)})")
    if info["kind"] == "tabular":
        print(f"  its columns, in order: {', '.join(info['feature_names'])}")
    _other_formats(config, model, folder)
    return 0


def cells_encoder(info: dict):
    """Raw CSV cells [batch, columns] of strings to what model.keras takes, as table_rows
    encodes them: numbers (an empty cell is the training mean), and category indices from
    a StringLookup of the training vocabulary (0 = unseen or empty). Returns the encoding
    function and the lookup layers, which the export archive tracks."""
    import keras
    import tensorflow as tf

    names, fill = info["feature_names"], info["fill"]
    lookups = {
        j: keras.layers.StringLookup(vocabulary=info["vocabularies"][name], num_oov_indices=1)
        for j, name in enumerate(names)
        if name in info["vocabularies"]
    }
    for lookup in lookups.values():
        lookup.build((None,))  # the archive exports built layers only

    def encode(cells):
        cells = tf.strings.strip(cells)
        columns = []
        for j in range(len(names)):
            cell = cells[:, j]
            if j in lookups:
                columns.append(tf.cast(lookups[j](cell), tf.float32))
            else:
                empty = tf.equal(cell, "")
                number = tf.strings.to_number(tf.where(empty, "0", cell), tf.float32)
                columns.append(tf.where(empty, tf.constant(fill[j], tf.float32), number))
        return tf.stack(columns, axis=1)

    return encode, list(lookups.values())


def _other_formats(config: Config, model, folder: Path) -> None:
    """model.onnx (needs tf2onnx, the onnx extra) and model.tflite (TensorFlow's own converter):
    the model itself, raw inputs in, logits out. One line saying why when one cannot be made."""
    if config.export.onnx:
        if importlib.util.find_spec("tf2onnx") is None:
            print("export.onnx: skipped, tf2onnx is not installed (pip install -e '.[onnx]')")
        else:
            model.export(str(folder / "model.onnx"), format="onnx", verbose=False)
            print(f"ONNX: {folder / 'model.onnx'} (logits)")
    if config.export.litert:
        model.export(str(folder / "model.tflite"), format="litert", verbose=False)
        print(f"LiteRT: {folder / 'model.tflite'} (logits)")
