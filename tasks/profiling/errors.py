"""Errors the profiler raises on bad input; each is a ForgeflowError (one line on stderr, exit code 2 in the CLI)."""

from forgeflow.tasks.errors import ForgeflowError


class UntraceableModelError(ForgeflowError):
    """Neither torch.fx nor torch.export could capture the model's graph."""


class InputShapeError(ForgeflowError):
    """The model rejects an input of the requested shape or dtype."""


class ProfileConfigError(ForgeflowError):
    """An invalid profiling option (granularity, repeats, dtype, ...)."""


class UnknownLinkError(ForgeflowError):
    """A link profile name that is neither built in nor of the form custom:GBPS:MICROSECONDS."""
