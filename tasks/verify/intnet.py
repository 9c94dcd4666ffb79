"""The exact integer semantics of a network forgeflow fake-quantizes, and an executor that runs it on integers.

A network is a chain of affine layers (Linear, or Conv2d unrolled to a dense integer matrix), each with an optional
batch norm folded in, a ReLU, and max pooling, with flatten in between. For a quantized network (every layer's
weights at ``b_w < 32`` bits and activations at ``a`` bits, as ``tasks.quantize.apply.quantize_model`` builds it):

* the input lattice is the first layer's activation codes ``q0 in [0, 2**a - 1]`` (real input ``(q0 - z0) * s0``);
* layer ``k`` reads codes ``q`` with zero point ``z_k`` and computes the exact integer ``acc = Wq (q - z_k)`` where
  ``Wq`` are the per-channel symmetric integer weights (``|Wq| <= 2**(b_w-1) - 1``);
* its real pre-activation is ``y_c = A_c * acc_c + B_c`` with ``A_c = s_w[c] * s_k`` (the float32 weight scale times
  the float32 input scale, exact in float64) and ``B_c`` the float32 bias; a batch norm that follows is folded in:
  ``A_c <- a_c A_c``, ``B_c <- a_c (B_c - mean_c) + beta_c`` with ``a_c = gamma_c / sqrt(var_c + eps)`` (float64);
* requantization to the next layer's input: ``u = y * inv`` with ``inv = float32(1 / s_{k+1})`` (torch's kernel
  multiplies by the float32 reciprocal), ``r = round_half_to_even(u)`` (torch's ``nearbyint``), the code is
  ``clamp(r + z_{k+1}, lo, 2**a - 1)`` with ``lo = z_{k+1}`` after a ReLU (ReLU then quantize equals clamping the
  code at the zero point, since rounding is monotone and maps 0 to 0) and ``lo = 0`` without one;
* max pooling acts on codes (quantization is monotone, so it commutes with max);
* the last layer's ``y`` are the logits. **Argmax tie rule**: torch's ``argmax`` returns the first maximal index, and
  so does ``predict``; label ``c`` is kept iff ``y_c > y_j`` for every ``j < c`` and ``y_c >= y_j`` for ``j > c``.

Every quantity above is evaluated exactly: ``acc`` in int64, ``u`` and the logits in float64 with a fall-back to exact
rational arithmetic (``fractions.Fraction``) whenever a value is within float64 error of a rounding boundary or a tie.

**Differences from torch's fake-quant model** (float32 arithmetic), documented and measured by the tests:
torch sums ``fl32(Wq s_w) * fl32((q - z) s)`` in float32 in its own order and applies batch norm in float32, so its
``u`` differs from the exact one by float32 rounding (~1e-7 relative). The two give different codes only when the
exact ``u`` lies within that error of a half-integer; ``tests/verify/test_intnet.py`` runs both on every held-out
digit and on random lattice points and asserts that every mismatch is such a near-boundary case (none occur on the
built-in models). The integer semantics is the specification that verification answers are about.

The float reference network (``float_network``) runs the unquantized model in float64 on the same input lattice;
verification of it uses the same machinery and shows how often quantization changes the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from forgeflow.tasks.verify.errors import UnsupportedLayerError, VerifyError

FORMAT = "forgeflow-qnet/1"
SUPPORTED = "Linear, Conv2d (groups=1, dilation=1), BatchNorm1d/2d after a Linear/Conv2d, ReLU, MaxPool2d, " \
            "Flatten, Dropout, Identity"


@dataclass(frozen=True)
class Requant:
    """Requantization to the next layer's input codes: ``clamp(round_half_even(y * inv_scale) + zero_point, lo, hi)``."""

    scale: float  # the float32 dequantization scale s (the next layer's input is (code - z) * s)
    inv_scale: float  # float32(1 / s): what torch's kernel multiplies by
    zero_point: int
    lo: int
    hi: int
    bits: int


