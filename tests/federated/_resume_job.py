"""Child process for the resume test: a federated run that checkpoints into a catalog and is killed mid-run."""

import sys
import time

import torch

from forgeflow.catalog import open_catalog
from forgeflow.tasks.federated.checkpoints import CatalogCheckpoints
from tests.federated.test_runner import small_config, small_dataset
from forgeflow.tasks.federated.runner import run_federated

if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = small_config()
    cat = open_catalog(sys.argv[1])

    def slow(record):
        print(f"round {record.round}", flush=True)
        time.sleep(2.0)  # the parent kills us here

    run_federated(cfg, small_dataset(cfg), store=CatalogCheckpoints(cat, run_id="killed-run"), on_round=slow)
