"""`forgeflow partition`: split a profiled graph over k pipelined accelerators with a certified throughput bound.

Steps (coarse Prefect tasks on Dask, each writing to the catalog under this run's id):
1. the graph: imported from a file (msr-fiddle / PipeDream / forgeflow JSON), profiled from a model spec, or an
   existing catalog graph by id -> graphs, graph_nodes, graph_edges
2. partition-graph: DP over ideals, BRKGA over orders, HiGHS lower bounds (fanned out over the Dask workers)
   -> partition_results, partition_plans, partition_stage_loads, partition_bounds, a PNG of the stage loads

Everything checkable is checked before the run starts (``validate_inputs``), so bad input writes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run, step_cache
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.partition.request import PartitionRequest, check_stages


def run_partition_step(cat_url: str, run_id: str, graph_id: str, stages: int, time_limit: float,
                       memory_cap: float | None, seed: int, s3_endpoint: str | None) -> dict[str, Any]:
    """The partition step for a graph already in the catalog (shared with `forgeflow optimize`)."""
    from forgeflow.tasks.partition.steps import partition_step

    report("partition", 0, 1)
    out = partition_step.submit(cat_url, run_id, graph_id, stages, time_limit, memory_cap, seed, s3_endpoint,
                                step_cache=step_cache()).result()
    report("partition", 1, 1)
    return out


def partition_in_optimize(cat_url: str, run_id: str, model: str, stages: int, s3_endpoint: str | None,
                          input_shape: list[int] | None = None, graph_id: str | None = None,
                          time_limit: float = 30.0) -> dict[str, Any]:
    """The partition step of `forgeflow optimize`: profile ``model`` unless a catalog ``graph_id`` is given, then
    partition its graph over ``stages`` accelerators; returns the certificate without the per-method details."""
    if graph_id is None:
        from forgeflow.flows.profile_models import make_config
        from forgeflow.tasks.profiling.steps import profile_model_step

        graph_id = profile_model_step.submit(cat_url, run_id, model, make_config(input_shape), s3_endpoint,
                                             step_cache=step_cache()).result()["graph_id"]
    out = run_partition_step(cat_url, run_id, graph_id, stages, time_limit, None, 0, s3_endpoint)
    return {k: out[k] for k in ("graph_id", "result_id", "k", "stages", "bottleneck", "lower_bound", "ratio",
                                "status", "method", "lower_bound_method", "plot")}


@flow(name="partition_graph", log_prints=False)
def partition_graph(stages: int, graph_file: str | None = None, model: str | None = None,
                    graph_id: str | None = None, time_limit: float = 60.0, memory_cap: float | None = None,
                    seed: int = 0, catalog: str | None = None, s3_endpoint: str | None = None,
                    input_shape: list[int] | None = None) -> dict[str, Any]:
    """Partition one graph (exactly one of ``graph_file``, ``model``, ``graph_id``) into at most ``stages`` stages
    (the parameters make a ``PartitionRequest``, validated before the run row is written); return PLAN.json (k,
    stages, bottleneck, lower_bound, ratio, methods ...) plus run id, catalog keys and plot."""
    from forgeflow.tasks.profiling.steps import import_graph_step, profile_model_step

    stages = check_stages(stages)  # a deployment's parameters skip the CLI's checks
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy([model])
    req = PartitionRequest.from_dict({"stages": stages, "graph_file": graph_file, "model": model,
                                      "graph_id": graph_id, "time_limit": time_limit, "memory_cap": memory_cap,
                                      "seed": seed, "input_shape": input_shape})
    time_limit, memory_cap, seed = req.time_limit, req.memory_cap, req.seed
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_inputs(req, cat)  # before the run row: a served or deployed run with bad input writes nothing
    with recorded_run(cat, "partition_graph", req.to_dict()) as run:
        if graph_file is not None:
            report("graph", 0, 1)
            graph_id = import_graph_step.submit(cat.url, run.id, graph_file, "auto", None, False,
                                                settings.s3_endpoint, step_cache=step_cache()).result()["graph_id"]
            report("graph", 1, 1)
        elif model is not None:
            from forgeflow.flows.profile_models import make_config

            report("graph", 0, 1)
            config = make_config(input_shape)
            graph_id = profile_model_step.submit(cat.url, run.id, model, config, settings.s3_endpoint,
                                                 step_cache=step_cache()).result()["graph_id"]
            report("graph", 1, 1)
        if graph_id is None:
            raise ForgeflowError("give a graph: a file, a model spec or a catalog graph id")
        out = run_partition_step(cat.url, run.id, graph_id, stages, time_limit, memory_cap, seed,
                                 settings.s3_endpoint)
        run.summary.update({k: out[k] for k in ("graph_id", "k", "bottleneck", "lower_bound", "ratio", "status",
                                                "result_id")})
        result = {"run_id": run.id, "catalog": cat.url, **out}
    publish_partition(result, cat)
    return result


def publish_partition(result: dict[str, Any], cat=None) -> None:
    """Prefect artifact: the certificate in markdown, the stage loads as a table, the plot's catalog key."""
    from forgeflow.flows.artifacts import publish

    md = (f"Run `{result['run_id']}` in catalog `{result['catalog']}`, result `{result['result_id']}`.\n\n"
          f"- graph `{result['graph']}` ({result['graph_id']}), k = {result['k']}\n"
          f"- bottleneck **{result['bottleneck']:.6g} ms** (plan by {result['method']}); throughput "
          f"{1000.0 / result['bottleneck'] if result['bottleneck'] > 0 else float('inf'):.4g} inferences/s\n"
          f"- proven lower bound {result['lower_bound']:.6g} ms ({result['lower_bound_method']}); certified ratio "
          f"{result['ratio']:.5f} ({result['status']})\n")
    publish("partition", f"forgeflow partition {result['graph']} k={result['k']}", md,
            table=result["stage_loads"], plots=[("stage loads (PNG)", result["plot"])], catalog=cat)


def load_problem_for_validation(stages: int, graph_file: str | None, graph_id: str | None,
                                memory_cap: float | None, cat=None):
    """The partitioning instance of a file or catalog graph (raises InvalidGraphError / GraphNotFoundError)."""
    from forgeflow.tasks.partition.adapters import problem_from_graph

    if graph_file is not None:
        from forgeflow.tasks.profiling.graph_files import load_graph_file

        graph = load_graph_file(graph_file)
    else:
        from forgeflow.tasks.profiling.graph_store import read_graph

        graph = read_graph(cat, graph_id)
    return problem_from_graph(graph, stages, memory_cap)


def validate_inputs(req: PartitionRequest, cat=None) -> None:
    """Everything checkable before the run starts: one graph source, k >= 1, a positive time limit, and for a file
    or catalog graph the whole instance (DAG, costs, co-location, memory cap >= the largest class); once per
    process."""
    validate_once("partition_graph", req.to_dict(), getattr(cat, "url", None), lambda: _validate(req, cat))


def _validate(req: PartitionRequest, cat) -> None:
    check_stages(req.stages)
    req.validate()
    if req.model is not None:
        from forgeflow.flows.profile_models import make_config, validate_profile_inputs

        validate_profile_inputs([req.model], make_config(req.input_shape))
        return
    load_problem_for_validation(req.stages, req.graph_file, req.graph_id, req.memory_cap, cat)
