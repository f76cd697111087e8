"""The same STOMP scenarios against two brokers, side by side.

    stomp_compare.py NAME=HOST:PORT:LOGIN:PASSCODE:STYLE [NAME=...] [--json]

STYLE says how a topic is written for that broker: `mqtt` (Portcullis:
`a/b/c`, filters `a/+/c`, `a/#`) or `amqp` (RabbitMQ: `/topic/a.b.c`,
filters `/topic/a.*.c`, `/topic/a.#`). Every scenario runs the same
stomp.py calls (or the same raw frames) against each broker; only the
destination spelling differs, and the wildcard scenario also tries the
other broker's spelling. Each outcome is a short string; every wait is
bounded. Used by scripts/stomp-compare.sh (not by CI).
"""

import json
import socket
import sys
import threading
import time

import stomp

CLASSES = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
RUN = str(int(time.time() * 1000) % 100000)  # keeps topics of two runs apart


class Broker:
    def __init__(self, spec):
        name, rest = spec.split("=", 1)
        host, port, login, passcode, style = rest.split(":")
        self.name, self.host, self.port = name, host, int(port)
        self.login, self.passcode, self.style = login, passcode, style

    def topic(self, path):
        """A topic name (or filter in MQTT syntax) in this broker's spelling."""
        path = "cmp%s/%s" % (RUN, path)
        if self.style == "mqtt":
            return path
        return "/topic/" + path.replace("/", ".").replace("+", "*")


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.cv = threading.Condition()
        self.messages, self.receipts, self.errors = [], [], []
        self.connected = None
        self.heartbeats = 0
        self.disconnected = False

    def on_connected(self, frame):
        with self.cv:
            self.connected = dict(frame.headers)
            self.cv.notify_all()

    def on_message(self, frame):
        with self.cv:
            body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
            self.messages.append((dict(frame.headers), body))
            self.cv.notify_all()

    def on_receipt(self, frame):
        with self.cv:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cv.notify_all()

    def on_error(self, frame):
        with self.cv:
            body = frame.body if isinstance(frame.body, bytes) else (frame.body or "").encode()
            self.errors.append((dict(frame.headers), body))
            self.cv.notify_all()

    def on_heartbeat(self):
        with self.cv:
            self.heartbeats += 1

    def on_disconnected(self):
        with self.cv:
            self.disconnected = True
            self.cv.notify_all()

    def wait(self, pred, timeout=3.0):
        end = time.time() + timeout
        with self.cv:
            while not pred():
                left = end - time.time()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True

    def bodies(self):
        with self.cv:
            return [b.decode("latin-1") for _, b in self.messages]


def connect(b, version="1.2", passcode=None, heartbeats=(0, 0), wait=True):
    kwargs = {"auto_decode": False}
    headers = {}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
        kwargs["vhost"] = "/"
    else:
        headers["host"] = "/"
    # RabbitMQ reads `host` as the virtual host; stomp.py would send the
    # server's address there (1.2). "/" is RabbitMQ's default virtual host;
    # Portcullis reads and ignores `host`.
    conn = CLASSES[version]([(b.host, b.port)], **kwargs)
    listener = Listener()
    conn.set_listener("", listener)
    conn.connect(b.login, b.passcode if passcode is None else passcode, wait=wait, headers=headers)
    return conn, listener


def close(conn):
    try:
        conn.disconnect()
    except Exception:  # noqa: BLE001 - already closed by the broker
        pass


def err(listener):
    if not listener.errors:
        return ""
    h, body = listener.errors[0]
    return "ERROR message=%r (body: %r)" % (h.get("message"), first_line(body))


def first_line(body):
    return body.decode("utf-8", "replace").strip().split("\n")[0][:80]


# ---- raw frames, for what stomp.py does not let us write byte by byte ----


class Raw:
    def __init__(self, b):
        self.s = socket.create_connection((b.host, b.port), timeout=3)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def frame(self, timeout=3.0):
        """The next frame as (command, [(name, raw value)], body), or None."""
        end = time.time() + timeout
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            head_end = self.buf.find(b"\n\n")
            if head_end < 0 and b"\r\n\r\n" in self.buf:
                head_end = self.buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.buf[:head_end].replace(b"\r\n", b"\n").decode("utf-8", "replace").split("\n")
                sep = 4 if self.buf[head_end:head_end + 4] == b"\r\n\r\n" else 2
                headers = [tuple(l.split(":", 1)) if ":" in l else (l, "") for l in head[1:]]
                start = head_end + sep
                length = next((int(v) for k, v in headers if k == "content-length"), None)
                if length is not None and len(self.buf) >= start + length + 1:
                    body = self.buf[start:start + length]
                    self.buf = self.buf[start + length + 1:]
                    return head[0], headers, body
                if length is None and b"\0" in self.buf[start:]:
                    nul = self.buf.index(b"\0", start)
                    body = self.buf[start:nul]
                    self.buf = self.buf[nul + 1:]
                    return head[0], headers, body
            left = end - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                return None
            if not data:
                return None
            self.buf += data

    def closed(self, timeout=3.0):
        end = time.time() + timeout
        while time.time() < end:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                if not self.s.recv(65536):
                    return True
            except socket.timeout:
                return False
            except OSError:
                return True
        return False

    def close(self):
        self.s.close()


