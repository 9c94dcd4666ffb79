"""Issue 17 at the CLI: `catalog get` checks hashes and writes atomically through mkstemp; `catalog show` survives
parameters that are not JSON. One line and exit 2 on every refusal, no stray file."""

from __future__ import annotations

import os

import pytest

from forgeflow.catalog import open_catalog


def _run(argv, capsys):
    from forgeflow.flows.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def cat(tmp_path):
    c = open_catalog(str(tmp_path / "cat"))
    c.key = c.put_object(b"plot bytes", ".png", run_id="r1")
    return c


def test_get_refuses_a_tampered_object(cat, tmp_path, capsys):
    cat.store.put(cat.key, b"plot bytez")
    code, out, err = _run(["catalog", "get", cat.key, "-o", str(tmp_path / "x.png"), "--catalog", cat.url], capsys)
    assert code == 2 and cat.key in err and "corrupt" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_get_output_into_a_missing_folder_or_a_folder(cat, tmp_path, capsys):
    code, out, err = _run(["catalog", "get", cat.key, "-o", str(tmp_path / "nope" / "x.png"), "--catalog", cat.url],
                          capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope").exists()
    out_dir = tmp_path / "plots"
    out_dir.mkdir()
    from forgeflow.flows.cli import main

    main(["catalog", "get", cat.key, "-o", str(out_dir), "--catalog", cat.url])
    assert [p.name for p in out_dir.iterdir()] == [cat.key.rsplit("/", 1)[-1]]


def test_get_does_not_follow_a_planted_part_symlink(cat, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "x.png"
    os.symlink(victim, tmp_path / "x.png.part")
    from forgeflow.flows.cli import main

    main(["catalog", "get", cat.key, "-o", str(target), "--catalog", cat.url])
    assert victim.read_text() == "keep me"
    assert target.read_bytes() == b"plot bytes"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part") and not p.is_symlink()) == []


def test_show_with_parameters_that_are_not_json(cat, capsys):
    """A run whose parameters are not JSON (a foreign or damaged writer) is still shown -- status, what it wrote --
    with the stored text as it is and a note saying so; `show` is read-only, so hiding the run would help nobody.
    It used to be a json.loads traceback."""
    cat.append("runs", [{"flow": "f", "status": "completed", "parameters": "{not json"}], run_id="r9")
    cat.put_object(b"r9 plot", ".png", run_id="r9")
    from forgeflow.flows.cli import main

    main(["catalog", "show", "r9", "--catalog", cat.url, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "{not json" in out
    import json

    shown = json.loads(out)
    assert shown["run"]["parameters"]["_unparsed"] == "{not json" and "not valid JSON" in shown["run"]["parameters"]["_note"]
    assert shown["run"]["status"] == "completed" and {a["kind"] for a in shown["artifacts"]} == {"table", "object"}
    main(["catalog", "show", "r9", "--catalog", cat.url])  # the table view too
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "{not json" in out and "not valid JSON" in out and "status=completed" in out
