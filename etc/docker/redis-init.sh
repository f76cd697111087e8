#!/bin/sh
# Loads the demo users into Redis for docker-compose (EMQX 5 layout), as
# the admin (default) user: salted SHA-256, salt first, hex, a random salt
# each; passwords from MQTT_DEMO_PASSWORD and MQTT_ADMIN_PASSWORD. The
# broker logs in as the ACL user `portcullis`, which may only read the
# mqtt_* keys (see docker-compose.yml). REDISCLI_AUTH holds the admin
# password; REDIS_HOST and REDIS_PORT say where (default redis:6379).
set -eu
: "${MQTT_DEMO_PASSWORD:?}" "${MQTT_ADMIN_PASSWORD:?}"
cli() { redis-cli -h "${REDIS_HOST:-redis}" -p "${REDIS_PORT:-6379}" "$@"; }
salt() { od -An -N8 -tx1 -v /dev/urandom | tr -d ' \n'; }
sha() { printf '%s%s' "$1" "$2" | sha256sum | cut -c1-64; }
user() {
  s="$(salt)"
  out="$(cli HSET "mqtt_user:$1" password_hash "$(sha "$s" "$2")" salt "$s" is_superuser "$3")"
  case "$out" in [0-9]*) ;; *) echo "redis-init: $out" >&2; exit 1 ;; esac
}
user demo "$MQTT_DEMO_PASSWORD" false
user admin "$MQTT_ADMIN_PASSWORD" true
out="$(cli HSET mqtt_acl:demo 'devices/demo/#' all 'public/#' subscribe)"
case "$out" in [0-9]*) ;; *) echo "redis-init: $out" >&2; exit 1 ;; esac
echo "redis-init: demo users loaded"
