"""`forgeflow plan`: stage placement and bit widths decided together for a hardware target, with a certified bound.

Steps (coarse Prefect tasks on Dask, each writing to the catalog under this run's id):
1. the instance: a documented instance file (msr-fiddle JSON + bitOptions), or built from a model spec (profiled,
   sensitivities from data or ZeroQ synthetic inputs) and a target file -> stored as a catalog object;
2. plan-instance: the joint solve (exact-partition baselines, alternation, HiGHS joint MIP, proven bounds) and the
   budget front fanned out over the Dask workers -> plan_results, plan_choices, plan_baselines, plan_fronts, a PNG.

Everything checkable is checked before the run starts (``validate_inputs``), so bad input writes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.plan.request import PlanRequest


def load_file_instance(graph_file: str, target_path: str | None = None, budget: float | None = None):
    """The instance of a file, with k and per-stage memory from ``target_path`` when given (its latencies stay the
    file's) and the budget from ``budget`` when given."""
    from dataclasses import replace

    from forgeflow.tasks.plan.instance import PlanInstance

    inst = PlanInstance.from_json(graph_file)
    if target_path is not None:
        from forgeflow.tasks.plan.target import load_target

        tgt = load_target(target_path)
        inst = inst.with_k(tgt.k)
        inst = replace(inst, mem_caps=tuple(d.memory_bytes for d in tgt.device_list),
                       device_names=tuple(d.name for d in tgt.device_list)).validate()
        if budget is None and inst.budget is None:
            b = tgt.budget
            budget = b.max_sensitivity if b.max_sensitivity is not None else \
                b.fraction_of_uniform4 * inst.uniform4_sensitivity()
    if budget is not None:
        inst = inst.with_budget(budget).validate()
    return inst


def validate_inputs(req: PlanRequest) -> None:
    """One source, a readable target, positive limits; for a file the whole instance, and a budget no plan can meet
    or memory no plan fits, proven before anything runs; for a model that it builds and its data reads. Once per
    process (no catalog needed: a bad input creates no catalog folder)."""
    validate_once("plan_deployment", req.to_dict(), None, lambda: _validate(req))


def _validate(req: PlanRequest) -> None:
    req.validate()
    if req.target is not None:
        from forgeflow.tasks.plan.target import load_target

        tgt = load_target(req.target)
        fitted = [f"device {i} ({d.latency_model!r})" for i, d in enumerate(tgt.device_list) if d.latency_model]
        if fitted and req.model is not None:
            raise ForgeflowError(f"target {tgt.name} takes {fitted[0]} latency from a fitted device model, which "
                                 f"predicts architectures of a search space, not the fixed model {req.model}: plan "
                                 "an elastic family's subnets on it with `forgeflow optimize --target`, or give the "
                                 "device a speed_factor or latency_table")
    if req.model is not None:
        from forgeflow.flows.profile_models import make_config, validate_profile_inputs

        validate_profile_inputs([req.model], make_config(req.input_shape))
        if req.dataset is not None:
            from forgeflow.tasks.datasets import load_dataset

            load_dataset(req.dataset)  # raises DatasetError naming a missing or malformed file
        return
    from pathlib import Path

    if not Path(req.graph_file).exists():
        raise ForgeflowError(f"instance file not found: {req.graph_file}")
    from forgeflow.tasks.plan.solve import check_feasible

    check_feasible(load_file_instance(req.graph_file, req.target, req.budget))


@flow(name="plan_deployment", log_prints=False)
def plan_deployment(graph_file: str | None = None, model: str | None = None, target: str | None = None,
                    budget: float | None = None, time_limit: float = 60.0, stages: int | None = None,
                    front: int = 4, front_time_limit: float = 10.0, input_shape: list[int] | None = None,
                    dataset: str | None = None, catalog: str | None = None, s3_endpoint: str | None = None
                    ) -> dict[str, Any]:
    """Plan one instance (a file, or ``model`` on ``target``); return PLAN.json plus run id, catalog keys, plot. The
    parameters make a ``PlanRequest``, validated before the run row is written."""
    from forgeflow.tasks.plan.steps import model_instance_step, plan_step
    from forgeflow.tasks.plan.store import put_instance

    req = PlanRequest.from_dict({"graph_file": graph_file, "model": model, "target": target, "budget": budget,
                                 "time_limit": time_limit, "stages": stages, "front": front,
                                 "front_time_limit": front_time_limit, "input_shape": input_shape,
                                 "dataset": dataset})
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy([req.model])
    validate_inputs(req)  # before the catalog and its run row: a served or deployed run with bad input writes nothing
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    with recorded_run(cat, "plan_deployment", req.to_dict()) as run:
        report("instance", 0, 1)
        info: dict[str, Any] = {}
        if req.graph_file is not None:
            inst = load_file_instance(req.graph_file, req.target, req.budget)
            key, name = put_instance(cat, run.id, inst), inst.name
        else:
            shape = list(req.input_shape) if req.input_shape else None
            info = model_instance_step.submit(cat.url, run.id, req.model, req.target, shape, req.dataset, req.stages,
                                              req.budget, settings.s3_endpoint).result()
            key, name = info.pop("instance_key"), info.pop("name")
        report("instance", 1, 1)
        report("plan", 0, 1)
        out = plan_step.submit(cat.url, run.id, key, name, req.time_limit, req.front, req.front_time_limit,
                               settings.s3_endpoint).result()
        report("plan", 1, 1)
        if info.get("sensitivity_source"):
            out["sensitivity_source"] = info["sensitivity_source"]
        out.update({k: v for k, v in info.items() if k != "sensitivity_source"})
        run.summary.update({k: out[k] for k in ("k", "bottleneck", "lower_bound", "ratio", "status", "result_id")})
        result = {"run_id": run.id, "catalog": cat.url, **out}
    publish_plan(result, cat)
    return result


def publish_plan(result: dict[str, Any], cat=None) -> None:
    """Prefect artifact: the certificate and baselines in markdown with the plan's PNG embedded, stage loads table."""
    from forgeflow.flows.artifacts import publish

    base = ", ".join(f"{k} {v:.5g} ms" if v is not None else f"{k} none" for k, v in result["baselines"].items())
    md = (f"Run `{result['run_id']}` in catalog `{result['catalog']}`, result `{result['result_id']}`.\n\n"
          f"- instance `{result['instance']}`, k = {result['k']}, target {result.get('target') or '(instance file)'}\n"
          f"- bottleneck **{result['bottleneck']:.6g} ms** (plan by {result['method']}); proven lower bound "
          f"{result['lower_bound']:.6g} ms ({result['lower_bound_method']}); certified ratio "
          f"{result['ratio'] if result['ratio'] is not None else float('inf'):.5f} ({result['status']})\n"
          f"- total sensitivity {result['sensitivity']:.5g} of budget {result['budget']}; sensitivities: "
          f"{result.get('sensitivity_source') or 'given in the instance'}\n"
          f"- baselines: {base}\n")
    publish("plan", f"forgeflow plan {result['instance']} k={result['k']}", md, table=result["stage_loads"],
            plots=[("stage loads and bits per layer (PNG)", result["plot"])], catalog=cat)
