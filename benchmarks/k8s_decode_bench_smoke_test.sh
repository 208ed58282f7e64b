#!/bin/bash
# Runs k8s_decode_bench once per benchmark on one page and checks that every benchmark decoded
# its objects without error. Asserts nothing about time.
set -euo pipefail
out="$("$1" --pods=500 --policies=500 --benchmark_min_time=0 --benchmark_format=json \
  2>/dev/null | sed -n '/^{/,$p')"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
bs = r["benchmarks"]
ok = len(bs) == 3 and all("error_occurred" not in b and b["objects"] > 0 for b in bs)
print(("OK: " if ok else "FAILED: ") + ", ".join("%s %s" % (b["name"], b.get("error_message", "ok")) for b in bs))
sys.exit(0 if ok else 1)
PY
