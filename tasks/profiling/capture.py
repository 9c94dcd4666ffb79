"""Capture a model's operator graph with torch.fx or torch.export, and check that the capture is faithful.

``method="auto"`` tries ``torch.fx.symbolic_trace`` first (one node per leaf ``nn`` module or tensor function: the
granularity a partitioner wants, and it keeps module paths) and falls back to ``torch.export`` (ATen operators, which
handles Python control flow on shapes that symbolic tracing cannot), saying why. A capture counts only if the captured
graph, run on the example input, reproduces the eager model's output; otherwise the next method is tried. When no
method works, ``UntraceableModelError`` names each method's reason.

Node ids are the fx node names, which tracing derives from module paths and call order: the same model gives the
same ids on every run.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import fx, nn

from forgeflow.tasks.profiling.errors import InputShapeError, ProfileConfigError, UntraceableModelError

METHODS = ("fx", "export")


@dataclass(frozen=True)
class CapturedGraph:
    """``gm`` computes the model's forward; ``method`` is "fx" or "export"; ``notes`` say why earlier methods were
    skipped (empty when the first one worked)."""

    gm: fx.GraphModule
    method: str
    notes: tuple[str, ...]


def run_eager(model: nn.Module, inputs: Sequence[torch.Tensor], what: str = "model") -> Any:
    """Run the model once; turn the error of a model that rejects the input into ``InputShapeError``."""
    try:
        with torch.inference_mode():
            return model(*inputs)
    except Exception as exc:  # the user's model raised on our input: report it as a shape/dtype problem
        shapes = ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in inputs)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputShapeError(f"{what} rejected an input of shape {shapes}: {type(exc).__name__}: {first[:300]}") \
            from None


def capture_graph(model: nn.Module, inputs: Sequence[torch.Tensor], method: str = "auto",
                  reference_output: Any = None) -> CapturedGraph:
    """Capture ``model`` (in eval mode) on ``inputs``. ``reference_output`` is the eager output (computed if absent)."""
    if method not in ("auto",) + METHODS:
        raise ProfileConfigError(f"capture method must be one of auto, fx, export; got {method!r}")
    if reference_output is None:
        reference_output = run_eager(model, inputs)
    order = METHODS if method == "auto" else (method,)
    notes: list[str] = []
    for m in order:
        try:
            gm = _trace_fx(model) if m == "fx" else _trace_export(model, inputs)
        except Exception as exc:  # a tracer's own failure is the message the user needs
            notes.append(f"{_LABEL[m]} could not trace the model: {_first_line(exc)}")
            continue
        problem = _check_faithful(gm, inputs, reference_output)
        if problem:
            notes.append(f"{_LABEL[m]} traced a graph that does not reproduce the model ({problem})")
            continue
        return CapturedGraph(gm, m, tuple(notes))
    raise UntraceableModelError(f"cannot capture the model's graph: {'; '.join(notes)}")


_LABEL = {"fx": "torch.fx.symbolic_trace", "export": "torch.export"}


def _trace_fx(model: nn.Module) -> fx.GraphModule:
    return fx.symbolic_trace(model)


def _trace_export(model: nn.Module, inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    with _quiet_torch():
        ep = torch.export.export(model, tuple(inputs), strict=False)
        gm = ep.module()
    if not isinstance(gm, fx.GraphModule):
        raise TypeError(f"torch.export returned {type(gm).__name__}, not a GraphModule")
    return gm


def _check_faithful(gm: fx.GraphModule, inputs: Sequence[torch.Tensor], reference: Any) -> str | None:
    try:
        with torch.inference_mode(), _quiet_torch():
            out = gm(*inputs)
    except Exception as exc:  # the graph does not even run on the input it was traced for
        return f"running it raised {_first_line(exc)}"
    ref, got = _flat_tensors(reference), _flat_tensors(out)
    if len(ref) != len(got):
        return f"{len(got)} output tensors instead of {len(ref)}"
    for i, (a, b) in enumerate(zip(ref, got)):
        if a.shape != b.shape:
            return f"output {i} has shape {tuple(b.shape)} instead of {tuple(a.shape)}"
        if a.is_floating_point() or a.is_complex():
            tol = 1e-2 if a.dtype in (torch.float16, torch.bfloat16) else 1e-4
            if not torch.allclose(a.float(), b.float(), rtol=tol, atol=tol, equal_nan=True):
                err = (a.float() - b.float()).abs().max().item()
                return f"output {i} differs from the eager model by up to {err:.3g}"
        elif not torch.equal(a, b):
            return f"output {i} differs from the eager model"
    return None


def _flat_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in _flat_tensors(x)]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _flat_tensors(obj[k])]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


@contextlib.contextmanager
def _quiet_torch():
    """torch.export logs whole graphs at WARNING when it fails; the failure is reported by us, once."""
    names = ("torch", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
