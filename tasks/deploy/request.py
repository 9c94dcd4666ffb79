"""What `forgeflow optimize` is asked: the frozen, validated requests of its two flows (tasks.config).

``OptimizeRequest`` is the main job (``optimize_family_flow``): an elastic family on a hardware target.
``ModelJobRequest`` is the per-step job on a fixed model (``optimize_flow``, ``forgeflow optimize --model``).
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeflow.tasks.config import Config
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.partition.request import check_stages

DEFAULT_TARGET = "edge-npu-2x-48k"
DEFAULT_FAMILY = "digits"


@dataclass(frozen=True)
class OptimizeRequest(Config):
    """Deploy the elastic family ``supernet`` (built-in ``digits``, ``train`` on ``data``, or a catalog supernet id)
    on ``target`` (a file or a shipped target's name): ``budget`` subnets searched, the target's limits optionally
    tightened, ``microbatch`` examples per microbatch, the bundle written under ``bundle_dir``."""

    supernet: str = DEFAULT_FAMILY
    target: str = DEFAULT_TARGET
    data: str | None = None
    budget: int = 48
    latency_limit_ms: float | None = None
    min_accuracy_pct: float | None = None
    microbatch: int = 32
    bundle_dir: str | None = None
    seed: int = 0
    clients: int | None = None  # federated QAT fine-tune of the planned net over this many clients
    latency_device: str | None = None  # every target device's time from this fitted device model (forgeflow latency fit)

    def validate(self) -> "OptimizeRequest":
        if self.clients is not None and not 1 <= self.clients <= 64:
            raise ForgeflowError(f"--clients must be between 1 and 64, got {self.clients}")
        if self.budget < 4:
            raise ForgeflowError(f"--budget must be at least 4 subnets, got {self.budget}")
        if self.microbatch < 1:
            raise ForgeflowError(f"--microbatch must be >= 1, got {self.microbatch}")
        if self.latency_limit_ms is not None and not self.latency_limit_ms > 0:
            raise ForgeflowError(f"--latency-limit-ms must be > 0, got {self.latency_limit_ms:g}")
        if self.latency_device is not None and not self.latency_device.strip():
            raise ForgeflowError("--latency-device must name a device fitted by `forgeflow latency fit`")
        if self.min_accuracy_pct is not None and not 0 < self.min_accuracy_pct <= 100:
            raise ForgeflowError(f"--min-accuracy must be in (0, 100], got {self.min_accuracy_pct:g}")
        return self


@dataclass(frozen=True)
class ModelJobRequest(Config):
    """Run every optimization step for the fixed ``model`` on ``stages`` pipelined accelerators (``input_shape``
    defaults to the model's own)."""

    model: str = "torchvision:resnet18"
    stages: int = 4
    input_shape: tuple[int, ...] | None = None

    def validate(self) -> "ModelJobRequest":
        check_stages(self.stages)
        if self.input_shape is not None and (not self.input_shape or any(d < 1 for d in self.input_shape)):
            raise ForgeflowError(f"--input-shape must be positive integers, got {list(self.input_shape)}")
        return self
