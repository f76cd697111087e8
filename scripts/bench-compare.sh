#!/usr/bin/env bash
# Side-by-side benchmark: Portcullis against Mosquitto and rumqttd on this
# machine's loopback, in interleaved rounds, one table at the end.
#
#   bash scripts/bench-compare.sh                      # every workload, 3 rounds
#   bash scripts/bench-compare.sh --quick              # smoke test, about a minute
#   bash scripts/bench-compare.sh --rounds 5 --workloads qos1,fanout --brokers portcullis,rumqttd
#   bash scripts/bench-compare.sh --no-build --out /tmp/run1
#
# This wrapper installs what is missing (Debian's mosquitto as root;
# `cargo install rumqttd`, without --locked, which fails to build on
# current toolchains), builds portcullis and portcullis-bench in release
# (skip with --no-build), raises the open-file limit for the 19,000
# connection workload, and hands over to scripts/bench_compare.py, which
# starts the brokers, runs the workloads and prints the table. Every other
# option is that script's (`--help`).
set -euo pipefail
cd "$(dirname "$0")/.."

brokers="portcullis,mosquitto,rumqttd"
build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --brokers) brokers="${2:-}"; args+=("$1" "${2:-}"); shift ;;
    --brokers=*) brokers="${1#--brokers=}"; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done
wants() { [[ ",$brokers," == *",$1,"* ]]; }

# 19,000 idle connections need 19,000 descriptors in the broker and as
# many in the load tool; both inherit this limit.
want_fds=20000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
  echo "warning: the hard open-file limit is $hard; the 19,000-connection workload will fail" >&2
  want_fds=$hard
fi
ulimit -n "$want_fds"

install_debian() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: install it (Debian: apt-get install $*) or run as root" >&2
    exit 1
  fi
  echo "==> installing $*" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if wants mosquitto && [ ! -x "$mosquitto_bin" ]; then
  install_debian mosquitto
  mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi
# Makes the shared password file (Mosquitto's format, which Portcullis
# reads too); without it Portcullis' own `passwd --hash pbkdf2` is used.
mosquitto_passwd=$(command -v mosquitto_passwd || true)

rumqttd_bin=$(command -v rumqttd || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rumqttd")
if wants rumqttd && [ ! -x "$rumqttd_bin" ]; then
  echo "==> cargo install rumqttd" >&2
  cargo install rumqttd
fi

# The cluster workloads (cluster11, clusterfan) start their own NATS
# servers: the pinned nats-server that scripts/services/nats.sh installs
# into its cache directory (a private virtualenv).
if wants portcullis && [ -z "${PORTCULLIS_NATS_SERVER:-}" ]; then
  need_packages() { install_debian "$@"; }
  # shellcheck source=services/nats.sh
  . scripts/services/nats.sh
  PORTCULLIS_NATS_SERVER=$(install_nats)
  export PORTCULLIS_NATS_SERVER
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$build" = 1 ]; then
  echo "==> cargo build --release -p portcullis -p portcullis-bench" >&2
  cargo build --release -p portcullis -p portcullis-bench
fi
for bin in portcullis portcullis-bench; do
  if [ ! -x "$target/release/$bin" ]; then
    echo "missing $target/release/$bin (run without --no-build)" >&2
    exit 1
  fi
done

passwd_args=()
[ -n "$mosquitto_passwd" ] && passwd_args=(--mosquitto-passwd "$mosquitto_passwd")
exec python3 -B scripts/bench_compare.py \
  --bench "$target/release/portcullis-bench" \
  --portcullis "$target/release/portcullis" \
  --mosquitto "$mosquitto_bin" \
  --rumqttd "$rumqttd_bin" \
  "${passwd_args[@]}" \
  "${args[@]}"
