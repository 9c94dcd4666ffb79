"""Flow ``profile_models``: profile a list of models in parallel on Dask (one model per worker, torch threads pinned
per worker) and write each cost graph to the catalog (tables graphs, graph_nodes, graph_edges); also
``import_graphs``, which loads msr-fiddle / PipeDream / forgeflow graph files into the same tables.

Inputs are checked before the run starts (spec, options, that each model builds, accepts the input and can be
captured), so bad input writes nothing to the catalog.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.artifacts import publish
from forgeflow.flows.runtime import open_flow_catalog, open_settings_catalog, recorded_run
from forgeflow.flows.settings import load_settings
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.profiling.profile import ProfileConfig
from forgeflow.tasks.profiling.steps import PROGRESS_TOPIC, import_graph_step, profile_model_step

# Share of a model's progress bar each profiling stage fills (timing dominates).
_STAGE_SPAN = {"build": (0, 5), "capture": (5, 10), "costs": (10, 20), "timing": (20, 97), "assemble": (97, 100)}


def make_config(input_shape: Sequence[int] | None = None, dtype: str = "float32", batch: int | None = None,
                granularity: str = "op", layer_depth: int = 2, repeats: int = 5, warmup: int = 2,
                link: str = "pcie4_x16", capture: str = "auto", threads: int | None = None) -> ProfileConfig:
    """The flow's profiling options as one validated ``ProfileConfig`` (types checked: served runs pass JSON)."""
    return ProfileConfig.from_dict({"input_shape": list(input_shape) if input_shape else None, "dtype": dtype,
                                    "batch": batch, "granularity": granularity, "layer_depth": layer_depth,
                                    "repeats": repeats, "warmup": warmup, "link": link, "capture": capture,
                                    "threads": threads})


def validate_profile_inputs(models: Sequence[str], config: ProfileConfig) -> None:
    """Fail now, with the problem named, on anything that would make a profile fail: an unknown model or a factory
    that raises, an input the model rejects, a model neither tracer can capture, a bad option (once per process)."""
    validate_once("profile_models", {"models": list(models), "config": config.to_dict()}, None,
                  lambda: _validate_profile_inputs(models, config))


def _validate_profile_inputs(models: Sequence[str], config: ProfileConfig) -> None:
    import torch

    from forgeflow.tasks.models.spec import ModelSpec, resolve_model
    from forgeflow.tasks.profiling.capture import capture_graph, run_eager
    from forgeflow.tasks.profiling.profile import DTYPES, example_input

    if not models:
        raise ForgeflowError("no model to profile: give at least one model spec")
    if len(set(models)) != len(models):
        raise ForgeflowError("the same model spec is listed twice")
    config.validate()
    for spec in models:
        ModelSpec.parse(spec)
        model = resolve_model(spec, **dict(config.model_kwargs)).eval().to(DTYPES[config.dtype])
        x = example_input(config.shape_for(spec), config.dtype)
        threads = torch.get_num_threads()
        try:
            ref = run_eager(model, (x,), what=f"model {spec}")
            capture_graph(model, (x,), method=config.capture, reference_output=ref)
        finally:
            torch.set_num_threads(threads)


@flow(name="profile_models", log_prints=False)
def profile_models(models: list[str], catalog: str | None = None, s3_endpoint: str | None = None,
                   input_shape: list[int] | None = None, dtype: str = "float32", batch: int | None = None,
                   granularity: str = "op", layer_depth: int = 2, repeats: int = 5, warmup: int = 2,
                   link: str = "pcie4_x16", capture: str = "auto", threads_per_worker: int | None = None
                   ) -> dict[str, Any]:
    """Profile ``models`` (one Prefect task each, run in parallel on the Dask workers); return the run id and one
    summary per graph (graph_id, flops, params, nodes, edges, latencies). The options make a ``ProfileConfig``
    (validated, with the models, before the run row is written)."""
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy(models)
    settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint)
    threads = threads_per_worker or settings.dask_threads
    config = make_config(input_shape, dtype, batch, granularity, layer_depth, repeats, warmup, link, capture, None)
    validate_profile_inputs(models, config)
    cat = open_settings_catalog(settings)
    params = {"models": list(models), **{k: v for k, v in config.to_dict().items() if k != "model_kwargs"},
              "threads_per_worker": threads}
    with recorded_run(cat, "profile_models", params) as run:
        for m in models:
            report(m, 0, 100)
        futures = [profile_model_step.submit(cat.url, run.id, m, config, settings.s3_endpoint, threads,
                                             step_cache=settings.step_cache)
                   for m in models]
        # prefect-dask starts its cluster on the first submit: subscribe to the workers' progress after it
        with _dask_progress(run.id) as relay:
            graphs = []
            for m, fut in zip(models, futures):
                graphs.append(fut.result())
                relay.done(m)
        run.summary.update({"graphs": [{k: g[k] for k in ("graph_id", "model", "flops", "params", "nodes", "edges",
                                                          "whole_model_ms", "node_sum_ratio")} for g in graphs]})
        result = {"run_id": run.id, "catalog": cat.url, "graphs": graphs}
    publish("profile-models", f"forgeflow profile: {len(graphs)} model(s)",
            f"Run `{run.id}` in catalog `{cat.url}`; graphs in tables `graphs`, `graph_nodes`, `graph_edges`.",
            table=run.summary["graphs"])
    return result


