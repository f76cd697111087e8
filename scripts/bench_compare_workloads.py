"""The workloads of scripts/bench-compare.sh: what portcullis-bench runs for
each (full and --quick sizes), and which figures our ratio to each peer
compares."""

AUTH_USERS = 100
AUTH_PASSWORD = "bench-secret"

# kind: "pubsub" (msgs/s, CPU per delivered message, end-to-end latency),
# "conn" (connects/s, CPU per connection, CONNACK latency, RSS per held
# connection) or "auth" (a connect storm against brokers with a password
# file; for Portcullis a second, warm-cache pass with the same client ids).
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
}
# Row labels of the auth workload's two passes.
AUTH_COLD, AUTH_WARM = "auth (cold)", "auth (warm cache)"


def set_titles(quick):
    """Puts the connection count of this run (full or --quick) into the
    idle workloads' row labels."""
    for w in WORKLOADS.values():
        sizes = w["quick"] if quick else w["full"]
        if "{n}" in w["title"]:
            w["title"] = w["title"].format(n=f"{int(sizes[sizes.index('-n') + 1]):,}")
