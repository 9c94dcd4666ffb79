"""Tables every flow uses: runs and lineage (artifacts)."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

RUNS = TableSpec(
    name="runs",
    version=1,
    doc="One row when a run starts and one when it ends; the latest row per run_id is its state.",
    schema=pa.schema([
        field("flow", pa.string(), "flow name"),
        field("parameters", pa.string(), "flow parameters as JSON (credentials never included)"),
        field("status", pa.string(), "running | completed | failed"),
        field("started_at", pa.timestamp("us", tz="UTC"), "start time"),
        field("ended_at", pa.timestamp("us", tz="UTC"), "end time (null while running)"),
        field("forgeflow_version", pa.string(), "package version that ran it"),
        field("flow_run_id", pa.string(), "Prefect flow-run id"),
        field("error", pa.string(), "error message of a failed run"),
        field("summary", pa.string(), "JSON summary of the run's outputs"),
    ]),
)

ARTIFACTS = TableSpec(
    name="artifacts",
    version=1,
    doc="Lineage: which run wrote which table file or object.",
    schema=pa.schema([
        field("kind", pa.string(), "table | object | plot"),
        field("table_name", pa.string(), "table written (kind=table)"),
        field("path", pa.string(), "catalog key of the file or object"),
        field("num_rows", pa.int64(), "rows written (kind=table)", unit="rows"),
        field("num_bytes", pa.int64(), "bytes written", unit="bytes"),
        field("written_at", pa.timestamp("us", tz="UTC"), "write time"),
        field("description", pa.string(), "what it is"),
    ]),
)

TABLES = [RUNS, ARTIFACTS]
