"""Every answer bakes, renders completely and keeps or drops the right files."""

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conftest import TASKS, TEMPLATE

# What a leftover template tag looks like once rendered; `${{ ... }}` in ci.yml is
# GitHub Actions syntax, deliberately kept with {% raw %}.
UNRENDERED = re.compile(r"{{\s*cookiecutter|{%-?\s|\s-?%}|{#")  # not f"{x:.0%}"


def text_files(project):
    for path in sorted(project.rglob("*")):
        if path.is_file():
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary files carry no template tags


@pytest.mark.parametrize("task", TASKS)
def test_each_task_renders_completely(baked, task):
    project = baked(task)
    leftovers = [
        str(path.relative_to(project))
        for path, text in text_files(project)
        if UNRENDERED.search(text) or "{{" in path.name
    ]
    assert leftovers == [], f"unrendered Jinja in {leftovers}"
    assert (project / "src" / "recipe_project").is_dir()
    for name in ["pyproject.toml", "Makefile", "README.md", ".gitignore", "LICENSE"]:
        assert (project / name).is_file(), name
    assert task in (project / "README.md").read_text()


@pytest.mark.parametrize("task", TASKS)
def test_files_the_makefile_relies_on(baked, task):
    # `python -m <pkg> <command> --config configs/default.yaml` and the cli:main script.
    project = baked(task)
    for name in ["__init__.py", "__main__.py", "cli.py"]:
        assert (project / "src" / "recipe_project" / name).is_file(), name
    assert (project / "configs" / "default.yaml").is_file()


def test_answers_are_kept_for_updates(cookies):
    result = cookies.bake(
        extra_context={"project_name": "My Keras Net", "task": "regression", "author_name": "Ada"}
    )
    assert result.exit_code == 0, result.exception
    project = result.project_path
    assert project.name == "my-keras-net"
    answers = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    assert answers["project_slug"] == "my-keras-net"
    assert answers["package_name"] == "my_keras_net"
    assert answers["task"] == "regression"
    assert answers["author_name"] == "Ada"
    assert not [key for key in answers if key.startswith("_")]
    assert (project / "src" / "my_keras_net").is_dir()
    pyproject = (project / "pyproject.toml").read_text()
    assert 'my-keras-net = "my_keras_net.cli:main"' in pyproject


def test_a_name_with_punctuation_is_slugified(cookies):
    result = cookies.bake(extra_context={"project_name": "Cats & Dogs"})
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == "cats-dogs"
    assert (result.project_path / "src" / "cats_dogs" / "cli.py").is_file()
    assert "# Cats & Dogs" in (result.project_path / "README.md").read_text()


