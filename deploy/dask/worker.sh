#!/usr/bin/env bash
# Start one Dask worker process for forgeflow on this machine.
#   deploy/dask/worker.sh tcp://SCHEDULER:8786                 # CPU worker
#   GPUS=1 deploy/dask/worker.sh tcp://SCHEDULER:8786          # advertises GPU=1: takes the steps that ask for one
# Environment: THREADS (torch/Dask threads per worker, default 1: profiling pins torch to it), MEMORY (default 8GiB),
# GPUS (advertised GPU units), NAME (worker name, default host-pid). The worker needs forgeflow installed and the
# same catalog credentials as the flow (standard AWS environment or config); they are never passed as arguments.
set -euo pipefail
ADDRESS="${1:?usage: worker.sh tcp://SCHEDULER:PORT}"
THREADS="${THREADS:-1}"
MEMORY="${MEMORY:-8GiB}"
NAME="${NAME:-$(hostname)-$$}"
ARGS=(--nthreads "$THREADS" --memory-limit "$MEMORY" --name "$NAME")
if [[ -n "${GPUS:-}" && "${GPUS}" != "0" ]]; then
  ARGS+=(--resources "GPU=${GPUS}")
fi
# one process per worker, under a nanny that restarts it if it dies (the scheduler reschedules its tasks)
exec dask worker "$ADDRESS" "${ARGS[@]}"