@flow(name="import_graphs", log_prints=False)
def import_graphs(paths: list[str], catalog: str | None = None, s3_endpoint: str | None = None,
                  fmt: str = "auto", link: str | None = None, training: bool = False) -> dict[str, Any]:
    """Load graph files (msr-fiddle JSON, PipeDream graph.txt, forgeflow JSON) into the catalog. Every file is parsed
    and validated before the run starts."""
    from forgeflow.tasks.profiling.graph_files import load_graph_file

    for p in paths:  # validate all first: nothing is written if one file is bad
        load_graph_file(p, fmt, link=link, training=training)
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    with recorded_run(cat, "import_graphs", {"paths": list(paths), "format": fmt, "link": link,
                                             "training": training}) as run:
        futures = [import_graph_step.submit(cat.url, run.id, p, fmt, link, training, settings.s3_endpoint,
                                            step_cache=settings.step_cache)
                   for p in paths]
        graphs = []
        for i, fut in enumerate(futures):
            graphs.append(fut.result())
            report("import", i + 1, len(paths))
        run.summary["graphs"] = [{"graph_id": g["graph_id"], "name": g["name"], "nodes": g["nodes"]} for g in graphs]
        result = {"run_id": run.id, "catalog": cat.url, "graphs": graphs}
    publish("import-graphs", f"forgeflow graph import: {len(graphs)} graph(s)",
            f"Run `{run.id}` in catalog `{cat.url}`.", table=run.summary["graphs"])
    return result


class _ProgressRelay:
    """Forward the workers' per-stage progress events of one run to ``flows.progress`` (a no-op without Dask).

    Events arrive through a topic subscription while the models run; ``drain()`` also replays what the scheduler
    holds, which (a worker's events and its task completion travel on one ordered stream) includes every event of a
    finished task. Each model's bar only moves forward.
    """

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.last: dict[str, int] = {}
        self.seen: set[tuple] = set()
        self._cm = None
        self.client = None
        try:
            from prefect_dask import get_dask_client

            self._cm = get_dask_client()
            self.client = self._cm.__enter__()
            self.client.subscribe_topic(PROGRESS_TOPIC, self.handle)
        except Exception:  # not on a Dask task runner: model-level progress only
            self.client = None

    def handle(self, event: Any) -> None:
        try:
            stamp, msg = event
            key = (stamp, msg.get("model"), msg.get("stage"), msg.get("done"))
            if msg.get("run_id") != self.run_id or key in self.seen:
                return
            self.seen.add(key)
            lo, hi = _STAGE_SPAN.get(msg["stage"], (0, 100))
            frac = msg["done"] / msg["total"] if msg["total"] else 1.0
            value = int(lo + (hi - lo) * frac)
            if value > self.last.get(msg["model"], -1):
                self.last[msg["model"]] = value
                report(msg["model"], value, 100)
        except Exception:  # a malformed event must not break the flow
            pass

    def drain(self) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            for event in self.client.get_events(PROGRESS_TOPIC):
                self.handle(event)

    def done(self, model: str) -> None:
        self.drain()
        self.last[model] = 100
        report(model, 100, 100)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(PROGRESS_TOPIC)
            with contextlib.suppress(Exception):
                self._cm.__exit__(None, None, None)


@contextlib.contextmanager
def _dask_progress(run_id: str) -> Iterator[_ProgressRelay]:
    relay = _ProgressRelay(run_id)
    try:
        yield relay
    finally:
        relay.close()
