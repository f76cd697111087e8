"""The brokers of scripts/bench-compare.sh and their processes.

* Broker classes -- one per broker: its config file for a port (and for the
  password file of the auth workload) and its command line.
* Proc -- CPU time (utime+stime from /proc/PID/stat) and RSS (VmRSS, VmHWM
  from /proc/PID/status) of a process.
* start_broker / stop / stop_all -- every process started is kept in LIVE
  and stopped by its PID: SIGTERM, then SIGKILL after STOP_TIMEOUT.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench_compare_workloads import AUTH_PASSWORD, AUTH_USERS

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The log target of Portcullis' "store flushed" line (group commits).
STORE_LOG_TARGET = "portcullis::node"
START_TIMEOUT = 15.0  # seconds for a broker to accept TCP connections
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL


def free_port():
    """A TCP port the OS reports free on 127.0.0.1 (closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A broker under test: writes its config, knows its command line."""

    name = "?"

    def __init__(self, binary):
        self.binary = binary

    def command(self, port, workdir, auth, persistence=None):
        """`persistence`: None (the broker's in-memory setup), or for the
        "persist" workloads Portcullis' mode ("strict", "relaxed", "off")
        and "on" for a peer (its own persistence switched on)."""
        raise NotImplementedError

    def version(self):
        try:
            out = subprocess.run(
                [self.binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"


class Portcullis(Broker):
    name = "portcullis"

    def command(self, port, workdir, auth, persistence=None):
        # Anonymous clients from loopback (the default) or the password
        # file; queues large enough that QoS 1 is never dropped.
        cfg = [
            "[log]",
            'level = "warn"',
            "",
            "[[listeners]]",
            'name = "bench"',
            f'bind = "127.0.0.1:{port}"',
            "max_connections = 100000",
            "",
            "[session]",
            "max_inflight = 32",
            "max_queue_len = 1000000",
            'max_queue_bytes = "1GiB"',
        ]
        if persistence:
            # The store's own data directory in this run's workdir; its
            # group commits (= fsyncs) are logged when it stops.
            cfg[1] = f'level = "warn,{STORE_LOG_TARGET}=info"'
            cfg += ["", "[persistence]", f'mode = "{persistence}"', f'dir = "{workdir / "data"}"']
        if auth:
            cfg += [
                "",
                "[auth]",
                'chain = ["bench"]',
                "",
                "[auth.password_file.bench]",
                f'path = "{auth["passwd"]}"',
            ]
        path = workdir / "portcullis.toml"
        path.write_text("\n".join(cfg) + "\n")
        return [self.binary, "--config", str(path)]


class Mosquitto(Broker):
    name = "mosquitto"

    def command(self, port, workdir, auth, persistence=None):
        cfg = [
            f"listener {port} 127.0.0.1",
        ]
        if persistence:
            # Its defaults otherwise: the in-memory state is written to
            # mosquitto.db every autosave_interval (1800 s) and at exit.
            (workdir / "mosquitto-data").mkdir(exist_ok=True)
            cfg += ["persistence true", f"persistence_location {workdir / 'mosquitto-data'}/"]
        else:
            cfg += ["persistence false"]
        cfg += [
            # 0 = no limit: QoS 1 is never dropped (the default is 1000).
            "max_queued_messages 0",
            "max_queued_bytes 0",
            # Same outgoing QoS 1/2 window as Portcullis' session.max_inflight.
            "max_inflight_messages 32",
            "max_connections -1",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "connection_messages false",
            # Started as root, Mosquitto would switch to the `mosquitto`
            # user, which may not read the temp files.
            "user root",
        ]
        if auth:
            cfg += ["allow_anonymous false", f"password_file {auth['passwd']}"]
        else:
            cfg += ["allow_anonymous true"]
        path = workdir / "mosquitto.conf"
        path.write_text("\n".join(cfg) + "\n")
        return [self.binary, "-c", str(path)]

    def version(self):
        try:
            out = subprocess.run([self.binary, "-h"], capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"


class Rumqttd(Broker):
    name = "rumqttd"

    def command(self, port, workdir, auth, persistence=None):
        if persistence:
            raise Failed("rumqttd keeps sessions in memory only (no persistence to compare)")
        # One v4 listener on loopback, no console or metrics ports.
        # next_connection_delay_ms = 0: rumqttd's default (1 ms) sleeps
        # after every accept, which caps it below 1,000 connects/s; the
        # other brokers have no such pause. max_connections above the
        # largest idle workload (19,000).
        cfg = [
            "id = 0",
            "",
            "[router]",
            "id = 0",
            "max_connections = 20010",
            "max_outgoing_packet_count = 200",
            "max_segment_size = 104857600",
            "max_segment_count = 10",
            "",
            "[v4.1]",
            'name = "v4-1"',
            f'listen = "127.0.0.1:{port}"',
            "next_connection_delay_ms = 0",
            "[v4.1.connections]",
            "connection_timeout_ms = 10000",
            "max_payload_size = 20480",
            "max_inflight_count = 100",
            "dynamic_filters = true",
        ]
        if auth:
            # rumqttd only knows plain-text passwords in its config.
            cfg += ["[v4.1.connections.auth]"]
            cfg += [f'bench{i} = "{AUTH_PASSWORD}"' for i in range(AUTH_USERS)]
        path = workdir / "rumqttd.toml"
        path.write_text("\n".join(cfg) + "\n")
        return [self.binary, "-q", "-c", str(path)]


BROKERS = {"portcullis": Portcullis, "mosquitto": Mosquitto, "rumqttd": Rumqttd}

class Proc:
    """CPU time and memory of one process, from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu_s(self):
        """utime + stime in seconds (resolution 1/CLK_TCK, usually 10 ms)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3); utime and stime are fields 14, 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kb(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def rss_kb(self):
        return self.status_kb("VmRSS")

    def hwm_kb(self):
        return self.status_kb("VmHWM")

    def write_bytes(self):
        """Bytes this process caused to be sent to the storage layer
        (/proc/PID/io write_bytes), or None where it cannot be read."""
        try:
            with open(f"/proc/{self.pid}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def reset_hwm(self):
        """Resets VmHWM to the current RSS (Linux >= 4.0); False if refused."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


class Failed(Exception):
    """A workload could not be measured on a broker; the message says why."""


def pubsub_result(s):
    """The figures of one portcullis-bench pubsub summary (its JSON line)."""
    if s["errors"]:
        raise Failed(f"{len(s['errors'])} client errors, first: {s['errors'][0]}")
    return {
        "rate": s["msgs_per_s"],
        "ops": s["received"],
        "p50_us": s["p50_us"],
        "p99_us": s["p99_us"],
        "loss": s["lost"],
        "dups": s["duplicates"],
        "expected": s["expected"],
    }


LIVE = {}  # pid -> Popen of every process we started and have not reaped


def stop(proc):
    """SIGTERM by PID, SIGKILL after STOP_TIMEOUT; always reaps."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    LIVE.pop(proc.pid, None)


def stop_all():
    for proc in list(LIVE.values()):
        try:
            stop(proc)
        except (OSError, subprocess.SubprocessError):
            pass


def start_broker(broker, workdir, auth, persistence=None):
    port = free_port()
    argv = broker.command(port, workdir, auth, persistence)
    env = {k: v for k, v in os.environ.items() if k != "PORTCULLIS_LOG"}
    with open(workdir / f"{broker.name}.log", "w") as log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=workdir)
        except OSError as e:
            raise Failed(f"cannot run {argv[0]}: {e.strerror}") from None
    LIVE[proc.pid] = proc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failed(f"did not start (exit {proc.returncode}): {tail(workdir / f'{broker.name}.log')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise Failed(f"not listening after {START_TIMEOUT:.0f}s")


def tail(path, n=1):
    try:
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        return " / ".join(lines[-n:])[:200] or "no output"
    except OSError:
        return "no output"
