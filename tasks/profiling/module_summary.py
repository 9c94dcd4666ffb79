"""Per-module parameter and FLOP counts of a model (the first step of ``forgeflow optimize``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs) under the same rules as
the profiler's per-node counts (``tasks.profiling.costs``: CPU flash attention counted, MultiheadAttention's fast path
off), so a summary and a profile of one model agree. Each row holds a module's own FLOPs (its total minus its
children's) and own parameters, so the rows add up to the model's totals.
"""

from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class ModuleCost:
    module: str  # dotted path ('' is the root)
    type: str
    params: int  # parameters owned directly by this module (not its children)
    param_bytes: int
    flops: int  # FLOPs of this module's forward not spent in its children (multiply-add = 2)


@dataclass(frozen=True)
class ModelSummary:
    spec: str
    input_shape: tuple[int, ...]
    total_params: int
    total_flops: int
    modules: tuple[ModuleCost, ...]

    def rows(self) -> list[dict]:
        return [{"model": self.spec, "input_shape": list(self.input_shape), "module": m.module, "module_type": m.type,
                 "params": m.params, "param_bytes": m.param_bytes, "flops": m.flops} for m in self.modules]


def summarize_model(spec: str, input_shape: tuple[int, ...] | None = None) -> ModelSummary:
    """Build the model from ``spec`` and count its parameters and FLOPs per module on one forward pass."""
    import torch

    from forgeflow.tasks.models.spec import default_input_shape, resolve_model
    from forgeflow.tasks.profiling.costs import counting_conditions, flop_counter
    from forgeflow.tasks.profiling.errors import InputShapeError

    model = resolve_model(spec).eval()
    shape = tuple(input_shape) if input_shape else default_input_shape(spec)
    x = torch.randn(*shape)
    counter = flop_counter()
    try:
        with counting_conditions(), counter:
            model(x)
    except Exception as exc:
        raise InputShapeError(f"model {spec} cannot run on an input of shape {list(shape)}: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    counts = counter.get_flop_counts()
    root = type(model).__name__

    def flops_of(path: str) -> int:
        return int(sum(counts.get(f"{root}.{path}" if path else root, {}).values()))

    # a module's own FLOPs = its total minus its children's (attention matmuls belong to the attention module)
    modules = []
    for path, mod in model.named_modules():
        own_params = list(mod.parameters(recurse=False))
        children = [f"{path}.{n}" if path else n for n, _ in mod.named_children()]
        own_flops = flops_of(path) - sum(flops_of(c) for c in children)
        if own_params or own_flops:
            modules.append(ModuleCost(path, type(mod).__name__, sum(p.numel() for p in own_params),
                                      sum(p.numel() * p.element_size() for p in own_params), own_flops))
    total = int(sum(counts.get("Global", {}).values()))
    return ModelSummary(str(spec), shape, sum(p.numel() for p in model.parameters()), total, tuple(modules))
