#!/usr/bin/env bash
# Start a Dask scheduler for forgeflow. Usage: deploy/dask/scheduler.sh [PORT] [HOST]
# Then point forgeflow at it: export FORGEFLOW_DASK_ADDRESS=tcp://HOST:PORT (or --dask-address on any command).
set -euo pipefail
PORT="${1:-8786}"
HOST="${2:-0.0.0.0}"
exec dask scheduler --host "$HOST" --port "$PORT" --dashboard-address ":${DASK_DASHBOARD_PORT:-8787}"
