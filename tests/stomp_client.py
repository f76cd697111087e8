"""stomp.py (PyPI `stomp.py`) playing STOMP clients for tests/tests/stomp.rs.

    stomp_client.py SCENARIO VERSION PORT [ARGS...]

Each scenario prints JSON lines: {"ready": true} once it waits for the
test to act (publish over MQTT), and one result object at the end. Every
wait is bounded.
"""

import json
import sys
import threading
import time

import stomp

CLASSES = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.lock = threading.Condition()
        self.messages = []
        self.receipts = []
        self.errors = []
        self.connected = None
        self.heartbeats = 0
        self.disconnected = False

    def on_connected(self, frame):
        with self.lock:
            self.connected = dict(frame.headers)
            self.lock.notify_all()

    def on_message(self, frame):
        with self.lock:
            body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
            self.messages.append({"headers": dict(frame.headers), "body": body.hex()})
            self.lock.notify_all()

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.lock.notify_all()

    def on_error(self, frame):
        with self.lock:
            self.errors.append(dict(frame.headers))
            self.lock.notify_all()

    def on_heartbeat(self):
        with self.lock:
            self.heartbeats += 1

    def on_disconnected(self):
        with self.lock:
            self.disconnected = True
            self.lock.notify_all()

    def wait(self, pred, timeout=5.0):
        end = time.time() + timeout
        with self.lock:
            while not pred():
                left = end - time.time()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def bodies(self):
        with self.lock:
            return [bytes.fromhex(m["body"]).decode("latin-1") for m in self.messages]


def connect(version, port, login=None, passcode=None, heartbeats=(0, 0), wait=True):
    cls = CLASSES[version]
    kwargs = {"auto_decode": False}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    conn = cls([("127.0.0.1", port)], **kwargs)
    listener = Listener()
    conn.set_listener("", listener)
    args = {}
    if login is not None:
        args["username"] = login
        args["passcode"] = passcode
    conn.connect(wait=wait, **args)
    return conn, listener


def out(obj):
    print(json.dumps(obj), flush=True)


def receipt(conn, listener, rid):
    return listener.wait(lambda: rid in listener.receipts)


def subscribe(conn, version, dest, sid, ack="auto", rid=None):
    headers = {}
    if rid:
        headers["receipt"] = rid
    conn.subscribe(destination=dest, id=sid, ack=ack, headers=headers)


def ack(conn, version, msg, sid):
    h = msg["headers"]
    if version == "1.2":
        conn.ack(h["ack"], receipt="ack-" + h["message-id"])
    elif version == "1.1":
        conn.ack(h["message-id"], sid, receipt="ack-" + h["message-id"])
    else:
        conn.ack(h["message-id"], receipt="ack-" + h["message-id"])


def nack(conn, version, msg, sid):
    h = msg["headers"]
    if version == "1.2":
        conn.nack(h["ack"], receipt="nack-" + h["message-id"])
    else:
        conn.nack(h["message-id"], sid, receipt="nack-" + h["message-id"])


def scenario_negotiate(version, port):
    conn, listener = connect(version, port)
    out({"connected": listener.connected})
    conn.disconnect()


def scenario_basic(version, port, login="", passcode=""):
    """Wildcard subscription; SEND with a receipt comes back; then waits for
    the test's MQTT publishes (NUL bytes included) and reports them."""
    conn, listener = connect(version, port, login or None, passcode or None)
    subscribe(conn, version, "w/+/x", "s1", rid="sub")
    receipt(conn, listener, "sub")
    conn.send(destination="w/a/x", body=b"hello", receipt="r1")
    receipt(conn, listener, "r1")
    listener.wait(lambda: len(listener.messages) >= 1)
    out({"ready": True})
    listener.wait(lambda: len(listener.messages) >= 3, 10)
    # A body with NUL bytes to the MQTT subscriber.
    conn.send(destination="w/to-mqtt/x", body=b"\x00n\x00u\x00l\x00", receipt="r2")
    receipt(conn, listener, "r2")
    time.sleep(0.2)
    out({"version": listener.connected.get("version"), "messages": listener.messages, "receipts": listener.receipts,
         "errors": listener.errors})
    conn.disconnect()


