"""Orchestration overhead: where the wall time of `forgeflow optimize` on a small model goes (Prefect, Dask,
compute), and how fast one Prefect task fans fine-grained work out to Dask.

Shares of one optimize run (in this process, Prefect's API already up, a fresh catalog so no step is cached), from
Prefect's own records of each step (task run submitted -> running -> finished):
- compute: the union of the steps' running intervals (their work, fan-out to Dask, catalog I/O);
- step dispatch: submitted -> running (Dask scheduling, the worker's first import of the step's modules, task-engine
  start);
- flow process: the rest of the flow call outside any step's recorded interval (flow-body work, run records,
  artifacts, flow states, dispatch latency before a step's first recorded state);
- Dask: starting and stopping the LocalCluster (timed inside the task runner).
Prefect's own share is measured without work: an empty flow, plus the per-step cost of no-op tasks submitted to warm
Dask workers, times the number of steps of the optimize run.

Fan-out: one Prefect task on a Dask LocalCluster maps N trivial subtasks through the client every step uses
(``tasks.dask_fanout.enter_worker_client``: ``distributed.worker_client``, which secedes the step's thread) and
gathers them; throughput = N / wall time of map + gather.

Targets: Prefect share < 10 % of the flow; fan-out >= 500 subtasks/s.

Commands as a user runs them (``--commands``; section ``overhead-commands``), cold and warm side by side:
- ``forgeflow partition --graph <bert24 layer graph> --stages 16 --json``, each run on a fresh catalog (nothing
  cached): **cold** = a fresh interpreter, no PREFECT_API_URL, no `forgeflow up`, an existing PREFECT_HOME (the
  command starts its one temporary API; a light command starts no LocalCluster); **warm** = after `forgeflow up`
  (the command runs in the warm command server `up` started, pointed at its API and scheduler). Reported: command
  wall, command CPU, solver seconds (the plan's
  ``seconds``), their ratio. Targets: warm <= 3 s, cold <= 15 s.
- ``forgeflow optimize`` (the README quick start: no flags; or ``--optimize-model``) from a cold shell (section
  ``overhead-optimize-cold``): command wall against
  the steps' own compute (a cached step's ``seconds`` from its step_cache row; bundle and report as the flow timed
  them in its own process), less what a plain script of the same steps pays for its interpreter and imports; the
  rest is validation, Prefect, Dask and run records. Target: Prefect + Dask <= 10 % of the flow.

    python bench/overhead.py [--model forgeflow:digits_cnn] [--stages 2] [--reps 2] [--fanout 4000] [--no-cli]
    python bench/overhead.py --commands [--graph PATH] [--cold-reps 2] [--warm-reps 3] [--optimize-model SPEC]
    python bench/overhead.py --partition | --cold-optimize | --fanout-only     (one part each: short timed calls)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
TIMINGS = {"cluster_start": 0.0, "cluster_stop": 0.0}


def _timed_runner_class():
    from prefect_dask import DaskTaskRunner

    class TimedDaskTaskRunner(DaskTaskRunner):
        """DaskTaskRunner that adds its cluster start (first client access) and stop times to TIMINGS."""

        @property
        def client(self):
            if self._client:
                return self._client
            t = time.perf_counter()
            c = DaskTaskRunner.client.fget(self)
            TIMINGS["cluster_start"] += time.perf_counter() - t
            return c

        def __exit__(self, *args):
            t = time.perf_counter()
            try:
                return super().__exit__(*args)
            finally:
                TIMINGS["cluster_stop"] += time.perf_counter() - t

    return TimedDaskTaskRunner


def _runner(workers: int):
    cls = _timed_runner_class()
    return cls(cluster_class="distributed.LocalCluster",
               cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                               "memory_limit": "4GiB", "dashboard_address": None})


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def _task_intervals(flow_run_id) -> tuple[list[tuple[float, float, float]], list[str]]:
    """(submitted, started, ended) of every task run of the flow run, as Prefect recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        out, names = [], []
        for r in runs:
            if r.start_time and r.end_time:
                # the Pending state's timestamp is the submit time (the run row itself may be written later)
                states = client.read_task_run_states(r.id)
                submitted = min([st.timestamp.timestamp() for st in states] + [r.start_time.timestamp()])
                out.append((submitted, r.start_time.timestamp(), r.end_time.timestamp()))
                names.append(r.name)
    return out, names


