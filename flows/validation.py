"""Flows validate their inputs on entry, before the run's `running` row is written, so a served or deployed run
with bad parameters writes nothing. The CLI validates the same inputs first (for its one-line error before any
Prefect start-up); ``validate_once`` runs each distinct check once per process, so the flow the CLI then calls does
not repeat it."""

from __future__ import annotations

import json
from typing import Any, Callable

_PASSED: set[str] = set()


def validate_once(flow: str, params: Any, catalog_url: str | None, check: Callable[[], None]) -> None:
    """Run ``check`` (raises a ForgeflowError naming the problem) unless it already passed in this process for the
    same flow, parameters and catalog."""
    key = json.dumps([flow, params, catalog_url], sort_keys=True, default=str)
    if key in _PASSED:
        return
    check()
    _PASSED.add(key)
