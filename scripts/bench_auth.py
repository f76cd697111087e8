#!/usr/bin/env python3
"""Auth backend benchmark: CONNECT -> CONNACK rate and latency for a storm of
10,000 clients over 1,000 distinct users, per backend, with a cold auth cache
and then a warm one, beside the same storm with auth off. Also counts the
backend queries each storm made (the provider's `calls` in $SYS).

Run through scripts/bench-auth.sh, which starts the backend servers
(scripts/services.sh) and builds the release binaries. Not a test: it prints
figures, it does not judge them (the targets are printed beside them).

Targets (issue 4): a reconnect storm of 10,000 clients over 1,000 users makes
at most 1,000 backend queries; the warm-cache connect rate is at least 90% of
the auth-off rate.
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BROKER = os.path.join(TARGET, "release", "portcullis")
BENCH = os.path.join(TARGET, "release", "portcullis-bench")
PASSWORD = "bench-pass-1"
USER_PREFIX = "bench"


def salted_sha256(salt):
    return hashlib.sha256((salt + PASSWORD).encode()).hexdigest()


def users(n):
    """(username, salt, sha256(salt + password)) for each bench user."""
    out = []
    for i in range(n):
        salt = "s%04d" % i
        out.append((f"{USER_PREFIX}{i}", salt, salted_sha256(salt)))
    return out


# --- backends -------------------------------------------------------------
# Each backend: seed(n, workdir) loads n users and returns the TOML of its
# auth provider named `b` (the chain is set by the caller), or raises
# Unavailable when its server is not running.


class Unavailable(Exception):
    pass


def env(name):
    v = os.environ.get(name)
    if not v:
        raise Unavailable(f"{name} is not set (run through scripts/bench-auth.sh)")
    return v


def seed_password_file(n, workdir):
    path = os.path.join(workdir, "passwd")
    with open(path, "w") as f:
        for u, salt, h in users(n):
            f.write(f"{u}:{h}:{salt}\n")
    return f"""
[auth.password_file.b]
path = "{path}"
hash = {{ algo = "sha256", salt_position = "prefix" }}
"""


def tool(*names):
    """The first of `names` found on PATH or under /usr/lib/postgresql."""
    import glob
    for n in names:
        found = shutil.which(n) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{n}"), reverse=True)), None)
        if found:
            return found
    raise Unavailable(f"none of {names} is installed")


def run(cmd, data):
    p = subprocess.run(cmd, input=data, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr[-2000:]}")


def sql_inserts(n):
    rows = "".join(
        f"INSERT INTO mqtt_user (username, password_hash, salt, is_superuser) VALUES ('{u}', '{h}', '{salt}', false);\n"
        for u, salt, h in users(n))
    return f"DELETE FROM mqtt_user WHERE username LIKE '{USER_PREFIX}%';\n" + rows


def seed_postgres(n, workdir):
    admin = env("PORTCULLIS_TEST_PG_ADMIN_URL").rsplit("/", 1)[0] + "/emqx"
    run([tool("psql"), admin, "-q", "-v", "ON_ERROR_STOP=1"], sql_inserts(n))
    return f"""
[auth.postgres.b]
url = "{env('PORTCULLIS_TEST_PG_URL')}"
password = {{ env = "PORTCULLIS_TEST_PG_PASSWORD" }}
"""


def seed_mysql(n, workdir):
    run([tool("mariadb", "mysql"), f"--defaults-file={env('PORTCULLIS_TEST_MYSQL_ADMIN_CNF')}", "emqx"], sql_inserts(n))
    return f"""
[auth.mysql.b]
url = "{env('PORTCULLIS_TEST_MYSQL_URL')}"
password = {{ env = "PORTCULLIS_TEST_MYSQL_PASSWORD" }}
"""


def seed_redis(n, workdir):
    host, port = env("PORTCULLIS_TEST_REDIS_ADDR").rsplit(":", 1)
    cmds = "".join(f"HSET mqtt_user:{u} password_hash {h} salt {salt} is_superuser 0\n" for u, salt, h in users(n))
    run([env("PORTCULLIS_TEST_REDIS_CLI"), "-h", host, "-p", port], cmds)
    return f"""
