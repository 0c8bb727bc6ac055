#!/usr/bin/env bash
# Start the gateway, show it answering a first request, then keep serving until Ctrl-C.
set -euo pipefail
args=(serve --host "$HOST" --port "$PORT")
[ -n "${CONFIG:-}" ] && args+=(--config "$CONFIG")
"$BIN/sluicegate" "${args[@]}" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' INT TERM EXIT
"$BIN/python" scripts/first_request.py "http://$HOST:$PORT"
echo "Sluicegate is serving on http://$HOST:$PORT/v1 (pid $pid). Ctrl-C to stop."
wait "$pid"
