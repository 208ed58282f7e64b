#!/bin/bash
# Runs store_bench at T1 with a few events and checks that it reports both paths. Asserts
# nothing about time.
set -euo pipefail
out="$("$1" --tier=T1 --events=6 --dir="${TEST_TMPDIR:-/tmp}")"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
ok = r["events"] == 6 and r["pods"] > 0 and all(
    r[k]["wall_p50_ms"] > 0 for k in ("journal", "rewrite"))
print(("OK: " if ok else "FAILED: ") + sys.argv[1])
sys.exit(0 if ok else 1)
PY
