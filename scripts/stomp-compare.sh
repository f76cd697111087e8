#!/usr/bin/env bash
# Runs the same stomp.py scenarios (tests/stomp_compare.py) against
# Portcullis and RabbitMQ's STOMP plugin side by side and prints a table
# (scenario | Portcullis | RabbitMQ). For people and docs/stomp-vs-rabbitmq.md;
# not part of scripts/test.sh (CI).
#
#   scripts/stomp-compare.sh            # markdown table on stdout
#   scripts/stomp-compare.sh --json     # the same as JSON
#
# Installs Debian's rabbitmq-server when missing (as root, apt-get). Never
# uses the system service: it starts a private RabbitMQ node (own node
# name, HOME, Mnesia and log directories, epmd port, distribution port,
# config) on free loopback ports, and a Portcullis broker
# (target/debug/portcullis or $PORTCULLIS_BIN) with an MQTT and a STOMP
# listener on free loopback ports; both log in as guest/guest (RabbitMQ's
# guest user is allowed on loopback; Portcullis gets a password file). It
# stops what it started, by PID, when done, failing or interrupted.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PORTCULLIS_BIN:-$ROOT/target/debug/portcullis}"
PY="${PORTCULLIS_PYTHON:-python3}"
RMQ=/usr/lib/rabbitmq/bin/rabbitmq-server

[ -x "$BIN" ] || { echo "no broker binary at $BIN (cargo build --bins, or set PORTCULLIS_BIN)" >&2; exit 1; }
"$PY" -c "import stomp" 2>/dev/null || { echo "$PY has no stomp.py: $PY -m pip install stomp.py" >&2; exit 1; }
if [ ! -x "$RMQ" ]; then
    [ "$(id -u)" = 0 ] || { echo "rabbitmq-server is not installed (apt-get install rabbitmq-server, as root)" >&2; exit 1; }
    echo "installing rabbitmq-server ..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
fi
EPMD="$(ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1)"

DIR="$(mktemp -d /tmp/stomp-compare.XXXXXX)"
RMQ_PID="" ; PC_PID="" ; EPMD_PORT=""
cleanup() {
    # Only what this script started: the RabbitMQ process group (setsid
    # below), its private epmd (by its port), the Portcullis broker.
    if [ -n "$RMQ_PID" ]; then
        kill -TERM -- "-$RMQ_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 -- "-$RMQ_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$RMQ_PID" 2>/dev/null || true
    fi
    if [ -n "$EPMD_PORT" ] && [ -n "$EPMD" ]; then
        ERL_EPMD_PORT="$EPMD_PORT" "$EPMD" -kill >/dev/null 2>&1 || true
    fi
    if [ -n "$PC_PID" ]; then
        kill -TERM "$PC_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PC_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PC_PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports (bound then released: a small race, acceptable for a
# script run by hand).
read -r P_AMQP P_STOMP P_DIST P_EPMD P_MQTT P_PSTOMP < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# ---- private RabbitMQ node ----
mkdir -p "$DIR/rmq/mnesia" "$DIR/rmq/log"
cat > "$DIR/rmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$P_AMQP
stomp.listeners.tcp.1 = 127.0.0.1:$P_STOMP
EOF
echo "[rabbitmq_stomp]." > "$DIR/rmq/enabled_plugins"
EPMD_PORT="$P_EPMD"
(
    export HOME="$DIR/rmq" ERL_EPMD_PORT="$P_EPMD"
    export RABBITMQ_NODENAME="stompcmp$$@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$P_AMQP"
    export RABBITMQ_DIST_PORT="$P_DIST" RABBITMQ_MNESIA_BASE="$DIR/rmq/mnesia" RABBITMQ_LOG_BASE="$DIR/rmq/log"
    export RABBITMQ_LOGS="$DIR/rmq/log/rabbit.log" RABBITMQ_CONFIG_FILE="$DIR/rmq/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/rmq/advanced.config" RABBITMQ_PID_FILE="$DIR/rmq/pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rmq/enabled_plugins"
    exec setsid "$RMQ" >"$DIR/rmq/stdout" 2>&1
) &
RMQ_PID=$!

# ---- Portcullis ----
mkdir -p "$DIR/pc"
echo "guest:guest" > "$DIR/pc/passwd"
cat > "$DIR/pc/portcullis.toml" <<EOF
[[listeners]]
name = "tcp"
bind = "127.0.0.1:$P_MQTT"

[[listeners]]
name = "stomp"
type = "stomp"
bind = "127.0.0.1:$P_PSTOMP"

[auth]
chain = ["pw"]
[auth.password_file.pw]
path = "$DIR/pc/passwd"
hash = { algo = "plain" }

[admin]
bind = "127.0.0.1:0"
socket = "$DIR/pc/admin.sock"

[persistence]
dir = "$DIR/pc/data"
EOF
PORTCULLIS_LOG=info "$BIN" --config "$DIR/pc/portcullis.toml" >"$DIR/pc/log" 2>&1 &
PC_PID=$!

wait_port() { # name port pid
    for _ in $(seq 120); do
        if (echo >"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        kill -0 "$3" 2>/dev/null || { echo "$1 exited; its output:" >&2; cat "$DIR"/*/stdout "$DIR/pc/log" >&2 2>/dev/null; return 1; }
        sleep 0.5
    done
    echo "$1 did not listen on $2 within 60 s" >&2
    return 1
}
wait_port Portcullis "$P_PSTOMP" "$PC_PID"
wait_port RabbitMQ "$P_STOMP" "$RMQ_PID"
echo "Portcullis $("$BIN" --version 2>/dev/null || echo '?') STOMP on $P_PSTOMP; RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '?') STOMP on $P_STOMP" >&2

"$PY" "$ROOT/tests/stomp_compare.py" \
    "Portcullis=127.0.0.1:$P_PSTOMP:guest:guest:mqtt" \
    "RabbitMQ=127.0.0.1:$P_STOMP:guest:guest:amqp" "$@"