def scenario_acks(version, port):
    """The broker's window is 2 (session.max_inflight = 2): unacknowledged
    messages hold it, ACK and NACK free it."""
    conn, listener = connect(version, port)
    result = {}
    modes = ["client"] + ([] if version == "1.0" else ["client-individual"])
    for mode in modes:
        dest = "ack/" + mode
        subscribe(conn, version, dest + "/#", mode, ack=mode, rid="sub-" + mode)
        receipt(conn, listener, "sub-" + mode)
        start = len(listener.messages)
        for i in range(3):
            conn.send(destination="%s/%d" % (dest, i), body="m%d" % i, receipt="s-%s-%d" % (mode, i))
            receipt(conn, listener, "s-%s-%d" % (mode, i))
        listener.wait(lambda: len(listener.messages) >= start + 2)
        time.sleep(0.5)
        before_ack = len(listener.messages) - start
        mine = listener.messages[start:]
        # Ack the second: cumulative frees both, individual frees one.
        ack(conn, version, mine[1], mode)
        receipt(conn, listener, "ack-" + mine[1]["headers"]["message-id"])
        listener.wait(lambda: len(listener.messages) >= start + 3)
        after_ack = len(listener.messages) - start
        conn.send(destination="%s/%d" % (dest, 3), body="m3", receipt="s-%s-3" % mode)
        receipt(conn, listener, "s-%s-3" % mode)
        listener.wait(lambda: len(listener.messages) >= start + 4, 1.0)
        after_fourth = len(listener.messages) - start
        # NACK what is still open: the window frees, nothing comes again.
        open_msgs = listener.messages[start + 2:] if mode == "client" else [listener.messages[start]] + listener.messages[start + 2:]
        for m in open_msgs:
            if version == "1.0":
                ack(conn, version, m, mode)
            else:
                nack(conn, version, m, mode)
        time.sleep(0.3)
        n = len(listener.messages) - start
        result[mode] = {"before_ack": before_ack, "after_ack": after_ack, "after_fourth": after_fourth,
                        "after_nack": n, "bodies": listener.bodies()[start:]}
        conn.unsubscribe(id=mode)
    result["errors"] = listener.errors
    out(result)
    conn.disconnect()


def scenario_tx(version, port):
    conn, listener = connect(version, port)
    subscribe(conn, version, "tx/#", "t", rid="sub")
    receipt(conn, listener, "sub")
    conn.begin("t1")
    conn.send(destination="tx/a", body="in-t1", transaction="t1", receipt="s1")
    receipt(conn, listener, "s1")
    time.sleep(0.3)
    before_commit = listener.bodies()
    conn.commit("t1")
    listener.wait(lambda: len(listener.messages) >= 1)
    after_commit = listener.bodies()
    conn.begin("t2")
    conn.send(destination="tx/b", body="in-t2", transaction="t2")
    conn.abort("t2")
    conn.send(destination="tx/c", body="after", receipt="s3")
    listener.wait(lambda: len(listener.messages) >= 2)
    time.sleep(0.3)
    out({"before_commit": before_commit, "after_commit": after_commit, "end": listener.bodies(),
         "errors": listener.errors})
    conn.disconnect()


def scenario_heartbeat(version, port):
    conn, listener = connect(version, port, heartbeats=(300, 300))
    time.sleep(2.0)
    out({"connected": listener.connected, "heartbeats": listener.heartbeats, "alive": conn.is_connected()})
    conn.disconnect()


def scenario_refused(version, port, login, passcode):
    cls = CLASSES[version]
    conn = cls([("127.0.0.1", port)], auto_decode=False)
    listener = Listener()
    conn.set_listener("", listener)
    try:
        conn.connect(username=login, passcode=passcode, wait=False)
    except Exception as e:  # noqa: BLE001 - reported to the test
        out({"exception": str(e)})
        return
    listener.wait(lambda: listener.errors or listener.disconnected)
    listener.wait(lambda: listener.disconnected, 3)
    out({"errors": listener.errors, "disconnected": listener.disconnected})


def scenario_denied(version, port, login, passcode, action):
    conn, listener = connect(version, port, login, passcode)
    if action == "send":
        conn.send(destination="secret/x", body="no", receipt="r")
    else:
        subscribe(conn, version, "secret/#", "s", rid="r")
    listener.wait(lambda: listener.errors)
    listener.wait(lambda: listener.disconnected, 3)
    out({"errors": listener.errors, "receipts": listener.receipts, "disconnected": listener.disconnected})