def hget(headers, name):
    return next((v for k, v in headers if k == name), None)


def raw_connected(b, version="1.2"):
    r = Raw(b)
    r.send(("CONNECT\naccept-version:%s\nhost:/\nlogin:%s\npasscode:%s\n\n\0" % (version, b.login, b.passcode)).encode())
    f = r.frame()
    if not f or f[0] != "CONNECTED":
        raise RuntimeError("no CONNECTED: %r" % (f,))
    return r


def error_summary(f):
    if f is None:
        return "no frame"
    cmd, headers, body = f
    if cmd != "ERROR":
        return cmd
    names = ",".join(sorted(k for k, _ in headers))
    return "ERROR message=%r [%s] (body: %r)" % (hget(headers, "message"), names, first_line(body))


# ---- scenarios: each returns a short string ----


def s_version(b, version):
    conn, l = connect(b, version)
    c = l.connected or {}
    close(conn)
    return "CONNECTED version=%s" % c.get("version")


def s_version_none(b):
    r = Raw(b)
    r.send(("CONNECT\nhost:/\nlogin:%s\npasscode:%s\n\n\0" % (b.login, b.passcode)).encode())
    f = r.frame()
    r.close()
    return "%s version=%s" % (f[0], hget(f[1], "version")) if f else "no frame"


def s_version_unknown(b):
    r = Raw(b)
    r.send(("CONNECT\naccept-version:2.0\nhost:/\nlogin:%s\npasscode:%s\n\n\0" % (b.login, b.passcode)).encode())
    f = r.frame()
    out = error_summary(f)
    if f and f[0] == "ERROR":
        out += " version=%s" % hget(f[1], "version")
    out += "; closed" if r.closed() else "; open"
    r.close()
    return out


def s_host_default(b):
    """stomp.py's own `host` header: the server's address."""
    conn = stomp.Connection12([(b.host, b.port)], auto_decode=False)
    l = Listener()
    conn.set_listener("", l)
    conn.connect(b.login, b.passcode, wait=False)
    l.wait(lambda: l.connected or l.errors or l.disconnected)
    out = "CONNECTED" if l.connected else (err(l) or "no answer")
    close(conn)
    return out


def s_roundtrip(b, version):
    conn, l = connect(b, version)
    d = b.topic("rt/" + version)
    conn.subscribe(destination=d, id="s1", ack="auto", headers={"receipt": "sub"})
    l.wait(lambda: "sub" in l.receipts)
    conn.send(destination=d, body=b"hello", receipt="r1")
    l.wait(lambda: l.messages)
    out = "got %r" % l.bodies() if l.messages else "nothing"
    if l.messages:
        h = l.messages[0][0]
        out += " headers=%s" % ",".join(sorted(h))
    out += (" " + err(l)) if l.errors else ""
    close(conn)
    return out


def s_wildcard(b, filt, name):
    """Subscribes `filt`, sends to `name` (both literal), reports what came."""
    conn, l = connect(b)
    conn.subscribe(destination=filt, id="w", ack="auto", headers={"receipt": "sub"})
    l.wait(lambda: "sub" in l.receipts or l.errors or l.disconnected)
    if l.errors:
        out = "SUBSCRIBE: " + err(l)
        close(conn)
        return out
    conn.send(destination=name, body=b"w", receipt="r")
    l.wait(lambda: l.messages or l.errors or l.disconnected, 1.5)
    if l.messages:
        out = "delivered (destination=%s)" % l.messages[0][0].get("destination")
    elif l.errors:
        out = "SEND: " + err(l)
    else:
        out = "not delivered"
    close(conn)
    return out


