#!/usr/bin/env bash
# `make demo`: the worker in the background and the simulator in the foreground, so that
# predictions (and, after their delay, ground truth) flow. At DEMO_DRIFT_AT seconds the
# simulated world drifts: the champion's error rises, the orchestrator retrains on the new
# regime, evaluates and promotes the challenger without a restart. The lifecycle runs on demo
# time scales (below; any STREAM_APP_* variable already set wins). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
app=.venv/bin/stream-app
logs=.stream-app/logs
mkdir -p "$logs"
export STREAM_APP_LIFECYCLE__CHECK_INTERVAL_S="${STREAM_APP_LIFECYCLE__CHECK_INTERVAL_S:-5}"
export STREAM_APP_LIFECYCLE__DEGRADATION_FOR_S="${STREAM_APP_LIFECYCLE__DEGRADATION_FOR_S:-30}"
export STREAM_APP_LIFECYCLE__RETRAIN_WINDOW_S="${STREAM_APP_LIFECYCLE__RETRAIN_WINDOW_S:-600}"
export STREAM_APP_LIFECYCLE__RETRAIN_COOLDOWN_S="${STREAM_APP_LIFECYCLE__RETRAIN_COOLDOWN_S:-300}"
export STREAM_APP_MONITORING__ACCURACY_WINDOW_S="${STREAM_APP_MONITORING__ACCURACY_WINDOW_S:-60}"
"$app" worker > "$logs/worker.log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true' EXIT
echo "worker started (pid $worker, log $logs/worker.log, dashboard http://127.0.0.1:6066/dashboard)"
echo "in another terminal: $app tail predictions   or   $app tail model-decisions"
echo "the world drifts after ${DEMO_DRIFT_AT:-120} s; the orchestrator's decisions follow"
sleep 8
"$app" simulate --rate "${DEMO_RATE:-200}" --duration "${DEMO_SECONDS:-600}" --invalid-rate 0.01 \
  --drift-at "${DEMO_DRIFT_AT:-120}"
