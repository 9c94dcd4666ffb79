"""PNG plots of federated runs: accuracy against rounds and against cumulative uplink bytes."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

from tasks.federated.state import RoundRecord


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_plot(series: Mapping[str, Sequence[RoundRecord]], title: str = "") -> bytes:
    """Two panels (accuracy vs round; accuracy vs cumulative uplink bytes, log x); one line per labelled run."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, recs in series.items():
        rounds = [r.round for r in recs]
        acc = [100 * r.accuracy for r in recs]
        a.plot(rounds, acc, marker=".", label=label)
        b.plot([r.cum_uplink_bytes for r in recs], acc, marker=".", label=label)
    a.set_xlabel("round")
    b.set_xlabel("cumulative uplink bytes")
    b.set_xscale("log")
    for ax in (a, b):
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig, plt)


def privacy_plot(curves: Mapping[str, Sequence[tuple[float, float]]], baseline: Mapping[str, float] | None = None,
                 title: str = "") -> bytes:
    """Accuracy (%) against epsilon, one line per label; ``baseline`` draws each label's non-private accuracy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (label, pts) in enumerate(curves.items()):
        pts = sorted(pts)
        line, = ax.plot([e for e, _ in pts], [100 * acc for _, acc in pts], marker="o", label=label)
        if baseline and label in baseline:
            ax.axhline(100 * baseline[label], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (delta = 1e-5)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _png(fig, plt)


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