@dataclass(frozen=True)
class Layer:
    """One affine layer of the chain and what follows it (activation, pooling)."""

    name: str
    kind: str  # "Linear" or "Conv2d"
    weight: np.ndarray  # dense (out, in): int64 codes (quantized) or float64 weights (float reference)
    in_zero_point: int
    mult: np.ndarray  # A (float64, one per output row)
    bias: np.ndarray  # B (float64, one per output row)
    relu: bool
    requant: Requant | None  # None: logits (last layer) or a float layer
    pool: np.ndarray | None = None  # (out, k) indices of the max-pool windows over this layer's outputs
    weight_bits: int = 32
    export: Mapping[str, Any] = field(default_factory=dict)  # original-shape data for the JSON export

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0]) if self.pool is None else int(self.pool.shape[0])


@dataclass(frozen=True)
class QNetwork:
    """A network on the input lattice ``[0, input_qmax]^n``: quantized (``exact``) or the float reference."""

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    input_bits: int
    exact: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_qmax(self) -> int:
        return 2 ** self.input_bits - 1

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_classes(self) -> int:
        return int(self.layers[-1].weight.shape[0])

    # ------------------------------------------------------------------ executor

    def codes_of(self, x: np.ndarray) -> np.ndarray:
        """Input codes of real inputs ``x`` (N x input_shape) as torch's input quantizer computes them."""
        import torch

        t = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)
        s = float(np.float32(self.input_scale))
        q = torch.clamp(torch.round(t * (np.float32(1.0) / np.float32(s))) + self.input_zero_point, 0,
                        self.input_qmax)
        return q.to(torch.int64).numpy()

    def forward(self, q: np.ndarray, trace: bool = False):
        """Logits (float64, N x classes) of input codes ``q`` (N x n); with ``trace`` also every layer's output
        (codes for quantized hidden layers). Exact: see ``predict`` for tie-safe decisions."""
        h = np.asarray(q, dtype=np.int64).reshape(len(q), -1)
        outs = []
        for i, L in enumerate(self.layers):
            acc = _mac(h, L, self.exact)
            if i == len(self.layers) - 1:
                return (acc * L.mult + L.bias, outs) if trace else acc * L.mult + L.bias
            if L.requant is not None:
                h = requantize(acc, L.mult, L.bias, L.requant)
            else:
                y = acc * L.mult + L.bias
                h = np.maximum(y, 0.0) if L.relu else y
            if L.pool is not None:
                h = h[:, L.pool].max(axis=2)
            outs.append(h)
        raise VerifyError("network has no layer")

    def exact_logits(self, q: np.ndarray) -> list[list[Fraction]]:
        """The logits of each input as exact rationals (quantized networks only)."""
        if not self.exact:
            raise VerifyError("exact logits are defined for quantized networks only")
        q = np.asarray(q, dtype=np.int64).reshape(len(q), -1)
        _, outs = self.forward(q, trace=True)
        h = outs[-1] if outs else q
        L = self.layers[-1]
        acc = _mac(h, L, True)
        return [[Fraction(float(L.mult[j])) * int(a[j]) + Fraction(float(L.bias[j])) for j in range(len(a))]
                for a in acc]

    def predict(self, q: np.ndarray) -> np.ndarray:
        """The label torch's argmax picks (first maximal index), decided exactly on near-ties."""
        q = np.asarray(q, dtype=np.int64).reshape(len(q), -1)
        y = self.forward(q)
        out = np.argmax(y, axis=1)
        if not self.exact:
            return out
        top = y.max(axis=1, keepdims=True)
        near = (y >= top - 1e-9 * (1.0 + np.abs(top))).sum(axis=1) > 1
        for i in np.flatnonzero(near):
            ex = self.exact_logits(q[i:i + 1])[0]
            best = max(ex)
            out[i] = next(j for j, v in enumerate(ex) if v == best)
        return out

    def keeps_label(self, q: np.ndarray, label: int) -> np.ndarray:
        return self.predict(q) == label