def measure_optimize(model: str, stages: int, workers: int) -> dict:
    from forgeflow.flows.optimize import optimize_flow

    for k in TIMINGS:
        TIMINGS[k] = 0.0
    with tempfile.TemporaryDirectory(prefix="ff-overhead-") as cat:
        flow = optimize_flow.with_options(task_runner=_runner(workers))
        t0 = time.perf_counter()
        state = flow(model=model, stages=stages, catalog=cat, return_state=True)
        wall = time.perf_counter() - t0
        if not state.is_completed():
            raise RuntimeError(f"optimize failed: {state.message}")
        intervals, names = _task_intervals(state.state_details.flow_run_id)
    compute = _union([(b, c) for _, b, c in intervals])
    in_steps = _union([(a, c) for a, _, c in intervals])
    dask = TIMINGS["cluster_start"] + TIMINGS["cluster_stop"]
    return {"wall_s": wall, "compute_s": compute, "dispatch_s": in_steps - compute, "dask_s": dask,
            "flow_s": wall - in_steps - dask, "steps": len(names),
            "cluster_start_s": TIMINGS["cluster_start"], "cluster_stop_s": TIMINGS["cluster_stop"]}


def measure_orchestration(workers: int, tasks: int = 20, reps: int = 3) -> dict:
    """Prefect's own cost, free of any work: an empty flow (flow run + states) and, on a warm Dask cluster, the
    wall time per no-op task submitted and awaited one after another (task run, states, dispatch, result)."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    @flow(name="bench-empty", task_runner=ThreadPoolTaskRunner(max_workers=1))
    def empty() -> int:
        return 0

    @task(cache_policy=NO_CACHE)
    def noop(i: int) -> int:
        return i

    @flow(name="bench-noop-steps", task_runner=_runner(workers))
    def steps(n: int, reps: int) -> list[float]:
        noop.submit(-1).result()  # start the cluster and warm the workers
        per = []
        for _ in range(reps):
            t = time.perf_counter()
            for i in range(n):
                noop.submit(i).result()
            per.append((time.perf_counter() - t) / n)
        return per

    flow_costs = []
    for _ in range(reps):
        t = time.perf_counter()
        empty()
        flow_costs.append(time.perf_counter() - t)
    per_task = steps(tasks, reps)
    return {"flow_s": statistics.median(flow_costs), "per_task_s": statistics.median(per_task)}


def measure_cli(model: str, stages: int, workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="ff-overhead-cli-") as tmp:
        env = {**os.environ, "PREFECT_HOME": f"{tmp}/prefect_home", "FORGEFLOW_DASK_WORKERS": str(workers),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "forgeflow.flows.cli", "optimize", "--model", model, "--stages", str(stages),
                            "--catalog", f"{tmp}/cat", "--json"], capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"forgeflow optimize failed:\n{p.stderr[-2000:]}")
        json.loads(p.stdout.strip().splitlines()[-1])
        return wall


DEFAULT_GRAPH = REPO.parent / "shared" / "data" / "msr_graphs" / "LayerGraphs" / "bert24_inference.json"


CPU = {"last": 0.0}


def _command(args: list[str], env: dict) -> tuple[float, dict, str]:
    """Run one command; its wall seconds, last JSON line and stderr. CPU['last'] holds the CPU seconds (user + sys)
    of the command and every process it started and reaped (its temporary server, its LocalCluster), not of the
    `forgeflow up` processes it talks to: on a busy machine this is the figure that does not depend on the load."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "forgeflow.flows.cli", *args], capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"forgeflow {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return wall, json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def _warm_child(state_dir: str) -> dict | None:
    """The warm command server's record of the last command it ran (its child's wall and CPU seconds), or None."""
    import re

    try:
        text = Path(state_dir, "warm_server.log").read_text()
    except OSError:
        return None
    found = re.findall(r"exited (-?\d+) \(([\d.]+) s wall, ([\d.]+) s CPU\)", text)
    if not found:
        return None
    return {"rc": int(found[-1][0]), "wall_s": float(found[-1][1]), "cpu_s": float(found[-1][2]), "n": len(found)}


def measure_partition(graph: Path, stages: int, cold_reps: int, warm_reps: int) -> dict:
    """Cold and warm `forgeflow partition` as a user runs them, a fresh catalog each run (nothing cached)."""
    out: dict = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="ff-overhead-cmd-") as tmp:
        home = os.environ.get("PREFECT_HOME") or f"{tmp}/prefect_home"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "FORGEFLOW_DASK_ADDRESS")}
        state = f"{tmp}/state"
        env.update({"PREFECT_HOME": home, "FORGEFLOW_STATE_DIR": state})
        part = ["partition", "--graph", str(graph), "--stages", str(stages), "--json"]
        _command([*part, "--catalog", f"{tmp}/cat-prime"], env)  # PREFECT_HOME exists (database migrated) from here
        for i in range(cold_reps):
            wall, plan, _ = _command([*part, "--catalog", f"{tmp}/cat-cold-{i}"], env)
            out["cold"].append({"wall_s": wall, "cpu_s": CPU["last"], "solver_s": plan["seconds"],
                                "ratio": plan["ratio"]})
            print(f"partition cold {i + 1}: {wall:.2f} s wall, {CPU['last']:.2f} s CPU, solver {plan['seconds']:.3f} s",
                  flush=True)
        t0 = time.perf_counter()
        _command(["up", "--port", "0", "--json"], env)
        out["up_s"] = time.perf_counter() - t0
        try:
            for i in range(warm_reps + 1):  # the first warm run warms the API server's own caches; not counted
                served = (_warm_child(state) or {}).get("n", 0)
                wall, plan, _ = _command([*part, "--catalog", f"{tmp}/cat-warm-{i}"], env)
                child = _warm_child(state)
                warm = bool(child) and child["n"] == served + 1
                cpu = CPU["last"] + (child["cpu_s"] if warm else 0.0)
                row = {"wall_s": wall, "cpu_s": cpu, "solver_s": plan["seconds"], "ratio": plan["ratio"],
                       "served_warm": warm, "child_wall_s": child["wall_s"] if warm else None}
                print(f"partition warm {i}{' (not counted)' if i == 0 else ''}: {wall:.2f} s wall, {cpu:.2f} s CPU, "
                      f"solver {plan['seconds']:.3f} s, {'served by' if warm else 'NOT served by'} the warm server",
                      flush=True)
                if i:
                    out["warm"].append(row)
        finally:
            t0 = time.perf_counter()
            _command(["down", "--json"], env)
            out["down_s"] = time.perf_counter() - t0
    return out


