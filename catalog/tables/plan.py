"""Joint deployment-plan tables: one summary row per plan, its per-node choices (stage and bit width), the
baselines solved on the same instance, and budget sweeps (the bottleneck-vs-sensitivity front)."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

PLAN_RESULTS = TableSpec(
    name="plan_results",
    version=1,
    doc="One row per joint placement-and-precision plan: bottleneck, proven lower bound, certified ratio, budget.",
    schema=pa.schema([
        field("result_id", pa.string(), "id of this plan (joins plan_choices / plan_baselines)"),
        field("graph_id", pa.string(), "content hash of the profiled graph (empty for an instance file)"),
        field("instance", pa.string(), "instance name"),
        field("k", pa.int64(), "number of pipeline stages (at most)", unit="stages"),
        field("target", pa.string(), "hardware target name (empty for an instance file)"),
        field("budget", pa.float64(), "sensitivity budget (null: none)", unit="sensitivity"),
        field("bottleneck_ms", pa.float64(), "largest stage cost of the plan (1 / throughput)", unit="ms"),
        field("lower_bound_ms", pa.float64(), "best proven lower bound on the optimal bottleneck", unit="ms"),
        field("ratio", pa.float64(), "certified ratio bottleneck / lower bound", unit="ratio"),
        field("status", pa.string(), "optimal (ratio 1) | feasible"),
        field("sensitivity", pa.float64(), "total sensitivity of the chosen bit widths", unit="sensitivity"),
        field("method", pa.string(), "method that found the plan"),
        field("lower_bound_method", pa.string(), "method that proved the lower bound"),
        field("sensitivity_source", pa.string(), "where the sensitivities came from (data, synthetic, given)"),
        field("seconds", pa.float64(), "wall time of the solve", unit="s"),
    ]),
)

PLAN_CHOICES = TableSpec(
    name="plan_choices",
    version=1,
    doc="Per node of a plan: its pipeline stage, bit width (32 = float), time on its device, size and sensitivity.",
    schema=pa.schema([
        field("result_id", pa.string(), "plan id (plan_results)"),
        field("node_id", pa.string(), "node id as in the input"),
        field("stage", pa.int32(), "0-based pipeline stage", unit="stage"),
        field("bits", pa.int32(), "weight bit width (32 = float)", unit="bits"),
        field("time_ms", pa.float64(), "the node's time at that width on its stage's device", unit="ms"),
        field("size", pa.float64(), "the node's memory at that width", unit="bytes"),
        field("sensitivity", pa.float64(), "the node's sensitivity at that width", unit="sensitivity"),
    ]),
)

PLAN_BASELINES = TableSpec(
    name="plan_baselines",
    version=1,
    doc="Baselines solved on the same instance as a plan: uniform precision at each width (exact partition), "
        "quantize-then-partition, partition-then-quantize.",
    schema=pa.schema([
        field("result_id", pa.string(), "plan id (plan_results)"),
        field("method", pa.string(), "baseline name"),
        field("bottleneck_ms", pa.float64(), "its bottleneck (null: no valid plan)", unit="ms"),
        field("sensitivity", pa.float64(), "its total sensitivity (null: no valid plan)", unit="sensitivity"),
        field("message", pa.string(), "why it has no plan, if so"),
    ]),
)

PLAN_FRONTS = TableSpec(
    name="plan_fronts",
    version=1,
    doc="Budget sweeps: one row per budget, the joint plan's bottleneck and its proven bound (the "
        "bottleneck-vs-sensitivity front).",
    schema=pa.schema([
        field("front_id", pa.string(), "id of the sweep"),
        field("result_id", pa.string(), "plan id of this point (plan_results; null: no plan)"),
        field("budget", pa.float64(), "sensitivity budget of this point", unit="sensitivity"),
        field("status", pa.string(), "optimal | feasible | infeasible (no plan within this budget)"),
        field("sensitivity", pa.float64(), "total sensitivity of its plan", unit="sensitivity"),
        field("bottleneck_ms", pa.float64(), "its bottleneck", unit="ms"),
        field("lower_bound_ms", pa.float64(), "its proven lower bound", unit="ms"),
        field("ratio", pa.float64(), "certified ratio", unit="ratio"),
        field("message", pa.string(), "why there is no plan, if so"),
    ]),
)

TABLES = [PLAN_RESULTS, PLAN_CHOICES, PLAN_BASELINES, PLAN_FRONTS]
