"""Issue 17 item 8: a tampered federated checkpoint used to be resumed silently (non-finite weights, accuracy 0.10
against 0.878). Resuming reads the state through the catalog's hash check: a changed object is one clear error
naming its key, never weights."""

from __future__ import annotations

import numpy as np
import pytest

from forgeflow.catalog import CatalogError, open_catalog
from forgeflow.tasks.federated.checkpoints import CatalogCheckpoints
from forgeflow.tasks.federated.state import RoundRecord


def test_a_tampered_checkpoint_is_refused_on_resume(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    store = CatalogCheckpoints(cat, run_id="r1")
    record = RoundRecord(round=1, status="ok", accuracy=0.5, loss=1.0, sampled=(0, 1), participants=(0, 1),
                         dropped=(), uplink_bytes=8, downlink_bytes=8, cum_uplink_bytes=8, cum_downlink_bytes=8,
                         epsilon=None, update_norm=0.1, seconds=0.01)
    weights = {"w": np.linspace(-1, 1, 64, dtype=np.float32)}
    store.save("job", record, weights, {"seed": 0})
    arrays, meta, records = store.latest("job")
    np.testing.assert_array_equal(arrays["w"], weights["w"])  # intact: resumed as saved
    key = cat.read("federated_checkpoints").column("state_key")[0].as_py()
    blob = bytearray(cat.store.get(key))
    blob[-4:] = np.array([np.nan], dtype=np.float32).tobytes()  # still a valid safetensors file, one weight NaN
    cat.store.put(key, bytes(blob))
    with pytest.raises(CatalogError, match="corrupt") as exc:
        store.latest("job")
    assert key in str(exc.value)
