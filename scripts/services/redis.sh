# Redis for the backend tests (sourced by scripts/services.sh).
#
# Starts, on free loopback ports, each with its data in $SVC_DIR and no
# persistence (--save "" --appendonly no: ready in about 0.1 s):
#   * a plain server;
#   * a TLS-only server (the shared test CA's server pair; clients must
#     present a certificate signed by that CA);
#   * a server that needs a login: requirepass for the default user and an
#     ACL user allowed only the read commands the providers send;
#   * a three-node Redis Cluster (no replicas).
# The single servers get tests/fixtures/redis.txt in database 0 and
# tests/fixtures/redis-emqttd.txt in database 1; the cluster gets redis.txt.
#
# Exports:
#   PORTCULLIS_TEST_REDIS_ADDR           host:port of the plain server
#   PORTCULLIS_TEST_REDIS_TLS_ADDR       host:port of the TLS server
#   PORTCULLIS_TEST_REDIS_AUTH_ADDR      host:port of the server with a login
#   PORTCULLIS_TEST_REDIS_AUTH_USER      its ACL user
#   PORTCULLIS_TEST_REDIS_AUTH_PASSWORD  that user's password
#   PORTCULLIS_TEST_REDIS_CLUSTER_ADDRS  the cluster nodes, comma-separated
#   PORTCULLIS_TEST_REDIS_SERVER / _CLI  the redis-server and redis-cli
#                                        binaries, for tests that start,
#                                        stop and restart a private server
#   PORTCULLIS_TEST_REDIS_FIXTURE / _FIXTURE_EMQTTD  the two data files

# _redis_spawn NAME [FILE.conf] ARGS...: starts redis-server in the
# foreground of a background job, logging to $SVC_DIR/NAME.log, and
# registers its PID. A config file must come before the other arguments.
_redis_spawn() {
  local name=$1; shift
  local conf=()
  if [ "${1:-}" != "${1%.conf}" ]; then conf=("$1"); shift; fi
  mkdir -p "$SVC_DIR/$name"
  redis-server "${conf[@]}" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$SVC_DIR/$name" --logfile "$SVC_DIR/$name.log" "$@" &
  register_pid $! TERM
}

# _redis_load FIXTURE DB REDIS-CLI-ARGS...: loads a fixture (comments dropped)
# and fails if any command failed.
_redis_load() {
  local fixture=$1 db=$2; shift 2
  local out
  out="$(grep -v '^#' "$fixture" | redis-cli -n "$db" "$@" 2>&1)"
  if grep -qiE '^(\(error\)|ERR|WRONGTYPE|NOAUTH|MOVED)' <<<"$out"; then
    echo "services: loading $fixture failed:" >&2
    echo "$out" >&2
    return 1
  fi
}

start_redis() {
  need_packages redis-server redis-tools
  local root fixture emqttd tls
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  fixture="$root/tests/fixtures/redis.txt"
  emqttd="$root/tests/fixtures/redis-emqttd.txt"
  tls="$PORTCULLIS_TEST_TLS_DIR"

  # Plain.
  local plain; plain=$(free_port)
  _redis_spawn redis-plain --port "$plain"
  wait_port "$plain" 10 redis-plain
  _redis_load "$fixture" 0 -p "$plain"
  _redis_load "$emqttd" 1 -p "$plain"

  # TLS only (no plain port); client certificates required.
  local tport; tport=$(free_port)
  _redis_spawn redis-tls --port 0 --tls-port "$tport" \
    --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" \
    --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients yes
  wait_port "$tport" 10 redis-tls
  local tls_cli=(--tls --cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key" -p "$tport")
  _redis_load "$fixture" 0 "${tls_cli[@]}"
  _redis_load "$emqttd" 1 "${tls_cli[@]}"

  # A login: the default user needs an admin password; the ACL user
  # `portcullis` may only read (HGET, HMGET, HGETALL, GET, PING...).
  local aport; aport=$(free_port)
  local admin_pw="admin-$RANDOM$RANDOM" user_pw="reader-$RANDOM$RANDOM"
  cat > "$SVC_DIR/redis-auth.conf" <<EOF
requirepass $admin_pw
user portcullis on >$user_pw ~* +@read +@connection +select
EOF
  chmod 600 "$SVC_DIR/redis-auth.conf"
  _redis_spawn redis-auth "$SVC_DIR/redis-auth.conf" --port "$aport"
  wait_port "$aport" 10 redis-auth
  _redis_load "$fixture" 0 -p "$aport" -a "$admin_pw" --no-auth-warning
  _redis_load "$emqttd" 1 -p "$aport" -a "$admin_pw" --no-auth-warning

  # Cluster: three masters; the bus ports are chosen too (port+10000 may be
  # taken or out of range).
  local nodes=() i port bus
  for i in 1 2 3; do
    port=$(free_port); bus=$(free_port)
    _redis_spawn "redis-cluster-$i" --port "$port" --cluster-enabled yes --cluster-port "$bus" \
      --cluster-config-file "$SVC_DIR/redis-cluster-$i/nodes.conf" --cluster-node-timeout 5000
    wait_port "$port" 10 "redis-cluster-$i"
    nodes+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$SVC_DIR/redis-cluster-create.log" 2>&1 \
    || { cat "$SVC_DIR/redis-cluster-create.log" >&2; return 1; }
  local ok=0 n
  for _ in $(seq 1 100); do
    ok=1
    for n in "${nodes[@]}"; do
      redis-cli -p "${n##*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "services: the Redis cluster did not reach cluster_state:ok within 10s" >&2; return 1; }
  _redis_load "$fixture" 0 -c -p "${nodes[0]##*:}"

  export_var PORTCULLIS_TEST_REDIS_ADDR "127.0.0.1:$plain"
  export_var PORTCULLIS_TEST_REDIS_TLS_ADDR "127.0.0.1:$tport"
  export_var PORTCULLIS_TEST_REDIS_AUTH_ADDR "127.0.0.1:$aport"
  export_var PORTCULLIS_TEST_REDIS_AUTH_USER portcullis
  export PORTCULLIS_TEST_REDIS_AUTH_PASSWORD="$user_pw"
  echo "    PORTCULLIS_TEST_REDIS_AUTH_PASSWORD=(set)" >&2
  export_var PORTCULLIS_TEST_REDIS_CLUSTER_ADDRS "$(IFS=,; echo "${nodes[*]}")"
  export_var PORTCULLIS_TEST_REDIS_SERVER "$(command -v redis-server)"
  export_var PORTCULLIS_TEST_REDIS_CLI "$(command -v redis-cli)"
  export_var PORTCULLIS_TEST_REDIS_FIXTURE "$fixture"
  export_var PORTCULLIS_TEST_REDIS_FIXTURE_EMQTTD "$emqttd"
}
