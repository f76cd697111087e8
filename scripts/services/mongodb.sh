# A MongoDB-wire server for the MongoDB backend tests: SecantusDB (PyPI,
# pinned), installed with pymongo in a virtualenv under a cache directory
# ($PORTCULLIS_CACHE_DIR, default ~/.cache/portcullis), never system-wide.
# It advertises itself as the single-node replica set `secantus`, so both
# single-server (directConnection=true) and replica-set URIs work.
# Data: tests/fixtures/mongodb/data.json, loaded by load.py.
#
# Exports:
#   PORTCULLIS_TEST_MONGO_URL        mongodb://127.0.0.1:PORT  (SCRAM auth on)
#   PORTCULLIS_TEST_MONGO_USER / PORTCULLIS_TEST_MONGO_PASSWORD
#       a user in `admin` that may read the test database
#   PORTCULLIS_TEST_MONGO_TLS_URL    mongodb://127.0.0.1:PORT2 (TLS with the
#       test CA's server certificate; no auth)
#   PORTCULLIS_TEST_MONGO_DB         mqtt
#   PORTCULLIS_TEST_MONGO_SPAWN      starts a private server with the same
#       data (no auth) for a test that stops, freezes or restarts it:
#       `$PORTCULLIS_TEST_MONGO_SPAWN [PORT]` prints `PID PORT` once it
#       accepts. The test stops that PID itself; whatever is left is stopped
#       (by PID) when the services script exits.
SECANTUS_VERSION=0.7.0b3
PYMONGO_VERSION=4.10.1

start_mongodb() {
  local cache="${PORTCULLIS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}"
  local venv="$cache/secantus-$SECANTUS_VERSION"
  need_packages iproute2 # ss: the spawn helper checks who listens
  if ! "$venv/bin/python" -c "import secantus, pymongo" 2>/dev/null; then
    echo "==> services: installing SecantusDB==$SECANTUS_VERSION into $venv" >&2
    mkdir -p "$cache"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      need_packages python3-venv
      /usr/bin/python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check \
      "SecantusDB==$SECANTUS_VERSION" "pymongo==$PYMONGO_VERSION" >&2
  fi
  local dir="$SVC_DIR/mongodb" tls="$PORTCULLIS_TEST_TLS_DIR"
  mkdir -p "$dir"
  cp "$ROOT/tests/fixtures/mongodb/data.json" "$ROOT/tests/fixtures/mongodb/load.py" "$dir/"
  # instance.sh NAME PORT [--user U P] [--tls] : fresh storage, data loaded,
  # then (re)started with auth and/or TLS when asked; prints the PID.
  cat > "$dir/instance.sh" <<INSTANCE
#!/usr/bin/env bash
set -euo pipefail
here="$dir"
py="$venv/bin/python"
name=\$1 port=\$2; shift 2
user="" pass="" tls=""
while [ \$# -gt 0 ]; do
  case "\$1" in
    --user) user=\$2; pass=\$3; shift 3 ;;
    --tls) tls=1; shift ;;
    *) echo "instance.sh: unknown option \$1" >&2; exit 2 ;;
  esac
done
d="\$here/\$name"
rm -rf "\$d"; mkdir -p "\$d"
start() {
  "\$py" -m secantus --host 127.0.0.1 --port "\$port" --storage-path "\$d/data" --log-level WARNING "\$@" \
    >>"\$d/server.log" 2>&1 </dev/null &
  pid=\$!
  echo "\$pid" >> "\$here/pids"
  # Ready when this server (not whatever else may hold the port) listens.
  for _ in \$(seq 1 300); do
    if ss -Hltnp "sport = :\$port" 2>/dev/null | grep -q "pid=\$pid,"; then return 0; fi
    kill -0 "\$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "SecantusDB did not listen on 127.0.0.1:\$port" >&2; tail -20 "\$d/server.log" >&2
  kill "\$pid" 2>/dev/null || true
  exit 1
}
stop() {
  kill -TERM "\$pid" 2>/dev/null || true
  for _ in \$(seq 1 100); do kill -0 "\$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "\$pid" 2>/dev/null || true
}
start
if [ -n "\$user" ]; then
  "\$py" "\$here/load.py" "mongodb://127.0.0.1:\$port/?directConnection=true" mqtt "\$here/data.json" --user "\$user" "\$pass"
else
  "\$py" "\$here/load.py" "mongodb://127.0.0.1:\$port/?directConnection=true" mqtt "\$here/data.json"
fi
if [ -n "\$user" ] || [ -n "\$tls" ]; then
  stop
  args=()
  [ -n "\$user" ] && args+=(--auth)
  [ -n "\$tls" ] && args+=(--tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" --tls-ca-file "$tls/ca.pem")
  start "\${args[@]}"
fi
echo "\$pid"
INSTANCE
  cat > "$dir/spawn.sh" <<'SPAWN'
#!/usr/bin/env bash
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')}
pid=$("$here/instance.sh" "spawn-$port-$$" "$port")
echo "$pid $port"
SPAWN
  chmod 755 "$dir/instance.sh" "$dir/spawn.sh"
  chain_exit_trap mongodb_stop_spawned
  local port tls_port pid tls_pid
  port=$(free_port)
  pid=$("$dir/instance.sh" shared "$port" --user portcullis mongo-test-pw)
  register_pid "$pid"
  tls_port=$(free_port)
  tls_pid=$("$dir/instance.sh" tls "$tls_port" --tls)
  register_pid "$tls_pid"
  export_var PORTCULLIS_TEST_MONGO_URL "mongodb://127.0.0.1:$port"
  export_var PORTCULLIS_TEST_MONGO_USER portcullis
  export_var PORTCULLIS_TEST_MONGO_PASSWORD mongo-test-pw
  export_var PORTCULLIS_TEST_MONGO_TLS_URL "mongodb://127.0.0.1:$tls_port"
  export_var PORTCULLIS_TEST_MONGO_DB mqtt
  export_var PORTCULLIS_TEST_MONGO_SPAWN "$dir/spawn.sh"
}

# Stops every server the instance script started that is still running
# (spawned by tests, or left from provisioning), waking frozen ones first.
mongodb_stop_spawned() {
  local f="$SVC_DIR/mongodb/pids" p
  [ -f "$f" ] || return 0
  while read -r p; do
    kill -s TERM "$p" 2>/dev/null && kill -s CONT "$p" 2>/dev/null || true
  done < "$f"
  while read -r p; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -s KILL "$p" 2>/dev/null || true
  done < "$f"
}

# chain_exit_trap CMD (also defined by ldap.sh): runs CMD on exit before
# whatever the EXIT trap already does.
if ! declare -F chain_exit_trap >/dev/null; then
  chain_exit_trap() {
    local prev
    prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
    # shellcheck disable=SC2064
    trap "$1; ${prev:-:}" EXIT
  }
fi
