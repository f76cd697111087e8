#!/usr/bin/env python3
"""Side-by-side benchmark of Portcullis, Mosquitto and rumqttd on loopback.

Started by scripts/bench-compare.sh, which installs the peers, builds the
release binaries and raises the file-descriptor limit first. Standard
library only.

The parts:

* bench_compare_workloads -- what each workload runs (portcullis-bench
  arguments, full and --quick sizes) and which figures its ratios compare.
* bench_compare_brokers -- one class per broker (config file, command
  line), CPU and RSS from /proc, starting and stopping processes by PID.
* this file -- run_one: one workload against one freshly started broker
  (start it, read /proc, run the load tool, read /proc again, stop it);
  the interleaved rounds; main.
* bench_compare_report -- medians over rounds, our ratio to each peer
  (median of the per-round ratios), the table, the targets of issue 7.

Every broker is started fresh for each (workload, round), so peak RSS and
CPU belong to that workload alone, and stopped by its PID (SIGTERM, then
SIGKILL after 10 s) when the run ends, fails or is interrupted. Every wait
is bounded. Only 127.0.0.1 and ports the OS hands out are used.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_compare_brokers import BROKERS, LIVE, Failed, Proc, pubsub_result, start_broker, stop, stop_all, tail
from bench_compare_cluster import run_cluster
from bench_compare_report import check_targets, kernel_lines, persist_lines, print_table, summarise
from bench_compare_workloads import (
    AUTH_COLD, AUTH_PASSWORD, AUTH_USERS, AUTH_WARM, PERSIST_MODES, WORKLOADS, persist_row, set_titles,
)

HOLD_SETTLE = 1.0  # seconds after "holding" before RSS is read


def run_bench(bench, argv, limit, workdir, on_line=None, stdin_text=None):
    """Runs portcullis-bench; returns its JSON summary line. Its stderr is
    appended to workdir/bench.log, and `on_line(line)` sees each stderr
    line as it comes; `stdin_text` (the auth password) is its stdin."""
    stdin = subprocess.DEVNULL
    if stdin_text is not None:
        fd, path = tempfile.mkstemp(prefix="stdin-", dir=workdir)
        with os.fdopen(fd, "w") as f:
            f.write(stdin_text)
        stdin = open(path)
    out_path = workdir / "bench.out"
    try:
        with open(out_path, "w") as out:
            proc = subprocess.Popen([bench, *argv], stdin=stdin, stdout=out, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise Failed(f"cannot run {bench}: {e.strerror}") from None
    finally:
        if stdin_text is not None:
            stdin.close()  # the child has its own copy
    LIVE[proc.pid] = proc
    lines = []

    def pump():
        with open(workdir / "bench.log", "a") as log:
            for line in proc.stderr:
                log.write(line)
                lines.append(line.rstrip())
                if on_line:
                    on_line(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise Failed(f"load tool still running after {limit:.0f}s")
    finally:
        stop(proc)
    reader.join(timeout=5)
    text = out_path.read_text().strip()
    summary = text.splitlines()[-1] if text else ""
    if proc.returncode == 2 or not summary:
        raise Failed(f"load tool error: {lines[-1] if lines else 'no output'}")
    return json.loads(summary)


def conn_result(s):
    if s["connects"] == 0:
        raise Failed(f"no connection accepted ({describe_failures(s)})")
    r = {
        "rate": s["connects_per_s"],
        "ops": s["connects"],
        "p50_us": s["connack_p50_us"],
        "p99_us": s["connack_p99_us"],
        "loss": s["failed"] + s["dropped"],
        "expected": s["attempted"],
    }
    if s["failed"]:
        r["note"] = f"{s['failed']} of {s['attempted']} refused: {describe_failures(s)}"
    if s["dropped"]:
        r["note"] = (r.get("note", "") + f"; {s['dropped']} dropped while held").lstrip("; ")
    return r


def describe_failures(s):
    parts = [f"CONNACK {code}: {n}" for code, n in s["connack_codes"].items() if code != "0"]
    parts += [f"{kind}: {n}" for kind, n in s["errors"].items()]
    return ", ".join(parts) or "no reason given"


def measured(proc, before_cpu, result):
    """Adds the broker's CPU and peak RSS over one measured phase."""
    cpu_s = Proc(proc.pid).cpu_s() - before_cpu
    result["cpu_s"] = cpu_s
    result["cpu_us_per_op"] = cpu_s * 1e6 / result["ops"] if result["ops"] else None
    result["peak_rss_kb"] = Proc(proc.pid).hwm_kb()
    return result


