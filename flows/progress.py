"""Progress reporting from flows to whoever drives them (the CLI shows a rich progress bar on stderr)."""

from __future__ import annotations

from typing import Callable

_reporter: Callable[[str, int, int], None] | None = None


def set_reporter(fn: Callable[[str, int, int], None] | None) -> None:
    global _reporter
    _reporter = fn


def report(step: str, done: int, total: int) -> None:
    """Step ``step`` is ``done`` of ``total``."""
    if _reporter is not None:
        _reporter(step, done, total)
