"""Solve a catalog graph and write the certified result back to the catalog (no Prefect here; see steps.py).

Tables written under the run's id (declared in ``catalog/tables/partition.py``): ``partition_results``,
``partition_plans`` (node -> stage), ``partition_stage_loads`` and ``partition_bounds``; plus the stage-load plot as a
PNG object. The plan is validated (``Plan.checked``) inside the solver before anything is written.
"""

from __future__ import annotations

import uuid
from typing import Any

from forgeflow.tasks.dask_fanout import SERIAL
from forgeflow.tasks.partition.adapters import problem_from_graph
from forgeflow.tasks.partition.plot import stage_loads_png
from forgeflow.tasks.partition.result import PartitionResult
from forgeflow.tasks.partition.solve import SolveConfig, partition
from forgeflow.tasks.profiling.graph_store import read_graph


def write_result(cat, run_id: str, problem, result: PartitionResult) -> dict[str, Any]:
    """Append the result's rows and its plot; return ``{"result_id", "files", "plot"}``."""
    result_id = uuid.uuid4().hex
    tables = result.to_arrow(problem, result_id)
    files = {name: cat.append(name, rows, run_id=run_id,
                              description=f"{name} of {result.problem_name} for k={result.k}")
             for name, rows in tables.items()}
    plot = cat.put_object(stage_loads_png(result), suffix=".png", run_id=run_id,
                          description=f"stage loads of {result.problem_name}, k={result.k}", kind="plot")
    return {"result_id": result_id, "files": files, "plot": plot}


def partition_catalog_graph(cat, run_id: str, graph_id: str, stages: int, *, time_limit: float = 60.0,
                            memory_cap: float | None = None, seed: int = 0, executor: Any = SERIAL) -> dict[str, Any]:
    """Read graph ``graph_id``, solve it for ``stages`` stages, write the result; return PLAN.json plus keys."""
    graph = read_graph(cat, graph_id)
    problem = problem_from_graph(graph, stages, memory_cap)
    result = partition(problem, SolveConfig(time_limit=time_limit, seed=seed), executor, graph_id=graph_id)
    written = write_result(cat, run_id, problem, result)
    return {**result.to_plan_json(), **written}