def wildcard_rows(b):
    p = "cmp%s/wc" % RUN
    a = "/topic/cmp%s.wc" % RUN
    forms = [
        ("MQTT `+` filter: a/+/c <- a/b/c", p + "/a/+/c", p + "/a/b/c"),
        ("MQTT `#` filter: a/# <- a/b/c", p + "/a/#", p + "/a/b/c"),
        ("AMQP `*` filter: /topic/a.*.c <- /topic/a.b.c", a + ".a.*.c", a + ".a.b.c"),
        ("AMQP `#` filter: /topic/a.# <- /topic/a.b.c", a + ".a.#", a + ".a.b.c"),
        ("/queue/q <- /queue/q", "/queue/cmp%s-q" % RUN, "/queue/cmp%s-q" % RUN),
    ]
    return [(label, lambda b, f=f, n=n: s_wildcard(b, f, n)) for label, f, n in forms]


def s_custom_header(b):
    """SEND with `x-custom` and `content-type`: what the MESSAGE carries."""
    conn, l = connect(b)
    d = b.topic("hdr")
    conn.subscribe(destination=d, id="h", ack="auto", headers={"receipt": "sub"})
    l.wait(lambda: "sub" in l.receipts)
    conn.send(destination=d, body=b"x", content_type="text/plain", headers={"x-custom": "1"})
    l.wait(lambda: l.messages)
    if not l.messages:
        out = "nothing " + err(l)
    else:
        h = l.messages[0][0]
        out = "x-custom=%s content-type=%s" % (h.get("x-custom"), h.get("content-type"))
    close(conn)
    return out


def s_queue_before_subscribe(b):
    """SEND to /queue/q with nobody subscribed, then SUBSCRIBE."""
    conn, l = connect(b)
    d = "/queue/cmp%s-early" % RUN
    conn.send(destination=d, body=b"early", receipt="s")
    l.wait(lambda: "s" in l.receipts)
    conn.subscribe(destination=d, id="q", ack="auto")
    l.wait(lambda: l.messages, 1.5)
    out = ("got %r" % l.bodies()) if l.messages else "nothing (not kept)"
    out += (" " + err(l)) if l.errors else ""
    close(conn)
    return out


def s_queue_two_consumers(b):
    """Two connections SUBSCRIBE /queue/q; four SENDs: who gets what."""
    d = "/queue/cmp%s-two" % RUN
    pairs = [connect(b) for _ in range(2)]
    for i, (conn, l) in enumerate(pairs):
        conn.subscribe(destination=d, id="q%d" % i, ack="auto", headers={"receipt": "sub"})
        l.wait(lambda l=l: "sub" in l.receipts)
    for i in range(4):
        pairs[0][0].send(destination=d, body="q%d" % i, receipt="s%d" % i)
    end = time.time() + 2
    while time.time() < end and sum(len(l.messages) for _, l in pairs) < 8:
        time.sleep(0.05)
    out = "counts %s" % [len(l.messages) for _, l in pairs]
    for conn, _ in pairs:
        close(conn)
    return out


def ack_msg(conn, version, h):
    if version == "1.2":
        conn.ack(h["ack"])
    else:
        conn.ack(h["message-id"], h.get("subscription"))


def nack_msg(conn, version, h):
    if version == "1.2":
        conn.nack(h["ack"])
    else:
        conn.nack(h["message-id"], h.get("subscription"))


def s_ack(b, version, mode):
    """Three messages m0 m1 m2; ACK m1; NACK m0 (client-individual) or m2
    (client); then what comes again within 1.5 s."""
    conn, l = connect(b, version)
    d = b.topic("ack/%s/%s" % (version, mode))
    conn.subscribe(destination=d, id="a", ack=mode, headers={"receipt": "sub"})
    l.wait(lambda: "sub" in l.receipts)
    for i in range(3):
        conn.send(destination=d, body="m%d" % i, receipt="s%d" % i)
    l.wait(lambda: len(l.messages) >= 3)
    first = l.bodies()
    out = "got %s" % ",".join(first)
    if mode != "auto" and len(l.messages) >= 3:
        ack_msg(conn, version, l.messages[1][0])
        target = l.messages[0][0] if mode == "client-individual" else l.messages[2][0]
        nack_msg(conn, version, target)
        out += "; ACK m1, NACK %s" % ("m0" if mode == "client-individual" else "m2")
    l.wait(lambda: len(l.messages) > 3 or l.errors, 1.5)
    again = l.messages[3:]
    if again:
        out += " -> again: %s" % ",".join("%s(redelivered=%s)" % (body.decode(), h.get("redelivered")) for h, body in again)
    elif mode != "auto":
        out += " -> nothing again"
    out += (" " + err(l)) if l.errors else ""
    close(conn)
    return out


