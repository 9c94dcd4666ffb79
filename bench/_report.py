"""Write a benchmark's figures into docs/benchmarks.md between its own markers (other sections are kept)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure below was measured by the script named in its section, with the command shown.\n"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_section(name: str, markdown: str, doc: Path = DOC, commands: list[str] | None = None) -> Path:
    """Replace (or add) the section of ``name`` with ``markdown`` plus the command and date that made it.
    ``commands``: every command whose figures the section holds, when a benchmark ran in parts (default: this
    process's own command line)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    cmds = commands or [command_line()]
    label = "Command" if len(cmds) == 1 else "Commands"
    stamp = (f"\n\n_{label}: {'; '.join(f'`{c}`' for c in cmds)} — "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}._\n")
    block = f"{start}\n{markdown.rstrip()}{stamp}{end}"
    text = doc.read_text() if doc.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc
