"""forgeflow's Prefect deployments: declared in ``deploy/prefect.yaml``, built here, used by ``forgeflow serve`` (every
deployment with its schedule from one process) and ``forgeflow deploy`` (registered with a Prefect server and a
process work pool, run by ``prefect worker start --pool NAME``).

Entrypoints are module paths ``forgeflow.flows.deployments.<name>``: the attribute is the domain flow bound to a Dask task
runner built from the FORGEFLOW_* settings of the process that imports it (the serving process, or the worker's
flow-run process), so deployed runs use the cluster at FORGEFLOW_DASK_ADDRESS exactly like the CLI does.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgeflow.tasks.errors import ForgeflowError

# entrypoint attribute -> "module:flow object". A new flow joins with one line here and one entry in prefect.yaml.
FLOWS: dict[str, str] = {
    "optimize": "forgeflow.flows.optimize:optimize_flow",
    "profile_models": "forgeflow.flows.profile_models:profile_models",
    "import_graphs": "forgeflow.flows.profile_models:import_graphs",
    "quantize": "forgeflow.flows.quantize:quantize_flow",
    "federated_training": "forgeflow.flows.federated:federated_training",
    "partition_graph": "forgeflow.flows.partition:partition_graph",
    "search": "forgeflow.flows.search:search_flow",
}

ENTRYPOINT_MODULE = __name__
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "deploy" / "prefect.yaml"


class DeploymentError(ForgeflowError):
    """A deployment file or deployment that cannot be built (bad YAML, unknown flow, parameter the flow lacks)."""


def _domain_flow(attr: str):
    if attr not in FLOWS:
        raise AttributeError(f"module {ENTRYPOINT_MODULE!r} has no flow {attr!r}")
    module_name, obj = FLOWS[attr].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise DeploymentError(f"flow {attr!r} is not available in this installation ({module_name} missing)") \
                from None
        raise
    try:
        return getattr(module, obj)
    except AttributeError:
        raise DeploymentError(f"flow {attr!r}: {module_name} has no {obj!r}") from None


def runtime_flow(attr: str):
    """The flow behind entrypoint ``forgeflow.flows.deployments.<attr>``, on the Dask runner the current settings name."""
    from forgeflow.flows.runtime import task_runner_for
    from forgeflow.flows.settings import load_settings

    return _domain_flow(attr).with_options(task_runner=task_runner_for(load_settings()))


def __getattr__(name: str):  # PEP 562: `forgeflow.flows.deployments.optimize` etc., built when first imported
    if name in FLOWS:
        flow = runtime_flow(name)
        globals()[name] = flow
        return flow
    raise AttributeError(f"module {ENTRYPOINT_MODULE!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    active: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of prefect.yaml."""

    flow: str  # attribute of this module (a key of FLOWS)
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()
    description: str | None = None
    tags: tuple[str, ...] = ()
    work_pool: str | None = None
    work_queue: str | None = None
    job_variables: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = None

    @property
    def entrypoint(self) -> str:
        return f"{ENTRYPOINT_MODULE}.{self.flow}"

    def full_name(self, flow_name: str) -> str:
        return f"{flow_name}/{self.name}"


