#!/bin/bash
# Runs one benchmark program at the smallest tier with tiny counts and checks that every
# benchmark it registered ran without error. Asserts nothing about time.
#
#   smoke_test.sh [--root] BINARY EXPECTED_NAME... -- ARGS...
# --root: the program needs root; when not root the test fails with the reason, unless
# NETPOL_LAB_ALLOW_SKIP=1, then it reports a visible skip (a failure still when NETPOL_CI=1).
set -euo pipefail
need_root=0
if [[ "${1:-}" == "--root" ]]; then need_root=1; shift; fi
bin="$1"; shift
expected=()
while [[ $# -gt 0 && "$1" != "--" ]]; do expected+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
if [[ $need_root == 1 && $(id -u) != 0 ]]; then
  reason="$(basename "$bin") needs root (network namespaces, nftables)"
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
out="${TEST_TMPDIR:-$(mktemp -d)}/smoke.json"
"$bin" "$@" --benchmark_out="$out" --benchmark_out_format=json
/usr/bin/python3 - "$out" "${expected[@]}" <<'PY'
import json, sys
path, expected = sys.argv[1], sys.argv[2:]
data = json.load(open(path))
names = [b["name"] for b in data["benchmarks"]]
bad = [b["name"] + ": " + b.get("error_message", "") for b in data["benchmarks"] if b.get("error_occurred")]
missing = [e for e in expected if not any(n.startswith(e) for n in names)]
if bad or missing or not names:
    print("FAILED: errors=%s missing=%s ran=%s" % (bad, missing, names))
    sys.exit(1)
print("OK: %d benchmarks ran: %s" % (len(names), ", ".join(names)))
PY
