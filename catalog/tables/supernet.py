"""Supernet search tables: trained supernets, predictor quality, evaluated candidates, Pareto fronts, and the
extracted-vs-from-scratch accuracy comparison."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

SUPERNET_MODELS = TableSpec(
    name="supernet_models",
    version=1,
    doc="An elastic supernet trained once with the sandwich rule: its space, data, weights object and end accuracies.",
    schema=pa.schema([
        field("supernet_id", pa.string(), "identifier of the trained supernet (content hash of its weights)"),
        field("dataset", pa.string(), "'sklearn:digits' or the user's dataset path"),
        field("config_json", pa.string(), "SupernetConfig (channels, strides, elastic space) as JSON"),
        field("weights_key", pa.string(), "catalog object (safetensors) with the supernet state dict"),
        field("seed", pa.int64(), "split / init / sampling seed"),
        field("epochs", pa.int64(), "training epochs"),
        field("random_subnets", pa.int64(), "random subnets per step besides the largest and smallest", unit="count"),
        field("n_train", pa.int64(), "training examples", unit="count"),
        field("n_test", pa.int64(), "held-out examples", unit="count"),
        field("train_seconds", pa.float64(), "training wall time", unit="s"),
        field("largest_accuracy_pct", pa.float64(), "held-out accuracy of the largest subnet", unit="%"),
        field("smallest_accuracy_pct", pa.float64(), "held-out accuracy of the smallest subnet", unit="%"),
    ]),
)

SUPERNET_PREDICTORS = TableSpec(
    name="supernet_predictors",
    version=1,
    doc="Held-out quality of the accuracy and latency predictors (one row per predictor).",
    schema=pa.schema([
        field("supernet_id", pa.string(), "the supernet the predictor describes"),
        field("predictor", pa.string(), "'accuracy' or 'latency'"),
        field("n_train", pa.int64(), "measured subnets the predictor was fitted on", unit="count"),
        field("n_test", pa.int64(), "held-out measured subnets", unit="count"),
        field("spearman", pa.float64(), "Spearman rank correlation, prediction vs measurement on held-out subnets"),
        field("rmse", pa.float64(), "root mean squared error on held-out subnets (unit in column 'unit')"),
        field("unit", pa.string(), "'%' (accuracy) or 'ms' (latency)"),
        field("detail_json", pa.string(), "extra figures (lookup-only Spearman, batch size) as JSON"),
        field("model_key", pa.string(), "catalog object (JSON) with the fitted predictor (lookup table, correction)"),
    ]),
)

SEARCH_CANDIDATES = TableSpec(
    name="search_candidates",
    version=1,
    doc="Every architecture a search evaluated, in evaluation order.",
    schema=pa.schema([
        field("search_id", pa.string(), "search identifier within the run"),
        field("space", pa.string(), "'elastic' or 'nb201'"),
        field("source", pa.string(), "objective source: 'supernet' (measured accuracy) or 'predictors'"),
        field("order", pa.int64(), "0-based evaluation order", unit="count"),
        field("arch", pa.string(), "architecture string"),
        field("accuracy_pct", pa.float64(), "accuracy from the objective source", unit="%"),
        field("latency_ms", pa.float64(), "latency from the objective source", unit="ms"),
        field("on_front", pa.bool_(), "on the returned Pareto front"),
    ]),
)

SEARCH_FRONTS = TableSpec(
    name="search_fronts",
    version=1,
    doc="The Pareto front (max accuracy, min latency) a search returned, with its status and the pick under the limit.",
    schema=pa.schema([
        field("search_id", pa.string(), "search identifier within the run"),
        field("supernet_id", pa.string(), "supernet searched (null for table benchmarks)"),
        field("position", pa.int64(), "index along the front, by latency", unit="count"),
        field("arch", pa.string(), "architecture string"),
        field("accuracy_pct", pa.float64(), "accuracy from the objective source", unit="%"),
        field("latency_ms", pa.float64(), "latency from the objective source", unit="ms"),
        field("best_under_limit", pa.bool_(), "the most accurate evaluated architecture within the latency limit"),
        field("latency_limit_ms", pa.float64(), "latency limit of the search (null: none)", unit="ms"),
        field("status", pa.string(), "'budget_spent' or 'space_exhausted'"),
        field("evaluations", pa.int64(), "distinct architectures evaluated", unit="count"),
        field("budget", pa.int64(), "evaluation budget", unit="count"),
        field("seconds", pa.float64(), "search wall time", unit="s"),
        field("plot_key", pa.string(), "catalog object (PNG) of the front"),
    ]),
)

SUPERNET_GAPS = TableSpec(
    name="supernet_gaps",
    version=1,
    doc="Accuracy of subnets extracted from the supernet vs the same architectures trained from scratch.",
    schema=pa.schema([
        field("supernet_id", pa.string(), "the supernet"),
        field("arch", pa.string(), "architecture string"),
        field("extracted_accuracy_pct", pa.float64(), "extracted + BN-recalibrated, held-out", unit="%"),
        field("scratch_accuracy_pct", pa.float64(), "trained alone with the same epochs/optimiser, held-out", unit="%"),
        field("gap_pp", pa.float64(), "scratch minus extracted", unit="pp"),
    ]),
)

TABLES = [SUPERNET_MODELS, SUPERNET_PREDICTORS, SEARCH_CANDIDATES, SEARCH_FRONTS, SUPERNET_GAPS]