def measure_cold_optimize(model: str, stages: int) -> dict:
    """The quick start's `forgeflow optimize` from a cold shell (existing PREFECT_HOME, no server, no cluster)."""
    with tempfile.TemporaryDirectory(prefix="ff-overhead-opt-") as tmp:
        home = os.environ.get("PREFECT_HOME") or f"{tmp}/prefect_home"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "FORGEFLOW_DASK_ADDRESS")}
        env.update({"PREFECT_HOME": home, "FORGEFLOW_STATE_DIR": f"{tmp}/state"})
        cat = f"{tmp}/cat-optimize"
        flags = ["--model", model, "--stages", str(stages)] if model else []  # none: the README's quick start
        wall, result, _ = _command(["optimize", *flags, "--catalog", cat, "--json"], env)
        cpu = CPU["last"]
        from forgeflow.catalog import open_catalog

        import pyarrow.compute as pc

        rows = open_catalog(cat).read("step_cache", filter=pc.field("run_id") == result["run_id"]).to_pylist()
        cached = {r["step"].removeprefix("optimize-"): r["seconds"] for r in rows}
        # a step with a step_cache row: the seconds its function computed on the worker (dispatch excluded); the
        # steps without one (bundle, report) run in the flow's own process, timed there by the flow
        per_step = {name: cached.get(name, sec) for name, sec in result["seconds"].items()}
        compute = sum(per_step.values())
        runs = open_catalog(cat).read("runs", filter=pc.field("run_id") == result["run_id"]).to_pylist()
        flow_s = max((r["ended_at"] - r["started_at"]).total_seconds() for r in runs if r["ended_at"])
        o = {"model": model, "stages": stages, "wall_s": wall, "cpu_s": cpu, "compute_s": compute, "flow_s": flow_s,
             "steps": len(per_step), "per_step": per_step, "plain_imports_s": _plain_imports_s(env)}
    print(f"optimize cold: {wall:.1f} s wall, run {flow_s:.1f} s, steps computing {compute:.1f} s", flush=True)
    return o


