"""Error types shared by every layer (tasks and flows import these; catalog imports nothing above it)."""


class ForgeflowError(Exception):
    """An error caused by the user's input or environment, not a bug: the CLI prints it on one line, exit code 2."""


class CatalogError(ForgeflowError):
    """The catalog cannot do what was asked (bad URL, unreachable store, unknown table, bad SQL, ...)."""


class UnknownTableError(CatalogError):
    """A table name that no module in catalog/tables declares."""


class ReadOnlySQLError(CatalogError):
    """A SQL statement that would write, attach, load or reach outside the catalog."""
