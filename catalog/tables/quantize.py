"""Mixed-precision quantization tables: trained models, per-layer sensitivities, bit plans and their evaluations."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

QUANT_MODELS = TableSpec(
    name="quant_models",
    version=1,
    doc="A model trained (or loaded) for quantization: its spec, data, weights object and float accuracy.",
    schema=pa.schema([
        field("model", pa.string(), "model spec"),
        field("dataset", pa.string(), "'sklearn:digits' or the user's .npz path"),
        field("seed", pa.int64(), "split / init / training seed"),
        field("epochs", pa.int64(), "training epochs (0: weights as built)"),
        field("weights_key", pa.string(), "catalog object (safetensors) with the state dict"),
        field("n_train", pa.int64(), "training examples", unit="count"),
        field("n_test", pa.int64(), "held-out examples", unit="count"),
        field("float_accuracy", pa.float64(), "top-1 accuracy of the float model on the held-out split",
              unit="fraction"),
    ]),
)

QUANT_SENSITIVITIES = TableSpec(
    name="quant_sensitivities",
    version=1,
    doc="Per layer and candidate width: Hutchinson Hessian trace and ||Q_b(W)-W||^2 (one row per layer x bits).",
    schema=pa.schema([
        field("model", pa.string(), "model spec"),
        field("layer", pa.string(), "module FQN"),
        field("kind", pa.string(), "module class"),
        field("weight_numel", pa.int64(), "weight elements", unit="count"),
        field("out_channels", pa.int64(), "output channels", unit="count"),
        field("bias_numel", pa.int64(), "bias elements", unit="count"),
        field("macs", pa.int64(), "multiply-accumulates at batch 1", unit="MACs"),
        field("trace", pa.float64(), "Hutchinson estimate of tr(H) over the layer's weights"),
        field("trace_stderr", pa.float64(), "standard error of the trace estimate"),
        field("samples", pa.int64(), "Hessian-vector products behind the estimate", unit="count"),
        field("bits", pa.int64(), "candidate weight width (32 = float)", unit="bits"),
        field("perturbation", pa.float64(), "||Q_b(W) - W||^2 (per-channel symmetric)"),
        field("cost", pa.float64(), "max(trace / n, 0) * perturbation: the ILP objective coefficient"),
        field("base_bytes", pa.float64(), "float32 bytes of parameters/buffers outside quantizable layers",
              unit="bytes"),
    ]),
)

QUANT_PLANS = TableSpec(
    name="quant_plans",
    version=1,
    doc="Bit plans from the allocation ILP (one row per plan x layer); plan-level figures repeat on each row.",
    schema=pa.schema([
        field("plan_id", pa.string(), "plan identifier within the run"),
        field("model", pa.string(), "model spec"),
        field("kind", pa.string(), "'requested' (the CLI budgets), 'pareto' (size sweep) or 'uniform'"),
        field("layer", pa.string(), "module FQN"),
        field("bits", pa.int64(), "weight width (32 = float)", unit="bits"),
        field("status", pa.string(), "solver status: optimal / feasible / time_limit / infeasible"),
        field("objective", pa.float64(), "sum of trace/n x perturbation over the plan"),
        field("dual_bound", pa.float64(), "HiGHS's proven lower bound on the objective"),
        field("seconds", pa.float64(), "solve wall time", unit="s"),
        field("size_bytes", pa.float64(), "model size under the plan", unit="bytes"),
        field("bops", pa.float64(), "bit-operations under the plan (MACs x weight bits x activation bits)",
              unit="BOPs"),
        field("latency_ms", pa.float64(), "latency from the per-layer table (null without one)", unit="ms"),
        field("budget_size_bytes", pa.float64(), "size budget (null: none)", unit="bytes"),
        field("budget_bops", pa.float64(), "BOPs budget (null: none)", unit="BOPs"),
        field("budget_latency_ms", pa.float64(), "latency budget (null: none)", unit="ms"),
        field("act_bits", pa.int64(), "activation width of quantized layers (null: float)", unit="bits"),
        field("torchao_config", pa.string(), "torchao config of the layer as JSON (null: none applies)"),
    ]),
)

QUANT_EVALUATIONS = TableSpec(
    name="quant_evaluations",
    version=1,
    doc="Held-out accuracy of fake-quantized models (one row per evaluated plan).",
    schema=pa.schema([
        field("plan_id", pa.string(), "plan identifier (joins quant_plans)"),
        field("model", pa.string(), "model spec"),
        field("kind", pa.string(), "'requested', 'pareto', 'uniform' or 'float'"),
        field("size_bytes", pa.float64(), "model size under the plan", unit="bytes"),
        field("bops", pa.float64(), "bit-operations under the plan", unit="BOPs"),
        field("act_bits", pa.int64(), "activation width (null: float)", unit="bits"),
        field("accuracy", pa.float64(), "top-1 accuracy on the held-out split", unit="fraction"),
        field("n_eval", pa.int64(), "held-out examples", unit="count"),
    ]),
)

TABLES = [QUANT_MODELS, QUANT_SENSITIVITIES, QUANT_PLANS, QUANT_EVALUATIONS]
