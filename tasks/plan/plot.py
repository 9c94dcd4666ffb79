"""PNG of a joint plan: stage loads (compute / receive / send, bottleneck and proven bound) beside the bit width of
every layer in pipeline order, coloured by stage (matplotlib, Agg backend)."""

from __future__ import annotations

import io

from forgeflow.tasks.partition.plot import draw_stage_loads
from forgeflow.tasks.plan.result import PlanResult


def plan_png(result: PlanResult, title: str | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = result.plan
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 2]})
    try:
        xs = list(range(p.k))
        draw_stage_loads(ax, p.compute_ms, p.comm_in_ms, p.comm_out_ms, p.bottleneck, result.lower_bound.value,
                         f"lower bound {result.lower_bound.value:.4g} ms")
        ax.set_xticks(xs)
        ax.set_xlabel("pipeline stage")
        ax.set_ylabel("time per inference (ms)")
        ax.legend(fontsize=7, loc="lower right")
        order = [(s, i) for s, stage in enumerate(p.stages) for i in stage]
        bits_of = dict(zip(result.meta.get("raw_ids", []), p.bits))
        cmap = plt.get_cmap("tab10")
        bx.bar(range(len(order)), [bits_of.get(i, 32) for _, i in order], width=1.0,
               color=[cmap(s % 10) for s, _ in order])
        bx.set_yticks(sorted(set(p.bits)))
        bx.set_xlabel("node, in pipeline order (colour = stage)")
        bx.set_ylabel("weight bits")
        fig.suptitle(title or f"{result.instance_name}: k={result.k}, ratio {result.ratio:.4f}, sensitivity "
                     f"{p.sensitivity:.4g} / budget " + (f"{result.budget:.4g}" if result.budget is not None else "none"),
                     fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    finally:
        plt.close(fig)