def scenario_shared(version, port, n):
    """Two connections in one shared group; the test publishes n messages."""
    conns = []
    for i in range(2):
        conn, listener = connect(version, port)
        subscribe(conn, version, "$share/g/sh/#", "s%d" % i, rid="sub")
        receipt(conn, listener, "sub")
        conns.append((conn, listener))
    out({"ready": True})
    n = int(n)
    end = time.time() + 10
    while time.time() < end and sum(len(l.messages) for _, l in conns) < n:
        time.sleep(0.05)
    time.sleep(0.3)
    out({"counts": [len(l.messages) for _, l in conns], "bodies": sorted(b for _, l in conns for b in l.bodies())})
    for conn, _ in conns:
        conn.disconnect()


def scenario_headers(version, port):
    """SEND with custom headers (to the test's MQTT 5 subscriber); then
    reports the MESSAGE frames of the test's MQTT 5 publishes."""
    conn, listener = connect(version, port)
    subscribe(conn, version, "h/out", "s", rid="sub")
    receipt(conn, listener, "sub")
    conn.send(destination="h/in", body=b"with-headers", content_type="text/plain", receipt="r1",
              headers={"x-custom": "1", "x-other": "two words", "reply-to": "h/reply", "correlation-id": "c-42"})
    receipt(conn, listener, "r1")
    out({"ready": True})
    listener.wait(lambda: len(listener.messages) >= 1, 10)
    time.sleep(0.2)
    out({"messages": listener.messages, "errors": listener.errors})
    conn.disconnect()


def scenario_many_headers(version, port, n):
    """SEND with n custom headers: more than max_user_properties is an ERROR."""
    conn, listener = connect(version, port)
    headers = {"x-h%d" % i: "v" for i in range(int(n))}
    conn.send(destination="h/many", body=b"x", receipt="r", headers=headers)
    listener.wait(lambda: listener.errors or listener.receipts)
    listener.wait(lambda: listener.disconnected, 3)
    out({"errors": listener.errors, "receipts": listener.receipts, "disconnected": listener.disconnected})


def scenario_idle(version, port, client_id, seconds):
    """Connects with a client-id, says ready, stays connected a while."""
    cls = CLASSES[version]
    conn = cls([("127.0.0.1", port)], auto_decode=False)
    listener = Listener()
    conn.set_listener("", listener)
    conn.connect(wait=True, headers={"client-id": client_id})
    out({"ready": True, "connected": listener.connected})
    time.sleep(float(seconds))
    conn.disconnect()


def scenario_rewrite(version, port):
    """old/x and ctl subscribed; the test publishes old/x, new/x, ctl; then
    UNSUBSCRIBE old/x and the test publishes new/x, ctl; then SUBSCRIBE
    s/x, which the test's rewrite makes denied/x (an ACL refusal)."""
    conn, listener = connect(version, port)
    subscribe(conn, version, "old/x", "s", rid="sub")
    receipt(conn, listener, "sub")
    subscribe(conn, version, "ctl", "c", rid="sub2")
    receipt(conn, listener, "sub2")
    out({"ready": True})

    def ctl(n):
        return lambda: sum(1 for m in listener.messages if m["headers"].get("destination") == "ctl") >= n

    listener.wait(ctl(1), 10)
    conn.unsubscribe(id="s", receipt="unsub")
    receipt(conn, listener, "unsub")
    out({"ready": True})
    listener.wait(ctl(2), 10)
    subscribe(conn, version, "s/x", "d", rid="sub3")
    listener.wait(lambda: listener.errors or "sub3" in listener.receipts)
    listener.wait(lambda: listener.disconnected, 3)
    got = [(m["headers"].get("destination"), bytes.fromhex(m["body"]).decode()) for m in listener.messages]
    out({"messages": got, "errors": listener.errors, "receipts": listener.receipts,
         "disconnected": listener.disconnected})


if __name__ == "__main__":
    name, version, port, *rest = sys.argv[1:]
    globals()["scenario_" + name](version, int(port), *rest)