def slab_kb():
    """The kernel's Slab memory, machine-wide (/proc/meminfo)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return 0


def store_group_commits(log_path):
    """The group commits (one fsync each) Portcullis' store logged when it
    stopped, or None."""
    try:
        found = re.findall(r"(?<!\w)group_commits\W+(\d+)", Path(log_path).read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def run_persist(opts, workload, broker, round_no):
    """A "persist" workload: for Portcullis one fresh broker per
    `[persistence] mode` (one row each), for a peer one with its
    persistence on (in the first mode's row). Adds fsyncs/s (Portcullis:
    the store's group commits over the load tool's run) and bytes written
    per delivered message (/proc/PID/io)."""
    w = WORKLOADS[workload]
    sizes = w["quick"] if opts.quick else w["full"]
    if broker.name == "portcullis":
        passes = [(persist_row(w["title"], m), m) for m in PERSIST_MODES]
    else:
        passes = [(persist_row(w["title"], PERSIST_MODES[0]), "on")]
    results = {}
    for label, mode in passes:
        workdir = Path(tempfile.mkdtemp(prefix=f"{workload}-{broker.name}-{mode}-r{round_no}-", dir=opts.out))
        proc, port = start_broker(broker, workdir, None, persistence=mode)
        try:
            time.sleep(0.3)
            p = Proc(proc.pid)
            base = ["--port", str(port), "--timeout", "10s"]
            limit = 600.0 if not opts.quick else 120.0
            before, written, t0 = p.cpu_s(), p.write_bytes(), time.monotonic()
            p.reset_hwm()
            s = run_bench(opts.bench, ["pubsub", *base, "--quiet", *w["args"], *sizes], limit, workdir)
            wall = time.monotonic() - t0
            r = measured(proc, before, pubsub_result(s))
            after = p.write_bytes()
            if written is not None and after is not None and r["ops"]:
                r["write_b_per_msg"] = (after - written) / r["ops"]
            if proc.poll() is not None:
                raise Failed(f"broker exited (code {proc.returncode}): {tail(workdir / f'{broker.name}.log')}")
        finally:
            stop(proc)
        if broker.name == "portcullis" and mode != "off":
            groups = store_group_commits(workdir / f"{broker.name}.log")
            if groups is not None and wall > 0:
                r["fsyncs_per_s"] = groups / wall
        elif broker.name == "portcullis":
            r["fsyncs_per_s"] = 0.0
        r["mode"] = mode
        results[label] = r
    return results


def run_one(opts, workload, broker, round_no):
    """Runs `workload` against a fresh `broker`; returns {row label: result}."""
    w = WORKLOADS[workload]
    if w["kind"] == "persist":
        return run_persist(opts, workload, broker, round_no)
    if w["kind"] == "cluster":
        return run_cluster(opts, workload, broker, round_no, run_bench)
    workdir = Path(tempfile.mkdtemp(prefix=f"{workload}-{broker.name}-r{round_no}-", dir=opts.out))
    sizes = w["quick"] if opts.quick else w["full"]
    auth = {"passwd": str(opts.passwd)} if w["kind"] == "auth" else None
    proc, port = start_broker(broker, workdir, auth)
    try:
        time.sleep(0.3)  # let it finish starting up before the baseline
        p = Proc(proc.pid)
        base = ["--port", str(port), "--timeout", "10s"]
        limit = 600.0 if not opts.quick else 120.0
        if w["kind"] == "pubsub":
            before = p.cpu_s()
            p.reset_hwm()
            s = run_bench(opts.bench, ["pubsub", *base, "--quiet", *w["args"], *sizes], limit, workdir)
            results = {w["title"]: measured(proc, before, pubsub_result(s))}
        elif w["kind"] == "conn":
            # RSS with the connections held: read HOLD_SETTLE after the
            # load tool says it is holding them (its hold is longer).
            # Kernel memory (not in RSS): the machine-wide Slab grows by a
            # client and a server socket per connection.
            rss_before, slab_before = p.rss_kb(), slab_kb()
            held = {}
            holding, done = threading.Event(), threading.Event()

            def on_line(line):
                if "holding " in line:
                    holding.set()

            def sample():
                if holding.wait(timeout=limit) and not done.wait(timeout=HOLD_SETTLE) and proc.poll() is None:
                    held["rss_kb"], held["slab_kb"] = p.rss_kb(), slab_kb()

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            before = p.cpu_s()
            p.reset_hwm()
            try:
                s = run_bench(opts.bench, ["conn", *base, *w["args"], *sizes], limit, workdir, on_line)
            finally:
                done.set()
                holding.set()
                sampler.join(timeout=5)
            r = measured(proc, before, conn_result(s))
            if "rss_kb" in held and rss_before is not None:
                r["rss_before_kb"], r["rss_held_kb"] = rss_before, held["rss_kb"]
                r["rss_per_conn_b"] = (held["rss_kb"] - rss_before) * 1024 / r["ops"]
                r["kernel_per_socket_b"] = (held["slab_kb"] - slab_before) * 1024 / (2 * r["ops"])
            results = {w["title"]: r}
        else:  # auth: a cold pass, then for Portcullis a warm-cache pass
            results = {}
            passes = [AUTH_COLD, AUTH_WARM] if broker.name == "portcullis" else [AUTH_COLD]
            argv = ["conn", *base, *w["args"], *sizes, "--quiet", "--username", "bench", "--password-stdin"]
            argv += ["--client-id-prefix", f"auth-{round_no}-"]
            for label in passes:
                before = p.cpu_s()
                p.reset_hwm()
                s = run_bench(opts.bench, argv, limit, workdir, stdin_text=AUTH_PASSWORD + "\n")
                results[label] = measured(proc, before, conn_result(s))
        if proc.poll() is not None:
            raise Failed(f"broker exited (code {proc.returncode}): {tail(workdir / f'{broker.name}.log')}")
        return results
    finally:
        stop(proc)


def make_passwd(opts):
    """A Mosquitto password file ($7$ PBKDF2-SHA512) for bench0..bench99,
    used by Mosquitto and Portcullis alike."""
    path = Path(opts.out) / "passwd"
    path.write_text("".join(f"bench{i}:{AUTH_PASSWORD}\n" for i in range(AUTH_USERS)))
    if opts.mosquitto_passwd:
        subprocess.run([opts.mosquitto_passwd, "-U", str(path)], check=True, timeout=60)
    else:
        path.write_text("")
        for i in range(AUTH_USERS):
            subprocess.run(
                [opts.portcullis, "passwd", str(path), f"bench{i}", "--hash", "pbkdf2"],
                input=AUTH_PASSWORD + "\n", text=True, check=True, timeout=60, capture_output=True,
            )
    path.chmod(0o644)
    return path


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--brokers", default=",".join(BROKERS), help=f"comma-separated subset of {','.join(BROKERS)}")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke test, not a measurement")
    ap.add_argument("--out", help="directory for configs, logs and results.json (default: a new temp dir)")
    ap.add_argument("--bench", required=True, help="portcullis-bench binary")
    ap.add_argument("--portcullis", required=True)
    ap.add_argument("--mosquitto", default="mosquitto")
    ap.add_argument("--mosquitto-passwd", default=None)
    ap.add_argument("--rumqttd", default="rumqttd")
    opts = ap.parse_args(argv)
    opts.workloads = [w for w in opts.workloads.split(",") if w]
    opts.brokers = [b for b in opts.brokers.split(",") if b]
    for w in opts.workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    for b in opts.brokers:
        if b not in BROKERS:
            ap.error(f"unknown broker {b!r} (known: {', '.join(BROKERS)})")
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    if not 1 <= opts.rounds <= 50:
        ap.error("--rounds must be 1..50")
    return opts


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    opts = parse_args(argv)
    set_titles(opts.quick)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    opts.out = opts.out or tempfile.mkdtemp(prefix="portcullis-bench-compare-")
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    binaries = {"portcullis": opts.portcullis, "mosquitto": opts.mosquitto, "rumqttd": opts.rumqttd}
    brokers = {b: BROKERS[b](binaries[b]) for b in opts.brokers}
    load = os.getloadavg()
    print(f"# bench-compare: {opts.rounds} round(s){' (QUICK: smoke test, not a measurement)' if opts.quick else ''}")
    print(f"# {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    for b in brokers.values():
        print(f"# {b.name}: {b.version()}")
    print(f"# configs, logs and results.json in {opts.out}", flush=True)
    results = {}
    try:
        if "auth" in opts.workloads:
            opts.passwd = make_passwd(opts)
        for workload in opts.workloads:
            for rnd in range(1, opts.rounds + 1):
                for b in opts.brokers:
                    if WORKLOADS[workload]["kind"] == "cluster" and b != "portcullis":
                        continue  # no cluster mode to compare with
                    t0 = time.monotonic()
                    try:
                        got = run_one(opts, workload, brokers[b], rnd)
                        for row, r in got.items():
                            results[(row, workload, b, rnd)] = r
                        brief = "; ".join(
                            f"{row}: {r['rate']:,.0f}/s, {r['cpu_s']:.2f}s CPU" for row, r in got.items()
                        )
                    except Failed as e:
                        kind = WORKLOADS[workload]["kind"]
                        rows = [AUTH_COLD] if kind == "auth" else [WORKLOADS[workload]["title"]]
                        if kind == "persist":
                            rows = [persist_row(rows[0], PERSIST_MODES[0])]
                        for row in rows:
                            results[(row, workload, b, rnd)] = e
                        brief = f"failed: {e}"
                    print(f"  round {rnd} {workload:<8} {b:<10} {time.monotonic() - t0:5.1f}s  {brief}", flush=True)
    except KeyboardInterrupt as e:
        print(f"interrupted ({e}); stopping what was started", file=sys.stderr)
        stop_all()
        return 130
    finally:
        stop_all()
    rows = summarise(results, opts.brokers)
    load = os.getloadavg()
    print(f"\n# medians over {opts.rounds} round(s); load average {load[0]:.2f} at the end\n")
    table = print_table(rows, opts.brokers, sys.stdout)
    kernel = kernel_lines(rows)
    if kernel:
        print("\n" + "\n".join(kernel))
    persist = persist_lines(rows)
    if persist:
        print("\n" + "\n".join(persist))
    targets = check_targets(rows)
    print("\nTargets of issue 7 (ours; ratios are medians of per-round ratios):")
    print("\n".join(targets))
    raw = [
        {"row": k[0], "workload": k[1], "broker": k[2], "round": k[3],
         **(v if isinstance(v, dict) else {"failed": str(v)})}
        for k, v in results.items()
    ]
    (Path(opts.out) / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    (Path(opts.out) / "table.md").write_text(
        "\n\n".join([table, "\n".join(kernel), "\n".join(persist), "\n".join(targets)]) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
