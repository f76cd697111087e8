#!/bin/sh
# docker-compose.yml's init for the built-in user store (port 1889): puts
# the demo users into the store from MQTT_DEMO_PASSWORD and
# MQTT_ADMIN_PASSWORD, then starts the broker through the image's
# entrypoint (etc/docker/entrypoint.sh) with the container's arguments.
#
# First start (no store yet): the store is made in a temporary file and
# moved into place once complete -- demo, and admin, a superuser, with the
# same rules as every other backend of the demo (demo may use
# devices/demo/# and subscribe to public/#). Later starts set the two
# passwords again (the environment may have changed) and leave the rest,
# such as users added since, as it is.
#
# Passwords travel on standard input (printf is a shell builtin), never on
# a command line. PORTCULLIS_BUILTIN_DB moves the store (for tests of this
# script; the compose config reads the default path).
set -eu

db="${PORTCULLIS_BUILTIN_DB:-/var/lib/portcullis/data/portcullis.db}"
: "${MQTT_DEMO_PASSWORD:?set MQTT_DEMO_PASSWORD (see the top of docker-compose.yml)}"
: "${MQTT_ADMIN_PASSWORD:?set MQTT_ADMIN_PASSWORD (see the top of docker-compose.yml)}"

if [ -e "$db" ]; then
  printf '%s\n' "$MQTT_DEMO_PASSWORD" | portcullis users passwd --db "$db" demo >/dev/null
  printf '%s\n' "$MQTT_ADMIN_PASSWORD" | portcullis users passwd --db "$db" admin >/dev/null
else
  new="$db.init"
  rm -f "$new" "$new-wal" "$new-shm"
  printf '%s\n' "$MQTT_DEMO_PASSWORD" | portcullis users add --db "$new" demo >/dev/null
  printf '%s\n' "$MQTT_ADMIN_PASSWORD" | portcullis users add --db "$new" admin --superuser >/dev/null
  portcullis acl add --db "$new" --username demo --permission allow --action all \
    --topic 'devices/${username}/#' >/dev/null
  portcullis acl add --db "$new" --username demo --permission allow --action subscribe \
    --topic 'public/#' >/dev/null
  mv "$new" "$db"
  echo "builtin-init: created the user store $db with the demo users" >&2
fi
unset MQTT_DEMO_PASSWORD MQTT_ADMIN_PASSWORD
exec "$(dirname "$0")/entrypoint.sh" "$@"
