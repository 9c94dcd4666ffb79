"""Prefect @task wrappers for profiling (the only Prefect import of this domain)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from catalog import open_catalog
from tasks.profiling.module_summary import summarize_model


@task(name="summarize-model", retries=1, retry_delay_seconds=2, cache_policy=(INPUTS - "run_id") + TASK_SOURCE,
      persist_result=True)
def summarize_model_step(catalog_url: str, run_id: str, spec: str, input_shape: tuple[int, ...] | None = None,
                         endpoint_url: str | None = None) -> dict:
    """Per-module parameter and FLOP counts of ``spec`` into table ``model_summaries``; returns the totals."""
    summary = summarize_model(spec, input_shape)
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    key = cat.append("model_summaries", summary.rows(), run_id=run_id, description=f"module summary of {spec}")
    return {"model": summary.spec, "input_shape": list(summary.input_shape), "params": summary.total_params,
            "flops": summary.total_flops, "modules": len(summary.modules), "file": key}
