"""Static per-node costs of a captured graph: FLOPs, parameter and buffer bytes, output activation bytes.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` run around each node (a multiply-add counts 2), so the
node sum is by construction the counter's total for the whole model run the same way. Two gaps of the stock counter
are closed, both on attention, so that e.g. vit_b_16 comes to torchvision's documented 17.56 GMACs (35.13 GFLOPs):

- ``aten._scaled_dot_product_flash_attention_for_cpu`` (what SDPA dispatches to on CPU) has no formula; we register
  the same one torch uses for the CUDA flash kernel;
- ``nn.MultiheadAttention``'s inference fast path calls ``torch._native_multi_head_attention``, which the counter
  does not see into, so the fast path is off while counting (timing keeps it on).

``reference_flops`` counts the eager model under the same rules (the profile records it next to the node sum);
``stock_flops`` is what a plain ``FlopCounterMode()`` reports, for comparison.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict[Any, Any]:
    extra = {}
    op = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        extra[op] = _sdpa_cpu_flop
    return extra


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode with forgeflow's extra formulas."""
    return FlopCounterMode(display=False, custom_mapping=_extra_formulas())


@contextlib.contextmanager
def counting_conditions() -> Iterator[None]:
    """Inference (no grad) with the MultiheadAttention fast path off, restored afterwards."""
    mha = getattr(torch.backends, "mha", None)
    before = mha.get_fastpath_enabled() if mha is not None else None
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        with torch.no_grad():
            yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(before)


def reference_flops(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs of one eager forward, counted under the same rules as the per-node counts."""
    with counting_conditions():
        fc = flop_counter()
        with fc:
            model(*inputs)
    return int(fc.get_total_flops())


def stock_flops(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """What a plain ``FlopCounterMode()`` around ``model(*inputs)`` reports (grad mode on, stock formulas)."""
    fc = FlopCounterMode(display=False)
    with fc:
        model(*inputs)
    return int(fc.get_total_flops())


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) output; a tensor that appears twice counts once."""
    seen: set[int] = set()
    total = 0
    for t in _tensors(obj):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k])


@dataclass(frozen=True)
class NodeCost:
    """What one fx node costs, independent of timing. ``param_count``/``param_bytes``/``buffer_bytes`` are the
    parameters and buffers it owns (a module called twice owns them at its first call, so sums over nodes equal the
    model's); ``is_tensor`` says whether its output holds a tensor (shape arithmetic and asserts do not)."""

    name: str
    op: str
    module: str
    flops: int
    output_bytes: int
    is_tensor: bool
    param_count: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    output_shapes: tuple[tuple[int, ...], ...] = field(default_factory=tuple)


class _CostInterpreter(fx.Interpreter):
    """Runs the graph under one FlopCounterMode and charges each node the counter's increase while it ran."""

    def __init__(self, gm: fx.GraphModule, counter: FlopCounterMode):
        super().__init__(gm, garbage_collect_values=True)
        self.counter = counter
        self.flops: dict[str, int] = {}
        self.out_bytes: dict[str, int] = {}
        self.is_tensor: dict[str, bool] = {}
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def run_node(self, n: fx.Node) -> Any:
        before = self.counter.get_total_flops()
        out = super().run_node(n)
        self.flops[n.name] = int(self.counter.get_total_flops() - before)
        ts = list(_tensors(out))
        self.out_bytes[n.name] = tensor_bytes(out)
        self.is_tensor[n.name] = bool(ts)
        self.shapes[n.name] = tuple(tuple(int(d) for d in t.shape) for t in ts)
        return out


def node_costs(gm: fx.GraphModule, inputs: Sequence[torch.Tensor]) -> dict[str, NodeCost]:
    """Run ``gm`` once on ``inputs`` and cost every node (in graph order)."""
    counter = flop_counter()
    interp = _CostInterpreter(gm, counter)
    with counting_conditions(), counter:
        interp.run(*inputs)
    owned = _owned_tensors(gm)
    out: dict[str, NodeCost] = {}
    for n in gm.graph.nodes:
        if n.op == "output":
            continue
        pc, pb, bb = owned.get(n.name, (0, 0, 0))
        out[n.name] = NodeCost(
            name=n.name, op=op_name(gm, n), module=module_path(n), flops=interp.flops.get(n.name, 0),
            output_bytes=interp.out_bytes.get(n.name, 0), is_tensor=interp.is_tensor.get(n.name, False),
            param_count=pc, param_bytes=pb, buffer_bytes=bb, output_shapes=interp.shapes.get(n.name, ()),
        )
    return out


def _owned_tensors(gm: fx.GraphModule) -> dict[str, tuple[int, int, int]]:
    """node name -> (parameter count, parameter bytes, buffer bytes) of the tensors it is first to use."""
    params = {id(p) for p in gm.parameters()}
    claimed: set[int] = set()
    owned: dict[str, tuple[int, int, int]] = {}
    for n in gm.graph.nodes:
        tensors: list[torch.Tensor] = []
        if n.op == "call_module":
            mod = gm.get_submodule(n.target)
            tensors = list(mod.parameters()) + list(mod.buffers())
        elif n.op == "get_attr":
            obj = _fetch_attr(gm, n.target)
            tensors = list(_tensors(obj)) if not isinstance(obj, nn.Module) else \
                list(obj.parameters()) + list(obj.buffers())
        pc = pb = bb = 0
        for t in tensors:
            if id(t) in claimed:
                continue
            claimed.add(id(t))
            if id(t) in params:
                pc += t.numel()
                pb += t.numel() * t.element_size()
            else:
                bb += t.numel() * t.element_size()
        if pc or pb or bb:
            owned[n.name] = (pc, pb, bb)
    return owned


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def op_name(gm: fx.GraphModule, n: fx.Node) -> str:
    """A readable operator type: the module class for a module call, the function or ATen overload otherwise."""
    if n.op == "placeholder":
        return "input"
    if n.op == "get_attr":
        return "get_attr"
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)).__name__
    if n.op == "call_method":
        return str(n.target)
    target = n.target
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target._schema.name.split('::')[-1]}" if target.namespace == "aten" else str(target)
    return getattr(target, "__name__", str(target))


def module_path(n: fx.Node) -> str:
    """Dotted path of the module the node runs in ("" at the top level)."""
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return _clean_path(str(path))


def _clean_path(path: str) -> str:
    # torch.export may name the root "L['self']" or prefix paths with "L__self___"; keep the dotted module path.
    for prefix in ("L['self'].", "L__self___"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return "" if path in ("L['self']", "L__self__") else path
