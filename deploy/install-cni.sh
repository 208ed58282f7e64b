#!/bin/sh
# install-cni.sh install|uninstall — puts netpol-cni into a node's CNI chain, or takes it out.
#
# Runs in the netpol DaemonSet's init container (install) and in deploy/uninstall/ (uninstall),
# with the host's CNI directories mounted. By hand on a node:
#   CNI_CONF_DIR=/etc/cni/net.d CNI_BIN_DIR=/opt/cni/bin NETPOL_CNI_BINARY=./netpol-cni \
#     ./install-cni.sh install
#
# install: copies netpol-cni into CNI_BIN_DIR and writes CNI_CONF_DIR/00-netpol.conflist, which
#   is the node's network configuration (the first other *.conflist, *.conf or *.json in lexical
#   order, the file the runtime would use, which must contain a `flannel` plugin) with
#   netpol-cni appended as the last plugin. The Flannel file itself is never modified: the new
#   file sorts first, so the runtime uses it instead. Running it again gives the same files
#   (a netpol-cni entry already in the source is replaced, not doubled).
# uninstall: removes 00-netpol.conflist and CNI_BIN_DIR/netpol-cni; the runtime falls back to
#   the Flannel file, so the node is exactly as it was before install.
#
# Environment (defaults in brackets):
#   CNI_CONF_DIR [/host/etc/cni/net.d]    CNI_BIN_DIR [/host/opt/cni/bin]
#   NETPOL_CNI_BINARY [/opt/netpol/bin/netpol-cni]   the plugin to copy
#   NETPOL_CNI_CONF_NAME [00-netpol.conflist]        the file written
#   NETPOL_CNI_SOURCE_CONF [the first other file]    chain this file instead (any plugins)
#   NETPOL_AGENT_SOCKET [/run/netpol/agent.sock]     NETPOL_CNI_TIMEOUT [10] (seconds)
#   NETPOL_CNI_WAIT_SECONDS [300]  how long install waits for Flannel to write its file
# Needs jq. Exit status 0 on success; 1 with a message naming the file on any error, in which
# case nothing was changed.
set -eu

CNI_CONF_DIR=${CNI_CONF_DIR:-/host/etc/cni/net.d}
CNI_BIN_DIR=${CNI_BIN_DIR:-/host/opt/cni/bin}
NETPOL_CNI_BINARY=${NETPOL_CNI_BINARY:-/opt/netpol/bin/netpol-cni}
NETPOL_CNI_CONF_NAME=${NETPOL_CNI_CONF_NAME:-00-netpol.conflist}
NETPOL_CNI_SOURCE_CONF=${NETPOL_CNI_SOURCE_CONF:-}
NETPOL_AGENT_SOCKET=${NETPOL_AGENT_SOCKET:-/run/netpol/agent.sock}
NETPOL_CNI_TIMEOUT=${NETPOL_CNI_TIMEOUT:-10}
NETPOL_CNI_WAIT_SECONDS=${NETPOL_CNI_WAIT_SECONDS:-300}

log() { echo "install-cni: $*" >&2; }
die() { log "$*"; exit 1; }

