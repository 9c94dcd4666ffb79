"""Read-only SQL over the catalog with DuckDB.

Every table is registered as a view over its pyarrow dataset (filters and projections are pushed down into the
Parquet scan, also on S3, with no DuckDB extension). The connection is in-memory with external access disabled
and its configuration locked, and only single SELECT statements are accepted: no COPY, ATTACH, INSTALL, LOAD,
PRAGMA, SET or file reads/writes. DuckDB's temporary folder is switched off (it would otherwise be readable and
listable from SQL even with external access disabled), so a query gets a memory limit (default a quarter of RAM, at
most 4 GiB) and a timeout (default 300 s), each reported in one line when reached. The catalog reads no environment:
the user's ``FORGEFLOW_QUERY_MEMORY`` / ``FORGEFLOW_QUERY_TIMEOUT_S`` are read by flows' Settings and passed down
through ``open_catalog``. A compaction deleting files under a running query makes it start again on a
fresh listing.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from forgeflow.catalog.errors import CatalogError, ReadOnlySQLError

if TYPE_CHECKING:  # pragma: no cover
    from forgeflow.catalog.catalog import Catalog

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


DEFAULT_TIMEOUT_S = 300.0
_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB|TB|TiB)", re.IGNORECASE)


def check_memory_limit(text: str) -> str:
    """``text`` as a DuckDB memory limit (``2GiB``, ``512MB``), or a CatalogError naming it."""
    value = str(text).strip()
    if not _SIZE.fullmatch(value):
        raise CatalogError(f"query memory limit {text!r} is not a size like 2GiB or 512MB")
    return value


def check_timeout_s(value: float) -> float:
    """``value`` as a query timeout in seconds in (0, 86400], or a CatalogError naming it."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise CatalogError(f"query timeout {value!r} must be a number of seconds in (0, 86400]")
    return seconds


def default_memory_limit() -> str:
    """A quarter of this host's RAM, between 256 MiB and 4 GiB."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    return f"{max(256, min(4096, ram // 4 >> 20))}MiB"


def run_readonly_query(cat: "Catalog", sql: str, *, timeout_s: float | None = None,
                       memory_limit: str | None = None) -> pa.Table:
    """Run one read-only SELECT over the catalog's tables within ``timeout_s`` seconds (default 300) and
    ``memory_limit`` (default ``default_memory_limit()``); the settings layer passes the user's choice down."""
    check_readonly(sql)
    timeout = DEFAULT_TIMEOUT_S if timeout_s is None else check_timeout_s(timeout_s)
    memory = default_memory_limit() if memory_limit is None else check_memory_limit(memory_limit)
    for attempt in range(8):
        try:
            return _run_once(cat, sql, timeout, memory)
        except _FilesMoved:
            time.sleep(0.02 * (attempt + 1))
    raise CatalogError("the catalog kept changing under the query (compactions); try again")


class _FilesMoved(Exception):
    pass


def _run_once(cat: "Catalog", sql: str, timeout: float, memory: str) -> pa.Table:
    con = duckdb.connect(":memory:", config={
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "temp_directory": "",
        "memory_limit": memory,
        "threads": 2,
    })
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    try:
        for name in _referenced_tables(sql, sorted(cat.tables())):
            con.register(name, cat.dataset(name))
        con.execute("SET lock_configuration = true")
        timer.start()
        try:
            rel = con.sql(sql)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except (duckdb.InterruptException, RuntimeError) as exc:
            if not isinstance(exc, duckdb.InterruptException) and "interrupt" not in str(exc).lower():
                raise
            if timed_out.is_set():
                raise CatalogError(f"query stopped after the {timeout:g} s timeout (FORGEFLOW_QUERY_TIMEOUT_S)") from None
            # not our timer: a signal (Ctrl-C, SIGTERM) reached the process while DuckDB ran, and DuckDB replaced the
            # handler's KeyboardInterrupt by its own error; give the caller the interrupt it asked for
            raise KeyboardInterrupt from None
        except duckdb.OutOfMemoryException as exc:
            raise CatalogError(f"query needs more than its {memory} memory limit (FORGEFLOW_QUERY_MEMORY): "
                               f"{str(exc).splitlines()[0]}") from None
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            low = msg.lower()
            if "external access" in low or "permission" in low:
                raise ReadOnlySQLError(f"query refused (reads outside the catalog are not allowed): {msg}") from None
            if "no such file" in low or "not found" in low and ".parquet" in low or "nosuchkey" in low:
                raise _FilesMoved() from None
            raise CatalogError(f"SQL error: {msg}") from None
    finally:
        timer.cancel()
        con.close()
