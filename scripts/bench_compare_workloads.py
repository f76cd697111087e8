"""The workloads of scripts/bench-compare.sh: what portcullis-bench runs for
each (full and --quick sizes), and which figures our ratio to each peer
compares."""

AUTH_USERS = 100
AUTH_PASSWORD = "bench-secret"

# kind: "pubsub" (msgs/s, CPU per delivered message, end-to-end latency),
# "conn" (connects/s, CPU per connection, CONNACK latency, RSS per held
# connection) or "auth" (a connect storm against brokers with a password
# file; for Portcullis a second, warm-cache pass with the same client ids).
# "persist" is "pubsub" with persistent subscriber sessions (clean start 0,
# session expiry 60 s): Portcullis runs it once per `[persistence] mode`
# (PERSIST_MODES, one row each), the peers once with their persistence on
# (Mosquitto: `persistence true`), shown in the strict row and compared
# with every mode's row. Besides the pubsub figures it reports fsyncs/s
# (Portcullis: the store's group commits) and bytes written per delivered
# message (/proc/PID/io write_bytes).
# ratios: figures for "our ratio to each peer"; rate = msgs/s or
# connects/s, cpu = CPU us per message or connection, p99 = latency,
# rss_conn = RSS per idle connection.
WORKLOADS = {
    "fanin": {
        "title": "fan-in 4→1 QoS 0 64 B",
        "kind": "pubsub",
        "args": ["-p", "4", "-s", "1", "--qos", "0", "--size", "64", "--duration", "30s"],
        "full": ["--count", "250000"],
        "quick": ["--count", "20000"],
        "ratios": ["rate", "cpu"],
    },
    "qos1": {
        "title": "QoS 1 1→1 256 B",
        "kind": "pubsub",
        "args": ["-p", "1", "-s", "1", "--qos", "1", "--size", "256", "--duration", "60s"],
        "full": ["--count", "100000"],
        "quick": ["--count", "10000"],
        "ratios": ["rate", "cpu"],
    },
    "fanout": {
        "title": "fan-out 1→100 QoS 0 64 B",
        "kind": "pubsub",
        "args": ["-p", "1", "-s", "100", "--qos", "0", "--size", "64", "--duration", "60s"],
        "full": ["--count", "10000"],
        "quick": ["--count", "1000"],
        "ratios": ["rate", "cpu"],
    },
    "latency": {
        "title": "latency 1→1 QoS 0 @ 2,000 msg/s",
        "kind": "pubsub",
        "args": ["-p", "1", "-s", "1", "--qos", "0", "--size", "64", "--rate", "2000"],
        "full": ["--duration", "10s"],
        "quick": ["--duration", "2s"],
        "ratios": ["p99", "cpu"],
    },
    # The window is the publisher's unacknowledged PUBLISHes (also the
    # in-memory qos1 workload's): in strict mode a PUBACK waits for the
    # fsync that carries the PUBLISH, so one publisher can never have more
    # than 64 PUBLISHes in one group commit.
    "persist1": {
        "title": "persistent QoS 1 1→1 256 B",
        "kind": "persist",
        "args": ["-p", "1", "-s", "1", "--qos", "1", "--size", "256", "--window", "64", "--persistent",
                 "--duration", "60s"],
        "full": ["--count", "100000"],
        "quick": ["--count", "10000"],
        "ratios": ["rate", "cpu"],
    },
    # Ten publishers to ten persistent subscribers (each message delivered
    # ten times): group commit has ten windows of 64 to gather from.
    "persist10": {
        "title": "persistent QoS 1 10→10 256 B",
        "kind": "persist",
        "args": ["-p", "10", "-s", "10", "--qos", "1", "--size", "256", "--window", "64", "--persistent",
                 "--duration", "60s"],
        "full": ["--count", "10000"],
        "quick": ["--count", "1000"],
        "ratios": ["rate", "cpu"],
    },
    "idle10k": {
        "title": "{n} idle connections",
        "kind": "conn",
        "args": ["-c", "100"],
        "full": ["-n", "10000", "--hold", "5s"],
        "quick": ["-n", "1000", "--hold", "3s"],
        "ratios": ["rss_conn", "rate"],
    },
    "idle19k": {
        "title": "{n} idle connections",
        "kind": "conn",
        "args": ["-c", "100"],
        "full": ["-n", "19000", "--hold", "5s"],
        "quick": ["-n", "2000", "--hold", "3s"],
        "ratios": ["rss_conn", "rate"],
    },
    "auth": {
        "title": "connect storm, password file",
        "kind": "auth",
        "args": ["-c", "100", "--users", str(AUTH_USERS)],
        "full": ["-n", "10000"],
        "quick": ["-n", "500"],
        "ratios": ["rate", "cpu"],
    },
    # Across cluster nodes (issue 19; scripts/bench_compare_cluster.py):
    # Portcullis only, each round once on one node and once across nodes
    # (publisher on node A, subscribers on the other `nodes` - 1), three
    # NATS servers; the hop between nodes is at most once (NATS core).
    "cluster11": {
        "title": "cluster 1→1 QoS 1 256 B",
        "kind": "cluster",
        "nodes": 2,
        "args": ["-p", "1", "-s", "1", "--qos", "1", "--size", "256", "--duration", "60s"],
        "full": ["--count", "50000"],
        "quick": ["--count", "5000"],
        "ratios": ["rate", "p99"],
    },
    # Open loop, below what the path carries: the latency of the hop
    # itself rather than of queues.
    "clusterlat": {
        "title": "cluster latency 1→1 QoS 1 @ 2,000 msg/s",
        "kind": "cluster",
        "nodes": 2,
        "args": ["-p", "1", "-s", "1", "--qos", "1", "--size", "64", "--rate", "2000"],
        "full": ["--duration", "10s"],
        "quick": ["--duration", "2s"],
        "ratios": ["p99"],
    },
    "clusterfan": {
        "title": "cluster fan-out 1→20 QoS 1 64 B",
        "kind": "cluster",
        "nodes": 3,
        "args": ["-p", "1", "-s", "20", "--qos", "1", "--size", "64", "--duration", "60s"],
        "full": ["--count", "10000"],
        "quick": ["--count", "1000"],
        "ratios": ["rate", "p99"],
    },
}


