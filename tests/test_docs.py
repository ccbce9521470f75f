"""The docs ship in the bake and name what the code has: every config key, every recipe ID,
every docs/ path a message or comment points at."""

import re
from pathlib import Path

import pytest
from conftest import DEFAULT_TASK, TASKS, TEMPLATE, explain, run_in

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
# An ID as the code cites it: "(R2.4)", "T14,", "U6:" ... and the step names R1-R6.
CITED_ID = re.compile(r"(?<![\w.])(R\d(?:\.\d+)?|T\d+|U\d+)(?!\w)")
# A path in the bake, not the tail of a URL (".../recipe/blob/main/docs/...").
DOCS_PATH = re.compile(r"(?<![/\w.])docs/[\w./-]*[\w-]")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def project_texts(project: Path):
    """What a user of the bake reads besides its docs: README, messages and comments in the
    package, config files and their comments, the Makefile, pyproject.toml and CI."""
    names = ["README.md", "Makefile", "pyproject.toml"]
    paths = [project / name for name in names]
    paths += sorted((project / "src").rglob("*.py")) + sorted((project / "configs").rglob("*"))
    paths += sorted((project / ".github").rglob("*.yml"))
    return [(path, path.read_text()) for path in paths if path.is_file()]


def test_configuration_doc_lists_every_key_with_its_default(baked):
    project = baked(DEFAULT_TASK)
    listing = (
        "from recipe_project import config\n"
        "for key, value, _ in config.iter_fields(config.Config()): print(key)"
    )
    proc = run_in(project, "-c", listing, timeout=120)
    assert proc.returncode == 0, explain(proc)
    keys = proc.stdout.split()
    assert "optimizer.learning_rate" in keys
    text = (project / "docs" / "configuration.md").read_text()
    missing = [key for key in keys if f"| `{key}` |" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_recipe_doc_maps_every_id_and_says_what_each_means(baked):
    text = (baked(DEFAULT_TASK) / "docs" / "recipe.md").read_text()
    rows = {m.group(1) for m in re.finditer(r"^\| (R\d\.\d+|T\d+|U\d+) \|", text, re.M)}
    missing = [i for i in RECIPE_IDS if i not in rows]
    assert not missing, f"docs/recipe.md has no row for {missing}"
    legend = text.split("\n## The checklist\n", 1)[1]
    explained = set(re.findall(r"^- (R\d\.\d+|T\d+|U\d+) \S", legend, re.M))
    explained |= set(re.findall(r"^### (R\d) ", legend, re.M))
    unexplained = [i for i in RECIPE_IDS if i not in explained]
    assert not unexplained, f"the checklist in docs/recipe.md lacks {unexplained}"


@pytest.mark.parametrize("task", TASKS)
def test_every_cited_recipe_id_is_explained_in_the_bake(baked, task):
    project = baked(task)
    legend = (project / "docs" / "recipe.md").read_text().split("\n## The checklist\n", 1)[1]
    explained = set(re.findall(r"^- (R\d\.\d+|T\d+|U\d+) ", legend, re.M))
    explained |= set(re.findall(r"^### (R\d) ", legend, re.M))
    texts = project_texts(project) + [(p, p.read_text()) for p in (project / "docs").glob("*.md")]
    cited = {(path.name, m) for path, text in texts for m in CITED_ID.findall(text)}
    assert len(cited) > 50
    unexplained = sorted((name, i) for name, i in cited if i not in explained)
    assert not unexplained, f"cited but not in docs/recipe.md's checklist: {unexplained}"


@pytest.mark.parametrize("task", TASKS)
def test_every_docs_path_the_bake_mentions_is_in_the_bake(baked, task):
    project = baked(task)
    mentions = {
        (str(path.relative_to(project)), found.rstrip("."))
        for path, text in project_texts(project)
        for found in DOCS_PATH.findall(text)
    }
    assert ("README.md", "docs/recipe.md") in mentions
    assert any(name.startswith("src/") for name, _ in mentions)  # the package's messages
    missing = sorted((name, docs) for name, docs in mentions if not (project / docs).exists())
    assert not missing, f"mentioned but not baked: {missing}"


@pytest.mark.parametrize("task", TASKS)
def test_links_between_the_baked_docs_resolve(baked, task):
    project = baked(task)
    pages = [project / "README.md", *sorted((project / "docs").glob("*.md"))]
    assert len(pages) >= 8
    broken = [
        (page.name, target)
        for page in pages
        for target in MARKDOWN_LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken, f"links to nothing: {broken}"


def test_the_template_readme_links_resolve():
    from urllib.parse import unquote

    readme = TEMPLATE / "README.md"
    targets = [t for t in MARKDOWN_LINK.findall(readme.read_text()) if "://" not in t]
    assert any("docs/recipe.md" in t for t in targets)
    broken = [t for t in targets if not (TEMPLATE / unquote(t)).exists()]
    assert not broken, f"README.md links to nothing: {broken}"
