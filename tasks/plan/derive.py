"""Bit options derived from a node's float figures, for graphs that carry no per-width measurements.

Used for msr-fiddle's published graphs (which have float latency and size only) and documented in the README:
a node with weights (``size > 0``) gets one option per width ``b`` with

* ``latency = fpgaLatency / speedup[b]`` (default: 8 bits x2, 4 bits x2.5, the int8 / int4 kernel speed-ups of
  an edge NPU),
* ``size = size x b / 32`` (weights stored at b bits),
* ``sensitivity = h x n_params x 4**-(b - 1)``: the expected squared perturbation of uniform b-bit quantization
  (step 2**(1-b) of the weight range, noise variance step**2 / 12, folded into the constant) over the node's
  ``n_params = size / 4`` float32 parameters, times a Hessian-trace-per-parameter stand-in ``h`` drawn
  log-uniformly in [0.01, 1] from a seeded hash of the node id (so the same graph always gets the same figures).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Mapping

DEFAULT_SPEEDUP = {8: 2.0, 4: 2.5}


def trace_stand_in(node_id: Any, seed: int = 0) -> float:
    digest = hashlib.sha256(f"{seed}:{node_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2 ** 64
    return 10 ** (-2 + 2 * u)


def with_derived_bit_options(data: Mapping[str, Any], speedup: Mapping[int, float] = DEFAULT_SPEEDUP,
                             seed: int = 0) -> dict[str, Any]:
    """A copy of an msr-fiddle graph dict whose weighted nodes carry derived ``bitOptions`` (see module doc)."""
    out = copy.deepcopy(dict(data))
    for nd in out["nodes"]:
        size = float(nd.get("size", 0.0))
        if size <= 0:
            continue
        h = trace_stand_in(nd["id"], seed)
        nd["bitOptions"] = [{"bits": int(b), "latency": float(nd["fpgaLatency"]) / float(sp),
                             "size": size * b / 32, "sensitivity": h * (size / 4) * 4.0 ** -(b - 1)}
                            for b, sp in sorted(speedup.items(), reverse=True)]
    return out
