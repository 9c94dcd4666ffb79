"""One `--data` flag for quantize, search and federate: the same bad file gets the same one-line error, exit 2,
nothing written; `--dataset` still works as a hidden alias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BAD = {
    "text.txt": ("expected digits, a .npz", lambda p: p.write_text("1,2,3\n")),
    "text.npz": ("not a readable .npz", lambda p: p.write_text("1,2,3\n")),
    "objects.npz": ("object (pickled) arrays",
                    lambda p: np.savez(p, x=np.array([{"a": 1}] * 8, dtype=object), y=np.arange(8))),
    "empty.parquet": ("not a readable Parquet file", lambda p: p.write_bytes(b"")),
}
COMMANDS = {
    "quantize": ["quantize", "--model", "forgeflow:digits_mlp", "--size-budget", "4000"],
    "search": ["search", "--budget", "20"],
    "federate": ["federate", "--model", "forgeflow:digits_mlp"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_data_file_one_line_exit_2_nothing_written(command, name, tmp_path, capsys, monkeypatch):
    from forgeflow.flows.cli import main

    monkeypatch.setenv("FORGEFLOW_DASK_WORKERS", "1")
    message, make = BAD[name]
    path = tmp_path / name
    make(path)
    flag = "--dataset" if command == "search" and name == "text.txt" else "--data"  # the deprecated alias too
    cat = tmp_path / "cat"
    with pytest.raises(SystemExit) as exc:
        main([*COMMANDS[command], flag, str(path), "--catalog", str(cat)])
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:") and message in err and name in err, err
    assert "Traceback" not in err + out
    assert not (cat.exists() and [p for p in Path(cat).rglob("*") if p.is_file()])
