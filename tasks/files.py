"""Reading a user's input file with one clear error: missing, a folder, not text, not JSON. Every reader of graph,
instance and other input files goes through here, so the same mistake gets the same one-line message everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forgeflow.tasks.errors import ForgeflowError


def read_text(path: str | os.PathLike[str], what: str, error: type[ForgeflowError] = ForgeflowError) -> str:
    """The text of ``path``, or ``error`` naming the ``what`` file ("graph", "instance") and the problem."""
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise error(f"{what} file not found: {p}") from None
    except IsADirectoryError:
        raise error(f"{what} file {p} is a directory") from None
    except UnicodeDecodeError:
        raise error(f"{what} file {p} is not a text file") from None


def read_json(path: str | os.PathLike[str], what: str, error: type[ForgeflowError] = ForgeflowError) -> Any:
    """The JSON document in ``path``, or ``error`` naming the ``what`` file and the problem."""
    text = read_text(path, what, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} file {Path(path)} is not valid JSON: {exc}") from None
