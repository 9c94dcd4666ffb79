#!/usr/bin/env bash
# A scheduler + N worker processes on this machine (what the ops tests run), in the foreground; Ctrl-C stops all.
#   deploy/dask/local.sh [N_WORKERS] [PORT]
set -euo pipefail
N="${1:-2}"
PORT="${2:-8786}"
DIR="$(cd "$(dirname "$0")" && pwd)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
"$DIR/scheduler.sh" "$PORT" 127.0.0.1 & pids+=($!)
sleep 2
for i in $(seq 1 "$N"); do
  NAME="local-$i" "$DIR/worker.sh" "tcp://127.0.0.1:$PORT" & pids+=($!)
done
echo "Dask cluster at tcp://127.0.0.1:$PORT ($N workers): export FORGEFLOW_DASK_ADDRESS=tcp://127.0.0.1:$PORT"
wait
