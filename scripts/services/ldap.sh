# OpenLDAP (Debian's slapd) for the LDAP backend tests: the shipped schema
# (etc/ldap/portcullis.schema) and the users in tests/fixtures/ldap/
# (users.ldif says who is who), loaded offline with slapadd, served on
# ldap:// (StartTLS offered) and ldaps:// with the test CA's server
# certificate.
#
# Exports:
#   PORTCULLIS_TEST_LDAP_URL     ldap://127.0.0.1:PORT    (the shared server;
#   PORTCULLIS_TEST_LDAPS_URL    ldaps://127.0.0.1:PORT2   tests never stop it)
#   PORTCULLIS_TEST_LDAP_SPAWN   a command that starts a private slapd with the
#       same data for a test that stops, freezes or restarts its server:
#       `$PORTCULLIS_TEST_LDAP_SPAWN [PORT]` prints `PID PORT` once slapd
#       accepts connections (PORT: a free one when not given, or the same one
#       again to restart). The test stops that PID itself; whatever is left
#       is stopped (by PID) when the services script exits.
#   PORTCULLIS_TEST_LDAP_BASE    dc=example,dc=org
#   PORTCULLIS_TEST_LDAP_BIND_DN / PORTCULLIS_TEST_LDAP_BIND_PASSWORD
#       the service account
start_ldap() {
  # Without this, installing slapd would configure a system-wide database.
  if ! dpkg-query -W -f='${Status}' slapd 2>/dev/null | grep -q "install ok installed"; then
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true
  fi
  need_packages slapd ldap-utils iproute2
  local dir="$SVC_DIR/ldap" tls="$PORTCULLIS_TEST_TLS_DIR"
  mkdir -p "$dir"
  cp "$ROOT/etc/ldap/portcullis.schema" "$dir/portcullis.schema"
  cp "$ROOT/tests/fixtures/ldap/users.ldif" "$dir/users.ldif"
  # slapd.conf with @DIR@ for each instance's data directory.
  cat > "$dir/slapd.conf.in" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include $dir/portcullis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile @DIR@/slapd.pid
TLSCACertificateFile $tls/ca.pem
TLSCertificateFile $tls/server.pem
TLSCertificateKeyFile $tls/server.key
database mdb
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw admin-secret
directory @DIR@/data
maxsize 16777216
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword
  by self read
  by dn.exact="cn=portcullis,ou=services,dc=example,dc=org" read
  by anonymous auth
  by * none
access to * by * read
CONF
  # instance.sh NAME PORT [TLS_PORT]: loads the data into $dir/NAME and
  # starts slapd in the background; prints its PID when it accepts.
  cat > "$dir/instance.sh" <<'INSTANCE'
#!/usr/bin/env bash
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name=$1 port=$2 tls_port=${3:-}
d="$here/$name"
rm -rf "$d"; mkdir -p "$d/data"
sed "s|@DIR@|$d|g" "$here/slapd.conf.in" > "$d/slapd.conf"
slapadd -f "$d/slapd.conf" -l "$here/users.ldif" -q >"$d/slapadd.log" 2>&1 || { cat "$d/slapadd.log" >&2; exit 1; }
urls="ldap://127.0.0.1:$port/"
[ -n "$tls_port" ] && urls="$urls ldaps://127.0.0.1:$tls_port/"
slapd -f "$d/slapd.conf" -h "$urls" -d 0 >"$d/slapd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >> "$here/pids"
# Ready when this slapd (not whatever else may hold the port: a test may
# have picked a free port another test picked too) is listening on it.
for _ in $(seq 1 100); do
  if ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then echo "$pid"; exit 0; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
echo "slapd did not listen on 127.0.0.1:$port" >&2; tail -20 "$d/slapd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
INSTANCE
  # spawn.sh [PORT]: a private instance for one test; prints `PID PORT`.
  cat > "$dir/spawn.sh" <<'SPAWN'
#!/usr/bin/env bash
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')}
pid=$("$here/instance.sh" "spawn-$port-$$" "$port")
echo "$pid $port"
SPAWN
  chmod 755 "$dir/instance.sh" "$dir/spawn.sh"
  local port tls_port pid
  port=$(free_port)
  tls_port=$(free_port)
  while [ "$tls_port" = "$port" ]; do tls_port=$(free_port); done
  pid=$("$dir/instance.sh" shared "$port" "$tls_port")
  register_pid "$pid"
  chain_exit_trap ldap_stop_spawned
  wait_port "$tls_port" 10 ldap
  export_var PORTCULLIS_TEST_LDAP_URL "ldap://127.0.0.1:$port"
  export_var PORTCULLIS_TEST_LDAPS_URL "ldaps://127.0.0.1:$tls_port"
  export_var PORTCULLIS_TEST_LDAP_SPAWN "$dir/spawn.sh"
  export_var PORTCULLIS_TEST_LDAP_BASE "dc=example,dc=org"
  export_var PORTCULLIS_TEST_LDAP_BIND_DN "cn=portcullis,ou=services,dc=example,dc=org"
  export_var PORTCULLIS_TEST_LDAP_BIND_PASSWORD "service-pw"
}

# Stops the slapd processes that tests spawned and left running (by the
# PIDs the instance script recorded), waking frozen ones first.
ldap_stop_spawned() {
  local f="$SVC_DIR/ldap/pids" p
  [ -f "$f" ] || return 0
  while read -r p; do
    kill -s TERM "$p" 2>/dev/null && kill -s CONT "$p" 2>/dev/null || true
  done < "$f"
  while read -r p; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -s KILL "$p" 2>/dev/null || true
  done < "$f"
}

# chain_exit_trap CMD: runs CMD on exit before whatever the EXIT trap
# already does (services.sh's stop_all, which removes $SVC_DIR).
chain_exit_trap() {
  local prev
  prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
  # shellcheck disable=SC2064
  trap "$1; ${prev:-:}" EXIT
}
