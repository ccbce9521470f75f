"""inspect (R1): every finding is quiet on clean data and names the culprit of a planted bug."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROWS = 120


def _inspect(project, make_config, *overrides):
    config = make_config(*overrides, "run.name=look")
    status = project.inspection.inspect(config)
    report = json.loads((config.run_dir / "inspect.json").read_text())
    return status, report


def _found(report, name):
    return [f for f in report["findings"] if f["name"] == name]


def _table(seed=0, rows=ROWS):
    """Three standard-normal features, a label noisily depending on two: nothing to find."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(0, 1, rows) for name in ("a", "b", "c")}
    columns["label"] = (columns["a"] + columns["b"] + rng.normal(0, 1, rows) > 0).astype(int)
    return columns


def _write(tmp_path, columns, name="table.csv"):
    """Writes columns to a CSV; numbers with 4 decimals, strings as they are."""
    names = list(columns)

    def cell(value):
        if isinstance(value, str):
            return value
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [",".join(names)] + [
        ",".join(cell(columns[n][i]) for n in names) for i in range(len(columns["label"]))
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _as_text(values):
    return [f"{v:.4f}" for v in values]


# ---------------------------------------------------------------- clean data finds nothing


def test_clean_table_has_no_findings(project, make_config, tmp_path):
    status, report = _inspect(project, make_config, f"data.source={_write(tmp_path, _table())}")
    assert status == 0
    assert report["findings"] == []
    assert report["sampled"] is False
    assert sum(report["splits"].values()) == ROWS


def test_clean_image_folder_has_no_errors_or_warnings(project, make_config, image_folder):
    status, report = _inspect(project, make_config, f"data.source={image_folder}")
    assert status == 0
    assert {f["severity"] for f in report["findings"]} == {"info"}
    assert {f["name"] for f in report["findings"]} == {"needs_normalization", "leak_probe_skipped"}


def test_digits_is_clean_and_writes_report_json_and_examples(project, make_config):
    config = make_config("data.source=digits", "run.name=digits")
    assert project.inspection.inspect(config) == 0
    report = json.loads((config.run_dir / "inspect.json").read_text())
    assert not [f for f in report["findings"] if f["severity"] == "error"]
    assert report["splits"] == {"train": 1257, "val": 270, "test": 270}
    assert len(report["classes"]) == 10 and report["imbalance_ratio"] < 1.1
    assert report["near_duplicates"]["across_splits"] == 0
    assert report["label_noise"]["examined"] == 1257 and report["label_noise"]["share"] < 0.02
    folder = config.run_dir / "inspect"
    markdown = (folder / "report.md").read_text()
    assert "## Class balance" in markdown and "![examples.png](examples.png)" in markdown
    with Image.open(folder / "examples.png") as picture:
        assert picture.width > 400 and picture.height > 600  # 10 rows of 8 examples
    assert (folder / "extremes.png").is_file()


def test_breast_cancer_writes_feature_plots(project, make_config):
    config = make_config("data.source=breast_cancer", "run.name=bc")
    assert project.inspection.inspect(config) == 0
    report = json.loads((config.run_dir / "inspect.json").read_text())
    assert (config.run_dir / "inspect" / "features.png").is_file()
    assert "![features.png](features.png)" in (config.run_dir / "inspect" / "report.md").read_text()
    assert len(report["features"]) == 30 and not _found(report, "target_leak")
    assert max(row["val"] for row in report["leak_probe"]) < 0.99


# ---------------------------------------------------------------- planted bugs, tables


def test_row_copied_into_two_splits_is_an_error(project, make_config, tmp_path):
    columns = {name: list(values) for name, values in _table().items()}
    for name in columns:
        columns[name] += [columns[name][0]] * 12  # line 2, thirteen times in all
    status, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    assert status == 1
    (across,) = _found(report, "duplicate_across_splits")
    assert (
        across["severity"] == "error"
        and "1 example appears in two or more splits" in across["detail"]
    )
    named = [int(n) for n in re.findall(r"line (\d+)", across["detail"])]
    assert len(named) >= 2 and set(named) <= {2, *range(ROWS + 2, ROWS + 14)}  # the copies, by line
    assert "(13 copies)" in across["detail"]
    (within,) = _found(report, "duplicate_within_split")
    assert within["severity"] == "warning"


def test_same_row_with_two_labels_is_a_conflict(project, make_config, tmp_path):
    columns = {name: list(values) for name, values in _table().items()}
    for name in columns:
        columns[name].append(columns[name][5])
    columns["label"][-1] = 1 - columns["label"][5]
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (conflict,) = _found(report, "conflicting_labels")
    assert conflict["severity"] == "warning"
    assert "line 7" in conflict["detail"] and f"line {ROWS + 2}" in conflict["detail"]


def test_missing_values_are_an_error_unless_filled(project, make_config, tmp_path):
    columns = _table()
    columns["b"] = _as_text(columns["b"])
    columns["b"][3] = ""
    columns["b"][8] = "nan"
    path = _write(tmp_path, columns)
    status, report = _inspect(project, make_config, f"data.source={path}")
    assert status == 1
    (missing,) = _found(report, "missing_values")
    assert missing["severity"] == "error"
    assert "'b': 2 (lines 5, 10)" in missing["detail"] and "data.missing=mean" in missing["detail"]
    assert sum(report["splits"].values()) == ROWS  # the rest was still inspected
    status, report = _inspect(project, make_config, f"data.source={path}", "data.missing=mean")
    assert status == 0
    assert _found(report, "missing_values")[0]["severity"] == "info"


def test_infinite_values_are_an_error(project, make_config, tmp_path):
    columns = _table()
    columns["c"] = _as_text(columns["c"])
    columns["c"][10] = "inf"
    status, report = _inspect(
        project, make_config, f"data.source={_write(tmp_path, columns)}", "data.missing=mean"
    )
    assert status == 1
    (infinite,) = _found(report, "infinite_values")
    assert infinite["severity"] == "error" and "'c': 1 (line 12)" in infinite["detail"]
    assert not _found(report, "feature_outliers")  # the inf was not studied as a value


def test_text_codes_in_a_numeric_column_are_flagged(project, make_config, tmp_path):
    columns = _table()
    columns["b"] = _as_text(columns["b"])
    for row in (2, 30, 31):
        columns["b"][row] = "NA"
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (mixed,) = _found(report, "mixed_type_column")
    assert (
        mixed["severity"] == "warning"
        and "column 'b'" in mixed["detail"]
        and "'NA' x3" in mixed["detail"]
    )


def test_constant_column_is_flagged(project, make_config, tmp_path):
    columns = {**_table(), "version": [2.0] * ROWS}
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (constant,) = _found(report, "constant_feature")
    assert constant["severity"] == "warning" and "'version' (= 2)" in constant["detail"]


def test_label_copied_into_a_feature_is_a_target_leak(project, make_config, tmp_path):
    columns = _table()
    columns["audit_flag"] = columns["label"] * 3 + 1  # the label in disguise
    status, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    assert status == 1
    (leak,) = _found(report, "target_leak")
    assert leak["severity"] == "error" and "column 'audit_flag'" in leak["detail"]


def test_a_row_id_is_one_finding_a_leak_when_perfect_else_an_identifier(
    project, make_config, tmp_path
):
    """Rows numbered after sorting by label: target_leak (the row number alone is the label);
    numbered in an order that only leans on the label: identifier_column. Never both."""
    rng = np.random.default_rng(6)
    columns = _table()
    order = np.argsort(columns["label"] + rng.normal(0, 0.45, ROWS), kind="stable")
    columns = {name: np.asarray(values)[order] for name, values in columns.items()}
    columns["customer_id"] = np.arange(1000, 1000 + ROWS)
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (identifier,) = _found(report, "identifier_column")
    assert "column 'customer_id' looks like a row id" in identifier["detail"]
    assert not _found(report, "target_leak")
    columns["label"] = np.sort(columns["label"])
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    leak_or_id = [
        f for f in report["findings"] if f["name"] in ("target_leak", "identifier_column")
    ]
    assert [f["name"] for f in leak_or_id] == ["target_leak"]
    assert "'customer_id'" in leak_or_id[0]["detail"]


def test_regression_target_copy_is_a_leak_and_clean_regression_is_quiet(
    project, make_config, tmp_path
):
    rng = np.random.default_rng(1)
    columns = _table()
    columns["label"] = columns["a"] * 3 + rng.normal(0, 1, ROWS) + 10
    status, report = _inspect(
        project, make_config, f"data.source={_write(tmp_path, columns, 'clean.csv')}"
    )
    assert (status, report["task"], report["findings"]) == (0, "regression", [])
    assert abs(report["target"]["skew"]) < 1
    columns["price_copy"] = columns["label"] * 1.0001
    status, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    assert status == 1
    assert "column 'price_copy'" in _found(report, "target_leak")[0]["detail"]


def test_skewed_regression_target_is_flagged(project, make_config, tmp_path):
    columns = _table()
    columns["label"] = np.exp(columns["a"] * 1.5 + 5)
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (skew,) = _found(report, "target_skew")
    assert skew["severity"] == "warning" and "log(y)" in skew["detail"]
    assert report["target"]["skew"] > 1


def test_heavy_class_imbalance_is_flagged(project, make_config, tmp_path):
    columns = _table()
    rng = np.random.default_rng(2)
    noisy = columns["a"] + rng.normal(0, 1, ROWS)
    columns["label"] = (noisy >= np.sort(noisy)[-20]).astype(int)  # 100 vs 20
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (imbalance,) = _found(report, "class_imbalance")
    assert imbalance["severity"] == "warning"
    assert "class '0' has 5.0x the examples of '1' (100 vs 20" in imbalance["detail"]
    assert report["imbalance_ratio"] == 5.0


def test_extreme_outlier_is_named(project, make_config, tmp_path):
    columns = _table()
    columns["c"][7] = 1000.0
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (outliers,) = _found(report, "feature_outliers")
    assert outliers["severity"] == "warning"
    assert "'c': 1 (worst" in outliers["detail"] and "line 9 = 1000" in outliers["detail"]
    assert not _found(report, "heavy_tailed_feature")  # one wild value is not a heavy tail


def test_heavy_tailed_feature_gets_a_squashing_advice(project, make_config, tmp_path):
    columns = _table()
    columns["income"] = np.exp(np.random.default_rng(3).normal(0, 2, ROWS))
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (heavy,) = _found(report, "heavy_tailed_feature")
    assert (
        heavy["severity"] == "warning"
        and "'income'" in heavy["detail"]
        and "log1p(x)" in heavy["detail"]
    )
    assert [row["heavy_tailed"] for row in report["features"]] == [False, False, False, True]


def test_large_magnitudes_are_noted_as_normalized_by_the_pipeline(project, make_config, tmp_path):
    columns = _table()
    columns["salary"] = columns["c"] * 2e4 + 5e4
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (note,) = _found(report, "needs_normalization")
    assert note["severity"] == "info" and "'salary'" in note["detail"] and "U6" in note["detail"]


def test_bigger_data_is_sampled_and_says_so(project, make_config, tmp_path):
    _, report = _inspect(
        project, make_config, f"data.source={_write(tmp_path, _table())}", "check.sample=40"
    )
    assert report["sampled"] is True
    (note,) = _found(report, "sampled")
    assert note["severity"] == "info" and "40" in note["detail"]


def test_many_features_are_capped_in_the_plot(project, make_config, tmp_path):
    rng = np.random.default_rng(4)
    columns = {f"f{j}": rng.normal(0, 1, ROWS) for j in range(35)}
    columns["label"] = (columns["f0"] + rng.normal(0, 1, ROWS) > 0).astype(int)
    _, report = _inspect(project, make_config, f"data.source={_write(tmp_path, columns)}")
    (note,) = _found(report, "plot_capped")
    assert note["severity"] == "info" and "30 of 35 features" in note["detail"]


# ---------------------------------------------------------------- planted bugs, images


def test_corrupt_image_is_named_and_the_rest_inspected(project, make_config, image_folder):
    (image_folder / "dog" / "broken.png").write_bytes(b"not a png at all")
    status, report = _inspect(project, make_config, f"data.source={image_folder}")
    assert status == 1
    (corrupt,) = _found(report, "corrupt_file")
    assert corrupt["severity"] == "error" and "broken.png" in corrupt["detail"]
    assert sum(report["splits"].values()) == 24
    assert report["corrupt_files"][0]["path"].endswith("broken.png")


def test_a_big_folder_is_pictured_from_a_sample_and_checked_file_by_file(
    project, make_config, image_folder
):
    """Images stay files: the pictures decode a sample, while every file is decoded once for
    the file findings and the duplicate hashes (a copy across splits is still an error)."""
    import shutil

    (image_folder / "dog" / "broken.png").write_bytes(b"not a png at all")
    shutil.copy(image_folder / "cat" / "0.png", image_folder / "cat" / "copy.png")
    status, report = _inspect(
        project, make_config, f"data.source={image_folder}", "check.sample=10"
    )
    assert status == 1
    (note,) = _found(report, "sampled_images")
    assert "at most 10 images per split" in note["detail"] and "all 25" in note["detail"]
    assert report["corrupt_files"][0]["path"].endswith("broken.png")
    copies = _found(report, "duplicate_across_splits") + _found(report, "duplicate_within_split")
    assert any("copy.png" in finding["detail"] for finding in copies)
    assert "examples.png" in report["pictures"]


def test_unloadable_folder_still_names_its_corrupt_files(
    project, make_config, image_folder, capsys
):
    for path in sorted((image_folder / "owl").iterdir())[3:]:
        path.unlink()
    # owl keeps 2 readable images: too few for a stratified split, so loading fails
    (image_folder / "owl" / "0.png").write_bytes(b"\x89PNG truncated")
    config = make_config(f"data.source={image_folder}", "run.name=unloadable")
    with pytest.raises(project.errors.UsageError, match="class 'owl' has fewer than 3 examples"):
        project.inspection.inspect(config)
    assert "ERROR corrupt_file: " in capsys.readouterr().out
    assert not config.run_dir.exists()


def test_duplicate_images_are_found_by_content(project, make_config, image_folder):
    for k in range(6):
        shutil.copy(image_folder / "cat" / "0.png", image_folder / "cat" / f"copy{k}.png")
    status, report = _inspect(project, make_config, f"data.source={image_folder}")
    assert status == 1
    (across,) = _found(report, "duplicate_across_splits")
    assert across["severity"] == "error" and "copy" in across["detail"]
    assert report["duplicates"]["across_splits"] == 1


def test_a_brightened_copy_of_an_image_is_a_near_copy_and_drawn(project, make_config, image_folder):
    with Image.open(image_folder / "cat" / "0.png") as image:
        pixels = np.asarray(image, dtype=np.float32)
    Image.fromarray((pixels * 0.8 + 30).astype(np.uint8)).save(image_folder / "cat" / "copy.png")
    _, report = _inspect(project, make_config, f"data.source={image_folder}")
    near = _found(report, "near_duplicates_across_splits") + _found(
        report, "near_duplicates_within_split"
    )
    assert len(near) == 1
    assert re.search(r"cat/(0|copy)\.png ~ \S+ \S+cat/(copy|0)\.png \(r=", near[0]["detail"])
    assert not _found(report, "duplicate_across_splits")  # not an exact copy
    assert "near_duplicates.png" in report["pictures"]


def test_image_of_another_size_and_channels_are_named(project, make_config, image_folder):
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(
        image_folder / "owl" / "big.png"
    )
    Image.fromarray(rng.integers(0, 255, (12, 10), dtype=np.uint8)).save(
        image_folder / "cat" / "grey.png"
    )
    _, report = _inspect(project, make_config, f"data.source={image_folder}")
    (size,) = _found(report, "unexpected_image_size")
    assert (
        size["severity"] == "warning"
        and "big.png is 20x16" in size["detail"]
        and "12x10" in size["detail"]
    )
    (channels,) = _found(report, "unexpected_channels")
    assert channels["severity"] == "warning" and "grey.png is L (1 channel)" in channels["detail"]


def test_blank_and_odd_images_are_flagged(project, make_config, image_folder):
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(image_folder / "owl" / "blank.png")
    _, report = _inspect(project, make_config, f"data.source={image_folder}")
    (blank,) = _found(report, "constant_image")
    assert blank["severity"] == "warning" and "blank.png (all 0)" in blank["detail"]
    (odd,) = _found(report, "image_outliers")
    assert odd["severity"] == "warning" and "blank.png (brightness" in odd["detail"]


# ---------------------------------------------------------------- command line


def test_cli_prints_one_line_per_finding_and_exits_1_on_errors(run_cli, tmp_path):
    columns = _table()
    columns["audit_flag"] = columns["label"]
    columns["version"] = [1.0] * ROWS
    proc = run_cli("inspect", f"data.source={_write(tmp_path, columns)}", "run.name=cli")
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "runs" / "cli" / "inspect.json").read_text())
    lines = [
        line
        for line in proc.stdout.splitlines()
        if line.split(" ")[0] in ("ERROR", "WARNING", "INFO")
    ]
    assert lines == [
        f"{f['severity'].upper()} {f['name']}: {f['detail']}" for f in report["findings"]
    ]
    assert any(line.startswith("ERROR target_leak: column 'audit_flag'") for line in lines)
    assert any(line.startswith("WARNING constant_feature:") for line in lines)
    assert (tmp_path / "runs" / "cli" / "inspect" / "report.md").is_file()


def test_missing_source_is_a_usage_error_and_writes_nothing(project, make_config, tmp_path):
    config = make_config(f"data.source={tmp_path / 'nowhere.csv'}", "run.name=none")
    with pytest.raises(project.errors.UsageError, match="is neither an embedded dataset"):
        project.inspection.inspect(config)  # the command line turns this into one line, exit 2
    assert not (tmp_path / "runs").exists()


def test_rerun_replaces_the_previous_pictures(project, make_config):
    project.inspection.inspect(make_config("data.source=digits", "run.name=same"))
    again = make_config("data.source=diabetes", "run.name=same")
    project.inspection.inspect(again)
    assert {p.name for p in (again.run_dir / "inspect").glob("*.png")} == {
        "features.png",
        "extremes.png",
    }


# ---------------------------------------------------------------- the registry


def test_every_registered_finding_is_documented_and_every_documented_one_registered(project):
    docs = Path(__file__).resolve().parents[1] / "docs" / "inspect.md"
    table = docs.read_text().split("\n## The findings\n", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    registered = [function.__name__ for function in project.inspection.ALL_FINDINGS]
    assert len(set(registered)) == len(registered), "a finding function is registered twice"
    assert sorted(registered) == sorted(documented), "docs/inspect.md's table of findings"
