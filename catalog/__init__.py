"""forgeflow's catalog: Parquet tables and content-addressed objects on a local folder or S3.

Imports neither torch nor Prefect.
"""

from forgeflow.catalog.catalog import DEFAULT_URL, Catalog, open_catalog
from forgeflow.catalog.errors import CatalogError, ForgeflowError, ReadOnlySQLError, UnknownTableError
from forgeflow.catalog.schema import TableSpec, field
from forgeflow.catalog.tables import all_tables, get_table

__all__ = ["Catalog", "open_catalog", "DEFAULT_URL", "TableSpec", "field", "CatalogError", "ForgeflowError",
           "ReadOnlySQLError", "UnknownTableError", "all_tables", "get_table"]
