#!/usr/bin/env bash
# Auth backend benchmark (not a test): builds the release binaries, starts
# the backend servers with scripts/services.sh, and prints CONNECT->CONNACK
# rate, p50/p99 and backend query counts per backend, cold and warm cache,
# beside auth off. Arguments go to scripts/bench_auth.py
# (e.g. `scripts/bench-auth.sh postgres redis --clients 2000`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
cargo build --release --locked --bin portcullis --bin portcullis-bench
ulimit -n 20000 2>/dev/null || true
exec bash scripts/services.sh -- python3 scripts/bench_auth.py "$@"
