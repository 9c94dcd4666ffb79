"""Round checkpoints and round records in the catalog (the runner's ``CheckpointStore``).

Each completed round appends one ``federated_rounds`` row, then stores the state arrays (the weights; each
participant's error-feedback residual goes to ``client_state.CatalogClientState`` first) as a content-addressed
safetensors object and appends one ``federated_checkpoints``
row pointing at it. The checkpoint row is written last, so a round counts as completed only once its state is
durable; a flow killed in between re-runs that round on resume (same seeds, same result) and its rounds row appears
twice (readers take the latest per round).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow.compute as pc

from forgeflow.tasks.federated.state import RoundRecord


def record_row(run_key: str, record: RoundRecord, dp: str, compression: str, delta: float | None) -> dict:
    return {
        "run_key": run_key, "round": record.round, "status": record.status, "accuracy": record.accuracy,
        "loss": record.loss, "sampled": len(record.sampled), "participants": len(record.participants),
        "dropped": len(record.dropped), "dropped_clients": list(record.dropped),
        "failures": json.dumps([list(f) for f in record.failures]), "uplink_bytes": record.uplink_bytes,
        "downlink_bytes": record.downlink_bytes, "cum_uplink_bytes": record.cum_uplink_bytes,
        "cum_downlink_bytes": record.cum_downlink_bytes, "epsilon": record.epsilon,
        "delta": delta if record.epsilon is not None else None, "dp": dp, "compression": compression,
        "update_norm": record.update_norm, "seconds": record.seconds,
    }


def record_from_json(text: str) -> RoundRecord:
    d = json.loads(text)
    for k in ("sampled", "participants", "dropped"):
        d[k] = tuple(d[k])
    d["failures"] = tuple(tuple(f) for f in d["failures"])
    return RoundRecord(**d)


class CatalogCheckpoints:
    """CheckpointStore over a ``catalog.Catalog``; rows carry ``run_id`` (the flow run writing them)."""

    def __init__(self, cat, run_id: str, dp: str = "none", compression: str = "none", delta: float | None = None):
        self.cat, self.run_id, self.dp, self.compression, self.delta = cat, run_id, dp, compression, delta

    def client_state(self, run_key: str):
        from forgeflow.tasks.federated.client_state import CatalogClientState

        return CatalogClientState(self.cat, self.run_id, run_key)

    def latest(self, run_key: str):
        rows = self.cat.read("federated_checkpoints", filter=pc.field("run_key") == run_key).to_pylist()
        if not rows:
            return None
        by_round: dict[int, dict] = {}
        for r in rows:
            by_round[int(r["round"])] = r  # identical content if a round was written twice
        last = by_round[max(by_round)]
        arrays = {k: np.asarray(v) for k, v in self.cat.get_arrays(last["state_key"]).items()}
        records = [record_from_json(by_round[k]["record"]) for k in sorted(by_round)]
        return arrays, json.loads(last["meta"]), records

    def save(self, run_key: str, record: RoundRecord, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.cat.append("federated_rounds", [record_row(run_key, record, self.dp, self.compression, self.delta)],
                        run_id=self.run_id, description=f"federated round {record.round}")
        key = self.cat.put_arrays(arrays, run_id=self.run_id, description=f"federated state after round {record.round}")
        self.cat.append("federated_checkpoints", [{
            "run_key": run_key, "round": record.round, "state_key": key, "meta": json.dumps(meta),
            "record": json.dumps(asdict(record)),
        }], run_id=self.run_id, description=f"federated checkpoint round {record.round}")
