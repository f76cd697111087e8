# MariaDB for the mysql backend tests (tests/tests/backend_mysql.rs),
# sourced by scripts/services.sh: a private server in $SVC_DIR/mariadb on a
# free loopback port, TLS on (the test CA's server pair), and two databases
# loaded from tests/fixtures/sql: `emqx` (EMQX 5's tables) and `emqttd`
# (emqttd 1.x's, in its utf8mb3 charset).
#
# Users (mysql_native_password, host '%'): `portcullis` (with or without
# TLS), `portcullis_tls` (REQUIRE SSL) and `portcullis-test` (REQUIRE
# SUBJECT '/CN=portcullis-test': the test CA's client certificate); all
# share one password and may read both databases. root logs in over the
# Unix socket (unix_socket authentication).
#
# Exports:
#   PORTCULLIS_TEST_MYSQL_HOST, PORTCULLIS_TEST_MYSQL_PORT
#   PORTCULLIS_TEST_MYSQL_URL       mysql://portcullis@127.0.0.1:PORT/emqx (no password)
#   PORTCULLIS_TEST_MYSQL_PASSWORD  the users' password
#   PORTCULLIS_TEST_MYSQL_ADMIN_CNF option file for `mariadb --defaults-file=… -e SQL` as root
#   PORTCULLIS_TEST_MYSQL_START     script: start the server (again) and wait until it is ready
#   PORTCULLIS_TEST_MYSQL_STOP      script: stop it (SIGTERM, by the PID in its pid file)
# A test may stop and start the server; it must leave it running. Whatever
# runs at the end is stopped by a guard process registered with services.sh.

start_mariadb() {
  need_packages mariadb-server mariadb-client
  local dir port pw fixtures tls
  dir="$SVC_DIR/mariadb"
  port="$(free_port)"
  pw="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  fixtures="$ROOT/tests/fixtures/sql"
  tls="$PORTCULLIS_TEST_TLS_DIR"
  mkdir -p "$dir"
  # `--no-defaults` must come first.
  mariadb-install-db --no-defaults --user=root --datadir="$dir/data" --skip-test-db \
    --auth-root-authentication-method=socket >"$SVC_DIR/mariadb-install.log" 2>&1

  cat > "$dir/start.sh" <<START
#!/usr/bin/env bash
# Starts the test MariaDB in the background and waits until it is ready.
set -euo pipefail
setsid mariadbd --no-defaults --user=root --datadir="$dir/data" --port=$port --bind-address=127.0.0.1 \\
  --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --skip-name-resolve --skip-log-bin \\
  --ssl-ca="$tls/ca.pem" --ssl-cert="$tls/server.pem" --ssl-key="$tls/server.key" \\
  --innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=0 --max-connections=300 \\
  --log-error="$SVC_DIR/mariadb.log" </dev/null >/dev/null 2>&1 &
for _ in \$(seq 1 100); do
  mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -u root ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "mariadb did not become ready within 10s; see $SVC_DIR/mariadb.log" >&2
exit 1
START
  cat > "$dir/stop.sh" <<STOP
#!/usr/bin/env bash
# Stops the test MariaDB (SIGTERM) and waits until it is gone.
pid="\$(cat "$dir/mysqld.pid" 2>/dev/null)" || exit 0
[ -n "\$pid" ] || exit 0
# A stale pid file may name someone else's process by now: check.
grep -qF -- "$dir/data" "/proc/\$pid/cmdline" 2>/dev/null || exit 0
kill -TERM "\$pid" 2>/dev/null || exit 0
for _ in \$(seq 1 150); do
  kill -0 "\$pid" 2>/dev/null || exit 0
  sleep 0.1
done
echo "mariadb (\$pid) did not stop within 15s" >&2
exit 1
STOP
  chmod 755 "$dir/start.sh" "$dir/stop.sh"
  printf '[client]\nuser=root\nsocket=%s\n' "$dir/mysqld.sock" > "$dir/admin.cnf"

  bash "$dir/start.sh"
  # The guard stops whichever mariadbd runs at the end (a test may have
  # restarted it, so its PID is read then, from the pid file).
  bash -c "trap 'bash \"$dir/stop.sh\"; exit 0' TERM; while :; do sleep 1 & wait \$!; done" \
    </dev/null >/dev/null 2>&1 &
  register_pid $! TERM

  local admin=(mariadb --defaults-file="$dir/admin.cnf")
  "${admin[@]}" <<SQL
CREATE DATABASE emqx;
CREATE DATABASE emqttd;
CREATE USER 'portcullis'@'%' IDENTIFIED BY '$pw';
CREATE USER 'portcullis_tls'@'%' IDENTIFIED BY '$pw' REQUIRE SSL;
CREATE USER 'portcullis-test'@'%' IDENTIFIED BY '$pw' REQUIRE SUBJECT '/CN=portcullis-test';
GRANT SELECT ON emqx.* TO 'portcullis'@'%', 'portcullis_tls'@'%', 'portcullis-test'@'%';
GRANT SELECT ON emqttd.* TO 'portcullis'@'%', 'portcullis_tls'@'%', 'portcullis-test'@'%';
SQL
  local db
  for db in emqx emqttd; do
    cat "$fixtures/mysql-$db.sql" "$fixtures/$db-data.sql" | "${admin[@]}" "$db"
  done

  export_var PORTCULLIS_TEST_MYSQL_HOST 127.0.0.1
  export_var PORTCULLIS_TEST_MYSQL_PORT "$port"
  export_var PORTCULLIS_TEST_MYSQL_URL "mysql://portcullis@127.0.0.1:$port/emqx"
  export PORTCULLIS_TEST_MYSQL_PASSWORD="$pw"
  export_var PORTCULLIS_TEST_MYSQL_ADMIN_CNF "$dir/admin.cnf"
  export_var PORTCULLIS_TEST_MYSQL_START "$dir/start.sh"
  export_var PORTCULLIS_TEST_MYSQL_STOP "$dir/stop.sh"
}
