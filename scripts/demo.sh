#!/usr/bin/env bash
# `make demo`: signed webhooks through ingestor → RabbitMQ → worker → PostgreSQL → ERP (sandbox).
set -euo pipefail
source "$(dirname "$0")/stack.sh"
export RUST_LOG=${RUST_LOG:-warn}
start_stack

send() { # send <topic> <body file> [secret]
  printf '  %-28s ' "$1"
  "$BIN/hookline-send" --url "http://$HOOKLINE_HTTP_ADDR/webhooks/shopify" \
    --secret "${3:-${HOOKLINE_SHOPIFY_SECRETS%%,*}}" --topic "$1" --shop demo.myshopify.com "$2" 2>&1 || true
}

# A fresh stock change each run (the sample payload's, with a new quantity and timestamp), so the
# demo shows a new effect even against a database that kept the previous run's.
LEVEL=$(mktemp)
printf '{"inventory_item_id":271878346596884015,"location_id":24826418,"available":%d,"updated_at":"%s","admin_graphql_api_id":"gid://shopify/InventoryLevel/24826418?inventory_item_id=271878346596884015"}' \
  $((RANDOM % 100)) "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" > "$LEVEL"

# A new order id each run, for the same reason.
ORDER=$(mktemp)
sed "s/820982911946154508/$(date +%s%N | cut -c1-18)/g" fixtures/shopify/orders-paid.json > "$ORDER"

echo "1. Signed webhooks, answered 200 only once RabbitMQ confirmed them:"
send inventory_levels/update "$LEVEL"
send orders/paid "$ORDER"
send carts/create fixtures/shopify/orders-paid.json
echo "2. The same changes again (Shopify retries): accepted, applied once:"
send inventory_levels/update "$LEVEL"
send orders/paid "$ORDER"
echo "3. A forged signature: refused, nothing published:"
send orders/paid fixtures/shopify/orders-paid.json not-the-secret

sleep 2
echo
echo "4. Stock in PostgreSQL (worker, one transaction with the outbox row):"
psql -h 127.0.0.1 -U postgres -d test -Atc \
  "SELECT '  item ' || inventory_item_id || ' @ location ' || location_id || ': available ' || available || ', version ' || version FROM warehouse_stock ORDER BY updated_at DESC LIMIT 3" 2>/dev/null \
  || echo "  (psql not available)"
echo "5. What the ERP received through the outbox relay (sandbox):"
curl -fsS "http://$HOOKLINE_SANDBOX_ADDR/_sandbox/erp/requests" -o /tmp/hookline-demo-erp.json
python3 - /tmp/hookline-demo-erp.json <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))[-3:]:
    p = r["body"]["payload"]
    print(f"  {r['idempotency_key']}: item {p['inventory_item_id']} available {p['available']} (version {p['version']}) -> {r['answered']}")
PY
echo "6. Invoices in sevDesk (sandbox) for the paid order — one, however often it was delivered:"
curl -fsS "http://$HOOKLINE_SANDBOX_ADDR/_sandbox/sevdesk/invoices" -o /tmp/hookline-demo-invoices.json
python3 - /tmp/hookline-demo-invoices.json <<'PY'
import json, sys
for i in json.load(open(sys.argv[1])):
    print(f"  {i['invoice_number']} ({i['customer_internal_note']}): status {i['status']}, paid {i['paid_amount']} {i['currency']}, {len(i['positions'])} positions")
PY
echo "7. Queues (carts/create is kept in hookline.unrouted, nothing dead-lettered):"
if curl -fsS -u guest:guest "http://127.0.0.1:15672/api/queues/%2f?columns=name,messages" -o /tmp/hookline-demo-queues.json 2>/dev/null; then
  python3 - /tmp/hookline-demo-queues.json <<'PY'
import json, sys
for q in json.load(open(sys.argv[1])):
    if q["name"].startswith("hookline.") and ".wait." not in q["name"]:
        print(f"  {q['name']:<24} {q.get('messages', 0)}")
PY
  echo "  (the management API refreshes counts every few seconds)"
fi
