"""Table declarations: one ``TableSpec`` per table, in ``catalog/tables/<domain>.py``."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Columns every table carries; the catalog fills them in on append.
RUN_ID = pa.field("run_id", pa.string(), nullable=False, metadata={"doc": "run that wrote the row"})
DAY = pa.field("day", pa.string(), nullable=False, metadata={"doc": "UTC date the row was written (hive partition)"})


def field(name: str, type_: pa.DataType, doc: str = "", unit: str | None = None, nullable: bool = True) -> pa.Field:
    """A schema field with its description and unit in the field metadata."""
    meta = {"doc": doc}
    if unit:
        meta["unit"] = unit
    return pa.field(name, type_, nullable=nullable, metadata=meta)


@dataclass(frozen=True)
class TableSpec:
    """A catalog table: name, schema version, declared columns and hive partition columns.

    New columns may be appended to ``schema`` (bump ``version``): files written before read back with nulls.
    Removing or retyping a column needs a new table name.
    """

    name: str
    version: int
    schema: pa.Schema
    partition_by: tuple[str, ...] = ("day",)
    doc: str = ""

    @property
    def full_schema(self) -> pa.Schema:
        """Declared columns plus run_id and the partition columns (as stored and read)."""
        s = self.schema
        if "run_id" not in s.names:
            s = s.append(RUN_ID)
        if "day" in self.partition_by and "day" not in s.names:
            s = s.append(DAY)
        return s.with_metadata({"forgeflow.table": self.name, "forgeflow.schema_version": str(self.version)})

    @property
    def file_schema(self) -> pa.Schema:
        """Columns stored inside each Parquet file (partition columns live in the path)."""
        s = self.full_schema
        for p in self.partition_by:
            s = s.remove(s.get_field_index(p))
        return s

    @property
    def partition_schema(self) -> pa.Schema:
        return pa.schema([self.full_schema.field(p) for p in self.partition_by])
