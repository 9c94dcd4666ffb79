"""Model specs in served and deployed runs: only allow-listed ones (see tasks.models.spec.check_model_allowed).

A flow run created from a deployment (``forgeflow serve`` / ``forgeflow deploy``, a schedule, the Prefect UI or
API) carries a deployment id; its model specs must be built-in families or modules under ``FORGEFLOW_MODEL_ALLOW``
prefixes. A run started from the CLI (no deployment) keeps full freedom.
"""

from __future__ import annotations

from typing import Iterable


def in_deployment() -> bool:
    try:
        from prefect.runtime import deployment

        return deployment.id is not None
    except Exception:  # noqa: BLE001 - outside a flow run
        return False


def enforce_model_policy(models: Iterable[str | None]) -> None:
    """Raise UnknownModelError for a model spec a served/deployed run may not build (before the run row)."""
    if not in_deployment():
        return
    from forgeflow.flows.settings import load_settings
    from forgeflow.tasks.models.spec import check_model_allowed

    allow = load_settings().model_allow
    for m in models:
        if m:
            check_model_allowed(m, allow)
