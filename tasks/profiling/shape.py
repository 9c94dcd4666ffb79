"""The one parser of ``--input-shape`` for every command (no torch import: commands that only check their flags,
such as a partition of a graph file, stay light)."""

from __future__ import annotations

from forgeflow.tasks.profiling.errors import ProfileConfigError


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``; None or "" -> None (the model's default).
    The one parser of ``--input-shape`` for every command."""
    if not text:
        return None
    parts = [p.strip() for p in text.strip().replace("×", "x").replace("x", ",").split(",")]
    try:
        if any(not p for p in parts):  # "1,x,8" or "1,,8": a missing dimension, not a shorter shape
            raise ValueError
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ProfileConfigError(f"input shape must be comma-separated integers like 1,3,224,224; got {text!r}") \
            from None
    if not shape or any(d < 1 for d in shape):
        raise ProfileConfigError(f"input shape must be positive integers; got {text!r}")
    return shape
