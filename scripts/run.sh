#!/usr/bin/env bash
# `make run`: hookline on localhost defaults until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/stack.sh"
start_stack
cat <<MSG

hookline is running:
  ingestor  http://$HOOKLINE_HTTP_ADDR/webhooks/shopify   (secret: ${HOOKLINE_SHOPIFY_SECRETS%%,*})
  worker    http://$HOOKLINE_WORKER_HTTP_ADDR/metrics
  sandbox   http://$HOOKLINE_SANDBOX_ADDR/_sandbox/erp/requests   (plays the ERP)
Send a webhook from another terminal:
  $BIN/hookline-send --secret ${HOOKLINE_SHOPIFY_SECRETS%%,*} --topic inventory_levels/update fixtures/shopify/inventory-levels-update.json
Ctrl-C stops everything.
MSG
wait
