# PostgreSQL for the postgres backend tests (tests/tests/backend_postgres.rs),
# sourced by scripts/services.sh: a private cluster in $SVC_DIR/postgres on
# a free loopback port, TLS on (the test CA's server pair), and two
# databases loaded from tests/fixtures/sql: `emqx` (EMQX 5's tables) and
# `emqttd` (emqttd 1.x's).
#
# Roles: `portcullis` (password, with or without TLS), `portcullis_tls`
# (password, TLS only) and `portcullis-test` (client certificate only:
# the test CA's client.pem, CN=portcullis-test); each may read both
# databases. PostgreSQL refuses to run as root, so initdb and postgres run
# as the `postgres` user (setpriv).
#
# Exports:
#   PORTCULLIS_TEST_PG_HOST, PORTCULLIS_TEST_PG_PORT
#   PORTCULLIS_TEST_PG_URL        postgres://portcullis@127.0.0.1:PORT/emqx (no password)
#   PORTCULLIS_TEST_PG_PASSWORD   password of portcullis and portcullis_tls
#   PORTCULLIS_TEST_PG_ADMIN_URL  superuser URL (with its password) for psql
#   PORTCULLIS_TEST_PG_START      script: start the server (again) and wait until it is ready
#   PORTCULLIS_TEST_PG_STOP       script: stop it (SIGINT, by the PID in postmaster.pid)
# A test may stop and start the server; it must leave it running. Whatever
# runs at the end is stopped by a guard process registered with services.sh.

start_postgres() {
  need_packages postgresql
  local bin dir port pw admin_pw fixtures tls
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  dir="$SVC_DIR/postgres"
  port="$(free_port)"
  pw="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  admin_pw="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  fixtures="$ROOT/tests/fixtures/sql"
  tls="$PORTCULLIS_TEST_TLS_DIR"
  local as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)

  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  printf '%s\n' "$admin_pw" > "$dir/admin.pw"
  chown postgres:postgres "$dir/admin.pw"
  chmod 600 "$dir/admin.pw"
  "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/admin.pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$SVC_DIR/postgres-initdb.log" 2>&1
  rm -f "$dir/admin.pw"
  # The server's key must belong to the server's user and be private.
  install -o postgres -g postgres -m 600 "$tls/server.key" "$dir/server.key"
  cat > "$dir/data/pg_hba.conf" <<HBA
local     all  all                           trust
hostssl   all  portcullis-test  127.0.0.1/32  cert
host      all  portcullis-test  127.0.0.1/32  reject
hostnossl all  portcullis_tls   127.0.0.1/32  reject
host      all  all              127.0.0.1/32  scram-sha-256
HBA
  chown postgres:postgres "$dir/data/pg_hba.conf"

  cat > "$dir/start.sh" <<START
#!/usr/bin/env bash
# Starts the test PostgreSQL in the background and waits until it is ready.
set -euo pipefail
setsid ${as_pg[*]} "$bin/postgres" -D "$dir/data" -c port=$port -c listen_addresses=127.0.0.1 \\
  -c unix_socket_directories="$dir" -c ssl=on -c ssl_cert_file="$tls/server.pem" \\
  -c ssl_key_file="$dir/server.key" -c ssl_ca_file="$tls/ca.pem" -c max_connections=300 \\
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \\
  >>"$SVC_DIR/postgres.log" 2>&1 </dev/null &
for _ in \$(seq 1 100); do
  "$bin/pg_isready" -q -h 127.0.0.1 -p $port && exit 0
  sleep 0.1
done
echo "postgres did not become ready within 10s; see $SVC_DIR/postgres.log" >&2
exit 1
START
  cat > "$dir/stop.sh" <<STOP
#!/usr/bin/env bash
# Stops the test PostgreSQL (SIGINT: fast shutdown) and waits until it is gone.
pid="\$(head -1 "$dir/data/postmaster.pid" 2>/dev/null)" || exit 0
[ -n "\$pid" ] || exit 0
# A stale pid file may name someone else's process by now: check.
grep -qF -- "$dir/data" "/proc/\$pid/cmdline" 2>/dev/null || exit 0
kill -INT "\$pid" 2>/dev/null || exit 0
for _ in \$(seq 1 100); do
  kill -0 "\$pid" 2>/dev/null || exit 0
  sleep 0.1
done
echo "postgres (\$pid) did not stop within 10s" >&2
exit 1
STOP
  chmod 755 "$dir/start.sh" "$dir/stop.sh"

  bash "$dir/start.sh"
  # The guard stops whichever postgres runs at the end (a test may have
  # restarted it, so its PID is read then, from postmaster.pid).
  bash -c "trap 'bash \"$dir/stop.sh\"; exit 0' TERM; while :; do sleep 1 & wait \$!; done" \
    </dev/null >/dev/null 2>&1 &
  register_pid $! TERM

  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
  "${psql[@]}" -d postgres >/dev/null <<SQL
CREATE ROLE portcullis LOGIN PASSWORD '$pw';
CREATE ROLE portcullis_tls LOGIN PASSWORD '$pw';
CREATE ROLE "portcullis-test" LOGIN;
CREATE DATABASE emqx;
CREATE DATABASE emqttd;
SQL
  local db
  for db in emqx emqttd; do
    "${psql[@]}" -d "$db" -f "$fixtures/postgres-$db.sql" -f "$fixtures/$db-data.sql" \
      -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO portcullis, portcullis_tls, \"portcullis-test\"" >/dev/null
  done

  export_var PORTCULLIS_TEST_PG_HOST 127.0.0.1
  export_var PORTCULLIS_TEST_PG_PORT "$port"
  export_var PORTCULLIS_TEST_PG_URL "postgres://portcullis@127.0.0.1:$port/emqx"
  export PORTCULLIS_TEST_PG_PASSWORD="$pw"
  export PORTCULLIS_TEST_PG_ADMIN_URL="postgres://postgres:$admin_pw@127.0.0.1:$port/postgres"
  export_var PORTCULLIS_TEST_PG_START "$dir/start.sh"
  export_var PORTCULLIS_TEST_PG_STOP "$dir/stop.sh"
}