def load_specs(path: str | Path | None = None) -> list[DeploymentSpec]:
    """Parse ``deploy/prefect.yaml`` (anchors and ``<<`` merges resolved) into deployment specs."""
    import yaml

    from forgeflow.flows.settings import load_settings

    path = Path(path or load_settings().deployments or DEFAULT_FILE)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DeploymentError(f"deployment file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise DeploymentError(f"deployment file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    entries = (doc or {}).get("deployments") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DeploymentError(f"deployment file {path} has no `deployments:` list")
    specs, seen = [], set()
    for i, d in enumerate(entries):
        where = f"{path.name}: deployments[{i}]"
        if not isinstance(d, dict) or not d.get("name") or not d.get("entrypoint"):
            raise DeploymentError(f"{where} needs a name and an entrypoint")
        entry = str(d["entrypoint"])
        prefix = ENTRYPOINT_MODULE + "."
        if not entry.startswith(prefix) or entry[len(prefix):] not in FLOWS:
            raise DeploymentError(f"{where}: entrypoint {entry!r} must be one of "
                                  f"{', '.join(prefix + k for k in FLOWS)}")
        pool = d.get("work_pool") or {}
        scheds = []
        for s in d.get("schedules") or ():
            if not isinstance(s, dict) or "cron" not in s:
                raise DeploymentError(f"{where}: each schedule needs a `cron:` expression")
            scheds.append(Schedule(str(s["cron"]), str(s.get("timezone", "UTC")), bool(s.get("active", True))))
        spec = DeploymentSpec(
            flow=entry[len(prefix):], name=str(d["name"]), parameters=dict(d.get("parameters") or {}),
            schedules=tuple(scheds), description=d.get("description"), tags=tuple(d.get("tags") or ()),
            work_pool=pool.get("name"), work_queue=pool.get("work_queue_name"),
            job_variables=dict(pool.get("job_variables") or {}), concurrency_limit=d.get("concurrency_limit"))
        if (spec.flow, spec.name) in seen:
            raise DeploymentError(f"{where}: deployment {spec.flow}/{spec.name} is declared twice")
        seen.add((spec.flow, spec.name))
        specs.append(spec)
    return specs


def available_specs(specs: list[DeploymentSpec]) -> tuple[list[DeploymentSpec], list[str]]:
    """(specs whose flow module is installed, messages naming the ones that are not)."""
    ok, missing = [], []
    for s in specs:
        try:
            _domain_flow(s.flow)
            ok.append(s)
        except DeploymentError as exc:
            missing.append(f"{s.flow}/{s.name}: {exc}")
    return ok, missing


def check_parameters(spec: DeploymentSpec, flow) -> None:
    """Fail with the deployment named when its parameters do not fit the flow's signature."""
    try:
        inspect.signature(flow.fn).bind_partial(**spec.parameters)
    except TypeError as exc:
        raise DeploymentError(f"deployment {spec.flow}/{spec.name}: parameters do not fit flow "
                              f"{flow.name!r}: {exc}") from None


def build_deployment(spec: DeploymentSpec, *, work_pool: str | None = None, for_work_pool: bool = False):
    """A ``RunnerDeployment`` for ``spec`` (for ``serve`` when ``for_work_pool`` is False)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    flow = runtime_flow(spec.flow)
    check_parameters(spec, flow)
    schedules = [Cron(s.cron, timezone=s.timezone, active=s.active) for s in spec.schedules]
    kwargs: dict[str, Any] = dict(name=spec.name, schedules=schedules, parameters=spec.parameters,
                                  description=spec.description, tags=list(spec.tags),
                                  concurrency_limit=spec.concurrency_limit,
                                  entrypoint_type=EntrypointType.MODULE_PATH)
    if for_work_pool:
        kwargs.update(work_pool_name=work_pool or spec.work_pool, work_queue_name=spec.work_queue,
                      job_variables=spec.job_variables)
    try:
        deployment = flow.to_deployment(**kwargs)
    except ValueError as exc:  # e.g. a cron Prefect cannot parse
        raise DeploymentError(f"deployment {spec.flow}/{spec.name}: {exc}") from None
    deployment.entrypoint = spec.entrypoint  # the runtime-bound flow, not the bare domain function
    return deployment


def select(specs: list[DeploymentSpec], only: list[str] | None) -> list[DeploymentSpec]:
    """Specs named by ``only`` (``flow`` or ``flow/name`` each); all when ``only`` is empty."""
    if not only:
        return specs
    chosen = [s for s in specs if s.flow in only or f"{s.flow}/{s.name}" in only]
    known = {s.flow for s in specs} | {f"{s.flow}/{s.name}" for s in specs}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise DeploymentError(f"unknown deployment(s) {', '.join(unknown)}; declared: "
                              f"{', '.join(sorted(f'{s.flow}/{s.name}' for s in specs))}")
    return chosen


def ensure_work_pool(name: str, pool_type: str = "process") -> bool:
    """Create the work pool ``name`` if the Prefect API has none by that name; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True


def deploy_all(specs: list[DeploymentSpec], work_pool: str | None = None, *, create_pool: bool = True
               ) -> list[dict[str, Any]]:
    """Register ``specs`` with the Prefect API (PREFECT_API_URL) on ``work_pool``; return one record per deployment."""
    from prefect.deployments.runner import deploy

    pools = {work_pool or s.work_pool for s in specs}
    if None in pools:
        raise DeploymentError("no work pool: pass --work-pool or set work_pool in the deployment file")
    if create_pool:
        for p in sorted(pools):
            ensure_work_pool(p)
    out = []
    for pool in sorted(pools):
        group = [s for s in specs if (work_pool or s.work_pool) == pool]
        deployments = [build_deployment(s, work_pool=pool, for_work_pool=True) for s in group]
        ids = deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False,
                     ignore_warnings=True)
        if len(ids) != len(deployments):
            raise DeploymentError(f"only {len(ids)} of {len(deployments)} deployments were registered on {pool!r}")
        for s, d, i in zip(group, deployments, ids):
            out.append({"deployment": f"{d.flow_name}/{d.name}", "id": str(i), "work_pool": pool,
                        "entrypoint": d.entrypoint, "schedules": [sc.cron for sc in s.schedules]})
    return out


def serve_all(specs: list[DeploymentSpec], *, limit: int | None = None) -> None:
    """Serve ``specs`` with their schedules from this process until interrupted (no work pool needed)."""
    from prefect import serve

    deployments = [build_deployment(s) for s in specs]
    serve(*deployments, limit=limit, print_starting_message=True)