def _plain_imports_s(env: dict) -> float:
    """What a plain script running the same step functions (no Prefect, no Dask) pays before its first step: a fresh
    interpreter importing torch, the catalog and the deploy modules (median of 3 cold processes)."""
    mods = ("torch, forgeflow.catalog, forgeflow.tasks.deploy.pipeline, forgeflow.tasks.deploy.family, "
            "forgeflow.tasks.deploy.planner, forgeflow.tasks.deploy.profile, forgeflow.tasks.deploy.report")
    code = f"import sys; import {mods}; assert 'prefect' not in sys.modules and 'distributed' not in sys.modules"
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def partition_markdown(m: dict, graph: Path, stages: int, load: tuple[float, float]) -> str:
    def med(rows, k):
        return statistics.median(r[k] for r in rows)

    cw, cs, ww, ws = med(m["cold"], "wall_s"), med(m["cold"], "solver_s"), med(m["warm"], "wall_s"), \
        med(m["warm"], "solver_s")
    cc, wc = med(m["cold"], "cpu_s"), med(m["warm"], "cpu_s")
    served = sum(r["served_warm"] for r in m["warm"])
    md = [f"`forgeflow partition --graph {graph.name} --stages {stages} --json`, a fresh catalog each run (no step "
          "cached), median of the runs:", "",
          "| path | runs | command wall s | command CPU s | solver s | wall / solver | target (wall) | |",
          "|---|---:|---:|---:|---:|---:|---:|---|",
          f"| cold shell (existing PREFECT_HOME, no server running; one temporary API, no LocalCluster) | "
          f"{len(m['cold'])} | {cw:.2f} | {cc:.2f} | {cs:.3f} | {cw / cs:.0f} | <= 15 s | "
          f"**{'met' if cw <= 15 else 'missed'}** |",
          f"| warm (`forgeflow up` running: the command runs in its warm command server) | {len(m['warm'])} | "
          f"{ww:.2f} | {wc:.2f} | {ws:.3f} | {ww / ws:.0f} | <= 3 s | **{'met' if ww <= 3 else 'missed'}** |", "",
          f"Warm runs served by the warm command server: {served} of {len(m['warm'])} (one more warm run before them "
          "is not counted: it is the API server's first flow run since `up`). Command CPU = user + sys seconds of "
          "the command and every process it started and reaped (the cold path's temporary API server included), "
          "plus, on the warm path, the server's child that ran the command; not the `forgeflow up` processes it "
          "talks to.", "",
          "Per run (wall s): cold " + ", ".join(f"{r['wall_s']:.2f}" for r in m["cold"]) + "; warm "
          + ", ".join(f"{r['wall_s']:.2f}" for r in m["warm"]) + f". `forgeflow up` took {m['up_s']:.1f} s, "
          f"`forgeflow down` {m['down_s']:.1f} s.",
          "", f"2-core machine; 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after (above ~1 means other "
          "jobs shared the cores)."]
    return "\n".join(md)


