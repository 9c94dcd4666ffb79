"""Federated training: one row per completed round, the round checkpoints a dead flow resumes from, final runs.

``run_key`` is the content hash of a run's configuration and data split (the resume key); ``run_id`` is the flow
run that wrote the row. A round re-run after a crash between its two appends appears twice: read the latest row per
(run_key, round).
"""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

FEDERATED_ROUNDS = TableSpec(
    name="federated_rounds",
    version=1,
    doc="Per-round metrics of federated runs (global model on the server's held-out test set).",
    schema=pa.schema([
        field("run_key", pa.string(), "hash of configuration + data split (resume key)"),
        field("round", pa.int32(), "round number, from 1"),
        field("status", pa.string(), "ok | no_quorum (model left unchanged)"),
        field("accuracy", pa.float64(), "test accuracy of the global model after the round", unit="fraction"),
        field("loss", pa.float64(), "test cross-entropy after the round", unit="nats"),
        field("sampled", pa.int32(), "clients sampled", unit="clients"),
        field("participants", pa.int32(), "clients whose update was aggregated", unit="clients"),
        field("dropped", pa.int32(), "sampled clients that failed or missed the deadline", unit="clients"),
        field("dropped_clients", pa.list_(pa.int32()), "ids of the dropped clients"),
        field("failures", pa.string(), "JSON [[client, reason], ...]"),
        field("uplink_bytes", pa.int64(), "client->server payload bytes this round", unit="bytes"),
        field("downlink_bytes", pa.int64(), "server->client model bytes this round", unit="bytes"),
        field("cum_uplink_bytes", pa.int64(), "uplink bytes up to and including this round", unit="bytes"),
        field("cum_downlink_bytes", pa.int64(), "downlink bytes up to and including this round", unit="bytes"),
        field("epsilon", pa.float64(), "DP epsilon after this round (null without DP)", unit="epsilon"),
        field("delta", pa.float64(), "DP delta (null without DP)"),
        field("dp", pa.string(), "none | record | client"),
        field("compression", pa.string(), "none | int8 | topk:R | randk:R"),
        field("update_norm", pa.float64(), "L2 norm of the aggregated update"),
        field("seconds", pa.float64(), "wall time of the round (training, aggregation, evaluation)", unit="s"),
    ]),
)

FEDERATED_CHECKPOINTS = TableSpec(
    name="federated_checkpoints",
    version=1,
    doc="Server state after each completed round: weights and error-feedback residuals (safetensors object).",
    schema=pa.schema([
        field("run_key", pa.string(), "resume key"),
        field("round", pa.int32(), "last completed round"),
        field("state_key", pa.string(), "catalog object key of the arrays (weights, residual/<client>)"),
        field("meta", pa.string(), "JSON: participation counts, noise multiplier, cumulative bytes"),
        field("record", pa.string(), "JSON of the round record"),
    ]),
)

FEDERATED_RUNS = TableSpec(
    name="federated_runs",
    version=1,
    doc="One row per finished federated run: configuration, final figures, final weights.",
    schema=pa.schema([
        field("run_key", pa.string(), "resume key"),
        field("model", pa.string(), "model spec"),
        field("dataset", pa.string(), "dataset id (name:hash)"),
        field("config", pa.string(), "FederatedConfig as JSON"),
        field("rounds", pa.int32(), "rounds completed"),
        field("accuracy", pa.float64(), "final test accuracy", unit="fraction"),
        field("uplink_bytes", pa.int64(), "total uplink bytes", unit="bytes"),
        field("downlink_bytes", pa.int64(), "total downlink bytes", unit="bytes"),
        field("epsilon", pa.float64(), "final DP epsilon (null without DP)", unit="epsilon"),
        field("delta", pa.float64(), "DP delta (null without DP)"),
        field("noise_multiplier", pa.float64(), "DP noise multiplier z (null without DP)"),
        field("privacy_assumption", pa.string(), "the sampling/adjacency assumption epsilon relies on"),
        field("weights_key", pa.string(), "catalog object key of the final weights (safetensors)"),
        field("plot_keys", pa.list_(pa.string()), "catalog object keys of the PNG plots"),
        field("resumed_from_round", pa.int32(), "round this flow run resumed after (0 = fresh)"),
    ]),
)

FEDERATED_CLIENT_STATE = TableSpec(
    name="federated_client_state",
    version=1,
    doc="Per-client state that outlives a round: one row per participant and round pointing at its error-feedback "
        "residual (read the newest row with round <= the last checkpointed round).",
    schema=pa.schema([
        field("run_key", pa.string(), "resume key"),
        field("client_id", pa.int32(), "client id"),
        field("round", pa.int32(), "round that produced the residual"),
        field("residual_key", pa.string(), "catalog object key of the residual (safetensors, array 'residual')"),
    ]),
)


FEDERATED_FRONTS = TableSpec(
    name="federated_fronts",
    version=1,
    doc="Accuracy-bytes-epsilon trade-off fronts over federated runs: one row per run (point) of a front, the front "
        "flagged, all rows of a front sharing its id and plot.",
    schema=pa.schema([
        field("front_id", pa.string(), "hash of the front's points"),
        field("title", pa.string(), "what the front compares"),
        field("label", pa.string(), "the point's method (compression, DP)"),
        field("run_key", pa.string(), "resume key of the run (null for runs not in this catalog)"),
        field("compression", pa.string(), "none | int8 | topk:R | randk:R[:shared]"),
        field("dp", pa.string(), "none | record | client"),
        field("epsilon", pa.float64(), "DP epsilon spent (null without DP)", unit="epsilon"),
        field("uplink_bytes", pa.int64(), "total uplink bytes", unit="bytes"),
        field("accuracy", pa.float64(), "final test accuracy", unit="fraction"),
        field("on_front", pa.bool_(), "no other point is as good in accuracy, bytes and epsilon and better in one"),
        field("plot_key", pa.string(), "catalog object key of the front's PNG"),
    ]),
)

TABLES = [FEDERATED_ROUNDS, FEDERATED_CHECKPOINTS, FEDERATED_RUNS, FEDERATED_CLIENT_STATE, FEDERATED_FRONTS]
