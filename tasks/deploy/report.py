"""The run report: one self-contained HTML page (inline CSS, plots as PNG data URIs, no script, no external file).

Sections: the target; the chosen subnet and why (the accuracy / certified-bottleneck front with the limit); stages and
bits per unit; the certificate (bottleneck, lower bound, ratio, baselines); predicted vs measured stage times;
accuracy float / quantized / fine-tuned; federated bytes when there were clients.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plot_pngs(s: dict[str, Any]) -> dict[str, bytes]:
    """The report's plots as PNG bytes: also stored in the catalog and embedded in the run's Prefect artifact."""
    return {"front": front_plot(s), "bits": bits_plot(s), "stages": stages_plot(s)}


def front_plot(s: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    cands = [c for c in s["search"]["candidates"] if c["bottleneck_ms"] is not None]
    ax.scatter([c["bottleneck_ms"] for c in cands], [c["accuracy_pct"] for c in cands], s=14, c="#bbbbbb",
               label=f"evaluated subnets ({s['search']['evaluations']})")
    front = s["search"]["front"]
    ax.plot([c["bottleneck_ms"] for c in front], [c["accuracy_pct"] for c in front], "o-", color=PALETTE[0], ms=5,
            label="Pareto front")
    ch = s["chosen"]
    ax.scatter([ch["bottleneck_ms"]], [ch["accuracy_pct"]], marker="*", s=260, color=PALETTE[3], zorder=5,
               label="chosen")
    lim = s["search"].get("latency_limit_ms")
    if lim:
        ax.axvline(lim, color=PALETTE[3], ls="--", lw=1, label=f"limit {lim:g} ms")
    ax.set_xlabel(f"certified pipeline bottleneck on {s['target']['name']} (ms per microbatch)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def stages_plot(s: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k = len(s["plan"]["stages"])
    x = np.arange(k)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    a1.bar(x - 0.2, s["plan"]["stage_ms"], 0.4, color=PALETTE[0], label="predicted on target")
    a1.axhline(s["plan"]["lower_bound_ms"], color="k", ls=":", lw=1, label="proven lower bound")
    a1.set_xticks(x, [f"stage {i}" for i in range(k)])
    a1.set_ylabel("ms per microbatch")
    a1.set_title("target: plan")
    a1.legend(fontsize=8)
    pipe = s["pipeline"]
    a2.bar(x - 0.2, s["host_stage_ms"], 0.4, color=PALETTE[1], label="predicted on this host")
    a2.bar(x + 0.2, pipe["stage_ms_measured"], 0.4, color=PALETTE[2], label="measured (pipeline run)")
    a2.set_xticks(x, [f"stage {i}" for i in range(k)])
    a2.set_title("this host: k processes")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(axis="y", alpha=0.3)
    return _png(fig)


def bits_plot(s: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [u for st in s["plan"]["stages"] for u in st]
    stage_of = {u: i for i, st in enumerate(s["plan"]["stages"]) for u in st}
    bits = [s["plan"]["bits"][u] for u in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(names)), 3.0))
    ax.bar(range(len(names)), bits, color=[PALETTE[stage_of[u] % len(PALETTE)] for u in names])
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks([4, 8, 16, 32])
    ax.set_ylabel("weight bits")
    ax.set_title("bits per unit (colour = stage)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "∞" if math.isinf(v) else format(v, spec)
    return html.escape(str(v))


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) and c.startswith('<') else _fmt(c)}</td>"
                                 for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1040px;margin:24px auto;
padding:0 16px;color:#222}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4}code{background:#f4f4f4;padding:1px 4px}img{max-width:100%;display:block;margin:8px 0}
.big{font-size:1.1em}.ok{color:#1a7f37}.bad{color:#c62828}"""


