"""Orchestration overhead: where the wall time of `forgeflow optimize` on a small model goes (Prefect, Dask,
compute), and how fast one Prefect task fans fine-grained work out to Dask.

Shares of one optimize run (in this process, Prefect's API already up, a fresh catalog so no step is cached):
- Dask: starting and stopping the LocalCluster the flow runs on (timed inside the task runner);
- compute: the union of the steps' running intervals as Prefect records them (task run start_time -> end_time):
  the steps' work, their fan-out to Dask and their catalog writes;
- Prefect: the rest of the flow call (flow/task run creation and state changes, dispatch of steps to the workers,
  result persistence, artifacts, the run-record rows). This is an upper bound of Prefect's own cost, since it also
  holds the Dask dispatch latency of each step.
Also reported: the wall time of the whole `forgeflow optimize` command (interpreter start, imports, Prefect's
ephemeral API, validation, the flow).

Fan-out: one Prefect task on a Dask LocalCluster maps N trivial subtasks through ``prefect_dask.get_dask_client()``
and gathers them; throughput = N / wall time of map + gather.

Targets: Prefect share < 10 % of the flow; fan-out >= 500 subtasks/s.

    python -m bench.overhead [--model forgeflow:digits_cnn] [--stages 2] [--reps 2] [--fanout 4000] [--no-cli]
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


def _task_intervals(flow_run_id) -> tuple[list[tuple[float, float]], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out, names = [], []
    for r in runs:
        if r.start_time and r.end_time:
            out.append((r.start_time.timestamp(), r.end_time.timestamp()))
            names.append(r.name)
    return out, names


def measure_optimize(model: str, stages: int, workers: int) -> dict:
    from flows.optimize import optimize_flow

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
    compute = _union(intervals)
    dask = TIMINGS["cluster_start"] + TIMINGS["cluster_stop"]
    prefect = wall - compute - dask
    return {"wall_s": wall, "compute_s": compute, "dask_s": dask, "prefect_s": prefect, "steps": len(names),
            "cluster_start_s": TIMINGS["cluster_start"], "cluster_stop_s": TIMINGS["cluster_stop"]}


def measure_cli(model: str, stages: int, workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="ff-overhead-cli-") as tmp:
        env = {**os.environ, "PREFECT_HOME": f"{tmp}/prefect_home", "FORGEFLOW_DASK_WORKERS": str(workers),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "flows.cli", "optimize", "--model", model, "--stages", str(stages),
                            "--catalog", f"{tmp}/cat", "--json"], capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"forgeflow optimize failed:\n{p.stderr[-2000:]}")
        json.loads(p.stdout.strip().splitlines()[-1])
        return wall


def _square(x: int) -> int:
    return x * x


def measure_fanout(n: int, reps: int, workers: int) -> list[dict]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def fan_out(n: int) -> dict:
        from prefect_dask import get_dask_client

        with get_dask_client() as client:
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
    args = ap.parse_args(argv)
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
        print(f"optimize run {i + 1}: wall {r['wall_s']:.2f} s = compute {r['compute_s']:.2f} + Dask "
              f"{r['dask_s']:.2f} + Prefect {r['prefect_s']:.2f} ({r['steps']} steps)", flush=True)
    fan = measure_fanout(args.fanout, args.fanout_reps, args.workers)
    for f in fan:
        print(f"fan-out: {f['n']} subtasks in {f['seconds']:.3f} s = {f['per_s']:.0f} subtasks/s", flush=True)
    cli = None if args.no_cli else measure_cli(args.model, args.stages, args.workers)
    if cli is not None:
        print(f"forgeflow optimize (whole command): {cli:.1f} s", flush=True)
    load_after = os.getloadavg()[0]

    med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "compute_s", "dask_s", "prefect_s")}
    prefect_pct = 100 * med["prefect_s"] / med["wall_s"]
    fan_med = statistics.median(f["per_s"] for f in fan)
    md = [
        f"`forgeflow optimize --model {args.model} --stages {args.stages}` in-process on a Dask LocalCluster of "
        f"{args.workers} single-threaded worker processes, fresh catalog each run (no cached step); median of "
        f"{args.reps} runs:",
        "",
        "| share | seconds | % of the flow |",
        "|---|---:|---:|",
        f"| compute (steps running: work, fan-out, catalog writes) | {med['compute_s']:.2f} | "
        f"{100 * med['compute_s'] / med['wall_s']:.1f} |",
        f"| Dask (LocalCluster start + stop) | {med['dask_s']:.2f} | {100 * med['dask_s'] / med['wall_s']:.1f} |",
        f"| Prefect (runs, states, dispatch, results, artifacts; upper bound) | {med['prefect_s']:.2f} | "
        f"{prefect_pct:.1f} |",
        f"| **flow total** | **{med['wall_s']:.2f}** | 100 |",
        "",
        "Per run: " + "; ".join(f"{r['wall_s']:.1f} s ({r['compute_s']:.1f} compute, {r['dask_s']:.1f} Dask, "
                                f"{r['prefect_s']:.1f} Prefect, {r['steps']} steps)" for r in runs) + ".",
    ]
    if cli is not None:
        md.append(f"The whole command in a fresh interpreter (imports, Prefect's ephemeral API, validation, the flow) "
                  f"took {cli:.1f} s.")
    md += [
        "",
        f"Fan-out inside one Prefect task (`prefect_dask.get_dask_client()`, `client.map` of {args.fanout} trivial "
        f"subtasks + gather, {args.workers} workers): " + ", ".join(f"{f['per_s']:.0f}" for f in fan)
        + f" subtasks/s (median {fan_med:.0f}).",
        "",
        f"Targets: Prefect < 10 % of the flow: **{'met' if prefect_pct < 10 else 'missed'}** ({prefect_pct:.1f} %); "
        f"fan-out >= 500 subtasks/s: **{'met' if fan_med >= 500 else 'missed'}** ({fan_med:.0f}/s).",
        "",
        f"Shared 2-core machine with other jobs running (1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after); figures on an idle machine will be better.",
    ]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        from bench._report import write_section

        print(f"written to {write_section('overhead', text)}")


if __name__ == "__main__":
    main()