# The network configuration files the runtime considers, in the order it considers them
# (libcni's ConfFiles: these extensions, sorted by name), ours left out.
conf_files() {
  for f in "$CNI_CONF_DIR"/*.conf "$CNI_CONF_DIR"/*.conflist "$CNI_CONF_DIR"/*.json; do
    [ -f "$f" ] || continue
    [ "$(basename "$f")" = "$NETPOL_CNI_CONF_NAME" ] && continue
    basename "$f"
  done | LC_ALL=C sort
}

# The file to chain into: NETPOL_CNI_SOURCE_CONF, else the first one (waiting for Flannel to
# write it), which must have a flannel plugin.
source_conf() {
  if [ -n "$NETPOL_CNI_SOURCE_CONF" ]; then
    [ -f "$NETPOL_CNI_SOURCE_CONF" ] || die "NETPOL_CNI_SOURCE_CONF=$NETPOL_CNI_SOURCE_CONF: no such file"
    echo "$NETPOL_CNI_SOURCE_CONF"
    return
  fi
  waited=0
  while :; do
    first=$(conf_files | head -n 1)
    [ -n "$first" ] && break
    if [ "$waited" -ge "$NETPOL_CNI_WAIT_SECONDS" ]; then
      die "no network configuration in $CNI_CONF_DIR after ${waited}s (is Flannel running on this node?)"
    fi
    [ "$waited" -eq 0 ] && log "waiting for Flannel to write its network configuration into $CNI_CONF_DIR"
    sleep 2
    waited=$((waited + 2))
  done
  f="$CNI_CONF_DIR/$first"
  jq -e '[(.plugins // [.])[] | .type] | index("flannel") != null' "$f" >/dev/null 2>&1 ||
    die "$f is this node's network configuration (the first in $CNI_CONF_DIR) but has no flannel plugin; set NETPOL_CNI_SOURCE_CONF to chain another file"
  echo "$f"
}

install() {
  command -v jq >/dev/null || die "jq is not installed"
  [ -d "$CNI_CONF_DIR" ] || die "CNI_CONF_DIR=$CNI_CONF_DIR: no such directory"
  [ -d "$CNI_BIN_DIR" ] || die "CNI_BIN_DIR=$CNI_BIN_DIR: no such directory"
  [ -x "$NETPOL_CNI_BINARY" ] || die "NETPOL_CNI_BINARY=$NETPOL_CNI_BINARY: not an executable file"
  case "$NETPOL_CNI_TIMEOUT" in
    '' | *[!0-9]*) die "NETPOL_CNI_TIMEOUT=$NETPOL_CNI_TIMEOUT: not a number of seconds" ;;
  esac
  src=$(source_conf)
  # Everything is checked and computed before the first write.
  if ! out=$(jq --arg sock "$NETPOL_AGENT_SOCKET" --argjson timeout "$NETPOL_CNI_TIMEOUT" '
      if type != "object" then error("not a JSON object") else . end
      | if (.cniVersion | type) != "string" then error("no cniVersion") else . end
      | if ([.cniVersion] | inside(["0.3.0", "0.3.1", "0.4.0", "1.0.0"]) | not)
        then error("cniVersion \(.cniVersion) is not one netpol-cni reads (0.3.0, 0.3.1, 0.4.0, 1.0.0)")
        else . end
      | if has("plugins") then .
        else {cniVersion: .cniVersion, name: .name, plugins: [del(.cniVersion, .name)]} end
      | if (.plugins | type) != "array" or (.plugins | length) == 0 then error("no plugins") else . end
      | .plugins |= (map(select(.type != "netpol-cni"))
                     + [{type: "netpol-cni", agentSocket: $sock, timeoutSeconds: $timeout}])
    ' "$src" 2>&1); then
    die "$src: $(echo "$out" | sed 's/^jq: error ([^)]*): //' | head -n 1)"
  fi
  first=$( (conf_files; echo "$NETPOL_CNI_CONF_NAME") | LC_ALL=C sort | head -n 1)
  [ "$first" = "$NETPOL_CNI_CONF_NAME" ] ||
    die "$CNI_CONF_DIR/$first sorts before $NETPOL_CNI_CONF_NAME, so the runtime would not use netpol's chain; set NETPOL_CNI_CONF_NAME to a name that sorts first"

  # Binary first (the configuration must never name a plugin that is not there), each by
  # rename so the runtime never reads half a file.
  cp "$NETPOL_CNI_BINARY" "$CNI_BIN_DIR/.netpol-cni.tmp"
  chmod 0755 "$CNI_BIN_DIR/.netpol-cni.tmp"
  mv -f "$CNI_BIN_DIR/.netpol-cni.tmp" "$CNI_BIN_DIR/netpol-cni"
  printf '%s\n' "$out" >"$CNI_CONF_DIR/.$NETPOL_CNI_CONF_NAME.tmp"
  chmod 0644 "$CNI_CONF_DIR/.$NETPOL_CNI_CONF_NAME.tmp"
  mv -f "$CNI_CONF_DIR/.$NETPOL_CNI_CONF_NAME.tmp" "$CNI_CONF_DIR/$NETPOL_CNI_CONF_NAME"
  log "installed $CNI_BIN_DIR/netpol-cni and $CNI_CONF_DIR/$NETPOL_CNI_CONF_NAME (chained after $src)"
}

uninstall() {
  # Configuration first, so the runtime stops calling the plugin before it goes away.
  rm -f "$CNI_CONF_DIR/$NETPOL_CNI_CONF_NAME" "$CNI_CONF_DIR/.$NETPOL_CNI_CONF_NAME.tmp"
  rm -f "$CNI_BIN_DIR/netpol-cni" "$CNI_BIN_DIR/.netpol-cni.tmp"
  log "removed $CNI_CONF_DIR/$NETPOL_CNI_CONF_NAME and $CNI_BIN_DIR/netpol-cni"
}

case "${1:-}" in
  install) install ;;
  uninstall) uninstall ;;
  *) echo "usage: install-cni.sh install|uninstall" >&2; exit 2 ;;
esac