def render_html(s: dict[str, Any], plots: dict[str, bytes] | None = None) -> str:
    plots = plots or plot_pngs(s)
    t, p, a, pipe = s["target"], s["plan"], s["accuracy"], s["pipeline"]
    ratio = p.get("ratio")
    stages_rows = []
    for i, st in enumerate(p["stages"]):
        stages_rows.append([i, ", ".join(f"{u} ({p['bits'][u]} b)" for u in st), p["stage_ms"][i],
                            p["stage_memory"][i], s["host_stage_ms"][i], pipe["stage_ms_measured"][i]])
    base = p.get("baselines") or {}
    eq = '<span class="ok">equal</span>' if pipe["equal"] else '<span class="bad">DIFFERENT</span>'
    fed = s.get("federated")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>forgeflow optimize {html.escape(s['run_id'])}"
        f"</title><style>{CSS}</style></head><body>",
        f"<h1>Deploy <code>{html.escape(s['chosen']['arch'])}</code> on {html.escape(t['name'])}</h1>",
        f"<p class='big'>Certified bottleneck <b>{_fmt(p['bottleneck_ms'])} ms</b> per microbatch of "
        f"{t['microbatch']} (proven lower bound {_fmt(p['lower_bound_ms'])} ms, ratio <b>{_fmt(ratio, '.4f')}</b>, "
        f"{html.escape(str(p['status']))}); held-out accuracy {_fmt(a['accuracy_float_pct'], '.2f')} % float, "
        f"<b>{_fmt(a['accuracy_quantized_pct'], '.2f')} %</b> with the plan applied"
        + (f", {_fmt(a['accuracy_finetuned_pct'], '.2f')} % fine-tuned" if a.get("accuracy_finetuned_pct") is not None
           else "") + ".</p>",
        f"<p>Run <code>{html.escape(s['run_id'])}</code>, catalog <code>{html.escape(s['catalog'])}</code>, bundle "
        f"<code>{html.escape(s['bundle']['bundle'])}</code>.</p>",
        "<h2>Target</h2>",
        _table([[t["name"], t["k"], ", ".join(f"{m:,.0f}" for m in t["memory_bytes"]),
                 ", ".join(f"{v:g}" for v in t["speed"]), ", ".join(str(b) for b in t["bits"]),
                 f"{t['link_bytes_per_s'] / 1e6:,.1f} MB/s + {t['link_latency_ms']:g} ms", t["budget_fraction"],
                 t["latency_limit_ms"], t["min_accuracy_pct"]]],
               ["name", "devices", "memory (bytes)", "speed factor", "widths", "link", "budget (x uniform-4 sens.)",
                "latency limit (ms)", "accuracy floor (%)"]),
        f"<p>File <code>{html.escape(t['source'])}</code> (digest {html.escape(t['digest'])}).</p>",
        "<h2>Chosen subnet and why</h2>",
        f"<p><code>{html.escape(s['chosen']['arch'])}</code>: {html.escape(s['search']['why'])}. "
        f"{s['search']['evaluations']} subnets evaluated ({html.escape(s['search']['status'])}); "
        f"{s['search']['infeasible']} had no plan on this target.</p>",
        f"<img alt='accuracy vs certified bottleneck front' src='{_uri(plots['front'])}'>",
        _table([[c["arch"], c["accuracy_pct"], c["bottleneck_ms"]] for c in s["search"]["front"]],
               ["front subnet", "accuracy (%)", "certified bottleneck (ms)"]),
        "<h2>Stages and bits per unit</h2>",
        _table(stages_rows, ["stage", "units (weight bits)", "predicted on target (ms)", "memory (bytes)",
                             "predicted on this host (ms)", "measured on this host (ms)"]),
        f"<img alt='bits per unit' src='{_uri(plots['bits'])}'>",
        "<h2>Certificate</h2>",
        _table([[p["planner"], p["bottleneck_ms"], p["lower_bound_ms"], p.get("lower_bound_method"), ratio,
                 p["sensitivity"], p["budget"]]],
               ["planner", "bottleneck (ms)", "lower bound (ms)", "bound from", "ratio", "sensitivity", "budget"]),
        _table([[m, v] for m, v in base.items()], ["baseline on the same instance", "bottleneck (ms)"]) if base else "",
        "<h2>Predicted vs measured stage times</h2>",
        f"<img alt='stage times' src='{_uri(plots['stages'])}'>",
        f"<p>Pipeline run: {pipe['k']} processes, {pipe['microbatches']} microbatches of {pipe['microbatch_size']}; "
        f"pipelined output vs unsplit quantized model: {eq} (max |diff| {_fmt(pipe['max_abs_diff'])}). Throughput "
        f"{_fmt(pipe['throughput_mb_s'])} microbatches/s measured against {_fmt(pipe['predicted_throughput_mb_s'])} "
        f"predicted for this host ({_fmt(pipe['throughput_gap_pct'], '+.1f')} %). The target's figures assume its "
        f"devices; this host runs the quantized stages in float with fake-quantized inputs.</p>",
        "<h2>Accuracy</h2>",
        _table([[a["accuracy_float_pct"], a["accuracy_quantized_pct"], a.get("accuracy_finetuned_pct"), a["n_test"]]],
               ["float (%)", "plan applied (%)", "federated QAT (%)", "held-out examples"]),
    ]
    if fed:
        parts += ["<h2>Federated fine-tuning</h2>",
                  _table([[fed.get("clients"), fed.get("rounds"), fed.get("uplink_bytes"), fed.get("downlink_bytes")]],
                         ["clients", "rounds", "bytes sent up", "bytes sent down"])]
    secs = s.get("seconds", {})
    parts += ["<h2>Steps</h2>", _table([[k, v] for k, v in secs.items()], ["step", "seconds"]), "</body></html>"]
    return "\n".join(parts)


def markdown_summary(s: dict[str, Any]) -> str:
    from forgeflow.tasks.deploy.device_latency import describe

    p, a, pipe = s["plan"], s["accuracy"], s["pipeline"]
    ratio = p.get("ratio")
    return (f"Run `{s['run_id']}` in catalog `{s['catalog']}`: deploy `{s['chosen']['arch']}` on "
            f"**{s['target']['name']}** ({s['search']['why']}).\n\n"
            f"- plan ({p['planner']}): {p['k']} stage(s), certified bottleneck {p['bottleneck_ms']:.4g} ms, lower "
            f"bound {p['lower_bound_ms']:.4g} ms, ratio {ratio if ratio is None else format(ratio, '.4f')}\n"
            + "".join(f"- latency: {line}\n" for line in describe(s.get("latency_source")))
            + f"- accuracy: float {a['accuracy_float_pct']:.2f} %, plan applied {a['accuracy_quantized_pct']:.2f} %\n"
            f"- pipeline run: output {'equal' if pipe['equal'] else 'DIFFERENT'}, throughput "
            f"{pipe['throughput_mb_s']:.3g} microbatches/s vs {pipe['predicted_throughput_mb_s']:.3g} predicted "
            f"on this host\n- bundle `{s['bundle']['bundle']}`; HTML report: `forgeflow report {s['run_id']}`\n")
