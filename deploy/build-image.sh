#!/bin/sh
# Builds the netpol image from this checkout: the release binaries with Bazel, staged with
# install-cni.sh into a temporary build context, then `docker build` (or $DOCKER: podman,
# buildah bud) with deploy/Dockerfile.
#   deploy/build-image.sh [TAG]        (default netpol:latest, what deploy/*.yaml name)
# Then push TAG to a registry the nodes pull from, or load it on each node
# (`docker save TAG | ctr -n k8s.io images import -`), and point the manifests at it.
set -eu
cd "$(dirname "$0")/.."
tag=${1:-netpol:latest}
docker=${DOCKER:-docker}
bazel build -c opt //agent:netpol-agent //cni:netpol-cni //cli:netpolctl
bin=$(bazel info -c opt bazel-bin)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin/agent/netpol-agent" "$bin/cni/netpol-cni" "$bin/cli/netpolctl" deploy/install-cni.sh "$ctx/"
cp deploy/Dockerfile "$ctx/Dockerfile"
"$docker" build -t "$tag" "$ctx"
echo "built $tag"
