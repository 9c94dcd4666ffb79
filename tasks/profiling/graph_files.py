"""Read a graph file of any supported format: msr-fiddle JSON, PipeDream graph.txt, or forgeflow's own JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.graph import CostGraph
from forgeflow.tasks.profiling.links import LinkProfile
from forgeflow.tasks.profiling.msr_io import graph_from_msr_dict
from forgeflow.tasks.profiling.pipedream_io import parse_pipedream_graph

FORMATS = ("auto", "msr", "pipedream", "forgeflow")


def load_graph_file(path: str | os.PathLike[str], fmt: str = "auto", *, link: str | LinkProfile | None = None,
                    training: bool = False, name: str | None = None) -> CostGraph:
    """Load ``path``. ``fmt="auto"`` picks by content: a JSON object with ``nodes``/``edges`` lists of msr fields is
    msr, one with ``format`` and ``nodes`` is forgeflow's ``CostGraph.to_dict``, text lines ``nodeN -- ...`` are
    PipeDream. ``link`` and ``training`` apply to PipeDream files (msr files carry their own costs)."""
    if fmt not in FORMATS:
        raise InvalidGraphError(f"graph format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    from forgeflow.tasks.files import read_text

    p = Path(path)
    text = read_text(p, "graph", InvalidGraphError)
    stem = name or (p.parent.name if p.stem == "graph" and p.parent.name else p.stem)
    if fmt == "auto":
        fmt = _sniff(text, p)
    if fmt == "pipedream":
        return _nonempty(parse_pipedream_graph(text, link=link, training=training, name=stem, source=p.name), p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidGraphError(f"graph file {p} is not valid JSON: {exc}") from None
    if fmt == "forgeflow":
        if not isinstance(data, dict):
            raise InvalidGraphError(f"graph file {p}: expected a JSON object")
        return _nonempty(CostGraph.from_dict(data), p)
    return _nonempty(graph_from_msr_dict(data, name=stem, source=p.name), p)


def _nonempty(graph: CostGraph, p: Path) -> CostGraph:
    """A graph with no operator has nothing to profile or partition (it would be stored and "solved" as optimal)."""
    if not graph.nodes:
        raise InvalidGraphError(f"graph file {p} has no nodes")
    return graph


def _sniff(text: str, p: Path) -> str:
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidGraphError(f"graph file {p} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "format" in data and isinstance(data.get("nodes"), list) and \
                all(isinstance(n, dict) and "latency_ms" in n for n in data["nodes"][:1]):
            return "forgeflow"
        return "msr"
    if " -- " in text.split("\n", 1)[0]:
        return "pipedream"
    raise InvalidGraphError(f"graph file {p}: not msr-fiddle JSON, forgeflow JSON or a PipeDream graph.txt "
                            "(first line should be 'nodeN -- DESCRIPTION -- forward_compute_time=...')")
