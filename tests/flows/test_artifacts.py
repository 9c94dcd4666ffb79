"""Plot sections of Prefect artifacts: PNGs embedded from the catalog, keys with the command that fetches them."""

from __future__ import annotations

import base64

from forgeflow.catalog import open_catalog
from forgeflow.flows.artifacts import MAX_EMBED_BYTES, plot_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def test_small_png_is_embedded_and_its_key_listed(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    key = cat.put_object(PNG + b"pixels", ".png")
    md = plot_markdown([("front", key)], cat)
    assert f"**front**: [`{key}`](data:image/png;base64," in md  # the key is a link the UI opens
    assert f"forgeflow catalog get {key} -o {key.rsplit('/', 1)[-1]} --catalog {cat.url}" in md
    embedded = md.split("![front](data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(embedded) == PNG + b"pixels"
    linked = md.split(f"[`{key}`](data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert linked == embedded


def test_large_missing_and_non_png_objects_are_listed_not_embedded(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    big = cat.put_object(PNG + bytes(MAX_EMBED_BYTES), ".png")
    text = cat.put_object(b"not an image", ".png")
    gone = "objects/ab/ab" + "0" * 62 + ".png"  # a well-formed key of an object that is not there
    md = plot_markdown([("big", big), ("gone", gone), ("text", text)], cat)
    assert "data:image" not in md
    assert f"not embedded: {MAX_EMBED_BYTES + 8:,} bytes" in md
    assert f"not embedded: object '{gone}' not found" in md
    assert f"`{text}`" in md


def test_without_a_catalog_only_keys(tmp_path):
    md = plot_markdown([("front", "objects/ab/abc.png")])
    assert "`objects/ab/abc.png`" in md and "data:image" not in md and "--catalog" not in md
    assert plot_markdown([]) == ""
