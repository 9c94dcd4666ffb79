"""Pipeline-partitioning tables: one summary row per solve, its plan (node -> stage), per-stage loads, and every
method's bound or plan value with its status (the certificate)."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

PARTITION_RESULTS = TableSpec(
    name="partition_results",
    version=1,
    doc="One row per partitioning solve: best plan's bottleneck, best proven lower bound and certified ratio.",
    schema=pa.schema([
        field("result_id", pa.string(), "id of this solve (joins the other partition_* tables)"),
        field("graph_id", pa.string(), "content hash of the partitioned graph (graphs table)"),
        field("graph_name", pa.string(), "graph name"),
        field("k", pa.int64(), "number of pipeline stages (at most)", unit="stages"),
        field("memory_cap", pa.float64(), "per-stage memory cap (null: none)", unit="bytes"),
        field("bottleneck_ms", pa.float64(), "largest stage cost of the plan (1 / throughput)", unit="ms"),
        field("lower_bound_ms", pa.float64(), "best proven lower bound on the optimal bottleneck", unit="ms"),
        field("ratio", pa.float64(), "certified ratio bottleneck / lower bound", unit="ratio"),
        field("status", pa.string(), "optimal (ratio 1) | feasible"),
        field("method", pa.string(), "method that found the plan"),
        field("lower_bound_method", pa.string(), "method that proved the lower bound"),
        field("seconds", pa.float64(), "wall time of the solve", unit="s"),
    ]),
)

PARTITION_PLANS = TableSpec(
    name="partition_plans",
    version=1,
    doc="The plan of a solve: the pipeline stage (0-based) of every node.",
    schema=pa.schema([
        field("result_id", pa.string(), "solve id (partition_results)"),
        field("graph_id", pa.string(), "graph content hash"),
        field("node_id", pa.string(), "node id as in the graph"),
        field("stage", pa.int32(), "0-based pipeline stage", unit="stage"),
    ]),
)

PARTITION_STAGE_LOADS = TableSpec(
    name="partition_stage_loads",
    version=1,
    doc="Per stage of a plan: compute, incoming and outgoing transfer time, total and memory, as recomputed by the "
        "independent validator.",
    schema=pa.schema([
        field("result_id", pa.string(), "solve id (partition_results)"),
        field("graph_id", pa.string(), "graph content hash"),
        field("stage", pa.int32(), "0-based pipeline stage", unit="stage"),
        field("num_nodes", pa.int64(), "nodes in the stage", unit="count"),
        field("compute_ms", pa.float64(), "summed node compute time", unit="ms"),
        field("comm_in_ms", pa.float64(), "transfers received from earlier stages (once per sender)", unit="ms"),
        field("comm_out_ms", pa.float64(), "transfers sent to later stages (once per sender)", unit="ms"),
        field("total_ms", pa.float64(), "stage cost = compute + in + out", unit="ms"),
        field("memory", pa.float64(), "summed node size", unit="bytes"),
    ]),
)

PARTITION_BOUNDS = TableSpec(
    name="partition_bounds",
    version=1,
    doc="Every method run in a solve: lower bounds (combinatorial, MIP), exact methods, upper-bound searches and "
        "baselines, with value, solver status and time.",
    schema=pa.schema([
        field("result_id", pa.string(), "solve id (partition_results)"),
        field("graph_id", pa.string(), "graph content hash"),
        field("method", pa.string(), "method name"),
        field("kind", pa.string(), "lower | exact | upper | baseline"),
        field("status", pa.string(), "optimal | feasible | time_limit | infeasible | not_run | error"),
        field("value_ms", pa.float64(), "bound proved (lower/exact) or plan bottleneck (upper/baseline); null if none",
              unit="ms"),
        field("seconds", pa.float64(), "wall time of the method", unit="s"),
        field("is_best", pa.bool_(), "this method gave the reported plan or lower bound"),
    ]),
)

TABLES = [PARTITION_RESULTS, PARTITION_PLANS, PARTITION_STAGE_LOADS, PARTITION_BOUNDS]
