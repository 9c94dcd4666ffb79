"""Registry of every catalog table. Each module in this package declares ``TABLES = [TableSpec(...), ...]``;
they are discovered here, so adding a domain's tables never edits a shared file."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from forgeflow.catalog.errors import UnknownTableError
from forgeflow.catalog.schema import TableSpec


@lru_cache(maxsize=1)
def all_tables() -> dict[str, TableSpec]:
    found: dict[str, TableSpec] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for spec in getattr(module, "TABLES", ()):
            if spec.name in found:
                raise RuntimeError(f"table {spec.name!r} declared twice ({mod.name})")
            found[spec.name] = spec
    return found


def get_table(name: str) -> TableSpec:
    tables = all_tables()
    if name not in tables:
        raise UnknownTableError(f"unknown table {name!r}; known tables: {', '.join(sorted(tables))}")
    return tables[name]
