"""The docs name what the code has: every config key, every recipe ID."""

import re
from pathlib import Path

from conftest import DEFAULT_TASK, explain, run_in

DOCS = Path(__file__).resolve().parents[1] / "docs"

# The IDs of the recipe checklist (shared/RECIPE.md): R1-R6, T, U.
RECIPE_IDS = (
    [f"R1.{i}" for i in range(1, 7)]
    + [f"R2.{i}" for i in range(1, 14)]
    + [f"R3.{i}" for i in range(1, 5)]
    + [f"R4.{i}" for i in range(1, 14)]
    + ["R5.1", "R5.2", "R6.1", "R6.2", "R6.3"]
    + [f"T{i}" for i in range(1, 19)]
    + [f"U{i}" for i in range(1, 20)]
)


def test_configuration_doc_lists_every_key_with_its_default(baked):
    listing = (
        "from recipe_project import config\n"
        "for key, value, _ in config.iter_fields(config.Config()): print(key)"
    )
    proc = run_in(baked(DEFAULT_TASK), "-c", listing, timeout=120)
    assert proc.returncode == 0, explain(proc)
    keys = proc.stdout.split()
    assert "optimizer.learning_rate" in keys
    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in keys if f"| `{key}` |" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_recipe_doc_maps_every_id():
    text = (DOCS / "recipe.md").read_text()
    rows = {m.group(1) for m in re.finditer(r"^\| (R\d\.\d+|T\d+|U\d+) \|", text, re.M)}
    missing = [i for i in RECIPE_IDS if i not in rows]
    assert not missing, f"docs/recipe.md has no row for {missing}"
