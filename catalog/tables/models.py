"""Model summaries written by the first step of `forgeflow optimize`."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

MODEL_SUMMARIES = TableSpec(
    name="model_summaries",
    version=1,
    doc="Per-module parameter and FLOP counts of a model (own FLOPs and parameters per module; '<functional>' holds ops outside modules).",
    schema=pa.schema([
        field("model", pa.string(), "model spec"),
        field("input_shape", pa.list_(pa.int64()), "input tensor shape"),
        field("module", pa.string(), "dotted module path"),
        field("module_type", pa.string(), "module class"),
        field("params", pa.int64(), "parameters owned by the module", unit="count"),
        field("param_bytes", pa.int64(), "bytes of those parameters", unit="bytes"),
        field("flops", pa.int64(), "forward FLOPs (multiply-add = 2)", unit="FLOPs"),
    ]),
)

TABLES = [MODEL_SUMMARIES]
