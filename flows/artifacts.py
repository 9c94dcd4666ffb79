"""Prefect artifacts every flow publishes: a markdown summary (with its plots embedded), a table, and the catalog
keys of its plots with the command that fetches them.

Plots live in the catalog, which may be a local folder the Prefect UI cannot reach or a private S3 bucket, so a link
would not open. The PNG itself is embedded in the markdown as a ``data:`` URI (the Prefect UI renders it; plots over
``MAX_EMBED_BYTES`` are listed only), next to its key and ``forgeflow catalog get`` line.
"""

from __future__ import annotations

import base64
import shlex
from typing import Any, Sequence

MAX_EMBED_BYTES = 512 * 1024  # PNGs embedded in artifacts up to this size (stored in Prefect's database)


def plot_markdown(plots: Sequence[tuple[str, str]], catalog=None) -> str:
    """Markdown for ``plots`` ((caption, catalog key) pairs): each key with the command that fetches it, and the PNG
    embedded when ``catalog`` (a ``catalog.Catalog``) is given and the object is small enough."""
    if not plots:
        return ""
    lines = ["", "## Plots"]
    for caption, key in plots:
        fetch = f"forgeflow catalog get {shlex.quote(key)} -o {shlex.quote(key.rsplit('/', 1)[-1])}"
        if catalog is not None:
            fetch += f" --catalog {shlex.quote(catalog.url)}"
        head = f"**{caption}**: `{key}` (`{fetch}`)"
        if catalog is None:
            lines += ["", head]
            continue
        try:
            data = catalog.get_object(key)
        except Exception as exc:  # an artifact is a report: say why the plot is missing, do not fail the run
            lines += ["", head, f"(not embedded: {exc})"]
            continue
        if len(data) > MAX_EMBED_BYTES:
            lines += ["", head, f"(not embedded: {len(data):,} bytes > {MAX_EMBED_BYTES:,})"]
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            uri = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"
            # the key is a link to the PNG itself (the UI cannot reach a catalog folder or a private bucket)
            lines += ["", f"**{caption}**: [`{key}`]({uri}) (`{fetch}`)", "", f"![{caption}]({uri})"]
        else:
            lines += ["", head]
    return "\n".join(lines) + "\n"


def publish(key: str, title: str, markdown: str, table: Sequence[dict[str, Any]] | None = None,
            plots: Sequence[tuple[str, str]] = (), catalog=None) -> None:
    """``plots``: (caption, catalog key) pairs, embedded when ``catalog`` is given. Keys are lower-case with dashes
    (Prefect's rule)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = "".join(ch if ch.isalnum() else "-" for ch in key.lower()).strip("-")[:60] or "forgeflow"
    body = f"# {title}\n\n{markdown}\n" + plot_markdown(plots, catalog)
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
