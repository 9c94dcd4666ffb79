"""Prefect artifacts every flow publishes: a markdown summary, a table, and links to its plots in the catalog."""

from __future__ import annotations

from typing import Any, Sequence


def publish(key: str, title: str, markdown: str, table: Sequence[dict[str, Any]] | None = None,
            plots: Sequence[tuple[str, str]] = ()) -> None:
    """``plots``: (caption, catalog key) pairs. Keys are lower-case with dashes (Prefect's rule)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = "".join(ch if ch.isalnum() else "-" for ch in key.lower()).strip("-")[:60] or "forgeflow"
    body = f"# {title}\n\n{markdown}\n"
    if plots:
        body += "\n## Plots\n" + "\n".join(f"- {caption}: `{k}`" for caption, k in plots) + "\n"
    create_markdown_artifact(key=f"{key}-summary", markdown=body, description=title)
    if table:
        create_table_artifact(key=f"{key}-table", table=[{k: _plain(v) for k, v in row.items()} for row in table],
                              description=title)


def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    return str(v)
