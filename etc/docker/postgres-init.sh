# Run (sourced) by the postgres image's entrypoint from
# /docker-entrypoint-initdb.d after the schema: the broker's read-only role
# and the demo users (etc/docker/postgres-init.sql), passwords from the
# environment docker-compose.yml passes in.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v broker_user=portcullis -v broker_password="$PG_PASSWORD" \
  -v demo_password="$MQTT_DEMO_PASSWORD" -v admin_password="$MQTT_ADMIN_PASSWORD" \
  -f "${PORTCULLIS_INIT_DIR:-/portcullis-init}/postgres-init.sql"
