"""The error the CLI reports as one line and exit code 2 (re-exported for flows and CLI modules)."""

from tasks.errors import ForgeflowError

UserError = ForgeflowError

__all__ = ["UserError", "ForgeflowError"]
