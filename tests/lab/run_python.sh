#!/bin/sh
# Runs a Python test script with Debian's /usr/bin/python3 (which has python3-yaml), whatever
# python3 comes first on PATH. Usage: run_python.sh SCRIPT [ARGS...]
set -e
# ip, nft, sysctl and conntrack live in sbin, which a test environment's PATH may lack.
PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export PATH
script="$1"
shift
exec /usr/bin/python3 -B -u "$script" "$@"
