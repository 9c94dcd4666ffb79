"""PNG of a plan's stage loads: stacked bars of compute, incoming and outgoing transfer time per stage, with the
bottleneck and the proven lower bound as horizontal lines (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import io

from tasks.partition.result import PartitionResult


def stage_loads_png(result: PartitionResult, title: str | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = result.plan
    xs = list(range(plan.k))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * plan.k + 3), 3.8))
    try:
        ax.bar(xs, plan.compute_ms, color="#4C72B0", label="compute")
        bottom = list(plan.compute_ms)
        ax.bar(xs, plan.comm_in_ms, bottom=bottom, color="#DD8452", label="receive")
        bottom = [b + c for b, c in zip(bottom, plan.comm_in_ms)]
        ax.bar(xs, plan.comm_out_ms, bottom=bottom, color="#C44E52", label="send")
        ax.axhline(plan.bottleneck, color="black", lw=1, ls="-", label=f"bottleneck {plan.bottleneck:.4g} ms")
        ax.axhline(result.lower_bound.value, color="#55A868", lw=1.2, ls="--",
                   label=f"lower bound {result.lower_bound.value:.4g} ms ({result.lower_bound.method})")
        ax.set_xticks(xs)
        ax.set_xlabel("pipeline stage")
        ax.set_ylabel("time per inference (ms)")
        ax.set_title(title or f"{result.problem_name}: k={result.k}, ratio {result.ratio:.4f}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        return buf.getvalue()
    finally:
        plt.close(fig)
