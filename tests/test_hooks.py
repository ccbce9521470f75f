"""The pre-gen hook rejects names that would break or shadow imports, in one clear line."""

import subprocess
import sys

import pytest
from conftest import TEMPLATE


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_slug": "1abc"}, "project_slug '1abc' must start with a lowercase letter"),
        ({"project_slug": "My_Proj"}, "project_slug 'My_Proj' must start with a lowercase"),
        ({"package_name": "my-pkg"}, "package_name 'my-pkg' is not a lowercase Python identifier"),
        ({"package_name": "MyPkg"}, "package_name 'MyPkg' is not a lowercase Python identifier"),
        ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
        ({"package_name": "random"}, "package_name 'random' shadows the Python module"),
        ({"package_name": "test"}, "package_name 'test' shadows the Python module"),
        ({"package_name": "keras"}, "package_name 'keras' shadows the Python module"),
        ({"package_name": "sklearn"}, "package_name 'sklearn' shadows the Python module"),
        ({"project_name": "TensorFlow"}, "package_name 'tensorflow' shadows the Python module"),
    ],
)
def test_invalid_names_are_rejected(tmp_path, answers, message):
    # The CLI, not pytest-cookies: the hook's message goes to the process's stderr.
    extra = [f"{key}={value}" for key, value in answers.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path), str(TEMPLATE)]
        + extra,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # the aborted bake leaves nothing behind


def test_invalid_name_fails_the_bake(cookies):
    result = cookies.bake(extra_context={"package_name": "random"})
    assert result.exit_code != 0
    assert result.exception is not None


def test_valid_unusual_name_bakes(cookies):
    result = cookies.bake(extra_context={"project_name": "Net 2 Go", "package_name": "net2go"})
    assert result.exit_code == 0, result.exception
    assert (result.project_path / "src" / "net2go").is_dir()
