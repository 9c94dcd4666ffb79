"""User-facing errors of the quantization domain (all ForgeflowError: one line on stderr, exit code 2)."""

from __future__ import annotations

from forgeflow.tasks.errors import ForgeflowError, InfeasibleError


class QuantizeError(ForgeflowError):
    """Bad input to a quantization step (malformed cost table, bad bit list, inconsistent pins)."""


class UnknownLayerError(QuantizeError):
    """A tie, pin or table names a layer the model or problem does not have."""


class NoQuantizableLayerError(QuantizeError):
    """The model has no Conv/Linear layer whose weights could be quantized."""


class BudgetInfeasibleError(InfeasibleError):
    """A budget no bit plan meets. ``resource`` is 'size_bytes', 'bops' or 'latency_ms'; ``smallest`` the smallest
    value of that resource any plan reaches (under the pins, ties and the other budgets)."""

    def __init__(self, message: str, resource: str, budget: float, smallest: float):
        super().__init__(message)
        self.resource = resource
        self.budget = budget
        self.smallest = smallest
