"""What `forgeflow partition` (flow ``partition_graph``) is asked: the frozen, validated request (tasks.config)."""

from __future__ import annotations

from dataclasses import dataclass

from forgeflow.tasks.config import Config
from forgeflow.tasks.errors import ForgeflowError

MAX_STAGES = 1024  # accelerators in one pipeline; the partitioners' tables grow with k (10^9 ran a worker out of RAM)


def check_stages(stages) -> int:
    """``stages`` as an int in [1, MAX_STAGES], or one ForgeflowError naming the bound (before anything runs)."""
    try:
        whole = not isinstance(stages, bool) and float(stages) == int(stages)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ForgeflowError(f"--stages must be a whole number of accelerators, got {stages!r}")
    if not 1 <= int(stages) <= MAX_STAGES:
        raise ForgeflowError(f"--stages must be between 1 and {MAX_STAGES} (accelerators in one pipeline), "
                             f"got {stages}")
    return int(stages)


@dataclass(frozen=True)
class PartitionRequest(Config):
    """Partition one graph (exactly one of ``graph_file``, ``model``, ``graph_id``) into at most ``stages`` stages
    within ``time_limit`` seconds; ``memory_cap`` in bytes per stage (None: the graph's own); ``input_shape`` for a
    model spec."""

    stages: int
    graph_file: str | None = None
    model: str | None = None
    graph_id: str | None = None
    time_limit: float = 60.0
    memory_cap: float | None = None
    seed: int = 0
    input_shape: tuple[int, ...] | None = None

    def validate(self) -> "PartitionRequest":
        given = [x for x in (self.graph_file, self.model, self.graph_id) if x is not None]
        if len(given) != 1:
            raise ForgeflowError("give exactly one of --graph FILE.json, --model SPEC or --graph-id ID")
        check_stages(self.stages)
        if not self.time_limit > 0:
            raise ForgeflowError(f"--time-limit must be > 0 seconds, got {self.time_limit}")
        if self.memory_cap is not None and not self.memory_cap > 0:
            raise ForgeflowError(f"--memory-cap must be > 0 bytes, got {self.memory_cap}")
        if self.input_shape is not None and (not self.input_shape or any(d < 1 for d in self.input_shape)):
            raise ForgeflowError(f"--input-shape must be positive integers, got {self.input_shape}")
        return self
