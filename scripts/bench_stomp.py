#!/usr/bin/env python3
"""STOMP gateway throughput: STOMP -> MQTT and MQTT -> STOMP beside
MQTT -> MQTT, with portcullis-bench (`pubsub --stomp-pub-port /
--stomp-sub-port`), on loopback. Figures in docs/performance.md.

    python3 scripts/bench_stomp.py [--bin DIR] [--rounds 3] [--count 50000]

DIR holds release builds of `portcullis` and `portcullis-bench`
(default target/release; build them with
`cargo build --release --bin portcullis --bin portcullis-bench`).
Each round starts one fresh broker (an MQTT listener, a STOMP listener
with send_qos/subscribe_qos 0 and one with 1, ports from the OS, admin
off, its own persistence dir), runs every workload once in turn (rounds
interleave the workloads, so a noisy neighbour spreads over all of them),
and stops it by PID. Prints one JSON line per run, then per workload the
median and range of messages/s and of p50/p99 latency. Bounded: every
run has a timeout. Standard library only.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (portcullis-bench pubsub arguments; {stomp0}/{stomp1}/{mqtt} are ports)
WORKLOADS = {
    "mqtt->mqtt qos0": "--port {mqtt} --qos 0",
    "stomp->mqtt qos0": "--port {mqtt} --stomp-pub-port {stomp0} --qos 0",
    "mqtt->stomp qos0": "--port {mqtt} --stomp-sub-port {stomp0} --qos 0",
    "mqtt->mqtt qos1": "--port {mqtt} --qos 1",
    "stomp->mqtt qos1": "--port {mqtt} --stomp-pub-port {stomp1} --qos 1",
    "mqtt->stomp qos1": "--port {mqtt} --stomp-sub-port {stomp1} --qos 1",
}

CONFIG = """
[[listeners]]
name = "mqtt"
bind = "127.0.0.1:0"

[[listeners]]
name = "stomp0"
type = "stomp"
bind = "127.0.0.1:0"
[listeners.stomp]
send_qos = 0
subscribe_qos = 0

[[listeners]]
name = "stomp1"
type = "stomp"
bind = "127.0.0.1:0"
[listeners.stomp]
send_qos = 1
subscribe_qos = 1

[admin]
enabled = false

[persistence]
dir = "{dir}"
"""


def start_broker(binary, workdir):
    cfg = workdir / "portcullis.toml"
    cfg.write_text(CONFIG.replace("{dir}", str(workdir / "data")))
    log = open(workdir / "broker.log", "w")
    proc = subprocess.Popen([binary, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    ports = {}
    end = time.time() + 20
    while time.time() < end and len(ports) < 3:
        time.sleep(0.1)
        for line in (workdir / "broker.log").read_text().splitlines():
            m = re.search(r" listening listener=(\S+) .*addr=127\.0\.0\.1:(\d+)", line)
            if m:
                ports[m.group(1)] = int(m.group(2))
    if len(ports) < 3:
        proc.kill()
        proc.wait()
        sys.exit("broker did not start: see %s" % (workdir / "broker.log"))
    return proc, ports


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    broker = os.path.join(args.bin, "portcullis")
    bench = os.path.join(args.bin, "portcullis-bench")
    results = {w: [] for w in WORKLOADS}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-stomp-") as d:
            workdir = Path(d)
            proc, ports = start_broker(broker, workdir)
            try:
                for name, argv in WORKLOADS.items():
                    a = argv.format(mqtt=ports["mqtt"], stomp0=ports["stomp0"], stomp1=ports["stomp1"]).split()
                    a += ["--count", str(args.count), "--size", str(args.size), "--duration", "60s", "-q"]
                    out = subprocess.run([bench, "pubsub", *a], capture_output=True, text=True, timeout=120)
                    s = json.loads(out.stdout.strip().splitlines()[-1])
                    s["workload"], s["round"], s["load"] = name, r, os.getloadavg()[0]
                    print(json.dumps(s), flush=True)
                    results[name].append(s)
            finally:
                stop(proc)
    print("\nworkload            msgs/s median [range]          p50 ms median [range]     p99 ms median [range]  ok")
    for name, runs in results.items():
        def col(key, scale=1.0):
            v = [x[key] * scale for x in runs]
            return "%9.0f [%.0f-%.0f]" % (statistics.median(v), min(v), max(v)) if scale == 1.0 else \
                "%7.2f [%.2f-%.2f]" % (statistics.median(v), min(v), max(v))
        ok = all(x["ok"] for x in runs)
        print("%-18s %-30s %-25s %-22s %s" % (name, col("msgs_per_s"), col("p50_us", 1e-3), col("p99_us", 1e-3), ok))


if __name__ == "__main__":
    main()