def tree(folder: Path) -> dict:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_answers_file_replays_the_same_project(cookies, tmp_path):
    from cookiecutter.main import cookiecutter

    answers = {"project_name": "Cats & Dogs", "task": "regression", "license": "Apache-2.0"}
    result = cookies.bake(extra_context={**answers, "author_name": "Ada", "python_version": "3.12"})
    assert result.exit_code == 0, result.exception
    baked = result.project_path
    # A user config of our own keeps Cookiecutter's replay and clone folders out of ~.
    user_config = tmp_path / "config.yaml"
    user_config.write_text(
        f"cookiecutters_dir: {tmp_path / 'cookiecutters'}\nreplay_dir: {tmp_path / 'replay'}\n"
    )
    replayed = Path(
        cookiecutter(
            str(TEMPLATE),
            replay=str(baked / ".cookiecutter.json"),
            output_dir=str(tmp_path / "again"),
            config_file=str(user_config),
        )
    )
    assert replayed.name == "cats-dogs"
    ours, theirs = tree(baked), tree(replayed)
    assert "src/cats_dogs/cli.py" in ours and "LICENSE" in ours
    assert sorted(ours) == sorted(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []


@pytest.mark.parametrize(
    ("license", "first_line"),
    [("MIT", "MIT License"), ("Apache-2.0", "Apache License"), ("none", None)],
)
def test_license_choice(cookies, license, first_line):
    result = cookies.bake(extra_context={"license": license, "author_name": "Ada"})
    assert result.exit_code == 0, result.exception
    path = result.project_path / "LICENSE"
    if first_line is None:
        assert not path.exists()
        assert "license =" not in (result.project_path / "pyproject.toml").read_text()
    else:
        text = path.read_text()
        assert text.strip().startswith(first_line)
        assert f"{datetime.now(UTC).year} Ada" in text  # the year it was baked


@pytest.mark.parametrize("github_actions", ["yes", "no"])
@pytest.mark.parametrize("python_version", ["3.11", "3.12"])
def test_github_actions_choice(cookies, github_actions, python_version):
    result = cookies.bake(
        extra_context={"github_actions": github_actions, "python_version": python_version}
    )
    assert result.exit_code == 0, result.exception
    workflow = result.project_path / ".github" / "workflows" / "ci.yml"
    if github_actions == "no":
        assert not (result.project_path / ".github").exists()
    else:
        ci = yaml.safe_load(workflow.read_text())
        # The chosen Python and the next one.
        following = f"3.{int(python_version.split('.')[1]) + 1}"
        assert ci["jobs"]["test"]["strategy"]["matrix"]["python"] == [python_version, following]
        assert ci["permissions"] == {"contents": "read"}
        steps = ci["jobs"]["test"]["steps"]
        assert steps[1]["with"]["python-version"] == "${{ matrix.python }}"  # {% raw %} kept it
        runs = [step["run"] for step in steps if "run" in step]
        for command in ["make install", "make lint", "make test"]:
            assert command in runs


def check_workflows(*paths: Path) -> subprocess.CompletedProcess:
    """check-jsonschema against its vendored GitHub workflow schema (no network needed)."""
    command = ["-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    return subprocess.run(
        [sys.executable, *command, *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def test_the_workflows_are_valid_github_actions(cookies, tmp_path):
    generated = []
    for python_version in ["3.11", "3.12"]:
        result = cookies.bake(extra_context={"python_version": python_version})
        assert result.exit_code == 0, result.exception
        generated.append(result.project_path / ".github" / "workflows" / "ci.yml")
    template = TEMPLATE / ".github" / "workflows" / "test.yml"
    proc = check_workflows(template, *generated)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The check itself fails on an invalid workflow (a job needs runs-on).
    broken = tmp_path / "broken.yml"
    broken.write_text(generated[0].read_text().replace("runs-on:", "runs_on:"))
    assert check_workflows(broken).returncode == 1


def test_the_template_workflow_lints_and_runs_what_ci_runs():
    workflow = yaml.safe_load((TEMPLATE / ".github" / "workflows" / "test.yml").read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {"contents": "read"}
    steps = workflow["jobs"]["test"]["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    assert (TEMPLATE / setup["with"]["cache-dependency-path"]).is_file()
    runs = [step["run"] for step in steps if "run" in step]
    assert runs == ["make lint", "bash .ci/run"]
    assert "make test" in (TEMPLATE / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("python_version", ["3.11", "3.13"])  # the oldest and newest CI runs
def test_the_baked_dependencies_resolve_from_pypi(baked, tmp_path, python_version):
    # pip resolves (not installs) the project with the extras CI installs, for that Python's
    # wheels, as into a fresh virtual environment.
    report = tmp_path / "report.json"
    command = ["-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--python-version", python_version, "--only-binary", ":all:"]
    command += ["--target", str(tmp_path / "target"), "--report", str(report)]
    project = baked(TASKS[0])
    proc = subprocess.run(
        [sys.executable, *command, f"{project}[dev,multiworker]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for name, version in [("keras", "3.15."), ("tensorflow", "2.21."), ("ruff", "0.17.")]:
        assert resolved[name].startswith(version), (name, resolved[name])
    assert {"numpy", "keras-tuner", "tensorboard", "jax", "recipe-project"} <= set(resolved)
