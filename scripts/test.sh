#!/usr/bin/env bash
# `make test`: every test of the workspace, the Prometheus alert rules' unit tests (promtool),
# the offline checks of the deployment files (scripts/check-deploy.sh, each check counted as one
# test), the short chaos run (hookline-chaos --short, each scenario counted as one test; it runs
# last and alone, because two of its scenarios restart the shared RabbitMQ and PostgreSQL), then
# one closing line with the totals (cargo prints one summary per test binary, the last
# of which is often a doc-test run of 0).
set -uo pipefail
cd "$(dirname "$0")/.."
# Binaries the tests start may meet development values (the sandbox's sevDesk token).
export HOOKLINE_DEV=${HOOKLINE_DEV:-1}
log=$(mktemp) deploy_log=$(mktemp)
trap 'rm -f "$log" "$deploy_log"' EXIT
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

rules_passed=0 rules_failed=0
if command -v promtool >/dev/null 2>&1; then
  echo "promtool: deploy/prometheus/alerts.yml"
  if promtool check rules deploy/prometheus/alerts.yml && (cd deploy/prometheus && promtool test rules alerts_test.yml); then
    rules_passed=1
  else
    rules_failed=1
    status=1
  fi
else
  echo "promtool not found (Debian package prometheus): alert rule tests skipped"
fi

bash scripts/check-deploy.sh | tee "$deploy_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
deploy_passed=$(grep -c '^ok ' "$deploy_log")
deploy_failed=$(grep -c '^FAIL ' "$deploy_log")

chaos_log=$(mktemp)
trap 'rm -f "$log" "$deploy_log" "$chaos_log"' EXIT
chaos_passed=0 chaos_failed=0
if cargo build -q -p hookline-chaos -p hookline-ingestor -p hookline-worker; then
  ./target/debug/hookline-chaos --short 2>&1 | tee "$chaos_log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # A row with 0 lost and 0 duplicated that settled passes.
  chaos_passed=$(awk -F'|' 'NF > 10 && $2 !~ /scenario|---/ && $8+0 == 0 && $9+0 == 0 && $11 !~ /never/' "$chaos_log" | wc -l)
  chaos_rows=$(awk -F'|' 'NF > 10 && $2 !~ /scenario|---/' "$chaos_log" | wc -l)
  chaos_failed=$((11 - chaos_passed))
  [ "$chaos_rows" -eq 11 ] || status=1
else
  chaos_failed=1
  status=1
fi

awk -v rp="$((rules_passed + deploy_passed + chaos_passed))" -v rf="$((rules_failed + deploy_failed + chaos_failed))" '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { printf "tests: %d passed, %d failed\n", p + rp, f + rf }' "$log"
exit "$status"
