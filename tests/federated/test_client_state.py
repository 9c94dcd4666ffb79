"""Per-client residual stores: versioned by round, so a resume ignores entries of a round that never completed."""

import numpy as np
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.federated.client_state import CatalogClientState, MemoryClientState


def stores(tmp_path):
    return [MemoryClientState(), CatalogClientState(open_catalog(str(tmp_path / "cat")), "run-1", "key-1")]


@pytest.mark.parametrize("which", [0, 1])
def test_newest_completed_round_wins_and_uncommitted_rounds_are_forgotten(tmp_path, which):
    s = stores(tmp_path)[which]
    s.restore(0)
    assert s.residual(7) is None
    s.save_round(1, {7: np.full(4, 1.0, np.float32), 8: np.full(4, 2.0, np.float32)})
    s.save_round(3, {7: np.full(4, 3.0, np.float32)})
    np.testing.assert_array_equal(s.residual(7), np.full(4, 3.0))
    np.testing.assert_array_equal(s.residual(8), np.full(4, 2.0))
    s.restore(2)  # the flow died after writing round 3's residuals but before round 3's checkpoint
    np.testing.assert_array_equal(s.residual(7), np.full(4, 1.0))
    assert s.residual(9) is None


def test_catalog_store_reads_back_in_a_new_process_view(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    CatalogClientState(cat, "run-1", "key-1").save_round(2, {3: np.arange(5, dtype=np.float32)})
    CatalogClientState(cat, "run-1", "other-key").save_round(2, {3: np.zeros(5, np.float32)})
    again = CatalogClientState(open_catalog(str(tmp_path / "cat")), "run-2", "key-1")
    again.restore(2)
    np.testing.assert_array_equal(again.residual(3), np.arange(5))
    again.restore(1)
    assert again.residual(3) is None
