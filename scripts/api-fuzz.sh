#!/usr/bin/env bash
# Fuzzes the admin HTTP API with schemathesis (PyPI) against its own OpenAPI
# document: starts target/debug/portcullis (or $PORTCULLIS_BIN) with an
# administrator key on free loopback ports and its data in a temporary
# directory, runs schemathesis, and stops the broker (by PID) at the end.
#
#   scripts/api-fuzz.sh                 # check: no server error (5xx)
#   scripts/api-fuzz.sh -c all          # every schemathesis check
#   scripts/api-fuzz.sh -n 200          # more examples per operation
#
# Extra arguments go to `schemathesis run`. schemathesis is installed into
# a virtualenv under $PORTCULLIS_FUZZ_VENV (default /tmp/portcullis-st-venv)
# when missing. The lockout is raised (login_failures) so that the fuzzer's
# own credential probes do not turn every later answer into a 429.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PORTCULLIS_BIN:-$ROOT/target/debug/portcullis}"
VENV="${PORTCULLIS_FUZZ_VENV:-/tmp/portcullis-st-venv}"
[ -x "$BIN" ] || { echo "$BIN not found: cargo build --bins first" >&2; exit 2; }
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q schemathesis
fi

DIR="$(mktemp -d /tmp/portcullis-fuzz.XXXXXX)"
SECRET="fuzz-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
echo "admin:$SECRET:administrator" > "$DIR/bootstrap"
cat > "$DIR/portcullis.toml" <<EOF
[[listeners]]
name = "tcp"
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"
socket = "$DIR/admin.sock"
data_dir = "$DIR/data"
bootstrap_file = "$DIR/bootstrap"
mqtt_publish_listener = "tcp"
login_failures = 1000000

[persistence]
dir = "$DIR/store"

[auth]
chain = ["users"]
[auth.builtin.users]
path = "$DIR/users.db"

[acl]
chain = ["rules"]
[acl.builtin.rules]
path = "$DIR/users.db"
EOF
"$BIN" --config "$DIR/portcullis.toml" 2> "$DIR/broker.log" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

ADDR=""
for _ in $(seq 1 100); do
    ADDR="$(grep -o 'admin_addr=[0-9.:]*' "$DIR/broker.log" | head -1 | cut -d= -f2 || true)"
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "the broker did not start:" >&2; cat "$DIR/broker.log" >&2; exit 1; }

status=0
"$VENV/bin/schemathesis" run "http://$ADDR/api-docs/openapi.json" -a "admin:$SECRET" \
    -c not_a_server_error -w 2 --seed 1 "$@" || status=$?
if grep -q 'panicked' "$DIR/broker.log"; then
    echo "the broker panicked:" >&2
    grep -A5 'panicked' "$DIR/broker.log" >&2
    status=1
fi
exit "$status"