def durable(name, **changes):
    """Cluster workload `name` in the durable mode (`cross_node =
    "durable"`): QoS 1 through the JetStream stream (3 replicas, fsync
    always), each PUBACK after the stream stored the message."""
    w = dict(WORKLOADS[name], title=WORKLOADS[name]["title"] + ", durable", cross_node="durable")
    w.update(changes)
    return w


WORKLOADS["clusterdur"] = durable("cluster11", full=["--count", "20000"], quick=["--count", "2000"])
WORKLOADS["clusterdurlat"] = durable("clusterlat")

# Portcullis' `[persistence] mode` per pass of a "persist" workload; the
# first is the row the peers' runs are shown in.
PERSIST_MODES = ["strict", "relaxed", "off"]


def persist_row(title, mode):
    """The row label of one Portcullis pass of a "persist" workload (the
    first mode's row also holds the peers' runs)."""
    if mode == PERSIST_MODES[0]:
        return f"{title} ({mode}; peers: persistence on)"
    return f"{title} ({mode})"


# Row labels of the auth workload's two passes.
AUTH_COLD, AUTH_WARM = "auth (cold)", "auth (warm cache)"


def set_titles(quick):
    """Puts the connection count of this run (full or --quick) into the
    idle workloads' row labels."""
    for w in WORKLOADS.values():
        sizes = w["quick"] if quick else w["full"]
        if "{n}" in w["title"]:
            w["title"] = w["title"].format(n=f"{int(sizes[sizes.index('-n') + 1]):,}")
