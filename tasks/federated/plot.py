"""PNG plots of federated runs: accuracy against rounds and against cumulative uplink bytes."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

from forgeflow.tasks.federated.state import RoundRecord


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


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
