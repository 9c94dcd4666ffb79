"""Rebuild ``tasks/partition/op_profiles.json``: measured per-operator costs that the cell-graph generator draws from.

Profiles real networks at operator granularity with forgeflow's own profiler (``tasks.profiling.profile_model``,
``weights=None``, batch 1, float32, one torch thread): torchvision's googlenet, inception_v3 (convolutions, pools,
concatenations), mobilenet_v2 (depthwise convolutions) and a pre-norm transformer block written with plain torch ops
(linear, matmul, softmax, layer_norm, gelu). Every profiled node becomes one sample ``[flops, output_bytes,
latency_ms]`` of its operator kind; the generator scales a sample of the right kind and nearby size to the op it
builds (compute-bound kinds by FLOPs, memory-bound kinds by bytes).

    python bench/partition_op_table.py [--repeats 5] [--max-per-kind 96]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
from pathlib import Path


import torch  # noqa: E402
from torch import nn  # noqa: E402

from forgeflow.tasks.profiling.profile import profile_model  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tasks" / "partition" / "op_profiles.json"


class _TransformerBlock(nn.Module):
    """A pre-norm transformer block on (tokens, dim), attention written out with matmul/softmax."""

    def __init__(self, dim: int = 384, heads: int = 6, hidden: int = 1536) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        t, d = h.shape[-2], h.shape[-1]
        q = self.q(h).view(t, self.heads, d // self.heads).transpose(0, 1)
        k = self.k(h).view(t, self.heads, d // self.heads).transpose(0, 1)
        v = self.v(h).view(t, self.heads, d // self.heads).transpose(0, 1)
        a = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.o(torch.matmul(a, v).transpose(0, 1).reshape(t, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class _TransformerStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(_TransformerBlock(256, 4, 1024), _TransformerBlock(384, 6, 1536),
                                    _TransformerBlock(512, 8, 2048))
        self.up1, self.up2 = nn.Linear(256, 384), nn.Linear(384, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](x)
        x = self.blocks[1](self.up1(x))
        return self.blocks[2](self.up2(x))


def kind_of(op: str, module: str, depthwise: set[str]) -> str | None:
    o = op.lower()
    if o == "conv2d":
        return "dwconv" if module in depthwise else "conv"
    table = {"batchnorm2d": "bn", "relu": "relu", "relu6": "relu", "maxpool2d": "pool", "max_pool2d": "pool",
             "avg_pool2d": "pool", "adaptiveavgpool2d": "pool", "cat": "cat", "add": "add", "iadd": "add",
             "linear": "linear", "matmul": "matmul", "softmax": "softmax", "layernorm": "layernorm",
             "gelu": "gelu", "mul": "add"}
    return table.get(o)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-per-kind", type=int, default=96)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.manual_seed(0)
    samples: dict[str, list[list[float]]] = {}
    sources = []
    jobs = [("torchvision:googlenet", (1, 3, 224, 224), None, {"aux_logits": False, "init_weights": False}),
            ("torchvision:inception_v3", (1, 3, 299, 299), None, {"aux_logits": False, "init_weights": False}),
            ("torchvision:mobilenet_v2", (1, 3, 224, 224), None, {}),
            ("transformer_block", (196, 256), _TransformerStack(), {})]
    for spec, shape, model, kwargs in jobs:
        if model is None:
            from forgeflow.tasks.models.spec import resolve_model

            model = resolve_model(spec, **kwargs)
        depthwise = {name for name, m in model.named_modules()
                     if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels}
        g = profile_model(spec, shape, repeats=args.repeats, warmup=2, threads=1, model=model)
        n_before = sum(len(v) for v in samples.values())
        for nd in g.nodes:
            kind = kind_of(nd.op, nd.module, depthwise)
            if kind is None or nd.latency_ms <= 0 or nd.output_bytes <= 0:
                continue
            samples.setdefault(kind, []).append([float(nd.flops), float(nd.output_bytes), float(nd.latency_ms)])
        sources.append({"model": spec, "input_shape": list(shape), "nodes": len(g.nodes),
                        "samples": sum(len(v) for v in samples.values()) - n_before})
        print(f"{spec}: {len(g.nodes)} nodes", flush=True)
    out = {}
    for kind, rows in sorted(samples.items()):
        rows.sort(key=lambda r: (r[0], r[1]))
        if len(rows) > args.max_per_kind:  # keep an even spread over sizes
            step = len(rows) / args.max_per_kind
            rows = [rows[int(i * step)] for i in range(args.max_per_kind)]
        out[kind] = [[int(f), int(b), round(ms, 6)] for f, b, ms in rows]
    doc = {
        "about": "per-operator [flops, output_bytes, latency_ms] samples measured by forgeflow's profiler "
                 "(batch 1, float32, 1 torch thread, median over repeats); see bench/partition_op_table.py",
        "command": "python " + " ".join(sys.argv),
        "measured": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
                    f"{platform.processor() or platform.machine()}",
        "sources": sources,
        "kinds": out,
    }
    args.out.write_text(json.dumps(doc, indent=0).replace("\n", "") + "\n")
    print({k: len(v) for k, v in out.items()}, math.fsum(len(v) for v in out.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
