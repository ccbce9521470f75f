"""What the template's training adds on top of a plain `model.fit`, measured side by side.

Bakes the template with its defaults (digits, convnet) and times its whole `train`
command (checks, fit, baselines, evaluation, pictures) in a subprocess. Then, in this
one process, alternates two fits of the same model on the same tf.data pipelines for
as many epochs as that run trained: a plain `fit`, and a `fit` with every callback
`make train` uses (history CSV, backup, best checkpoint, early stopping set not to
stop, TensorBoard, NaN guard, the fixed-batch prediction picture every epoch).
Reports the medians and the median ratio of the back-to-back pairs.

    .venv/bin/python benchmarks/overhead.py [--epochs N] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import results  # the sibling script: the same bake and `train` command

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: as many as the default run trains"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="recipe-bench-"))
    project = results.bake("image_classification", work)
    package = next(p.parent.name for p in (project / "src").glob("*/__main__.py"))

    # First the whole `train` command as `make train` runs it: checks, fit, evaluation.
    metrics, whole = results.train(project, seed=0)
    epochs = args.epochs or metrics["epochs"]
    sys.path.insert(0, str(project / "src"))
    modules = {
        name: importlib.import_module(f"{package}.{name}")
        for name in ("config", "data", "models", "train")
    }
    config_lib, data_lib, models, train = (
        modules[n] for n in ("config", "data", "models", "train")
    )

    # Patience above the epoch count: both fits run exactly the same number of epochs.
    overrides = [
        f"train.epochs={epochs}",
        f"train.patience={epochs + 1}",
        f"run.dir={work / 'runs'}",
    ]
    config = config_lib.build_config([project / "configs" / "default.yaml"], overrides)
    data = data_lib.load(config)
    batch = config.train.batch_size
    train_ds = data_lib.make_dataset(data, data.train, batch, shuffle=True, seed=config.seed)
    val_ds = data_lib.make_dataset(data, data.val, batch, shuffle=False)
    steps = data_lib.steps_per_epoch(data.train, batch)

    def fit(with_callbacks: bool, repeat: int) -> float:
        train.seed_everything(config)
        model = models.compile_model(models.build_model(config, data), config, data, steps)
        callbacks = []
        if with_callbacks:
            run_dir = work / "runs" / f"bench-{repeat}"
            run_dir.mkdir(parents=True, exist_ok=True)
            callbacks, _ = train.make_callbacks(config, data, run_dir, {"val_loss": 0.0})
        model.fit(
            train_ds, validation_data=val_ds, epochs=1, verbose=0, shuffle=False
        )  # warm-up: tracing
        started = time.perf_counter()
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,
        )
        return time.perf_counter() - started

    times = {"plain fit": [], "template fit": []}
    for repeat in range(args.repeats):  # alternate, so drift on a noisy machine hits both
        times["plain fit"].append(fit(False, repeat))
        times["template fit"].append(fit(True, repeat))
    plain, template = (statistics.median(times[k]) for k in ("plain fit", "template fit"))
    # Each pair ran back to back, so its ratio cancels most of the machine's drift.
    ratios = sorted(t / p for p, t in zip(times["plain fit"], times["template fit"], strict=True))

    print(f"machine: {results.machine()}")
    print(
        f"data: digits, {len(data.train.y)} training examples, batch {batch}, "
        f"{epochs} epochs (as many as the default run), "
        f"median of {args.repeats}"
    )
    print("| what | median seconds | ratio to plain fit (median of pairs; range) |")
    print("| --- | --- | --- |")
    print(f"| plain `model.fit` | {plain:.2f} | 1.00 |")
    print(
        f"| `fit` with the template's callbacks and pictures | {template:.2f} "
        f"| {statistics.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f}) |"
    )
    print(
        f"\nwhole `train` command with defaults: {whole:.1f} s wall "
        f"({metrics['epochs']} epochs, fit {metrics['train_seconds']:.1f} s, "
        f"test accuracy {metrics['model']['accuracy']:.4f})"
    )


if __name__ == "__main__":
    main()
