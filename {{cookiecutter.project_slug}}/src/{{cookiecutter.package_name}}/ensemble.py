"""Ensembles (R6.1): members trained with seeds seed, seed+1, ... on one fixed split, and
their averaged predictions scored on the whole test set next to each member's.

Each member is an ordinary run under runs/<run.name>/members/, so a killed ensemble
resumes, a finished member is reused, and raising ensemble.members trains only the new ones.
With ensemble.from_search the members are a finished search's ensemble.top_k best trials
instead, each its trial's best-epoch weights (KerasTuner's checkpoint), not retrained.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np

from . import config as config_lib
from . import runs
from .config import Config
from .data import Data, load
from .environment import write_environment
from .errors import UsageError
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


# Data keys that change no example's place in the split (nor its label): models trained with
# other values of these still share one test set.
SPLIT_NEUTRAL = (
    "data.augment",
    "data.augment_strength",
    "data.cache",
    "data.image_size",
    "data.sampling",
    "data.transform",
)


def split_differences(first: Config, second: Config) -> list[str]:
    """The data keys (and the split's seed) in which two configs differ: each such key can
    move examples between training and test, so their test scores are not comparable and one
    model may have trained on the other's test examples."""

    def split(config: Config) -> dict:
        keys = {
            key: value
            for key, value, _ in config_lib.iter_fields(config)
            if key.startswith("data.") and key not in SPLIT_NEUTRAL
        }
        seed = config.seed if config.data.split_seed is None else config.data.split_seed
        return {**keys, "split seed": seed}

    a, b = split(first), split(second)
    return [key for key in a if a[key] != b[key]]


# Where KerasTuner (1.4, multi-backend Keras) keeps a trial's best-epoch weights.
TRIAL_WEIGHTS = "checkpoint.weights.h5"


def search_members(config: Config) -> tuple[list[Path], Data, dict]:
    """The ensemble.top_k best finished trials of the search ensemble.from_search, each saved
    once as a member run (model.keras, config.yaml, data.json) under members/trial-<id>/
    from the trial's best-epoch weights; with the search's data and {member: (trial, score)}."""
    from .models import build_model, with_preprocessing
    from .train import write_data_description
    from .tune import make_tuner, with_values

    name, k = config.ensemble.from_search, config.ensemble.top_k
    search_dir = Path(config.run.dir) / name
    saved = search_dir / "tune_config.yaml"
    if not saved.is_file() or not (search_dir / "tuner").is_dir():
        raise UsageError(
            f"ensemble.from_search={name}: {search_dir} holds no search (tune_config.yaml, "
            "tuner/); run make tune first"
        )
    search = config_lib.build_config([saved])
    differences = split_differences(search, config)
    if differences:
        raise UsageError(
            f"ensemble.from_search={name} searched other data or another split "
            f"({', '.join(differences)}); use its config: --config {saved}"
        )
    data = load(search)
    tuner = make_tuner(search, data)  # reloads the finished search; runs no trial
    done = [t for t in tuner.oracle.get_best_trials(k) if t.status == "COMPLETED"]
    if len(done) < k:
        raise UsageError(
            f"ensemble.from_search={name} has {len(done)} finished trials; lower "
            f"ensemble.top_k={k} or run more trials (tune.max_trials)"
        )
    folders, trials = [], {}
    for trial in done:
        folder = config.run_dir / "members" / f"trial-{trial.trial_id}"
        folders.append(folder)
        trials[folder.name] = {"trial": trial.trial_id, search.tune.objective: trial.score}
        if (folder / "model.keras").is_file():
            print(f"trial {trial.trial_id}: saved already in {folder}")
            continue
        member = with_values(search, trial.hyperparameters.values)
        member.run = dataclasses.replace(search.run, dir=str(folder.parent), name=folder.name)
        model = build_model(member, data)
        weights = Path(tuner.get_trial_dir(trial.trial_id)) / TRIAL_WEIGHTS
        try:
            model.load_weights(weights)
        except Exception as err:  # missing, damaged, or the model's code changed since
            raise UsageError(
                f"cannot load trial {trial.trial_id}'s weights {weights} ({type(err).__name__}"
                f": {str(err).splitlines()[0][:200]}); retrain it: --config {saved} with its "
                "values, make train"
            ) from None
        runs.write_whole(folder / "model.keras", with_preprocessing(model, data).save)
        config_lib.save(member, folder / "config.yaml")
        write_data_description(data, member, folder)
        print(f"trial {trial.trial_id} ({search.tune.objective} {trial.score:.4f}) -> {folder}")
    return folders, data, trials


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
    """`python -m <package> ensemble`: trains the members (or takes a search's best trials),
    then scores their average."""
    # Each freshly loaded member traces its own predict function; TensorFlow's warning
    # about that retracing is expected here and only noise.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    trials = {}
    if config.ensemble.from_search:
        folders, data, trials = search_members(config)
    else:
        status = train_members(config, command)
        if status:
            return status
        folders = [member_config(config, i).run_dir for i in range(config.ensemble.members)]
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
    if trials:
        report["from_search"] = {"search": config.ensemble.from_search, "trials": trials}
    run_dir = config.run_dir
    runs.write_json(run_dir / "ensemble.json", report)
    write_environment(run_dir, command="ensemble")  # each member has its own environment.json
    table = score_table(scores, data)
    origin = (
        f"\n\nMembers: the {len(names)} best trials of the search {config.ensemble.from_search} "
        "(trial-<id>: KerasTuner's trial id), their best-epoch weights."
        if trials
        else ""
    )
    runs.write_text(
        run_dir / "ensemble.md",
        f"# Ensemble of {len(names)} on {data.source} ({report['test_examples']} test examples)"
        f"{origin}\n\n{table}\n",
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
