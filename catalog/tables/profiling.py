"""Cost graphs: one ``graphs`` row per graph, its nodes and edges in ``graph_nodes`` / ``graph_edges``.

A graph is identified by ``graph_id`` (a content hash: the same graph always gets the same id) and its rows are
written by the run in ``run_id`` (lineage through ``artifacts``). ``structure_id`` is shared by profiles of one model
that differ only in measured times. ``meta`` holds the graph's full provenance as JSON, so the three tables give back
the exact ``CostGraph`` (``tasks.profiling.graph_store.read_graph``).
"""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

GRAPHS = TableSpec(
    name="graphs",
    version=1,
    doc="Cost graphs (profiled models and imported msr-fiddle / PipeDream graphs), one row each.",
    schema=pa.schema([
        field("graph_id", pa.string(), "content hash of the graph (16 hex chars)", nullable=False),
        field("structure_id", pa.string(), "hash of ids, ops, FLOPs, bytes and edges (not of measured times)"),
        field("name", pa.string(), "graph name (model name or file stem)"),
        field("source", pa.string(), "profile | msr | pipedream"),
        field("model", pa.string(), "model spec (profiled graphs)"),
        field("input_shape", pa.list_(pa.int64()), "input tensor shape including batch"),
        field("dtype", pa.string(), "parameter and input dtype"),
        field("granularity", pa.string(), "op | layer"),
        field("capture", pa.string(), "fx | export (how the graph was captured)"),
        field("nodes", pa.int64(), "number of nodes", unit="count"),
        field("edges", pa.int64(), "number of edges", unit="count"),
        field("flops", pa.int64(), "total forward FLOPs (multiply-add = 2)", unit="FLOPs"),
        field("params", pa.int64(), "parameter count of the model", unit="count"),
        field("param_bytes", pa.int64(), "bytes of all parameters", unit="bytes"),
        field("latency_sum_ms", pa.float64(), "sum of node latencies", unit="ms"),
        field("whole_model_ms", pa.float64(), "measured latency of the eager model (median)", unit="ms"),
        field("node_sum_ratio", pa.float64(), "sum of node medians / whole-model median", unit="ratio"),
        field("repeats", pa.int64(), "timed repeats per measurement", unit="count"),
        field("warmup", pa.int64(), "untimed warm-up passes", unit="count"),
        field("link", pa.string(), "link profile pricing the edges"),
        field("link_bandwidth", pa.float64(), "link bandwidth", unit="bytes/s"),
        field("link_latency", pa.float64(), "link fixed latency per transfer", unit="s"),
        field("cpu_model", pa.string(), "CPU the times were measured on"),
        field("torch_threads", pa.int64(), "torch intra-op threads during measurement", unit="count"),
        field("torch_version", pa.string(), "torch version during measurement"),
        field("max_size_per_device", pa.float64(), "device memory limit (msr maxSizePerFPGA)", unit="bytes"),
        field("max_devices", pa.int64(), "device count limit (msr maxFPGAs)", unit="count"),
        field("meta", pa.string(), "full graph metadata as JSON (provenance, timing context, capture notes)"),
        field("created_at", pa.timestamp("us", tz="UTC"), "when the row was written"),
    ]),
)

GRAPH_NODES = TableSpec(
    name="graph_nodes",
    version=1,
    doc="Nodes of the cost graphs: one operator (or layer) each, in the graph's order (position).",
    schema=pa.schema([
        field("graph_id", pa.string(), "graph the node belongs to", nullable=False),
        field("position", pa.int64(), "index of the node in the graph's node order", unit="index"),
        field("node_id", pa.string(), "node id, stable across profiles of the same model", nullable=False),
        field("op", pa.string(), "operator type (module class, function or ATen op)"),
        field("module", pa.string(), "dotted module path ('' at top level)"),
        field("flops", pa.int64(), "forward FLOPs (multiply-add = 2)", unit="FLOPs"),
        field("param_bytes", pa.int64(), "bytes of the parameters the node owns", unit="bytes"),
        field("output_bytes", pa.int64(), "bytes of the node's output activations", unit="bytes"),
        field("latency_ms", pa.float64(), "compute time (median over repeats)", unit="ms"),
        field("latency_spread_ms", pa.float64(), "interquartile range of the compute time over repeats", unit="ms"),
        field("size_bytes", pa.float64(), "memory the node pins on its device", unit="bytes"),
        field("color_class", pa.string(), "co-location class (null: none)"),
        field("output_cost_ms", pa.float64(), "time to move the node's output to another device", unit="ms"),
        field("cpu_latency_ms", pa.float64(), "compute time on the host CPU (msr cpuLatency)", unit="ms"),
        field("supported_on_accel", pa.bool_(), "can run on the accelerator"),
        field("is_backward", pa.bool_(), "a backward-pass node"),
    ]),
)

GRAPH_EDGES = TableSpec(
    name="graph_edges",
    version=1,
    doc="Edges of the cost graphs: the output of src consumed by dst.",
    schema=pa.schema([
        field("graph_id", pa.string(), "graph the edge belongs to", nullable=False),
        field("position", pa.int64(), "index of the edge in the graph's edge order", unit="index"),
        field("src", pa.string(), "producing node id", nullable=False),
        field("dst", pa.string(), "consuming node id", nullable=False),
        field("bytes", pa.int64(), "tensor bytes moved along the edge", unit="bytes"),
        field("cost_ms", pa.float64(), "transfer time on the graph's link profile", unit="ms"),
    ]),
)

TABLES = [GRAPHS, GRAPH_NODES, GRAPH_EDGES]
