"""The one Markdown table writer of the reports (inspect.md, compare.md, ...)."""

from __future__ import annotations


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a Markdown table; floats to 4 significant digits, pipes and newlines escaped,
    a missing cell empty."""

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
