#!/usr/bin/env bash
# Starts hookline on localhost defaults: sandbox (plays the ERP) on :8090, worker on :8081,
# ingestor on :8080. Sourced by run.sh and demo.sh; stops everything it started on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A developer's machine: the development secret and the sandbox's sevDesk token are allowed.
export HOOKLINE_DEV=${HOOKLINE_DEV:-1}
export HOOKLINE_SHOPIFY_SECRETS=${HOOKLINE_SHOPIFY_SECRETS:-hookline_dev_secret}
export HOOKLINE_HTTP_ADDR=${HOOKLINE_HTTP_ADDR:-127.0.0.1:8080}
export HOOKLINE_WORKER_HTTP_ADDR=${HOOKLINE_WORKER_HTTP_ADDR:-127.0.0.1:8081}
export HOOKLINE_SANDBOX_ADDR=${HOOKLINE_SANDBOX_ADDR:-127.0.0.1:8090}
export HOOKLINE_ERP_URL=${HOOKLINE_ERP_URL:-http://$HOOKLINE_SANDBOX_ADDR/erp/stock-levels}
BIN=target/debug
PIDS=()

stop_stack() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_stack EXIT

wait_http() { # wait_http <url> <what>
  for _ in $(seq 1 150); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 did not come up ($1)" >&2; return 1
}

start_stack() {
  cargo build -q -p hookline-ingestor -p hookline-worker -p hookline-sandbox --bins
  "$BIN/hookline-sandbox" & PIDS+=($!)
  wait_http "http://$HOOKLINE_SANDBOX_ADDR/healthz" sandbox
  "$BIN/hookline-worker" & PIDS+=($!)
  wait_http "http://$HOOKLINE_WORKER_HTTP_ADDR/readyz" worker
  "$BIN/hookline-ingestor" & PIDS+=($!)
  wait_http "http://$HOOKLINE_HTTP_ADDR/readyz" ingestor
}