def _mac(h: np.ndarray, L: Layer, exact: bool) -> np.ndarray:
    if exact:
        return (np.asarray(h, dtype=np.int64) - L.in_zero_point) @ L.weight.T
    return (np.asarray(h, dtype=np.float64) - L.in_zero_point) @ L.weight.T


def requantize(acc: np.ndarray, mult: np.ndarray, bias: np.ndarray, rq: Requant) -> np.ndarray:
    """``clamp(round_half_even((A acc + B) * inv) + z, lo, hi)`` exactly (float64 with a rational fall-back)."""
    u = (acc * mult + bias) * rq.inv_scale
    r = np.rint(u)  # round half to even
    dist = np.abs(u - np.floor(u) - 0.5)
    near = np.argwhere(dist <= 1e-7 * (1.0 + np.abs(u)))
    if len(near):
        inv = Fraction(float(rq.inv_scale))
        for i, c in near:
            exact = (Fraction(float(mult[c])) * int(acc[i, c]) + Fraction(float(bias[c]))) * inv
            r[i, c] = round(exact)  # Python rounds a Fraction half to even
    return np.clip(r + rq.zero_point, rq.lo, rq.hi).astype(np.int64)


# ---------------------------------------------------------------------- building from a torch model

def _chain(model, example):
    """The model's forward as a list of (kind, module or None, node) in execution order (a chain), with shapes."""
    import torch
    import torch.fx as fx
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:
        raise UnsupportedLayerError(f"model {type(model).__name__} cannot be traced into a layer chain "
                                    f"({type(exc).__name__}: {exc}); supported layers: {SUPPORTED}") from None
    ShapeProp(gm).propagate(example)
    mods = dict(gm.named_modules())
    ops = []
    prev = None
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            if node.op == "output":
                break
            prev = node if node.op == "placeholder" else prev
            continue
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if prev is not None and (not args or args[0] is not prev):
            raise UnsupportedLayerError(f"layer {node.name!r} does not continue a plain chain (branches and skip "
                                        f"connections are not supported); supported layers: {SUPPORTED}")
        shape = tuple(node.meta["tensor_meta"].shape[1:]) if "tensor_meta" in node.meta else None
        kind = None
        mod = None
        if node.op == "call_module":
            mod = mods[node.target]
            for cls, k in ((nn.Linear, "linear"), (nn.Conv2d, "conv"), (nn.BatchNorm1d, "bn"),
                           (nn.BatchNorm2d, "bn"), (nn.ReLU, "relu"), (nn.MaxPool2d, "maxpool"),
                           (nn.Flatten, "flatten"), (nn.Dropout, "skip"), (nn.Identity, "skip")):
                if isinstance(mod, cls):
                    kind = k
                    break
            label = f"{node.target!r} ({type(mod).__name__})"
        elif node.op == "call_function":
            table = {torch.relu: "relu", F.relu: "relu", torch.flatten: "flatten", F.max_pool2d: "maxpool",
                     F.dropout: "skip"}
            kind = table.get(node.target)
            label = f"{node.name!r} ({getattr(node.target, '__name__', node.target)})"
        elif node.op == "call_method":
            kind = {"relu": "relu", "flatten": "flatten", "view": "flatten", "reshape": "flatten"}.get(node.target)
            if kind == "flatten" and node.target in ("view", "reshape") and shape is not None and len(shape) != 1:
                kind = None
            label = f"{node.name!r} (.{node.target})"
        else:
            label = f"{node.name!r}"
        if kind is None:
            raise UnsupportedLayerError(f"unsupported layer {label}: the integer semantics covers {SUPPORTED}")
        if kind == "conv" and (mod.groups != 1 or tuple(mod.dilation) != (1, 1) or mod.padding_mode != "zeros"
                               or isinstance(mod.padding, str)):
            raise UnsupportedLayerError(f"unsupported layer {label}: only groups=1, dilation=1, numeric zero padding")
        if kind == "maxpool":
            p = mod if mod is not None else None
            k = p.kernel_size if p is not None else node.args[1]
            s = (p.stride if p is not None else (node.args[2] if len(node.args) > 2 else None)) or k
            pad = p.padding if p is not None else node.kwargs.get("padding", 0)
            dil = p.dilation if p is not None else 1
            if pad not in (0, (0, 0)) or dil not in (1, (1, 1)) or (p is not None and p.ceil_mode):
                raise UnsupportedLayerError(f"unsupported layer {label}: max pooling needs padding 0, dilation 1")
            ops.append(("maxpool", (_pair(k), _pair(s)), shape, label))
        else:
            ops.append((kind, mod, shape, label))
        prev = node
    return ops


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_index(shape: tuple[int, ...], kernel, stride) -> np.ndarray:
    c, h, w = shape
    idx = np.arange(c * h * w).reshape(c, h, w)
    ho, wo = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.empty((c, ho, wo, kernel[0] * kernel[1]), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            win = idx[:, oy * stride[0]:oy * stride[0] + kernel[0], ox * stride[1]:ox * stride[1] + kernel[1]]
            out[:, oy, ox, :] = win.reshape(c, -1)
    return out.reshape(c * ho * wo, -1)


def conv_dense(kernel: np.ndarray, in_shape, out_shape, stride, padding) -> np.ndarray:
    """The dense (Cout*Ho*Wo, Cin*H*W) matrix of a zero-padded 2-D convolution (channel-major flattening)."""
    cout, cin, kh, kw = kernel.shape
    _, h, w = in_shape
    _, ho, wo = out_shape
    dense = np.zeros((cout * ho * wo, cin * h * w), dtype=kernel.dtype)
    orow = np.arange(cout * ho * wo).reshape(cout, ho, wo)
    icol = np.arange(cin * h * w).reshape(cin, h, w)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                iy = oy * stride[0] + ky - padding[0]
                if not 0 <= iy < h:
                    continue
                for kx in range(kw):
                    ix = ox * stride[1] + kx - padding[1]
                    if not 0 <= ix < w:
                        continue
                    dense[np.ix_(orow[:, oy, ox], icol[:, iy, ix])] += kernel[:, :, ky, kx]
    return dense


def _layer_specs(model, example):
    """Group the chain into affine layers with their BN, ReLU, pooling: list of dicts."""
    specs: list[dict[str, Any]] = []
    for kind, mod, shape, label in _chain(model, example):
        if kind in ("linear", "conv"):
            specs.append({"module": mod, "kind": "Linear" if kind == "linear" else "Conv2d", "out_shape": shape,
                          "bn": None, "relu": False, "pool": None, "label": label})
        elif not specs and kind not in ("flatten", "skip"):
            raise UnsupportedLayerError(f"unsupported layer {label} before the first Linear/Conv2d")
        elif kind == "bn":
            if specs[-1]["relu"] or specs[-1]["pool"] or specs[-1]["bn"] is not None:
                raise UnsupportedLayerError(f"unsupported layer {label}: batch norm must directly follow a "
                                            "Linear/Conv2d (it is folded into it)")
            specs[-1]["bn"] = mod
        elif kind == "relu":
            specs[-1]["relu"] = True
        elif kind == "maxpool":
            if specs[-1]["pool"] is not None:
                raise UnsupportedLayerError(f"unsupported layer {label}: two poolings in a row")
            k, s = mod
            specs[-1]["pool"] = (k, s, specs[-1]["out_shape"], shape)
    if not specs:
        raise UnsupportedLayerError(f"model has no Linear/Conv2d layer; supported layers: {SUPPORTED}")
    for sp in specs:
        sp["in_shape"] = None
    return specs


def _names(model) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _bn_fold(bn) -> tuple[np.ndarray, np.ndarray]:
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(var)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(var)
    a = gamma / np.sqrt(var + float(bn.eps))
    return a, beta - a * mean


def build_network(model, plan: Mapping[str, int], act_qparams: Mapping[str, tuple[float, int]], act_bits: int,
                  example, exact: bool = True, meta: Mapping[str, Any] | None = None) -> QNetwork:
    """The integer network (``exact``) of ``model`` under ``plan`` with calibrated ``act_qparams`` (from
    ``quantize_model``), or the float reference on the same input lattice (``exact=False``)."""
    import torch

    from forgeflow.tasks.quantize.fakequant import per_channel_scale, symmetric_qmax

    model = model.eval()
    specs = _layer_specs(model, example)
    names = _names(model)
    layer_names = [names[id(sp["module"])] for sp in specs]
    if exact:
        floats = [n for n in layer_names if int(plan.get(n, 32)) >= 32]
        if floats:
            raise VerifyError(f"the plan keeps layer(s) {', '.join(floats)} in float; the integer semantics needs "
                              "every layer quantized (verify the float network with --bits float)")
        missing = [n for n in layer_names if n not in act_qparams]
        if missing:
            raise VerifyError(f"no calibrated activation range for layer(s) {', '.join(missing)}")
    s0, z0 = act_qparams[layer_names[0]]
    in_scale = float(np.float32(s0))
    layers = []
    x_shape = tuple(example.shape[1:])
    cur_shape = x_shape
    for i, (sp, name) in enumerate(zip(specs, layer_names)):
        mod = sp["module"]
        last = i == len(specs) - 1
        w = mod.weight.detach().float()
        bias = (mod.bias.detach().double().numpy() if mod.bias is not None
                else np.zeros(w.shape[0], dtype=np.float64))
        in_shape = cur_shape
        if exact:
            bits = int(plan[name])
            scale = per_channel_scale(w, bits, 0)
            s = scale.reshape([-1] + [1] * (w.dim() - 1))
            codes = torch.clamp(torch.round(w * (1.0 / s)), -symmetric_qmax(bits), symmetric_qmax(bits))
            wk = codes.to(torch.int64).numpy()
            s_in, z_in = act_qparams[name]
            s_in32 = float(np.float32(s_in))
            mult = scale.double().numpy() * s_in32  # exact: two float32 significands fit in float64
            zin = int(z_in)
        else:
            bits = 32
            wk = w.double().numpy()
            mult = np.full(w.shape[0], in_scale if i == 0 else 1.0)
            zin = int(z0) if i == 0 else 0
        export: dict[str, Any] = {"weight": wk, "weight_scale": (scale.double().numpy() if exact else None),
                                  "input_scale": (s_in32 if exact else (in_scale if i == 0 else 1.0))}
        if sp["kind"] == "Conv2d":
            out_shape = tuple(sp["out_shape"])
            dense = conv_dense(wk, in_shape, out_shape, _pair(mod.stride), _pair(mod.padding))
            per = int(np.prod(out_shape[1:]))
            mult_rows, bias_rows = np.repeat(mult, per), np.repeat(bias, per)
            export.update(stride=list(_pair(mod.stride)), padding=list(_pair(mod.padding)), in_shape=list(in_shape),
                          out_shape=list(out_shape))
        else:
            if len(in_shape) != 1:
                in_shape = (int(np.prod(in_shape)),)
            dense = wk
            out_shape = (wk.shape[0],)
            per = 1
            mult_rows, bias_rows = mult, bias
        if sp["bn"] is not None:
            a, d = _bn_fold(sp["bn"])
            a_rows, d_rows = np.repeat(a, per), np.repeat(d, per)
            mult_rows, bias_rows = a_rows * mult_rows, a_rows * bias_rows + d_rows
            export["batchnorm"] = {"a": a, "d": d}
        pool = None
        shape_after = out_shape
        if sp["pool"] is not None:
            k, st, _, pooled = sp["pool"]
            pool = _pool_index(tuple(out_shape), k, st)
            shape_after = tuple(pooled)
            export["maxpool"] = {"kernel": list(k), "stride": list(st)}
        rq = None
        if exact and not last:
            nxt = layer_names[i + 1]
            s_n, z_n = act_qparams[nxt]
            s32 = np.float32(s_n)
            rq = Requant(scale=float(s32), inv_scale=float(np.float32(1.0) / s32), zero_point=int(z_n),
                         lo=int(z_n) if sp["relu"] else 0, hi=2 ** act_bits - 1, bits=act_bits)
        elif last and sp["relu"]:
            raise UnsupportedLayerError(f"layer {name!r}: a ReLU after the last layer is not supported")
        layers.append(Layer(name=name, kind=sp["kind"], weight=dense, in_zero_point=zin,
                            mult=np.asarray(mult_rows, dtype=np.float64), bias=np.asarray(bias_rows, np.float64),
                            relu=bool(sp["relu"]), requant=rq, pool=pool, weight_bits=bits, export=export))
        cur_shape = shape_after
    return QNetwork(layers=tuple(layers), input_shape=x_shape, input_scale=in_scale, input_zero_point=int(z0),
                    input_bits=int(act_bits), exact=exact, meta=dict(meta or {}))


# ---------------------------------------------------------------------- documented JSON

def network_json(net: QNetwork) -> dict[str, Any]:
    """The integer network as documented JSON (floats are IEEE doubles written with Python's round-trip ``repr``,
    so any IEEE parser reads back the exact values)."""
    def arr(a):
        return None if a is None else np.asarray(a).tolist()

    layers = []
    for L in net.layers:
        e = dict(L.export)
        d = {"name": L.name, "kind": L.kind, "weight_bits": L.weight_bits,
             "weight_int" if net.exact else "weight": arr(e.pop("weight", L.weight)),
             "weight_scale": arr(e.pop("weight_scale", None)), "input_scale": e.pop("input_scale", None),
             "input_zero_point": L.in_zero_point, "relu": L.relu,
             "mult": arr(L.mult), "bias_real": arr(L.bias)}
        if "batchnorm" in e:
            bn = e.pop("batchnorm")
            d["batchnorm_folded"] = {"a": arr(bn["a"]), "d": arr(bn["d"])}
        if L.requant is not None:
            d["requant"] = {"scale": L.requant.scale, "inv_scale": L.requant.inv_scale,
                            "zero_point": L.requant.zero_point, "clamp": [L.requant.lo, L.requant.hi],
                            "bits": L.requant.bits, "rounding": "half_to_even"}
        d.update({k: v for k, v in e.items()})
        layers.append(d)
    return {
        "format": FORMAT,
        "exact": net.exact,
        "semantics": (
            "Input codes q in [0, qmax] (real input (q - z0) * s0). Per layer: acc = W_int (q - input_zero_point) "
            "(W_int dense for Linear; for Conv2d the kernel with stride/padding, zero padding contributes 0, "
            "outputs flattened channel-major); y = mult * acc + bias_real per output (mult = weight_scale[c] * "
            "input_scale, times batchnorm_folded.a; bias_real = a*(bias - mean) + beta folded likewise); hidden "
            "layers: code = clamp(round_half_to_even(y * requant.inv_scale) + requant.zero_point, clamp[0], "
            "clamp[1]) computed exactly (rationals); then max pooling on codes (maxpool kernel/stride over "
            "out_shape); last layer: y are the logits. Label kept iff y[c] > y[j] for j < c and y[c] >= y[j] for "
            "j > c (torch argmax returns the first maximum)."),
        "rounding": "half_to_even (torch.round / nearbyint)",
        "argmax_tie_rule": "first maximal index wins (torch.argmax)",
        "input": {"shape": list(net.input_shape), "scale": net.input_scale, "zero_point": net.input_zero_point,
                  "bits": net.input_bits, "qmin": 0, "qmax": net.input_qmax},
        "layers": layers,
        "meta": dict(net.meta),
    }
