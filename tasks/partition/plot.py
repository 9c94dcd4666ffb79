"""PNG of a plan's stage loads: stacked bars of compute, incoming and outgoing transfer time per stage, with the
bottleneck and the proven lower bound as horizontal lines (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import io

from forgeflow.tasks.partition.result import PartitionResult


def stage_loads_png(result: PartitionResult, title: str | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = result.plan
    xs = list(range(plan.k))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * plan.k + 3), 3.8))
    try:
        draw_stage_loads(ax, plan.compute_ms, plan.comm_in_ms, plan.comm_out_ms, plan.bottleneck,
                         result.lower_bound.value, f"lower bound {result.lower_bound.value:.4g} ms "
                         f"({result.lower_bound.method})")
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


def draw_stage_loads(ax, compute, comm_in, comm_out, bottleneck: float, lower_bound: float, bound_label: str) -> None:
    """Stacked compute / receive / send bars per stage with the bottleneck and the proven bound as lines (shared by
    the partition and joint-plan plots)."""
    xs = list(range(len(compute)))
    ax.bar(xs, compute, color="#4C72B0", label="compute")
    bottom = list(compute)
    ax.bar(xs, comm_in, bottom=bottom, color="#DD8452", label="receive")
    bottom = [b + c for b, c in zip(bottom, comm_in)]
    ax.bar(xs, comm_out, bottom=bottom, color="#C44E52", label="send")
    ax.axhline(bottleneck, color="black", lw=1, ls="-", label=f"bottleneck {bottleneck:.4g} ms")
    ax.axhline(lower_bound, color="#55A868", lw=1.2, ls="--", label=bound_label)
