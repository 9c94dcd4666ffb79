"""Few-shot latency tables: fitted device models and the measurements they were fitted on."""

import pyarrow as pa

from forgeflow.catalog.schema import TableSpec, field

LATENCY_DEVICES = TableSpec(
    name="latency_devices",
    version=1,
    doc="A device latency model fitted from N measurements (forgeflow latency fit); the latest row per device wins.",
    schema=pa.schema([
        field("device", pa.string(), "device name given by the user"),
        field("space", pa.string(), "search space of the architectures ('nb201' or 'elastic')"),
        field("n_measurements", pa.int64(), "distinct architectures measured on the device", unit="count"),
        field("known_devices_json", pa.string(), "devices of the pre-training latency table (JSON list)"),
        field("table", pa.string(), "the pre-training latency table (file path or name)"),
        field("model_key", pa.string(), "catalog object (safetensors) with the prior and device arrays"),
        field("log_params_json", pa.string(), "fitted kernel block scales and noise (log, JSON)"),
        field("loo_log_rmse", pa.float64(), "leave-one-out RMSE of the log latency over the measurements"),
        field("noise_log_std", pa.float64(), "fitted measurement noise (standard deviation of the log latency)"),
        field("fit_seconds", pa.float64(), "pre-training + adaptation wall time", unit="s"),
    ]),
)

LATENCY_MEASUREMENTS = TableSpec(
    name="latency_measurements",
    version=1,
    doc="The (architecture, latency) measurements a device model was fitted on.",
    schema=pa.schema([
        field("device", pa.string(), "device name"),
        field("arch", pa.string(), "architecture string"),
        field("latency_ms", pa.float64(), "measured latency (repeats averaged geometrically)", unit="ms"),
    ]),
)

TABLES = [LATENCY_DEVICES, LATENCY_MEASUREMENTS]
