"""The accuracy–bytes–privacy trade-off of federated runs as a Pareto front, stored in the catalog.

A point is one finished run: final test accuracy (higher is better), total uplink bytes (lower is better) and the
DP epsilon it spent (lower is better; a run without DP spends an unbounded budget, ``epsilon = inf``). A point is on
the front when no other point is at least as good in all three and strictly better in one.

``store_front`` writes one row per point to ``federated_fronts`` (all rows of one front share ``front_id``, the hash
of its points) and the plot (accuracy against uplink bytes, log x, one colour per epsilon, front points ringed) as a
PNG catalog object whose key every row carries. ``points_from_runs`` turns ``federated_runs`` rows into points, so a
front can be drawn over any set of runs already in a catalog.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class FrontPoint:
    label: str  # e.g. "random-k 9 %, record DP"
    accuracy: float  # final test accuracy, fraction
    uplink_bytes: int
    epsilon: float = math.inf  # inf: no DP
    compression: str = "none"
    dp: str = "none"  # none | record | client
    run_key: str | None = None

    def dominates(self, other: "FrontPoint") -> bool:
        at_least = (self.accuracy >= other.accuracy and self.uplink_bytes <= other.uplink_bytes
                    and self.epsilon <= other.epsilon)
        better = (self.accuracy > other.accuracy or self.uplink_bytes < other.uplink_bytes
                  or self.epsilon < other.epsilon)
        return at_least and better


def pareto_mask(points: Sequence[FrontPoint]) -> list[bool]:
    """True for each point that no other point dominates (O(n^2): fronts hold tens of runs)."""
    return [not any(q.dominates(p) for q in points) for p in points]


def points_from_runs(rows: Iterable[Mapping[str, Any]]) -> list[FrontPoint]:
    """``federated_runs`` rows (dicts) -> points; the label names compression and DP from the stored config."""
    out = []
    for r in rows:
        cfg = json.loads(r["config"]) if isinstance(r.get("config"), str) else (r.get("config") or {})
        comp = _label_of(cfg.get("compression"))
        dp = (cfg.get("privacy") or {}).get("mode", "none")
        eps = r.get("epsilon")
        out.append(FrontPoint(label=f"{comp}" + (f", {dp} DP" if dp != "none" else ""), accuracy=float(r["accuracy"]),
                              uplink_bytes=int(r["uplink_bytes"]), epsilon=math.inf if eps is None else float(eps),
                              compression=comp, dp=dp, run_key=r.get("run_key")))
    return out


def _label_of(comp: Any) -> str:
    from forgeflow.tasks.federated.config import Compression

    return Compression(**comp).label() if isinstance(comp, Mapping) else str(comp or "none")


def front_id(points: Sequence[FrontPoint]) -> str:
    blob = json.dumps(sorted(json.dumps(_jsonable(p), sort_keys=True) for p in points))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(p: FrontPoint) -> dict:
    d = asdict(p)
    d["epsilon"] = None if math.isinf(p.epsilon) else p.epsilon
    return d


def front_png(points: Sequence[FrontPoint], title: str = "") -> bytes:
    """Accuracy (%) against uplink bytes (log x); colour = epsilon (grey = no DP); the front ringed and joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mask = pareto_mask(points)
    eps_values = sorted({p.epsilon for p in points})
    cmap = plt.get_cmap("viridis", max(1, len([e for e in eps_values if not math.isinf(e)])))
    colour = {e: ("0.45" if math.isinf(e) else cmap(i)) for i, e in enumerate(eps_values)}
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for e in eps_values:
        sel = [p for p in points if p.epsilon == e]
        ax.scatter([p.uplink_bytes for p in sel], [100 * p.accuracy for p in sel], color=colour[e], s=36, zorder=3,
                   label="no DP" if math.isinf(e) else f"epsilon {e:.3g}")
    for p, on in zip(points, mask):
        ax.annotate(p.label, (p.uplink_bytes, 100 * p.accuracy), fontsize=6.5, xytext=(4, 3),
                    textcoords="offset points")
        if on:
            ax.scatter([p.uplink_bytes], [100 * p.accuracy], s=130, facecolors="none", edgecolors="crimson",
                       linewidths=1.2, zorder=4)
    # the 2-D accuracy-bytes staircase of each epsilon level (what a user can buy at that budget)
    for e in eps_values:
        sel = sorted((p for p in points if p.epsilon == e), key=lambda p: p.uplink_bytes)
        best, xs, ys = -1.0, [], []
        for p in sel:
            if p.accuracy > best:
                best = p.accuracy
                xs.append(p.uplink_bytes)
                ys.append(100 * p.accuracy)
        if len(xs) > 1:
            ax.step(xs, ys, where="post", color=colour[e], alpha=0.6, linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("total uplink bytes")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="ringed: Pareto front (accuracy, bytes, epsilon)", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def store_front(cat, run_id: str, points: Sequence[FrontPoint], title: str = "") -> dict[str, Any]:
    """Write the front (rows in ``federated_fronts`` and its PNG) to the catalog; return its id, plot key and mask."""
    if not points:
        raise ValueError("a trade-off front needs at least one run")
    mask = pareto_mask(points)
    fid = front_id(points)
    plot_key = cat.put_object(front_png(points, title), ".png", run_id=run_id, kind="plot",
                              description=f"federated accuracy-bytes-epsilon front {fid}")
    cat.append("federated_fronts", [{
        "front_id": fid, "title": title, "label": p.label, "run_key": p.run_key, "compression": p.compression,
        "dp": p.dp, "epsilon": None if math.isinf(p.epsilon) else p.epsilon, "uplink_bytes": p.uplink_bytes,
        "accuracy": p.accuracy, "on_front": on, "plot_key": plot_key} for p, on in zip(points, mask)],
        run_id=run_id, description=f"federated trade-off front {fid}")
    return {"front_id": fid, "plot_key": plot_key, "on_front": mask}