[auth.redis.b]
servers = "{host}:{port}"
"""


def ssha(password, salt):
    import base64
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def seed_ldap(n, workdir):
    url, base = env("PORTCULLIS_TEST_LDAP_URL"), env("PORTCULLIS_TEST_LDAP_BASE")
    ldif = []
    for u, salt, _ in users(n):
        ldif.append(f"dn: uid={u},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u}\nsn: {u}\n"
                    f"userPassword: {ssha(PASSWORD, salt.encode())}\n")
    # -c: entries left from an earlier run are fine.
    p = subprocess.run([tool("ldapadd"), "-c", "-x", "-H", url, "-D", f"cn=admin,{base}", "-w", "admin-secret"],
                       input="\n".join(ldif), capture_output=True, text=True, timeout=300)
    if p.returncode not in (0, 68):  # 68: already exists
        raise RuntimeError(f"ldapadd failed: {p.stderr[-2000:]}")
    return f"""
[auth.ldap.b]
servers = ["{url}"]
bind_dn = "{env('PORTCULLIS_TEST_LDAP_BIND_DN')}"
bind_password = {{ env = "PORTCULLIS_TEST_LDAP_BIND_PASSWORD" }}
mode = "search"
base_dn = "ou=people,{base}"
filter = "(&(objectClass=inetOrgPerson)(uid=${{username}}))"
"""


SPAWNED = []


def seed_mongodb(n, workdir):
    import glob
    spawn = env("PORTCULLIS_TEST_MONGO_SPAWN")
    py = next(iter(glob.glob(os.path.expanduser("~/.cache/portcullis/secantus-*/bin/python"))), None)
    if not py:
        raise Unavailable("the SecantusDB venv (scripts/services/mongodb.sh) is missing")
    out = subprocess.run([spawn], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    pid, port = int(out[-2]), int(out[-1])
    SPAWNED.append(pid)
    docs = [{"username": u, "password_hash": h, "salt": salt, "is_superuser": False} for u, salt, h in users(n)]
    path = os.path.join(workdir, "users.json")
    with open(path, "w") as f:
        json.dump(docs, f)
    code = ("import json,sys,pymongo; c=pymongo.MongoClient(sys.argv[1]); "
            "c.mqtt.mqtt_user.insert_many(json.load(open(sys.argv[2])))")
    subprocess.run([py, "-c", code, f"mongodb://127.0.0.1:{port}/?directConnection=true", path], check=True, timeout=120)
    return f"""
[auth.mongodb.b]
uri = "mongodb://127.0.0.1:{port}/?directConnection=true"
database = "mqtt"
"""


def seed_http(n, workdir):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    known = {u for u, _, _ in users(n)}

    class Hook(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if body.get("username") not in known:
                result = "ignore"
            else:
                result = "allow" if body.get("password") == PASSWORD else "deny"
            data = json.dumps({"result": result}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"""
[auth.http.b]
url = "http://127.0.0.1:{server.server_address[1]}/auth"
body = {{ username = "${{username}}", password = "${{password}}" }}
max_concurrency = 256
"""


def seed_jwt(n, workdir):
    """One HS256 token (PyJWT) for every bench user: the cache keys on the
    token, so a warm storm is one cache entry; the cold verification cost
    per CONNECT is measured by `cargo bench -p portcullis-backends --bench jwt`."""
    import jwt
    secret = secrets.token_hex(32)
    token = jwt.encode({"aud": "mqtt", "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    return f"""
[auth.jwt.b]
algorithm = "HS256"
secret = "{secret}"
audience = ["mqtt"]
""", token


BACKENDS = {
    "password_file": seed_password_file,
    "postgres": seed_postgres,
    "mysql": seed_mysql,
    "redis": seed_redis,
    "ldap": seed_ldap,
    "mongodb": seed_mongodb,
    "http": seed_http,
    "jwt": seed_jwt,
}


# --- running --------------------------------------------------------------


class Broker:
    def __init__(self, config_text, workdir):
        self.path = os.path.join(workdir, "portcullis.toml")
        with open(self.path, "w") as f:
            f.write(config_text)
        self.log = open(os.path.join(workdir, "broker.log"), "w+")
        # cwd: the store (strict, the default) in this run's own ./data.
        self.proc = subprocess.Popen(
            [BROKER, "--config", self.path], stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir
        )
        self.addrs = {}
        deadline = time.time() + 20
        while time.time() < deadline and len(self.addrs) < 2:
            if self.proc.poll() is not None:
                break
            self.log.seek(0)
            for line in self.log.read().splitlines():
                m = re.search(r"listener=(\S+).*addr=(\S+)", line)
                if "listening" in line and m:
                    self.addrs[m.group(1)] = m.group(2)
            time.sleep(0.05)
        if len(self.addrs) < 2:
            self.stop()
            self.log.seek(0)
            raise RuntimeError("broker did not start:\n" + self.log.read()[-3000:])

    def port(self, name):
        return int(self.addrs[name].rsplit(":", 1)[1])

    def sys_values(self, pattern):
        """Retained $SYS values matching the filter, read on the admin listener."""
        p = subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port("admin")), "-t", pattern, "-v", "-W", "2"],
            capture_output=True, text=True, timeout=10)
        out = {}
        for line in p.stdout.splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    def provider_calls(self):
        vals = self.sys_values("$SYS/brokers/+/auth/default/b/calls")
        return sum(int(v) for v in vals.values()) if vals else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def config(provider_toml):
    chain = '["b"]' if provider_toml else "[]"
    return f"""
