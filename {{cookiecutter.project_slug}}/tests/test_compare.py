"""compare: finished runs in one table, the keys that differ, sorted on validation."""

import pytest


def test_compare_tables_the_runs_by_their_differing_keys(project, make_config):
    base = ("data.source=breast_cancer", "model.name=linear", "train.epochs=4")
    configs = [
        make_config(*base, "run.name=slow", "optimizer.learning_rate=1e-4"),
        make_config(*base, "run.name=fast", "optimizer.learning_rate=3e-2"),
    ]
    with pytest.raises(project.errors.UsageError, match="compare needs two or more"):
        project.compare.compare(configs[0])
    for config in configs:
        assert project.train.train(config, "pytest") == 0

    assert project.compare.compare(configs[0]) == 0
    parent = configs[0].run_dir.parent
    lines = (parent / "compare.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:2] == ["run", "optimizer.learning_rate"]  # the one key that differs
    assert "test accuracy (95%)" in columns and "run.name" not in columns
    body = [line for line in lines if line.startswith("| ") and line != header][1:]
    assert [row.split("|")[1].strip() for row in body] == ["fast", "slow"]  # lower val loss first
    entries = {e["run"]: e for e in map(project.compare.read_run, (c.run_dir for c in configs))}
    assert entries["fast"]["best_val_loss"] < entries["slow"]["best_val_loss"]
    low, high = entries["fast"]["interval"]
    assert low <= entries["fast"]["test"] <= high and f"({low:.4f}-{high:.4f})" in body[0]
    assert (parent / "compare.png").stat().st_size > 0

    configs[0].compare.runs = ["slow", "missing"]
    with pytest.raises(project.errors.UsageError, match="missing is not a finished run"):
        project.compare.compare(configs[0])