def optimize_markdown(o: dict, load: tuple[float, float]) -> str:
    rest = o["wall_s"] - o["compute_s"]
    pct = 100 * rest / o["wall_s"]
    orch = rest - o["plain_imports_s"]
    opct = 100 * orch / o["wall_s"]
    flags = f"--model {o['model']} --stages {o['stages']} " if o["model"] else ""
    steps = ", ".join(f"{k} {v:.1f}" for k, v in o["per_step"].items())
    md = [f"`forgeflow optimize {flags}--json` ({'a fixed model' if flags else 'the README quick start'}) from a cold "
          "shell (existing "
          f"PREFECT_HOME, no server or cluster running, a fresh catalog): {o['wall_s']:.1f} s wall, {o['cpu_s']:.1f} "
          f"s CPU (the command and what it started); its run (runs row, start to end) {o['flow_s']:.1f} s.", "",
          f"- Its {o['steps']} steps computing: {o['compute_s']:.1f} s ({steps} s; a cached step's ``seconds`` from "
          "its step_cache row, timed inside the step's function on the worker; bundle and report run in the "
          "flow's own process and are timed there).",
          f"- Everything else: {rest:.1f} s = {pct:.1f} % of the command (interpreter start, imports, input "
          "validation, the temporary API, the LocalCluster and its workers' imports, dispatch, Prefect's task and "
          "flow states, run records, shutdown).",
          f"- A plain script running the same step functions also pays a fresh interpreter and its imports (torch, "
          f"the catalog, the deploy modules; no Prefect, no Dask): {o['plain_imports_s']:.1f} s, median of 3.",
          f"- **Prefect + Dask + run bookkeeping: {orch:.1f} s = {opct:.1f} % of the command** (everything else less "
          f"the plain imports; still an upper bound: it includes input validation and the catalog's run records). "
          f"Target <= 10 %: **{'met' if opct <= 10 else 'missed'}**.", "",
          f"2-core machine; 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after."]
    return "\n".join(md)


def _square(x: int) -> int:
    return x * x


