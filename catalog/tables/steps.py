"""Step results cached across runs (``tasks.step_cache``): one row when a step finishes, one when a run reuses it.

A step's ``cache_key`` hashes its name, its inputs (run id, catalog URL and endpoint excluded; files by content) and
the code version (a hash of the source the step runs). ``result`` is the step's JSON return value, which names the
catalog rows and objects it wrote under ``source_run_id``; a later run with the same key reuses it instead of
running the step again and records a ``reused`` row under its own run id.
"""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

STEP_CACHE = TableSpec(
    name="step_cache",
    version=1,
    doc="Finished steps (status completed) and their reuse by later runs (status reused), keyed on inputs + code.",
    schema=pa.schema([
        field("cache_key", pa.string(), "sha256 of step name, canonical inputs and code version", nullable=False),
        field("step", pa.string(), "step name (the Prefect task name)"),
        field("code_version", pa.string(), "sha256 of the source files the step runs"),
        field("status", pa.string(), "completed (this run ran the step) | reused (this run took source_run's)"),
        field("source_run_id", pa.string(), "run that ran the step and wrote its rows"),
        field("inputs", pa.string(), "canonical inputs as JSON (credentials never included)"),
        field("result", pa.string(), "the step's return value as JSON"),
        field("seconds", pa.float64(), "wall time of the step (completed) or of the lookup (reused)", unit="s"),
        field("created_at", pa.timestamp("us", tz="UTC"), "time of the row"),
    ]),
)

TABLES = [STEP_CACHE]
