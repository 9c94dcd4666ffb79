"""`forgeflow optimize` tables: the family's unit latency profile, every search candidate with its certified
pipeline bottleneck on the target, and one decision row per run (what to deploy and how good it provably is)."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

DEPLOY_UNIT_PROFILES = TableSpec(
    name="deploy_unit_profiles",
    version=1,
    doc="Measured time of every distinct unit (stem, block shape at an input side, head) of an elastic family.",
    schema=pa.schema([
        field("profile_id", pa.string(), "family + host + microbatch size (content hash)"),
        field("family", pa.string(), "the elastic family (supernet id)"),
        field("host", pa.string(), "CPU model and torch version of the profiling host"),
        field("microbatch", pa.int64(), "examples per microbatch", unit="count"),
        field("unit_key", pa.string(), "the unit's shape and input side as JSON"),
        field("ms", pa.float64(), "time per microbatch (CPU thread time, min of interleaved rounds)", unit="ms"),
        field("ms_fakequant", pa.float64(), "the same with its layers' inputs fake-quantized (how a quantized stage "
              "runs on this host)", unit="ms"),
    ]),
)

DEPLOY_CANDIDATES = TableSpec(
    name="deploy_candidates",
    version=1,
    doc="Every subnet the deployment search evaluated: accuracy from the supernet, certified pipeline bottleneck "
        "on the target from the planner.",
    schema=pa.schema([
        field("target", pa.string(), "target name"),
        field("target_digest", pa.string(), "content hash of the target file"),
        field("order", pa.int64(), "0-based evaluation order", unit="count"),
        field("arch", pa.string(), "architecture string"),
        field("accuracy_pct", pa.float64(), "held-out accuracy of the extracted subnet", unit="%"),
        field("bottleneck_ms", pa.float64(), "certified plan's bottleneck stage time per microbatch (inf: no plan "
              "fits)", unit="ms"),
        field("ratio", pa.float64(), "bottleneck / proven lower bound"),
        field("on_front", pa.bool_(), "on the accuracy / bottleneck Pareto front"),
        field("chosen", pa.bool_(), "the subnet the run deploys"),
    ]),
)

DEPLOY_DECISIONS = TableSpec(
    name="deploy_decisions",
    version=1,
    doc="One row per optimize run: the decision and its certificate, accuracies, the bundle and the report.",
    schema=pa.schema([
        field("target", pa.string(), "target name"),
        field("arch", pa.string(), "chosen subnet (or model spec)"),
        field("planner", pa.string(), "'joint' or 'uniform-fallback'"),
        field("k", pa.int64(), "pipeline stages", unit="count"),
        field("bottleneck_ms", pa.float64(), "certified plan's bottleneck per microbatch on the target", unit="ms"),
        field("lower_bound_ms", pa.float64(), "proven lower bound on the best plan's bottleneck", unit="ms"),
        field("ratio", pa.float64(), "bottleneck / lower bound"),
        field("accuracy_float_pct", pa.float64(), "held-out accuracy, float", unit="%"),
        field("accuracy_quantized_pct", pa.float64(), "held-out accuracy with the plan applied", unit="%"),
        field("accuracy_finetuned_pct", pa.float64(), "after federated QAT (null without --clients)", unit="%"),
        field("bundle", pa.string(), "bundle folder"),
        field("summary_key", pa.string(), "catalog object (JSON) holding the whole summary"),
        field("report_key", pa.string(), "catalog object (HTML) of the report"),
    ]),
)

DEPLOY_TRACES = TableSpec(
    name="deploy_traces",
    version=1,
    doc="Hessian trace per parameter of each supernet layer (Hutchinson on the largest subnet), estimated once per "
        "family and reused for every candidate's sensitivities.",
    schema=pa.schema([
        field("family", pa.string(), "the elastic family (supernet id)"),
        field("layer", pa.string(), "supernet layer FQN"),
        field("trace_per_param", pa.float64(), "Hutchinson estimate of tr(H) / n"),
    ]),
)

SUBNET_ACCURACIES = TableSpec(
    name="subnet_accuracies",
    version=1,
    doc="Held-out accuracy of every subnet a deployment search extracted from a supernet (BN recalibrated): it does "
        "not depend on the target, so a search on another target reads it back instead of measuring it again.",
    schema=pa.schema([
        field("memo_key", pa.string(), "supernet id + its weights object + the data (by content) + the version of "
              "the code that measures accuracy (content hash)"),
        field("family", pa.string(), "the elastic family (supernet id)"),
        field("arch", pa.string(), "architecture string"),
        field("accuracy_pct", pa.float64(), "held-out accuracy of the extracted subnet", unit="%"),
    ]),
)

TABLES = [DEPLOY_UNIT_PROFILES, DEPLOY_CANDIDATES, DEPLOY_DECISIONS, DEPLOY_TRACES, SUBNET_ACCURACIES]