def s_receipts(b):
    conn, l = connect(b)
    d = b.topic("rc")
    conn.subscribe(destination=d, id="s", ack="auto", headers={"receipt": "sub"})
    conn.send(destination=d, body="x", receipt="send")
    l.wait(lambda: l.messages)
    conn.begin("t", receipt="begin")
    conn.commit("t", receipt="commit")
    conn.unsubscribe(id="s", headers={"receipt": "unsub"})
    l.wait(lambda: len(l.receipts) >= 5)
    got = list(l.receipts)
    # DISCONNECT with a receipt: stomp.py waits for it.
    conn.disconnect(receipt="bye")
    l.wait(lambda: "bye" in l.receipts, 2)
    return "receipts: %s" % ",".join(l.receipts) + ((" " + err(l)) if l.errors else "")


def s_tx(b, version):
    conn, l = connect(b, version)
    d = b.topic("tx/" + version)
    conn.subscribe(destination=d, id="t", ack="auto", headers={"receipt": "sub"})
    l.wait(lambda: "sub" in l.receipts)
    conn.begin("t1")
    conn.send(destination=d, body="in-t1", transaction="t1", receipt="s1")
    l.wait(lambda: "s1" in l.receipts)
    time.sleep(0.3)
    before = l.bodies()
    conn.commit("t1")
    l.wait(lambda: len(l.messages) >= 1)
    after = l.bodies()
    conn.begin("t2")
    conn.send(destination=d, body="in-t2", transaction="t2")
    conn.abort("t2")
    conn.send(destination=d, body="after", receipt="s3")
    l.wait(lambda: len(l.messages) >= 2)
    time.sleep(0.3)
    out = "before COMMIT %s, after %s, end %s" % (before, after, l.bodies()) + ((" " + err(l)) if l.errors else "")
    close(conn)
    return out


def s_escapes(b):
    """1.2: SUBSCRIBE id `s\\c1`, SEND to a destination with an escaped
    colon; the raw MESSAGE headers."""
    r = raw_connected(b)
    d = b.topic("esc/a:b").encode().replace(b":", b"\\c")
    r.send(b"SUBSCRIBE\nid:s\\c1\ndestination:" + d + b"\nreceipt:r\n\n\0")
    f = r.frame()
    if not f or f[0] != "RECEIPT":
        r.close()
        return "SUBSCRIBE: " + error_summary(f)
    r.send(b"SEND\ndestination:" + d + b"\n\nx\0")
    f = r.frame(2)
    r.close()
    if not f or f[0] != "MESSAGE":
        return "SEND: " + error_summary(f)
    return "MESSAGE destination=%s subscription=%s" % (hget(f[1], "destination").split("/")[-1].split(".")[-1],
                                                        hget(f[1], "subscription"))


def s_bad_escape(b):
    r = raw_connected(b)
    d = b.topic("esc/t").encode() + b"\\t"
    r.send(b"SEND\ndestination:" + d + b"\nreceipt:r\n\nx\0")
    f = r.frame()
    out = error_summary(f)
    out += "; closed" if r.closed() else "; open"
    r.close()
    return out


def s_nul_body(b):
    r = raw_connected(b)
    d = b.topic("nul").encode()
    r.send(b"SUBSCRIBE\nid:1\ndestination:" + d + b"\nreceipt:r\n\n\0")
    r.frame()
    body = b"\x00a\x00\x00b"
    r.send(b"SEND\ndestination:" + d + b"\ncontent-length:5\n\n" + body + b"\0")
    f = r.frame()
    r.close()
    if not f or f[0] != "MESSAGE":
        return error_summary(f)
    return "body %s, content-length=%s" % ("byte-exact" if f[2] == body else "differs: %r" % f[2],
                                           hget(f[1], "content-length"))


def s_heartbeat(b, hb):
    conn, l = connect(b, "1.2", heartbeats=hb)
    time.sleep(2.0)
    out = "CONNECTED heart-beat=%s; %d beats in 2 s; alive=%s" % ((l.connected or {}).get("heart-beat"), l.heartbeats,
                                                                  conn.is_connected())
    close(conn)
    return out


def s_refused(b, version):
    extra = {"vhost": "/"} if version != "1.0" else {}
    conn = CLASSES[version]([(b.host, b.port)], auto_decode=False, **extra)
    l = Listener()
    conn.set_listener("", l)
    t0 = time.time()
    conn.connect(b.login, "wrong-" + b.passcode, wait=False, headers={} if extra else {"host": "/"})
    l.wait(lambda: l.errors or l.disconnected)
    l.wait(lambda: l.disconnected, 3)
    if not l.errors:
        return "no ERROR; closed=%s" % l.disconnected
    h, body = l.errors[0]
    return "ERROR message=%r [%s] (body: %r); stomp.py saw the close: %s (waited %.1f s)" % (
        h.get("message"), ",".join(sorted(h)), first_line(body), l.disconnected, time.time() - t0)


