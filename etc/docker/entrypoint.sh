#!/bin/sh
# Entrypoint of the Portcullis image (see Dockerfile). With
# PORTCULLIS_USERNAME and PORTCULLIS_PASSWORD (or PORTCULLIS_PASSWORD_FILE,
# a file holding the password, such as a Docker secret) it writes that user
# into the image config's password file, /var/lib/portcullis/passwd
# (argon2id, mode 0600), then runs `portcullis` with the container's
# arguments. Without them it leaves that file as it is: mount your own
# Mosquitto-format file there, or the image config refuses to start.
# PORTCULLIS_PASSWD_PATH moves the file (for tests of this script; the
# image config reads the default path).
set -eu

passwd_file="${PORTCULLIS_PASSWD_PATH:-/var/lib/portcullis/passwd}"
if [ -n "${PORTCULLIS_PASSWORD_FILE:-}" ]; then
  PORTCULLIS_PASSWORD="$(cat "$PORTCULLIS_PASSWORD_FILE")"
fi
if [ -n "${PORTCULLIS_USERNAME:-}" ]; then
  if [ -z "${PORTCULLIS_PASSWORD:-}" ]; then
    echo "docker-entrypoint: PORTCULLIS_USERNAME is set but PORTCULLIS_PASSWORD (or PORTCULLIS_PASSWORD_FILE) is not" >&2
    exit 2
  fi
  printf '%s\n' "$PORTCULLIS_PASSWORD" | portcullis passwd "$passwd_file" "$PORTCULLIS_USERNAME" >/dev/null
elif [ "$#" -ge 2 ] && [ "$1" = "--config" ] && [ "$2" = "/etc/portcullis/docker/image.toml" ] && [ ! -e "$passwd_file" ]; then
  echo "docker-entrypoint: no MQTT user: set PORTCULLIS_USERNAME and PORTCULLIS_PASSWORD, or mount a password file at $passwd_file" >&2
fi
unset PORTCULLIS_PASSWORD
exec portcullis "$@"
