"""Reject project names that would generate a broken or shadowing package."""

import keyword
import re
import sys

SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"

# Import names of the generated project's dependencies (and theirs that users meet):
# a package named like one of them would be imported instead of the real module.
DEPENDENCIES = set(
    "keras tensorflow keras_tuner kerastuner tensorboard sklearn numpy scipy matplotlib yaml "
    "PIL pillow pandas h5py jax torch absl google grpc ml_dtypes optree rich pytest ruff".split()
)
# stdlib_module_names leaves out CPython's own `test` package; `tests` is the project's.
SHADOWED = {name.lower() for name in DEPENDENCIES | {"test", "tests"} | sys.stdlib_module_names}


def problem():
    if not re.fullmatch(r"[a-z][a-z0-9-]*", SLUG):
        return (
            f"project_slug '{SLUG}' must start with a lowercase letter and contain "
            "only lowercase letters, digits and '-'; set project_slug explicitly"
        )
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", PACKAGE):
        return (
            f"package_name '{PACKAGE}' is not a lowercase Python identifier; "
            "use lowercase letters, digits and '_'"
        )
    if keyword.iskeyword(PACKAGE):
        return f"package_name '{PACKAGE}' is a Python keyword; choose another"
    if PACKAGE in SHADOWED:
        return f"package_name '{PACKAGE}' shadows the Python module of that name; choose another"
    return None


if (message := problem()) is not None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
