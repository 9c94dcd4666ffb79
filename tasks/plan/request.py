"""What `forgeflow plan` (flow ``plan_deployment``) is asked: the frozen, validated request (tasks.config)."""

from __future__ import annotations

from dataclasses import dataclass

from forgeflow.tasks.config import Config
from forgeflow.tasks.errors import ForgeflowError


@dataclass(frozen=True)
class PlanRequest(Config):
    """Plan one instance: an instance file ``graph_file`` (k and memory from ``target`` when given) or a ``model``
    profiled for ``target`` (``stages`` devices, default the target's; sensitivities from ``dataset`` or bundled /
    synthetic data); ``budget`` overrides the sensitivity budget; ``front`` budget points of the front, each solved
    within ``front_time_limit`` seconds; the joint solve within ``time_limit`` seconds."""

    graph_file: str | None = None
    model: str | None = None
    target: str | None = None
    budget: float | None = None
    time_limit: float = 60.0
    stages: int | None = None
    front: int = 4
    front_time_limit: float = 10.0
    input_shape: tuple[int, ...] | None = None
    dataset: str | None = None

    def validate(self) -> "PlanRequest":
        if (self.graph_file is None) == (self.model is None):
            raise ForgeflowError("give exactly one of --graph INSTANCE.json or --model SPEC")
        if self.model is not None and self.target is None:
            raise ForgeflowError("--model needs --target FILE (the devices to plan for)")
        if not self.time_limit > 0:
            raise ForgeflowError(f"--time-limit must be > 0 seconds, got {self.time_limit}")
        if not self.front_time_limit > 0:
            raise ForgeflowError(f"--front-time-limit must be > 0 seconds, got {self.front_time_limit}")
        if self.budget is not None and not self.budget >= 0:
            raise ForgeflowError(f"--budget must be >= 0, got {self.budget}")
        if self.stages is not None and self.stages < 1:
            raise ForgeflowError(f"--stages must be >= 1, got {self.stages}")
        if self.front < 0:
            raise ForgeflowError(f"--front must be >= 0, got {self.front}")
        if self.input_shape is not None and (not self.input_shape or any(d < 1 for d in self.input_shape)):
            raise ForgeflowError(f"--input-shape must be positive integers, got {list(self.input_shape)}")
        return self
