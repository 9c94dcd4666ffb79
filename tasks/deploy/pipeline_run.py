"""Run a bundle's k stages as k processes passing microbatches, and check and time the pipeline.

Each stage is its own process (``spawn``, one torch thread) that loads its module through the bundle's factory
(hashes checked) and loops: take a microbatch from its input queue, run its stage, put the result on the next
queue. The driver feeds ``microbatches`` copies of the bundle's check input (a microbatch each) and collects the
outputs. Reported:

* ``equal``: every pipelined output equals the unsplit quantized model's on the same microbatch (all stages composed
  in this process) and the output stored in the bundle at export, bit for bit (``max_abs_diff`` is reported). No
  float tolerance: the activation fake-quantizers turn any one-ulp difference upstream into a whole quantization
  step, so "close" would hide a different computation. Bit equality holds because every model input is brought to
  plain NCHW first (``tasks.supernet.supernet.plain_nchw``), so the export, the composed stages and the stage
  processes run the same kernels;
* per-stage compute time (median ms per microbatch, measured inside each process);
* steady-state throughput: microbatches per second between the first and last output after ``warmup``;
* the plan's predicted per-stage host times and bottleneck, and the gap.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

#: outputs count as equal only bit for bit (see the module docstring); the report shows the max diff
EQUAL_RTOL = 0.0

from forgeflow.tasks.deploy.bundle import BundleError, load_check, load_stage, read_bundle


def _stage_worker(bundle: str, index: int, doc: dict, q_in, q_out, q_times) -> None:
    torch.set_num_threads(1)
    try:
        stage = load_stage(bundle, index, doc)
    except Exception as exc:  # reported by the driver, which would otherwise wait forever
        q_times.put((index, f"stage {index} failed to load: {type(exc).__name__}: {str(exc).splitlines()[0]}"))
        return
    times = []
    with torch.inference_mode():
        while True:
            item = q_in.get()
            if item is None:
                q_out.put(None)
                break
            i, x = item
            t0 = time.perf_counter()
            y = stage(torch.from_numpy(x))
            times.append(time.perf_counter() - t0)
            q_out.put((i, y.numpy()))  # arrays are pickled through the pipe: the "link" between stages
    q_times.put((index, times))


def run_pipeline(bundle: str | Path, microbatches: int = 64, warmup: int = 8) -> dict[str, Any]:
    import multiprocessing as mp

    if microbatches < 2:
        raise BundleError(f"--microbatches must be >= 2, got {microbatches}")
    doc = read_bundle(bundle)
    x, stored = load_check(bundle, doc)
    k = len(doc["stages"])
    ctx = mp.get_context("spawn")
    queues = [ctx.Queue() for _ in range(k + 1)]
    q_times = ctx.Queue()
    procs = [ctx.Process(target=_stage_worker, args=(str(bundle), i, doc, queues[i], queues[i + 1], q_times),
                         daemon=True) for i in range(k)]
    for p in procs:
        p.start()
    # one microbatch through to make sure every stage has loaded (startup is not steady state)
    queues[0].put((-1, x.numpy()))
    deadline = time.monotonic() + 300
    while True:
        try:
            queues[k].get(timeout=1.0)
            break
        except Exception:
            if not q_times.empty():
                _, msg = q_times.get()
                raise BundleError(str(msg))
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise BundleError(f"bundle {bundle}: a stage process did not start (exit codes "
                                  f"{[p.exitcode for p in procs]})")
    t_in = time.perf_counter()
    xa = x.numpy()
    for i in range(microbatches):
        queues[0].put((i, xa))
    queues[0].put(None)
    outs, stamps = {}, []
    while True:
        item = queues[k].get()
        if item is None:
            break
        outs[item[0]] = torch.from_numpy(item[1])
        stamps.append(time.perf_counter())
    stage_times: dict[int, list[float]] = {}
    for _ in range(k):
        idx, t = q_times.get()
        stage_times[idx] = t[1:]  # the loading microbatch excluded
    for p in procs:
        p.join(timeout=30)
    # the unsplit model: every stage composed in this process
    torch.set_num_threads(1)
    stages = [load_stage(bundle, i, doc) for i in range(k)]
    with torch.inference_mode():
        ref = x
        for s in stages:
            ref = s(ref)
    max_diff = max(float((outs[i] - ref).abs().max()) for i in range(microbatches + 1) if i in outs)
    max_diff = max(max_diff, float((ref - stored).abs().max()))
    tol = EQUAL_RTOL * max(1.0, float(ref.abs().max()))
    same_class = all(torch.equal(outs[i].argmax(1), ref.argmax(1)) for i in range(microbatches))
    equal = max_diff <= tol and same_class and torch.equal(ref.argmax(1), stored.argmax(1))
    w = min(warmup, microbatches - 2)
    steady = (len(stamps) - 1 - w) / (stamps[-1] - stamps[w]) if stamps[-1] > stamps[w] else float("nan")
    pred_host = doc["predicted"]["host_stage_ms"]
    measured = [1e3 * statistics.median(stage_times[i]) for i in range(k)]
    mb = int(x.shape[0])
    pred_tput = 1e3 / max(pred_host)  # microbatches per second
    return {
        "bundle": str(bundle), "k": k, "microbatches": microbatches, "microbatch_size": mb, "equal": bool(equal),
        "max_abs_diff": max_diff, "throughput_mb_s": steady, "throughput_samples_s": steady * mb,
        "predicted_throughput_mb_s": pred_tput, "throughput_gap_pct": 100.0 * (steady - pred_tput) / pred_tput,
        "stage_ms_measured": measured, "stage_ms_predicted_host": list(pred_host),
        "bottleneck_ms_measured": max(measured), "bottleneck_ms_predicted_host": max(pred_host),
        "bottleneck_ms_predicted_target": doc["plan"]["bottleneck_ms"],
        "wall_s": stamps[-1] - t_in,
    }
