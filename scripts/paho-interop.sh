#!/usr/bin/env bash
# Runs the Eclipse Paho interoperability client tests (client_test.py for
# 3.1.1, client_test5.py for 5.0) against a freshly started portcullis.
#
#   scripts/paho-interop.sh /path/to/paho.mqtt.testing [v3|v5|all] [TestName ...]
#
# The Paho repository is not part of this project: check it out anywhere
# and pass its path. Its command-line flags only work for localhost:1883,
# so scripts/paho_interop.py imports the test module and sets host and port.
set -euo pipefail
paho=${1:?usage: $0 PAHO_CHECKOUT [v3|v5|all] [TestName ...]}
which=${2:-all}
shift $(( $# >= 2 ? 2 : 1 ))
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${PORTCULLIS_BIN:-$here/target/release/portcullis}"
[ -x "$bin" ] || (cd "$here" && cargo build --release --bin portcullis)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
# etc/examples/interop.toml with a free port and an absolute ACL path; the
# store (strict, the default) in this run's own directory.
sed -e "s|127.0.0.1:1883|127.0.0.1:$port|" -e "s|etc/examples/|$here/etc/examples/|" \
  "$here/etc/examples/interop.toml" > "$dir/portcullis.toml"
printf '\n[persistence]\ndir = "%s/data"\n' "$dir" >> "$dir/portcullis.toml"
"$bin" --config "$dir/portcullis.toml" 2>"$dir/broker.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do grep -q listening "$dir/broker.log" && break; sleep 0.1; done
rc=0
for v in v3 v5; do
  if [ "$which" = all ] || [ "$which" = "$v" ]; then
    python3 "$here/scripts/paho_interop.py" "$paho/interoperability" "$port" "$v" "$@" || rc=1
  fi
done
exit $rc
