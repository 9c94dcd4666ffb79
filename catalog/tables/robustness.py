"""Verification of quantized networks: per-instance robustness answers and the networks they are about."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

VERIFY_RESULTS = TableSpec(
    name="verify_results",
    version=1,
    doc="One robustness property (image x eps x network): verified / falsified / unknown, how and how fast.",
    schema=pa.schema([
        field("network", pa.string(), "'quantized' (exact integer semantics) or 'float' (reference)"),
        field("model", pa.string(), "model spec"),
        field("plan", pa.string(), "weight bits per layer (LAYER=BITS,...) or 'float'"),
        field("act_bits", pa.int64(), "activation width (null: float network)", unit="bits"),
        field("image", pa.int64(), "index in the held-out split"),
        field("label", pa.int64(), "true (and predicted) label"),
        field("eps", pa.int64(), "L-infinity radius in steps of the quantized input", unit="steps"),
        field("answer", pa.string(), "verified / falsified / unknown"),
        field("method", pa.string(), "what decided: interval / linear / attack / milp / center"),
        field("seconds", pa.float64(), "wall time of the instance", unit="s"),
        field("solver_status", pa.string(), "status of the last MILP solve (not_run without one)"),
        field("margin_lower", pa.float64(), "proven lower bound on min_j (y_c - y_j) over the box"),
        field("margin_upper", pa.float64(), "smallest margin found at a point in the box"),
        field("confirmed_by", pa.string(), "second means: milp-presolve-off (verified) or executor (falsified)"),
        field("milp_solves", pa.int64(), "HiGHS solves", unit="count"),
        field("milp_nodes", pa.int64(), "branch-and-bound nodes", unit="count"),
        field("detail", pa.string(), "why an answer is unknown, or other notes"),
        field("counterexample", pa.list_(pa.int64()), "input codes misclassified by the integer executor"),
        field("center", pa.list_(pa.int64()), "input codes of the image"),
    ]),
)

VERIFY_NETWORKS = TableSpec(
    name="verify_networks",
    version=1,
    doc="A network a verify run reasoned about, with its documented JSON (integer weights, scales, rounding).",
    schema=pa.schema([
        field("network", pa.string(), "'quantized' or 'float'"),
        field("model", pa.string(), "model spec"),
        field("plan", pa.string(), "weight bits per layer or 'float'"),
        field("act_bits", pa.int64(), "activation width (null: float)", unit="bits"),
        field("network_key", pa.string(), "catalog object: the network as JSON (format forgeflow-qnet/1)"),
        field("accuracy", pa.float64(), "held-out accuracy of this network's executor", unit="fraction"),
        field("images", pa.int64(), "images verified", unit="count"),
        field("layers", pa.int64(), "affine layers", unit="count"),
    ]),
)

TABLES = [VERIFY_RESULTS, VERIFY_NETWORKS]
