"""Errors of the verify domain (each becomes one line on stderr and exit code 2 in the CLI)."""

from forgeflow.tasks.errors import ForgeflowError


class VerifyError(ForgeflowError):
    """A verification request that cannot be run (bad eps, bad plan, unknown run)."""


class UnsupportedLayerError(VerifyError):
    """The model holds a layer the integer semantics does not cover (the message names it)."""
