"""Prefect @task wrappers for profiling (the only Prefect import of this domain)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.step_cache import cached_step, step_options
from forgeflow.tasks.profiling.module_summary import summarize_model


@task(name="summarize-model", cache_policy=NO_CACHE, **step_options())
@cached_step("summarize-model")
def summarize_model_step(catalog_url: str, run_id: str, spec: str, input_shape: tuple[int, ...] | None = None,
                         endpoint_url: str | None = None) -> dict:
    """Per-module parameter and FLOP counts of ``spec`` into table ``model_summaries``; returns the totals."""
    summary = summarize_model(spec, input_shape)
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    key = cat.append("model_summaries", summary.rows(), run_id=run_id, description=f"module summary of {spec}")
    return {"model": summary.spec, "input_shape": list(summary.input_shape), "params": summary.total_params,
            "flops": summary.total_flops, "modules": len(summary.modules), "file": key}


PROGRESS_TOPIC = "forgeflow-profile-progress"


def _progress_to_client(run_id: str, spec: str):
    """A progress callback that posts (stage, done, total) as a Dask event the flow subscribes to (no-op outside a
    Dask worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None

    def post(stage: str, done: int, total: int) -> None:
        try:
            worker.log_event(PROGRESS_TOPIC, {"run_id": run_id, "model": spec, "stage": stage, "done": done,
                                              "total": total})
        except Exception:  # progress is cosmetic; never fail a measurement over it
            pass

    return post


@task(name="profile-model", cache_policy=NO_CACHE, **step_options())
@cached_step("profile-model")
def profile_model_step(catalog_url: str, run_id: str, spec: str, config: Any, endpoint_url: str | None = None,
                       threads_per_worker: int = 1) -> dict:
    """Profile ``spec`` with ``config`` (a ``ProfileConfig``) on this worker, with torch threads pinned to the
    worker's share of CPUs, and write the graph to the catalog. Cached across runs like every step (a rerun with the
    same model, configuration and code reuses the measured graph; ``FORGEFLOW_STEP_CACHE=0`` measures again).
    Returns the graph's summary."""
    import os
    import sys

    # Before torch loads libgomp in a fresh worker: idle OpenMP threads sleep instead of spinning, so a worker's
    # timing is not slowed several-fold by other busy processes on shared cores (see bench/profiling.py). libgomp
    # reads it once, at load: record whether the value in the environment is the one in force.
    policy_in_force = "torch" not in sys.modules or "OMP_WAIT_POLICY" in os.environ
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from forgeflow.tasks.profiling.graph_store import write_graph
    from forgeflow.tasks.profiling.profile import profile_with_config
    from forgeflow.tasks.profiling.workers import exclusive_measurement, pin_worker, worker_slot

    with exclusive_measurement():
        pinned = pin_worker(config.threads or threads_per_worker, worker_slot())
        graph = profile_with_config(spec, config, progress=_progress_to_client(run_id, spec))
    graph = graph.replace_meta(worker={**pinned, "omp_wait_policy_in_force": policy_in_force})
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    written = write_graph(cat, graph, run_id)
    return graph_summary(graph, files=written["files"])


@task(name="import-graph", cache_policy=NO_CACHE, **step_options())
@cached_step("import-graph")
def import_graph_step(catalog_url: str, run_id: str, path: str, fmt: str = "auto", link: str | None = None,
                      training: bool = False, endpoint_url: str | None = None) -> dict:
    """Load an msr-fiddle / PipeDream / forgeflow graph file and write it to the catalog."""
    from forgeflow.tasks.profiling.graph_files import load_graph_file
    from forgeflow.tasks.profiling.graph_store import write_graph

    graph = load_graph_file(path, fmt, link=link, training=training)
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    written = write_graph(cat, graph, run_id)
    return graph_summary(graph, files=written["files"])


def graph_summary(graph, files: dict | None = None) -> dict:
    """The JSON-able figures of a graph that flows and the CLI report."""
    m = graph.meta
    t = m.get("timing") if isinstance(m.get("timing"), dict) else {}
    out = {
        "graph_id": graph.graph_id, "structure_id": graph.structure_id, "name": graph.name,
        "source": m.get("source"), "model": m.get("model"), "input_shape": m.get("input_shape"),
        "granularity": m.get("granularity"), "capture": m.get("capture"), "capture_notes": m.get("capture_notes"),
        "flops": graph.total_flops, "flops_reference": m.get("flops_reference"), "params": m.get("params"),
        "param_bytes": graph.total_param_bytes, "nodes": len(graph.nodes), "edges": len(graph.edges),
        "latency_sum_ms": graph.total_latency_ms, "whole_model_ms": t.get("whole_model_ms"),
        "whole_model_spread_ms": t.get("whole_model_spread_ms"), "node_sum_ratio": t.get("node_sum_ratio"),
        "repeats": t.get("repeats"), "link": (m.get("link") or {}).get("name"), "context": t.get("context"),
        "worker": m.get("worker"),
    }
    if files is not None:
        out["files"] = files
    return out
