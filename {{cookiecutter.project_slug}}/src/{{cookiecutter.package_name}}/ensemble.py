"""Ensembles (R6.1): members trained with seeds seed, seed+1, ... on one fixed split, and
their averaged predictions scored on the whole test set next to each member's.

Each member is an ordinary run under runs/<run.name>/members/, so a killed ensemble
resumes, a finished member is reused, and raising ensemble.members trains only the new ones.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from . import config as config_lib
from . import runs
from .config import Config
from .data import Data, load
from .evaluate import load_trained, predict_split, score
from .pictures import ensemble_figure
from .tables import markdown_table
from .train import train


def member_config(config: Config, index: int) -> Config:
    """The config of member `index`: its own seed (init, order, dropout), the shared split."""
    member = copy.deepcopy(config)
    member.seed = config.seed + index
    member.data.split_seed = (
        config.seed if config.data.split_seed is None else config.data.split_seed
    )
    member.run.dir = str(config.run_dir / "members")
    member.run.name = f"seed-{member.seed}"
    # Every member shares the data and the model: one round of checks is enough.
    member.check.before_train = config.check.before_train and index == 0
    return member


def train_members(config: Config, command: str) -> int:
    """Trains the members that are not finished yet; returns the exit status."""
    for index in range(config.ensemble.members):
        member = member_config(config, index)
        done = f"member {index + 1}/{config.ensemble.members} (seed {member.seed})"
        if (member.run_dir / "model.keras").is_file():
            config_lib.refuse_changes(
                member.run_dir / "config.yaml",
                member,
                "reuse",
                "choose another run.name for a different ensemble",
            )
            print(f"{done}: trained already in {member.run_dir}")
            continue
        print(f"\n== {done} -> {member.run_dir}", flush=True)
        status = train(member, command)
        if status:
            return status
    return 0


def ensemble(config: Config, command: str = "") -> int:
    """`python -m <package> ensemble`: trains the members, then scores their average."""
    status = train_members(config, command)
    if status:
        return status
    folders = [member_config(config, i).run_dir for i in range(config.ensemble.members)]
    # Each freshly loaded member traces its own predict function; TensorFlow's warning
    # about that retracing is expected here and only noise.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    data = load(member_config(config, 0))  # the split every member trained on
    outputs = [predict_split(load_trained(folder), data, data.test) for folder in folders]
    # Probabilities (not logits) and targets in their units: the average of calibrated guesses.
    names = [folder.name for folder in folders]
    scores = {name: score(data, data.test.y, out) for name, out in zip(names, outputs, strict=True)}
    scores["ensemble"] = score(data, data.test.y, np.mean(outputs, axis=0))

    key = "accuracy" if data.task == "classification" else "r2"  # higher is better in both
    members = {metric: [scores[name][metric] for name in names] for metric in ("loss", key)}
    report = {
        "task": data.task,
        "test_examples": int(len(data.test.y)),
        "metric": key,
        "members": {name: scores[name] for name in names},
        "ensemble": scores["ensemble"],
        "mean_member": {metric: float(np.mean(values)) for metric, values in members.items()},
        "gain_over_mean_member": scores["ensemble"][key] - float(np.mean(members[key])),
        "gain_over_best_member": scores["ensemble"][key] - max(members[key]),
    }
    run_dir = config.run_dir
    runs.write_json(run_dir / "ensemble.json", report)
    table = score_table(scores, data)
    runs.write_text(
        run_dir / "ensemble.md",
        f"# Ensemble of {len(names)} on {data.source} ({report['test_examples']} test examples)"
        f"\n\n{table}\n",
    )
    ensemble_figure(names, members, scores["ensemble"], run_dir / "ensemble.png")
    print(f"\ntest set ({report['test_examples']} examples):\n{table}")
    print(
        f"ensemble {key} {scores['ensemble'][key]:.4f}: "
        f"{report['gain_over_mean_member']:+.4f} over the mean member, "
        f"{report['gain_over_best_member']:+.4f} over the best; "
        f"loss {scores['ensemble']['loss']:.4f} against {report['mean_member']['loss']:.4f} "
        "for the mean member"
    )
    print(f"run: {run_dir}/  (ensemble.json, ensemble.md, ensemble.png, members/)")
    return 0


def score_table(scores: dict, data: Data) -> str:
    classification = data.task == "classification"
    keys = ["loss", "accuracy", "balanced_accuracy"] if classification else ["loss", "r2", "mae"]
    rows = [
        {"model": f"**{name}**" if name == "ensemble" else name, **{k: values[k] for k in keys}}
        for name, values in scores.items()
    ]
    return markdown_table(rows, ["model", *keys])