def s_refused_raw(b):
    """The same refusal over a raw socket: when does the broker close?"""
    r = Raw(b)
    t0 = time.time()
    r.send(("CONNECT\naccept-version:1.2\nhost:/\nlogin:%s\npasscode:wrong\n\n\0" % b.login).encode())
    f = r.frame()
    closed = r.closed(8)
    r.close()
    return "%s; %s after %.1f s" % (error_summary(f), "closed" if closed else "still open", time.time() - t0)


def s_unknown_command(b):
    r = raw_connected(b)
    r.send(b"FROB\nreceipt:r\n\n\0")
    f = r.frame()
    out = error_summary(f)
    out += "; closed" if r.closed() else "; open"
    r.close()
    return out


def s_nack_10(b):
    r = raw_connected(b, "1.0")
    r.send(b"NACK\nmessage-id:1\n\n\0")
    f = r.frame()
    out = error_summary(f)
    out += "; closed" if r.closed() else "; open"
    r.close()
    return out


def scenarios():
    rows = []
    for v in ("1.0", "1.1", "1.2"):
        rows.append(("version: accept-version %s" % v, lambda b, v=v: s_version(b, v)))
    rows.append(("version: no accept-version", s_version_none))
    rows.append(("version: accept-version 2.0 only", s_version_unknown))
    rows.append(("host header = server address (stomp.py default)", s_host_default))
    for v in ("1.0", "1.2"):
        rows.append(("SEND->SUBSCRIBE round trip (%s)" % v, lambda b, v=v: s_roundtrip(b, v)))
    rows += [("wildcards: " + label, fn) for label, fn in wildcard_rows(None)]
    rows.append(("/queue/: SEND before any SUBSCRIBE", s_queue_before_subscribe))
    rows.append(("/queue/: two subscribers, 4 SENDs", s_queue_two_consumers))
    rows.append(("SEND headers x-custom, content-type -> MESSAGE", s_custom_header))
    for v, mode in (("1.2", "auto"), ("1.2", "client"), ("1.2", "client-individual"), ("1.1", "client-individual")):
        rows.append(("ack %s (%s)" % (mode, v), lambda b, v=v, m=mode: s_ack(b, v, m)))
    rows.append(("NACK in 1.0", s_nack_10))
    rows.append(("receipts: SUBSCRIBE SEND BEGIN COMMIT UNSUBSCRIBE DISCONNECT", s_receipts))
    for v in ("1.0", "1.2"):
        rows.append(("transactions commit/abort (%s)" % v, lambda b, v=v: s_tx(b, v)))
    rows.append(("escapes 1.2: id s\\c1, destination with \\c", s_escapes))
    rows.append(("bad escape 1.2 (\\t in destination)", s_bad_escape))
    rows.append(("NUL body with content-length", s_nul_body))
    rows.append(("heart-beat: client 300,300", lambda b: s_heartbeat(b, (300, 300))))
    rows.append(("heart-beat: client 0,0", lambda b: s_heartbeat(b, (0, 0))))
    rows.append(("heart-beat: client 5000,5000", lambda b: s_heartbeat(b, (5000, 5000))))
    for v in ("1.0", "1.2"):
        rows.append(("auth: wrong passcode (%s)" % v, lambda b, v=v: s_refused(b, v)))
    rows.append(("auth: wrong passcode, raw socket: close", s_refused_raw))
    rows.append(("ERROR frame: unknown command", s_unknown_command))
    return rows


def run_one(fn, b, timeout=15.0):
    result = ["timeout after %.0f s" % timeout]

    def target():
        try:
            result[0] = fn(b)
        except Exception as e:  # noqa: BLE001 - recorded as the outcome
            result[0] = "exception: %s: %s" % (type(e).__name__, e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return result[0]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    brokers = [Broker(a) for a in args]
    table = []
    for label, fn in scenarios():
        table.append([label] + [run_one(fn, b) for b in brokers])
        print(" | ".join(table[-1]), file=sys.stderr, flush=True)
    if "--json" in sys.argv:
        print(json.dumps({"brokers": [b.name for b in brokers], "rows": table}, indent=1))
        return
    print("| scenario | " + " | ".join(b.name for b in brokers) + " |")
    print("|---" * (len(brokers) + 1) + "|")
    for row in table:
        print("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")


if __name__ == "__main__":
    main()
