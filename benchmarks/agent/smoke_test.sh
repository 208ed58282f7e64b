#!/bin/bash
# Smoke run of the agent benchmark: run.py at a tiny size; checks that the agent started, every
# RPC succeeded and the results hold memory and churn numbers. Asserts nothing about time.
# Needs root (unshare --net); when not root it fails with the reason, unless
# NETPOL_LAB_ALLOW_SKIP=1, then it reports a visible skip (a failure still when NETPOL_CI=1).
set -euo pipefail
if [[ $(id -u) != 0 ]]; then
  reason="the agent benchmark needs root (network namespaces, nftables)"
  if [[ "${NETPOL_CI:-}" == 1 ]]; then
    echo "FAILED: $reason (NETPOL_CI=1 makes a skip a failure)" >&2
    exit 1
  fi
  if [[ "${NETPOL_LAB_ALLOW_SKIP:-}" == 1 ]]; then
    echo "SKIPPED: $reason"
    if [[ -n "${XML_OUTPUT_FILE:-}" ]]; then
      printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="1" skipped="1"><testsuite name="%s" tests="1" skipped="1"><testcase name="%s"><skipped message="%s"/></testcase></testsuite></testsuites>\n' \
        "${TEST_TARGET:-smoke}" "${TEST_TARGET:-smoke}" "$reason" > "$XML_OUTPUT_FILE"
    fi
    exit 0
  fi
  echo "FAILED: $reason; run as root, or set NETPOL_LAB_ALLOW_SKIP=1 to skip visibly" >&2
  exit 1
fi
script="$1"; shift
out="${TEST_TMPDIR:-$(mktemp -d)}/agent.json"
/usr/bin/python3 "$script" "$@" --out "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
res = data["results"]
bad = [r["tier"] for r in res if r["loaded"]["VmRSS"] <= 0 or r["load"]["yaml_bytes"] <= 0]
churn = [r["churn"] for r in res if "churn" in r]
if bad or not res or len(churn) != 1 or churn[0]["sent"] < 2 or churn[0]["sent"] % 2:
    print("FAILED: incomplete results: %s" % json.dumps(data)[:2000])
    sys.exit(1)
print("OK: tiers %s, churn %d events" % ([r["tier"] for r in res], churn[0]["sent"]))
PY
