"""Every answer bakes, renders completely and keeps or drops the right files."""

import json
import re

import pytest
from conftest import TASKS

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
    answers = json.loads((project / ".cookiecutter.json").read_text())
    assert answers["project_slug"] == "my-keras-net"
    assert answers["package_name"] == "my_keras_net"
    assert answers["task"] == "regression"
    assert answers["author_name"] == "Ada"
    assert not [key for key in answers if key.startswith("_")]
    assert (project / "src" / "my_keras_net").is_dir()
    pyproject = (project / "pyproject.toml").read_text()
    assert 'my-keras-net = "my_keras_net.cli:main"' in pyproject


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
        assert "2026 Ada" in text


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
        text = workflow.read_text()
        assert f'python-version: "{python_version}"' in text
        assert "${{ github.ref }}" in text  # survived rendering via {% raw %}
        for step in ["make install", "make lint", "make test"]:
            assert step in text
