"""User-facing error types. The CLI turns any ForgeflowError into one line on stderr and exit code 2."""


from forgeflow.catalog.errors import CatalogError, ForgeflowError  # noqa: F401  (one base class for every layer)


class InvalidGraphError(ForgeflowError):
    """A malformed or inconsistent graph (cycle, dangling edge, negative cost, ...)."""


class UnknownModelError(ForgeflowError):
    """A model spec that does not resolve to an nn.Module factory."""


class InfeasibleError(ForgeflowError):
    """A budget or constraint set that no solution satisfies."""