[[listeners]]
name = "bench"
bind = "127.0.0.1:0"
max_connections = 50000

[[listeners]]
name = "admin"
bind = "127.0.0.1:0"
auth_chain = "local"

[sys]
interval = "1s"

[log]
level = "warn,portcullis=info"

[auth]
chain = {chain}
[auth.chains]
local = ["loopback"]
[auth.anonymous.loopback]
[auth.guard]
enabled = false
{provider_toml or ""}
"""


def storm(port, n, users_n, concurrency, with_auth, password=PASSWORD):
    cmd = [BENCH, "conn", "--port", str(port), "-n", str(n), "-c", str(concurrency), "--quiet"]
    if with_auth:
        cmd += ["--username", USER_PREFIX, "--users", str(users_n), "--password-stdin"]
    p = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, timeout=600)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "{}"
    return json.loads(line)


def run_case(name, seed, args):
    work = tempfile.mkdtemp(prefix=f"bench-auth-{name}-")
    try:
        provider = seed(args.users, work) if seed else None
        # A seed may bring its own password (a token): (toml, password).
        password = PASSWORD
        if isinstance(provider, tuple):
            provider, password = provider
        b = Broker(config(provider), work)
        try:
            rows = []
            phases = ["cold", "warm"] if seed else ["off"]
            before = b.provider_calls() or 0 if seed else 0
            for phase in phases:
                s = storm(b.port("bench"), args.clients, args.users, args.concurrency, bool(seed), password)
                time.sleep(1.5)  # one $SYS interval
                calls = None
                if seed:
                    total = b.provider_calls()
                    calls = None if total is None else total - before
                    before = total or before
                rows.append((name, phase, s, calls))
            return rows
        finally:
            b.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("backends", nargs="*", help="backends to run (default: all available)")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    args = ap.parse_args()
    names = args.backends or list(BACKENDS)
    for n in names:
        if n not in BACKENDS:
            sys.exit(f"unknown backend {n}; known: {', '.join(BACKENDS)}")

    # rows[(name, phase)] = list of (summary, calls), one per round
    rows = {}
    order = []
    for r in range(args.rounds):
        cases = [("auth off", None)] + [(n, BACKENDS[n]) for n in names]
        for name, seed in cases:
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            try:
                got = run_case(name, seed, args)
            except Unavailable as e:
                got = [(name, "skipped", {"error": str(e)}, None)]
            for n, phase, summary, calls in got:
                if (n, phase) not in rows:
                    order.append((n, phase))
                rows.setdefault((n, phase), []).append((summary, calls))

    def med(key, field):
        return median([s[field] for s, _ in rows[key] if field in s])

    off_rate = med(("auth off", "off"), "connects_per_s") or 0
    print()
    print(f"{args.clients} clients over {args.users} users, concurrency {args.concurrency}, "
          f"median of {args.rounds} rounds")
    hdr = (f"{'backend':<16} {'cache':<6} {'connects/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} "
           f"{'queries':>8} {'vs off':>7}")
    print(hdr)
    print("-" * len(hdr))
    for key in order:
        name, phase = key
        rate = med(key, "connects_per_s")
        if rate is None:
            print(f"{name:<16} {phase:<6} {rows[key][0][0].get('error', 'failed')}")
            continue
        calls = [c for _, c in rows[key] if c is not None]
        q = "-" if not calls else "/".join(str(c) for c in calls)
        failed = sum(s.get("failed", 0) for s, _ in rows[key])
        ratio = f"{100 * rate / off_rate:.0f}%" if off_rate else "-"
        print(f"{name:<16} {phase:<6} {rate:>11.0f} {med(key, 'connack_p50_us') / 1000:>8.2f} "
              f"{med(key, 'connack_p99_us') / 1000:>8.2f} {failed:>7} {q:>8} {ratio:>7}")
    print()
    print(f"queries: backend calls per storm, one figure per round. Targets: cold storm <= {args.users} "
          "backend queries; warm connects/s >= 90% of auth off")


if __name__ == "__main__":
    try:
        main()
    finally:
        for pid in SPAWNED:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
