"""`forgeflow verify`: robustness certificates for the quantized network that actually runs.

One coarse Prefect task (``verify-instances``) builds the exact integer network of the model under the plan (and
the float reference), fans the properties out on Dask (one per image x eps x network) and writes verify_results and
verify_networks; the flow publishes an artifact with the counts and a plot per eps.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.verify.pipeline import VerifyRequest, validate_request
from forgeflow.tasks.verify.steps import verify_step


@flow(name="verify", log_prints=False)
def verify_flow(request: dict[str, Any], catalog: str | None = None, s3_endpoint: str | None = None
                ) -> dict[str, Any]:
    """Verify ``request`` (``VerifyRequest.to_dict()``); return a JSON-able summary."""
    t0 = time.perf_counter()
    req = VerifyRequest.from_dict(request)
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy([req.model])
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_inputs(req, cat)  # before the run row: a served or deployed run with bad input writes nothing
    with recorded_run(cat, "verify", req.to_dict()) as run:
        report("verify: instances", 0, 1)
        out = verify_step.submit(cat.url, run.id, req, settings.s3_endpoint).result()
        report("verify: instances", 1, 1)
        counts = out["summary"].get("quantized", out["summary"].get("float"))
        run.summary.update({k: counts[k] for k in ("verified", "falsified", "unknown")})
        result = {"run_id": run.id, "catalog": cat.url, **out}
    result["seconds"] = time.perf_counter() - t0
    publish_verify(result, cat)
    return result


def result_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for net, s in result["summary"].items():
        for e, c in s["per_eps"].items():
            rows.append({"network": net, "eps": int(e), "verified": c["verified"], "falsified": c["falsified"],
                         "unknown": c["unknown"], "median_s": c["median_seconds"], "max_s": c["max_seconds"],
                         "methods": ", ".join(f"{m} {n}" for m, n in c["methods"].items())})
    return rows


def publish_verify(result: dict[str, Any], cat=None) -> None:
    from forgeflow.flows.artifacts import publish

    lines = [f"Run `{result['run_id']}` in catalog `{result['catalog']}`.", "",
             f"- model `{result['model']}`, plan {result['plan'] or 'float'}, activations {result['act_bits']} bits",
             f"- {result['images']} held-out images x eps {result['eps']} (steps of the quantized input)",
             "- held-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in result["accuracy"].items())]
    for net, s in result["summary"].items():
        lines.append(f"- **{net}**: {s['verified']} verified, {s['falsified']} falsified, {s['unknown']} unknown")
    publish("verify", f"forgeflow verify {result['model']}", "\n".join(lines) + "\n", table=result_table(result),
            plots=[("verified / falsified / unknown per eps (PNG)", result["plot"])], catalog=cat)


def validate_inputs(request: VerifyRequest, cat=None) -> None:
    """Everything checkable before the run starts (nothing is written on bad input); once per process."""
    validate_once("verify", request.to_dict(), getattr(cat, "url", None), lambda: validate_request(request, cat))
