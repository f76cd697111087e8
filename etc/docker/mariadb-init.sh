# Sourced by the mariadb image's entrypoint from /docker-entrypoint-initdb.d
# (this file is not executable, so `docker_process_sql` — the image's root
# client on its init socket, in MARIADB_DATABASE — is defined): the demo
# MQTT passwords from the environment as session variables, hex-encoded so
# no quoting can break out, then etc/docker/mariadb-init.sql.
portcullis_hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
{
  printf "SET @demo_password = CONVERT(UNHEX('%s') USING utf8mb4);\n" "$(portcullis_hex "$MQTT_DEMO_PASSWORD")"
  printf "SET @admin_password = CONVERT(UNHEX('%s') USING utf8mb4);\n" "$(portcullis_hex "$MQTT_ADMIN_PASSWORD")"
  cat "${PORTCULLIS_INIT_DIR:-/portcullis-init}/mariadb-init.sql"
} | docker_process_sql
