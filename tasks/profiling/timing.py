"""Measured latency: per node (running the captured graph node by node) and for the whole model.

Each repeat runs the whole graph once through an ``fx.Interpreter`` that times every node's call with
``time.perf_counter_ns`` (argument lookup is outside the timed region); ``warmup`` untimed passes come first (they
fill oneDNN's kernel caches and the allocator). A node's latency is the median over repeats and its spread the
interquartile range. The eager model is timed the same way, so ``node_sum / whole`` shows how far the per-node view
is from the real forward (interpreter overhead and lost cross-op fusion push it above 1).

Everything runs under ``torch.inference_mode()`` with the thread count given (``None`` keeps torch's setting).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import fx, nn

from forgeflow.tasks.profiling.errors import ProfileConfigError


@dataclass(frozen=True)
class Stat:
    """Median and interquartile range (ms) over the repeats, and the repeats themselves."""

    median_ms: float
    spread_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "Stat":
        a = np.asarray(samples_ms, dtype=float)
        q25, q50, q75 = np.percentile(a, [25, 50, 75])
        return cls(float(q50), float(q75 - q25), tuple(float(x) for x in a))

    @property
    def relative_spread(self) -> float:
        return self.spread_ms / self.median_ms if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class TimingResult:
    """Per-node stats (fx node name -> Stat), the whole model's stat, and the per-repeat node sums."""

    nodes: dict[str, Stat]
    whole: Stat
    node_sum: Stat
    repeats: int
    warmup: int
    context: dict[str, Any]

    @property
    def node_sum_ratio(self) -> float:
        """Median node sum / median whole-model latency."""
        return self.node_sum.median_ms / self.whole.median_ms if self.whole.median_ms > 0 else float("nan")


class _TimingInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=True)
        self.ns: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            fn = getattr(self, n.op)
            t0 = time.perf_counter_ns()
            out = fn(n.target, args, kwargs)
            self.ns[n.name] = time.perf_counter_ns() - t0
        return out


def time_graph(gm: fx.GraphModule, model: nn.Module, inputs: Sequence[torch.Tensor], *, repeats: int = 5,
               warmup: int = 2, threads: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> TimingResult:
    """Time every node of ``gm`` and the eager ``model`` (``repeats`` timed passes after ``warmup`` untimed ones).

    ``progress(done, total)`` is called after each pass (of ``2 * (warmup + repeats)``).
    """
    if repeats < 1:
        raise ProfileConfigError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ProfileConfigError(f"warmup must be >= 0, got {warmup}")
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ProfileConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    total = 2 * (warmup + repeats)
    done = 0
    try:
        per_node: dict[str, list[float]] = {n.name: [] for n in gm.graph.nodes if n.op != "output"}
        sums: list[float] = []
        whole: list[float] = []
        interp = _TimingInterpreter(gm)
        with torch.inference_mode():
            # Alternate graph and eager passes so that slow drift (thermal, other jobs) hits both alike.
            for i in range(warmup + repeats):
                interp.ns.clear()
                interp.run(*inputs)
                if i >= warmup:
                    for name, samples in per_node.items():
                        samples.append(interp.ns.get(name, 0) / 1e6)
                    sums.append(sum(ns for name, ns in interp.ns.items() if name in per_node) / 1e6)
                done += 1
                if progress:
                    progress(done, total)
                t0 = time.perf_counter_ns()
                model(*inputs)
                dt = time.perf_counter_ns() - t0
                if i >= warmup:
                    whole.append(dt / 1e6)
                done += 1
                if progress:
                    progress(done, total)
        ctx = measurement_context()
    finally:
        torch.set_num_threads(previous)
    stats = {name: Stat.of(v) if v else Stat(0.0, 0.0, ()) for name, v in per_node.items()}
    return TimingResult(stats, Stat.of(whole), Stat.of(sums), repeats, warmup, ctx)


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measurement_context() -> dict[str, Any]:
    """Where and how a measurement was taken: CPU model, cores, torch threads, library versions."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    return {
        "device": "cpu",
        "cpu_model": cpu_model_name(),
        "logical_cpus": os.cpu_count() or 0,
        "cpus_available": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        # libgomp's default (unset) spins idle threads; PASSIVE sleeps them, which matters when cores are shared
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
