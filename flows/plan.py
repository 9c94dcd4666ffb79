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
from forgeflow.flows.runtime import open_settings_catalog, recorded_run
from forgeflow.flows.settings import Settings
from forgeflow.tasks.errors import ForgeflowError


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


def validate_inputs(graph_file: str | None, model: str | None, target: str | None, budget: float | None,
                    time_limit: float, stages: int | None, front: int) -> None:
    """One source, a readable target, positive limits; for a file the whole instance, and a budget no plan can
    meet or memory no plan fits, proven before anything runs."""
    if (graph_file is None) == (model is None):
        raise ForgeflowError("give exactly one of --graph INSTANCE.json or --model SPEC")
    if not time_limit > 0:
        raise ForgeflowError(f"--time-limit must be > 0 seconds, got {time_limit}")
    if budget is not None and not budget >= 0:
        raise ForgeflowError(f"--budget must be >= 0, got {budget}")
    if stages is not None and stages < 1:
        raise ForgeflowError(f"--stages must be >= 1, got {stages}")
    if front < 0:
        raise ForgeflowError(f"--front must be >= 0, got {front}")
    if target is not None:
        from forgeflow.tasks.plan.target import load_target

        load_target(target)
    if model is not None:
        if target is None:
            raise ForgeflowError("--model needs --target FILE (the devices to plan for)")
        from forgeflow.flows.profile_models import make_config, validate_profile_inputs

        validate_profile_inputs([model], make_config(None))
        return
    from forgeflow.tasks.plan.solve import check_feasible

    check_feasible(load_file_instance(graph_file, target, budget))


@flow(name="plan_deployment", log_prints=False)
def plan_deployment(graph_file: str | None = None, model: str | None = None, target: str | None = None,
                    budget: float | None = None, time_limit: float = 60.0, stages: int | None = None,
                    front: int = 4, front_time_limit: float = 10.0, input_shape: list[int] | None = None,
                    dataset: str | None = None, catalog: str | None = None, s3_endpoint: str | None = None
                    ) -> dict[str, Any]:
    """Plan one instance (a file, or ``model`` on ``target``); return PLAN.json plus run id, catalog keys, plot."""
    from forgeflow.tasks.plan.steps import model_instance_step, plan_step
    from forgeflow.tasks.plan.store import put_instance

    settings = Settings(catalog=catalog or Settings().catalog, s3_endpoint=s3_endpoint)
    cat = open_settings_catalog(settings)
    params = {"graph_file": graph_file, "model": model, "target": target, "budget": budget,
              "time_limit": time_limit, "stages": stages, "front": front, "input_shape": input_shape,
              "dataset": dataset}
    with recorded_run(cat, "plan_deployment", params) as run:
        report("instance", 0, 1)
        info: dict[str, Any] = {}
        if graph_file is not None:
            inst = load_file_instance(graph_file, target, budget)
            key, name = put_instance(cat, run.id, inst), inst.name
        else:
            info = model_instance_step.submit(cat.url, run.id, model, target, input_shape, dataset, stages, budget,
                                              settings.s3_endpoint).result()
            key, name = info.pop("instance_key"), info.pop("name")
        report("instance", 1, 1)
        report("plan", 0, 1)
        out = plan_step.submit(cat.url, run.id, key, name, time_limit, front, front_time_limit,
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
