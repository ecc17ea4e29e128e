#!/usr/bin/env bash
# `make demo`: a signed webhook of each kind through a real ingestor into RabbitMQ.
# Starts the ingestor on localhost defaults, sends the Shopify sample payloads with
# hookline-send (signed like Shopify signs them), shows where each landed, and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

export HOOKLINE_SHOPIFY_SECRETS=${HOOKLINE_SHOPIFY_SECRETS:-hookline_dev_secret}
export HOOKLINE_HTTP_ADDR=${HOOKLINE_HTTP_ADDR:-127.0.0.1:8080}
BIN=target/debug

cargo build -q -p hookline-ingestor --bins
RUST_LOG=${RUST_LOG:-warn} "$BIN/hookline-ingestor" &
INGESTOR=$!
trap 'kill -TERM $INGESTOR 2>/dev/null; wait $INGESTOR 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://$HOOKLINE_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$HOOKLINE_HTTP_ADDR/readyz"; echo

send() { # send <topic> <fixture>
  printf '%-26s ' "$1"
  "$BIN/hookline-send" --url "http://$HOOKLINE_HTTP_ADDR/webhooks/shopify" \
    --secret "${HOOKLINE_SHOPIFY_SECRETS%%,*}" --topic "$1" --shop demo.myshopify.com "fixtures/shopify/$2"
}
send orders/create orders-create.json
send orders/paid orders-paid.json
send orders/cancelled orders-cancelled.json
send inventory_levels/update inventory-levels-update.json
send carts/create orders-paid.json

printf '\nA forged signature is refused and nothing is published:\n'
printf '%-26s ' "orders/paid (forged)"
"$BIN/hookline-send" --url "http://$HOOKLINE_HTTP_ADDR/webhooks/shopify" --secret not-the-secret \
  --topic orders/paid fixtures/shopify/orders-paid.json || true

printf '\nQueues now (messages ready), from the management API:\n'
if curl -fsS -u guest:guest "http://127.0.0.1:15672/api/queues/%2f?columns=name,messages_ready" -o /tmp/hookline-demo-queues.json 2>/dev/null; then
  python3 - /tmp/hookline-demo-queues.json <<'PY'
import json, sys
for q in json.load(open(sys.argv[1])):
    if q["name"].startswith("hookline."):
        print(f"  {q['name']:<26} {q.get('messages_ready', 0)}")
PY
  echo "  (counts refresh every few seconds; see http://127.0.0.1:15672/#/queues, guest/guest)"
else
  echo "  management API not reachable; enable it with: rabbitmq-plugins enable rabbitmq_management"
fi
