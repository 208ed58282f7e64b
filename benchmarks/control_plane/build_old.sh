#!/bin/bash
# Builds the binaries benchmarks/control_plane/run.py needs (-c opt) from an older commit, in a
# detached git worktree of its own:
#
#   benchmarks/control_plane/build_old.sh COMMIT DIR     # then: run.py --old DIR/bazel-bin
#
# A commit older than benchmarks/namespace_selector_bench gets this tree's copy of it (its
# source and BUILD target; it uses only compiler::Compile and the model, which the older
# commits have), added to the worktree uncommitted, so both builds run the same benchmark.
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 COMMIT DIR" >&2
  exit 2
fi
commit="$1"
dir="$2"
here="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ ! -e "$dir/.git" ]]; then
  git -C "$here" worktree add "$dir" "$commit" --detach
fi
if [[ ! -e "$dir/benchmarks/namespace_selector_bench.cc" ]]; then
  cp "$here/benchmarks/namespace_selector_bench.cc" "$dir/benchmarks/"
  cat >> "$dir/benchmarks/BUILD.bazel" <<'EOF'

# Added by benchmarks/control_plane/build_old.sh (the newer tree's benchmark).
netpol_cc_binary(
    name = "namespace_selector_bench",
    srcs = ["namespace_selector_bench.cc"],
    deps = [
        "//engine/compiler",
        "//engine/model",
        "@system//:absl",
    ],
)
EOF
fi
cd "$dir"
bazel build -c opt //agent:netpol-agent //cli:netpolctl //benchmarks:compile_bench \
  //benchmarks:namespace_selector_bench
echo "built $(git -C "$dir" rev-parse --short HEAD) in $dir/bazel-bin"
