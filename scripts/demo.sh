#!/usr/bin/env bash
# `make demo`: the worker in the background and the simulator in the foreground, so that
# predictions (and, after their delay, ground truth) flow. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
app=.venv/bin/stream-app
logs=.stream-app/logs
mkdir -p "$logs"
"$app" worker > "$logs/worker.log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true' EXIT
echo "worker started (pid $worker, log $logs/worker.log, metrics http://127.0.0.1:6066/metrics)"
echo "watch predictions in another terminal: $app tail predictions"
sleep 8
"$app" simulate --rate "${DEMO_RATE:-200}" --duration "${DEMO_SECONDS:-600}" --invalid-rate 0.01
