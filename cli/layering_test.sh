#!/bin/sh
# Fails when netpolctl's dependency closure ($1, one label a line, from genquery) holds a target
# of the agent (//agent/...). Checks first that the list is the real closure: it must name
# netpolctl itself and the API conversions it does link.
set -eu
deps="$1"
for want in //cli:netpolctl //api:convert; do
  if ! grep -qx "$want" "$deps"; then
    echo "FAIL: $want missing from netpolctl's dependencies ($deps): not a dependency closure" >&2
    exit 1
  fi
done
if grep '^//agent' "$deps" >&2; then
  echo "FAIL: netpolctl depends on the agent targets above; shared code belongs in api/ or engine/" >&2
  exit 1
fi
echo "PASS: $(grep -c '^//' "$deps") targets in netpolctl's closure, none under //agent"
