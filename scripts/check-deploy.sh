#!/usr/bin/env bash
# Offline checks of the deployment files (deploy/, docker-compose.yml): one line per check, then a
# line of totals; exits non-zero when a check failed. A check whose validator is not installed is
# skipped with a message, never passed. `make test` runs it after the cargo tests (scripts/test.sh).
#
# Validators: Python tools in .venv-deploy/ (created by .ci/run: kubectl for `kubectl kustomize`,
# kubernetes-validate, check-jsonschema, jsonschema, PyYAML) and promtool (Debian's prometheus).
# Without the venv, python3 runs the checks it can. See deploy/README.md, "Validating".
set -uo pipefail
cd "$(dirname "$0")/.."

venv=.venv-deploy
# The venv must never be committed: it carries its own .gitignore (.ci/run writes it; a venv made
# by hand gets it here).
if [ -d "$venv" ] && [ ! -f "$venv/.gitignore" ]; then echo '*' > "$venv/.gitignore"; fi
if [ -x "$venv/bin/python" ]; then
  python=$venv/bin/python
  export PATH="$PWD/$venv/bin:$PATH"
else
  python=python3
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

if "$python" -c 'import yaml, jsonschema' 2>/dev/null; then
  "$python" deploy/check_deploy.py | tee "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "skip deploy checks: $python lacks PyYAML/jsonschema (run .ci/run, or: python3 -m venv $venv && $venv/bin/pip install pyyaml jsonschema)" | tee "$log"
fi

# promtool resolves rule_files relative to the config, so this checks alerts.yml too.
if command -v promtool >/dev/null 2>&1; then
  if out=$(promtool check config deploy/prometheus/prometheus.yml 2>&1); then
    echo "ok   promtool: deploy/prometheus/prometheus.yml and its rule file are valid ($(promtool --version 2>&1 | head -1))" | tee -a "$log"
  else
    echo "FAIL promtool: $(echo "$out" | tr '\n' ' ')" | tee -a "$log"
    status=1
  fi
else
  echo "skip promtool: not found (Debian package prometheus); prometheus.yml not checked" | tee -a "$log"
fi

awk '/^ok /{p++} /^FAIL /{f++} /^skip/{s++} END {printf "deploy checks: %d passed, %d failed, %d skipped\n", p, f, s}' "$log"
exit "$status"