def measure_fanout(n: int, reps: int, workers: int) -> list[dict]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def fan_out(n: int) -> dict:
        import contextlib

        from forgeflow.tasks.dask_fanout import enter_worker_client

        # the product's fan-out path (every domain step uses it): a seceding worker client, so the step's own
        # worker thread runs subtasks too instead of idling while it waits
        with contextlib.ExitStack() as stack:
            client = enter_worker_client(stack)
            client.gather(client.map(_square, range(64), pure=False))  # warm the workers' function cache
            t0 = time.perf_counter()
            futures = client.map(_square, range(n), pure=False)
            total = sum(client.gather(futures))
            dt = time.perf_counter() - t0
        assert total == sum(i * i for i in range(n))
        return {"n": n, "seconds": dt, "per_s": n / dt}

    @flow(name="bench-fanout", task_runner=_runner(workers))
    def fan_out_flow(n: int, reps: int) -> list[dict]:
        return [fan_out.submit(n).result() for _ in range(reps)]

    return fan_out_flow(n, reps)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="forgeflow:digits_cnn")
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers (1 thread each)")
    ap.add_argument("--reps", type=int, default=2, help="in-process optimize runs")
    ap.add_argument("--fanout", type=int, default=4000, help="subtasks per fan-out measurement")
    ap.add_argument("--fanout-reps", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end `forgeflow optimize` command")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    ap.add_argument("--commands", action="store_true", help="only the command measurements (both below)")
    ap.add_argument("--partition", action="store_true", help="only cold and warm `forgeflow partition`")
    ap.add_argument("--cold-optimize", action="store_true", help="only the cold quick-start `forgeflow optimize`")
    ap.add_argument("--fanout-only", action="store_true", help="only the Dask fan-out throughput")
    ap.add_argument("--graph", type=Path, default=DEFAULT_GRAPH, help="graph file for `forgeflow partition`")
    ap.add_argument("--partition-stages", type=int, default=16)
    ap.add_argument("--cold-reps", type=int, default=2)
    ap.add_argument("--warm-reps", type=int, default=3)
    ap.add_argument("--optimize-model", default="",
                    help="model of the cold `forgeflow optimize` (default: none, the README's quick start)")
    ap.add_argument("--no-optimize", action="store_true", help="--commands without the cold optimize")
    ap.add_argument("--optimize-stages", type=int, default=4)
    args = ap.parse_args(argv)
    if args.commands or args.partition or args.cold_optimize:
        from _report import write_section

        if args.commands or args.partition:
            load0 = os.getloadavg()[0]
            m = measure_partition(args.graph, args.partition_stages, args.cold_reps, args.warm_reps)
            text = partition_markdown(m, args.graph, args.partition_stages, (load0, os.getloadavg()[0]))
            print(text)
            if not args.no_write:
                print(f"written to {write_section('overhead-commands', text)}")
        if args.cold_optimize or (args.commands and not args.no_optimize):
            load0 = os.getloadavg()[0]
            o = measure_cold_optimize(args.optimize_model, args.optimize_stages)
            text = optimize_markdown(o, (load0, os.getloadavg()[0]))
            print(text)
            if not args.no_write:
                print(f"written to {write_section('overhead-optimize-cold', text)}")
        return
    if args.fanout_only:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        load0 = os.getloadavg()[0]
        fan = measure_fanout(args.fanout, args.fanout_reps, args.workers)
        per = [f["per_s"] for f in fan]
        med_ = statistics.median(per)
        text = (f"Fan-out inside one Prefect task on a Dask LocalCluster of {args.workers} worker processes (the "
                "product's `tasks.dask_fanout.enter_worker_client`, a seceding `distributed.worker_client`): "
                f"`client.map` of {args.fanout} trivial subtasks + gather: " + ", ".join(f"{p:.0f}" for p in per)
                + f" subtasks/s (median {med_:.0f}; target >= 500/s: **{'met' if med_ >= 500 else 'missed'}**). "
                f"1-minute load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after.")
        print(text)
        if not args.no_write:
            from _report import write_section

            print(f"written to {write_section('overhead-fanout', text)}")
        return
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "PREFECT_HOME" not in os.environ:
        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ff-overhead-home-")
    load_before = os.getloadavg()[0]

    from prefect import flow

    @flow(name="bench-warmup")
    def warm() -> int:  # starts Prefect's ephemeral API outside the timed runs
        return 1

    warm()
    runs = []
    for i in range(args.reps):
        r = measure_optimize(args.model, args.stages, args.workers)
        runs.append(r)
        print(f"optimize run {i + 1}: wall {r['wall_s']:.2f} s = steps running {r['compute_s']:.2f} + step dispatch "
              f"{r['dispatch_s']:.2f} + flow process {r['flow_s']:.2f} + cluster {r['dask_s']:.2f} "
              f"({r['steps']} steps)", flush=True)
    orch = measure_orchestration(args.workers)
    print(f"Prefect alone: empty flow {orch['flow_s']:.3f} s, {orch['per_task_s'] * 1000:.0f} ms per no-op step on "
          f"warm Dask workers", flush=True)
    fan = measure_fanout(args.fanout, args.fanout_reps, args.workers)
    for f in fan:
        print(f"fan-out: {f['n']} subtasks in {f['seconds']:.3f} s = {f['per_s']:.0f} subtasks/s", flush=True)
    cli = None if args.no_cli else measure_cli(args.model, args.stages, args.workers)
    if cli is not None:
        print(f"forgeflow optimize (whole command): {cli:.1f} s", flush=True)
    load_after = os.getloadavg()[0]

    keys = ("wall_s", "compute_s", "dispatch_s", "flow_s", "dask_s", "steps")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    prefect_s = orch["flow_s"] + med["steps"] * orch["per_task_s"]
    prefect_pct = 100 * prefect_s / med["wall_s"]
    fan_med = statistics.median(f["per_s"] for f in fan)

    def row(label: str, sec: float) -> str:
        return f"| {label} | {sec:.2f} | {100 * sec / med['wall_s']:.1f} |"

    md = [
        f"`forgeflow optimize --model {args.model} --stages {args.stages}` in-process on a Dask LocalCluster of "
        f"{args.workers} single-threaded worker processes, fresh catalog each run (no cached step), Prefect's API "
        f"already up; median of {args.reps} run(s), {med['steps']:.0f} steps. Where the wall time goes, from "
        "Prefect's own records of each step (submitted -> running -> finished):",
        "",
        "| share of the flow | seconds | % |",
        "|---|---:|---:|",
        row("compute: steps running (their work, fan-out to Dask, catalog I/O)", med["compute_s"]),
        row("step dispatch: submitted -> running (Dask scheduling, first imports of torch etc. in each worker, "
            "task engine start)", med["dispatch_s"]),
        row("flow process outside the steps' recorded intervals (flow-body work, run records, artifacts, flow "
            "states, dispatch latency before a step's first recorded state)", med["flow_s"]),
        row("Dask: LocalCluster start + stop", med["dask_s"]),
        f"| **flow total** | **{med['wall_s']:.2f}** | 100 |",
        "",
        f"Prefect's own cost, measured without work: an empty flow takes {orch['flow_s']:.3f} s and a no-op step "
        f"submitted to warm Dask workers and awaited {orch['per_task_s'] * 1000:.0f} ms (task run, state changes, "
        f"dispatch, result). For this flow: {orch['flow_s']:.2f} + {med['steps']:.0f} x "
        f"{orch['per_task_s']:.3f} = **{prefect_s:.2f} s = {prefect_pct:.1f} % of the flow**. The rest of the "
        "dispatch share is the workers' first import of the step's modules (torch, torchvision) and Dask scheduling.",
        "",
        "Per run: " + "; ".join(f"{r['wall_s']:.1f} s ({r['compute_s']:.1f} running, {r['dispatch_s']:.1f} "
                                f"dispatch, {r['flow_s']:.1f} flow process, {r['dask_s']:.1f} cluster)"
                                for r in runs) + ".",
    ]
    if cli is not None:
        md.append(f"The whole command in a fresh interpreter (imports, Prefect's ephemeral API, validation, the flow) "
                  f"took {cli:.1f} s.")
    md += [
        "",
        f"Fan-out inside one Prefect task (`tasks.dask_fanout.enter_worker_client` (a seceding `distributed.worker_client`), `client.map` of {args.fanout} trivial "
        f"subtasks + gather, {args.workers} workers): " + ", ".join(f"{f['per_s']:.0f}" for f in fan)
        + f" subtasks/s (median {fan_med:.0f}).",
        "",
        f"Targets: Prefect < 10 % of the flow: **{'met' if prefect_pct < 10 else 'missed'}** ({prefect_pct:.1f} %); "
        f"fan-out >= 500 subtasks/s: **{'met' if fan_med >= 500 else 'missed'}** ({fan_med:.0f}/s).",
        "",
        f"2-core machine; 1-minute load average {load_before:.1f} before, {load_after:.1f} after (above ~1 means "
        "other jobs shared the cores).",
    ]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        from _report import write_section

        print(f"written to {write_section('overhead', text)}")


if __name__ == "__main__":
    main()
