"""Read-only SQL over the catalog with DuckDB.

Every table is registered as a view over its pyarrow dataset (filters and projections are pushed down into the
Parquet scan, also on S3, with no DuckDB extension). The connection is in-memory with external access disabled
and its configuration locked, and only single SELECT statements are accepted: no COPY, ATTACH, INSTALL, LOAD,
PRAGMA, SET or file reads/writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from catalog.errors import CatalogError, ReadOnlySQLError

if TYPE_CHECKING:  # pragma: no cover
    from catalog.catalog import Catalog

_ALLOWED = {duckdb.StatementType.SELECT}


def check_readonly(sql: str) -> None:
    """Raise ReadOnlySQLError unless ``sql`` is exactly one SELECT statement."""
    if not sql or not sql.strip():
        raise ReadOnlySQLError("empty SQL query")
    probe = duckdb.connect(":memory:")
    try:
        statements = probe.extract_statements(sql)
    except duckdb.Error as exc:
        raise CatalogError(f"malformed SQL: {str(exc).splitlines()[0]}") from None
    finally:
        probe.close()
    if len(statements) != 1:
        raise ReadOnlySQLError(f"exactly one SELECT statement is allowed, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED:
        name = getattr(kind, "name", str(kind))
        raise ReadOnlySQLError(f"only read-only SELECT queries are allowed; got a {name} statement")


def _referenced_tables(sql: str, names: list[str]) -> list[str]:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    return [n for n in names if n.lower() in words]


def run_readonly_query(cat: "Catalog", sql: str) -> pa.Table:
    check_readonly(sql)
    con = duckdb.connect(":memory:", config={
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "threads": 2,
    })
    try:
        for name in _referenced_tables(sql, sorted(cat.tables())):
            con.register(name, cat.dataset(name))
        con.execute("SET lock_configuration = true")
        try:
            rel = con.sql(sql)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            if "external access" in msg.lower() or "permission" in msg.lower():
                raise ReadOnlySQLError(f"query refused (reads outside the catalog are not allowed): {msg}") from None
            raise CatalogError(f"SQL error: {msg}") from None
    finally:
        con.close()
