"""PNG of a search: every evaluated candidate, the Pareto front as a staircase, the latency limit and the pick."""

from __future__ import annotations

import io

import numpy as np

from forgeflow.tasks.supernet.search import SearchResult


def front_png(result: SearchResult, title: str, latency_limit_ms: float | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.scatter(result.latency_ms, result.accuracy, s=8, c="#b0b0b0", label=f"evaluated ({result.evaluations})")
    f = result.front_index
    if f.size:
        ax.step(result.latency_ms[f], result.accuracy[f], where="post", c="#1f77b4", lw=1.5)
        ax.scatter(result.latency_ms[f], result.accuracy[f], s=22, c="#1f77b4", label=f"Pareto front ({f.size})")
    if latency_limit_ms is not None:
        ax.axvline(latency_limit_ms, c="#d62728", ls="--", lw=1, label=f"limit {latency_limit_ms:g} ms")
        best = result.best_under(latency_limit_ms)
        if best is not None:
            ax.scatter([result.latency_ms[best]], [result.accuracy[best]], s=90, marker="*", c="#d62728",
                       label=f"best under limit ({result.accuracy[best]:.2f} %)", zorder=5)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    if len(result.accuracy):
        lo = np.percentile(result.accuracy, 5)
        ax.set_ylim(bottom=max(lo - 2, float(result.accuracy.min()) - 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
