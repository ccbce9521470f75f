"""The recipe's sanity experiments (R2, T1): hypotheses about the setup, tested on the configured
model and data, each with a verdict and a diagnosis a person can act on.

Every check is a small function `name(setup) -> Result` whose docstring states the hypothesis and
the expected value: `model.py` holds those that look at the model before it trains, `training.py`
those that train a little, `inside.py` those that look inside the network (dead units, randomness
at inference, update sizes), `augmentation.py` whether data.augment keeps the labels, `common.py`
the thresholds and the shared training step, `drawing.py` the pictures. `check` runs them all
(`make check`); `before_training` runs the fast subset that `train` runs first. Both print one
line per check and write `<run>/checks.json`; pictures go to `<run>/checks/`. docs/checks.md
explains each check, its threshold and what to try.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

from .. import runs
from ..config import Config
from ..data import Data, load
from ..devices import set_precision
from ..errors import UsageError
from .augmentation import augmentation_keeps_labels, draw_augmented_batch
from .common import (
    BEFORE_TRAINING_IMAGES,
    BEFORE_TRAINING_SECONDS,
    FAIL,
    PASS,
    WARN,
    Result,
    Setup,
    make_setup,
    shared_trainer,
)
from .common import sample as sample
from .drawing import draw_first_layer_weights, draw_input_batch
from .inside import dead_units, inference_repeatable, update_ratio
from .model import (
    backbone_input_range,
    batch_independence,
    human_baseline,
    init_loss,
    lr_schedule,
    output_activation,
)
from .training import classify_curve as classify_curve
from .training import determinism, input_independent_baseline, loss_decreases, overfit_one_batch

ALL_CHECKS = (
    determinism,
    init_loss,
    output_activation,
    batch_independence,
    inference_repeatable,
    lr_schedule,
    overfit_one_batch,
    loss_decreases,
    input_independent_baseline,
    dead_units,
    update_ratio,
    augmentation_keeps_labels,
    backbone_input_range,
    human_baseline,
)
FAST_CHECKS = (
    init_loss,
    output_activation,
    batch_independence,
    lr_schedule,
    overfit_one_batch,
    backbone_input_range,
    human_baseline,
)


# ---------------------------------------------------------------- running them


def run_checks(setup: Setup, checks) -> list[Result]:
    """Runs each check and prints its line at once; a crash becomes that check's FAIL, and a
    check that does not apply to this model (it returns None) is left out."""
    results = []
    with warnings.catch_warnings():
        # Keras warns on every softmax + from_logits loss; output_activation reports it once.
        warnings.filterwarnings("ignore", message=".*from_logits=True.*")
        for check_function in checks:
            try:
                result = check_function(setup)
            except UsageError:
                raise
            except Exception as err:  # one broken check must not hide the other verdicts
                why = f"the check could not run: {type(err).__name__}: {str(err)[:300]}"
                result = Result(check_function.__name__, FAIL, None, None, why)
            if result is None:
                continue
            print(result.line(), flush=True)
            results.append(result)
    return results


def write_results(results: list[Result], run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "checks.json"
    runs.write_json(path, [dataclasses.asdict(r) for r in results])
    return path


def _summary(results: list[Result], path: Path, started: float) -> str:
    counts = [sum(r.status == status for r in results) for status in (PASS, WARN, FAIL)]
    seconds = time.perf_counter() - started
    return "{} passed, {} warned, {} failed".format(*counts) + f"; {path} ({seconds:.1f} s)"


def _header(setup: Setup, what: str) -> str:
    data = setup.data
    line = (
        f"{what}: model {shared_trainer(setup).model.name} on {data.source} ({data.kind}, "
        f"{data.task}), {len(data.train.y)} training examples"
    )
    return line + (f"\n{setup.note}" if setup.note else "")


def check(config: Config) -> int:
    """`python -m <package> check`: every check on the configured model and data; 1 on a FAIL."""
    started = time.perf_counter()
    set_precision(config.train.precision)  # check the model in the precision train uses
    setup = make_setup(config, load(config))
    print(_header(setup, "recipe checks"), flush=True)
    results = run_checks(setup, ALL_CHECKS)
    drawn = [draw_input_batch(setup), draw_first_layer_weights(setup), "overfit_one_batch.png"]
    drawn.append(draw_augmented_batch(setup))
    print("pictures in " + str(setup.folder) + ": " + ", ".join(Path(p).name for p in drawn if p))
    print(_summary(results, write_results(results, config.run_dir), started))
    return 1 if any(r.status == FAIL for r in results) else 0


def before_training(config: Config, data: Data) -> int:
    """The fast checks `train` runs first (check.before_train=false skips them); 1 on a FAIL."""
    started = time.perf_counter()
    limit = min(config.check.sample, BEFORE_TRAINING_IMAGES) if data.streamed else None
    setup = make_setup(config, data, seconds=BEFORE_TRAINING_SECONDS, limit=limit)
    print(_header(setup, "recipe checks before training (make check runs them all)"), flush=True)
    results = run_checks(setup, FAST_CHECKS)
    draw_input_batch(setup)
    print(_summary(results, write_results(results, config.run_dir), started), flush=True)
    return 1 if any(r.status == FAIL for r in results) else 0
