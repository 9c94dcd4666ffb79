"""The deployable bundle: PLAN.json plus one loadable module per stage, checked by hashes.

Layout of a bundle folder::

    PLAN.json              what to deploy: target, subnet, plan (stages, bits, certified bound), per-stage files,
                           boundary tensor shapes, predicted stage times, and the sha256 of every other file
    stage_<i>.safetensors  the stage's weights (plan's widths applied: fake-quantized values), no pickle
    check.safetensors      a sample input and the unsplit quantized model's output on it
    SHA256SUMS             sha256 of PLAN.json (so an edited plan is caught too)

A stage is rebuilt by the factory ``forgeflow.tasks.deploy.bundle:load_stage`` from its unit specs (``tasks.deploy.chain``),
its weights, and the calibrated activation ranges of its quantized layers (fake-quantized inputs, as in
``tasks.quantize.apply``). Loading verifies every hash first: a tampered bundle raises ``BundleError`` naming the
file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from forgeflow.tasks.deploy.chain import build_units
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.quantize.fakequant import fake_quantize_activation

FORMAT = "forgeflow-bundle/1"
FACTORY = "forgeflow.tasks.deploy.bundle:load_stage"


class BundleError(ForgeflowError):
    """A bundle that is missing, incomplete or tampered with."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def attach_act_quant(stage: nn.Module, act_qparams: Mapping[str, Sequence[float]], act_bits: int | None) -> nn.Module:
    """Fake-quantize the input of each named layer with its calibrated (scale, zero point)."""
    if act_bits is None:
        return stage
    mods = dict(stage.named_modules())
    for name, (scale, zp) in act_qparams.items():
        mods[name].register_forward_pre_hook(
            lambda mod, inp, s=float(scale), z=int(zp): (fake_quantize_activation(inp[0], act_bits, s, z), *inp[1:]))
    return stage


def write_bundle(out_dir: str | Path, *, plan_json: dict[str, Any], stages: Sequence[nn.Sequential],
                 stage_units: Sequence[Sequence[dict]], stage_act: Sequence[Mapping[str, Sequence[float]]],
                 act_bits: int | None, check_input: torch.Tensor, check_output: torch.Tensor) -> Path:
    """Write the bundle atomically (a temporary folder renamed into place); returns its path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    entries = []
    x = check_input
    with torch.no_grad():
        for i, (stage, units, act) in enumerate(zip(stages, stage_units, stage_act)):
            fname = f"stage_{i}.safetensors"
            save_file({k: v.contiguous() for k, v in stage.state_dict().items()}, str(tmp / fname))
            in_shape = list(x.shape)
            x = stage(x)
            entries.append({"index": i, "file": fname, "sha256": sha256_file(tmp / fname), "factory": FACTORY,
                            "units": list(units), "act_qparams": {k: list(v) for k, v in act.items()},
                            "input_shape": in_shape, "output_shape": list(x.shape)})
    save_file({"input": check_input.contiguous(), "output": check_output.contiguous()}, str(tmp / "check.safetensors"))
    doc = dict(plan_json)
    doc.update({"format": FORMAT, "act_bits": act_bits, "stages": entries,
                "check": {"file": "check.safetensors", "sha256": sha256_file(tmp / "check.safetensors"),
                          "output_sha256": tensor_sha256(check_output)}})
    (tmp / "PLAN.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
    (tmp / "SHA256SUMS").write_text(f"{sha256_file(tmp / 'PLAN.json')}  PLAN.json\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def read_bundle(path: str | Path) -> dict[str, Any]:
    """PLAN.json after checking every hash; ``BundleError`` names the first file that does not match."""
    p = Path(path)
    if not (p / "PLAN.json").is_file():
        raise BundleError(f"bundle {path}: no PLAN.json (not a forgeflow bundle folder)")
    sums = p / "SHA256SUMS"
    if not sums.is_file():
        raise BundleError(f"bundle {path}: SHA256SUMS is missing")
    want = sums.read_text().split()[0] if sums.read_text().split() else ""
    if sha256_file(p / "PLAN.json") != want:
        raise BundleError(f"bundle {path}: PLAN.json does not match its sha256 in SHA256SUMS (tampered)")
    try:
        doc = json.loads((p / "PLAN.json").read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle {path}: PLAN.json is not JSON ({exc})") from None
    if doc.get("format") != FORMAT:
        raise BundleError(f"bundle {path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    for entry in [*doc["stages"], doc["check"]]:
        f = p / entry["file"]
        if not f.is_file():
            raise BundleError(f"bundle {path}: {entry['file']} is missing")
        if sha256_file(f) != entry["sha256"]:
            raise BundleError(f"bundle {path}: {entry['file']} does not match its sha256 in PLAN.json (tampered)")
    return doc


def load_stage(bundle: str | Path, index: int, doc: Mapping[str, Any] | None = None) -> nn.Module:
    """The factory: stage ``index`` of ``bundle`` as an eval-mode module (hashes checked unless ``doc`` is given
    by a caller that already checked them)."""
    from safetensors.torch import load_file

    doc = doc or read_bundle(bundle)
    entry = doc["stages"][index]
    stage = build_units(entry["units"])
    stage.load_state_dict(load_file(str(Path(bundle) / entry["file"])))
    return attach_act_quant(stage.eval(), entry["act_qparams"], doc.get("act_bits"))


def load_check(bundle: str | Path, doc: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    d = load_file(str(Path(bundle) / doc["check"]["file"]))
    return d["input"], d["output"]
