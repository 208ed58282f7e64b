#!/bin/bash
# Runs wide_policy_bench on a small large rule (compile only: no root needed) and checks its one
# line: 40 blocks + 40 ports are 80 elements of the rule's own sets, plus the pod's dispatch and
# self entries. Asserts nothing about time.
set -euo pipefail
out="$("$1" --blocks=40 --ports=40 --commit=false)"
echo "$out"
[[ "$out" == *"blocks=40 ports=40 elements=82 "* ]] || { echo "FAILED: unexpected output" >&2; exit 1; }
