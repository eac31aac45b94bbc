"""ainbox_agent: a test's hands inside a network namespace.

Addresses that exist only inside namespaces (tests/e2e/test_hosts.py) cannot
be reached from the test process, and must never be routed from the root
namespace. So the test starts this script with `ip netns exec NS python3
ainbox_agent.py` and drives it line by line: one JSON command on stdin, one
JSON answer on stdout. Commands: `http` (one request), `load_start` /
`load_stop` (requests at a steady rate, each recorded with its time),
`sse_open` / `sse_get` (a stream read in the background, noting whether it
ever closed), `call` (one request through the broker, with a CurveZMQ key),
`latency` (sequential requests, their times). Times are time.monotonic(),
which the test shares (no time namespaces). Every wait is bounded.
"""

import http.client
import json
import socket
import sys
import threading
import time

import msgpack
import zmq

import ainbox_proto as proto

LOAD_INFLIGHT_MAX = 200  # requests of one load in flight at once
SNIPPET = 300  # bytes of a body kept per recorded request


def plain(value):
    """A msgpack-decoded value as JSON-able data (bytes as text)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def http_once(host, port, method, path, headers=None, body=None, timeout=10):
    """{status, body, ms, t0} of one request; status 0 and `error` if none came."""
    t0 = time.monotonic()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return {"status": res.status, "body": data.decode("utf-8", "replace")[:4000],
                "ms": (time.monotonic() - t0) * 1000, "t0": t0}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": 0, "error": repr(exc), "ms": (time.monotonic() - t0) * 1000, "t0": t0}


class Load:
    """Requests at `rate` per second, each in a thread of its own, so a slow
    answer does not slow the rate; paths cycle, `{n}` in one is a counter."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.records = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.inflight = threading.BoundedSemaphore(LOAD_INFLIGHT_MAX)
        self.threads = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def one(self, path, headers):
        c = self.cmd
        try:
            r = http_once(c["host"], c["port"], "GET", path, headers, timeout=c.get("timeout", 10))
            r["body"] = r["body"][:SNIPPET]
            r["t1"] = time.monotonic()
            with self.lock:
                self.records.append(r)
        finally:
            self.inflight.release()

    def run(self):
        c = self.cmd
        interval = 1.0 / c["rate"]
        n = 0
        next_t = time.monotonic()
        while not self.stop.is_set():
            path = c["paths"][n % len(c["paths"])].replace("{n}", str(n))
            headers = c["headers"][n % len(c["headers"])] if c.get("headers") else {}
            if self.inflight.acquire(timeout=1):
                t = threading.Thread(target=self.one, args=(path, headers), daemon=True)
                t.start()
                self.threads.append(t)
            n += 1
            next_t += interval
            self.stop.wait(max(0.0, next_t - time.monotonic()))

    def finish(self, timeout):
        self.stop.set()
        deadline = time.monotonic() + timeout
        self.thread.join(max(0.1, deadline - time.monotonic()))
        for t in self.threads:
            t.join(max(0.01, deadline - time.monotonic()))
        with self.lock:
            return sorted(self.records, key=lambda r: r["t0"])


class Stream:
    """One SSE stream read in the background: its events with the time each
    arrived, how many heads it saw (1: it never reconnected) and whether the
    connection ever closed."""

    def __init__(self, cmd):
        self.events, self.closed, self.error, self.heads = [], False, None, 0
        self.lock = threading.Lock()
        self.sock = socket.create_connection((cmd["host"], cmd["port"]), timeout=10)
        extra = "".join(f"{k}: {v}\r\n" for k, v in cmd.get("headers", {}).items())
        self.sock.sendall(f"GET {cmd['path']} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream"
                          f"\r\n{extra}\r\n".encode())
        self.sock.settimeout(None)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("closed before the head")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])
        self.heads = 1
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        buf = self.buf
        try:
            while True:
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    fields = {}
                    for line in block.decode("utf-8", "replace").split("\n"):
                        if line and not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value[1:] if value.startswith(" ") else value
                    if "data" in fields:
                        with self.lock:
                            self.events.append({"id": fields.get("id"), "data": fields["data"],
                                                "t": time.monotonic()})
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError as exc:
            self.error = repr(exc)
        with self.lock:
            self.closed = True

    def state(self):
        with self.lock:
            return {"status": self.status, "events": list(self.events), "closed": self.closed,
                    "error": self.error, "heads": self.heads}


class Agent:
    def __init__(self):
        self.ctx = zmq.Context()
        self.loads = {}
        self.streams = {}
        self.corr = 1

    def op_http(self, c):
        return http_once(c["host"], c["port"], c.get("method", "GET"), c["path"],
                         c.get("headers"), c.get("body"), c.get("timeout", 10))

    def op_load_start(self, c):
        self.loads[c["id"]] = Load(c)
        return {"ok": True}

    def op_load_stop(self, c):
        load = self.loads.pop(c["id"])
        return {"records": load.finish(c.get("timeout", 20))}

    def op_sse_open(self, c):
        s = Stream(c)
        self.streams[c["id"]] = s
        return {"status": s.status}

    def op_sse_get(self, c):
        return self.streams[c["id"]].state()

    def op_call(self, c):
        """One request through the broker with the key pair c["key"]
        pinning c["broker_cert"]."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        pub, sec = proto.read_cert(c["key"])
        sock.curve_serverkey = proto.read_cert(c["broker_cert"])[0]
        sock.curve_publickey, sock.curve_secretkey = pub, sec
        sock.connect(c["endpoint"])
        try:
            corr = self.corr
            self.corr += 1
            body = msgpack.packb(c.get("body"), use_bin_type=True) if "body" in c else b""
            t0 = time.monotonic()
            timeout_ms = c.get("timeout_ms", 5000)
            sock.send_multipart([b"", b"MDPC01", c["service"].encode(),
                                 proto.envelope(c["msg"], corr, user=c.get("user", 0),
                                                timeout_ms=timeout_ms, body=body)])
            if not sock.poll(timeout_ms + 1000):
                return {"status": None, "ms": (time.monotonic() - t0) * 1000}
            reply = proto.decode(sock.recv_multipart()[-1])
            return {"status": reply["status"], "body": plain(proto.body_map(reply)),
                    "ms": (time.monotonic() - t0) * 1000}
        finally:
            sock.close(0)

    def op_latency(self, c):
        """c["n"] sequential requests; their statuses and times (ms)."""
        out = []
        for i in range(c["n"]):
            path = c["path"].replace("{n}", str(i))
            r = http_once(c["host"], c["port"], "GET", path, c.get("headers"), timeout=10)
            out.append([r["status"], r["ms"]])
        return {"results": out}

    def serve(self):
        for line in sys.stdin:
            cmd = json.loads(line)
            try:
                answer = getattr(self, "op_" + cmd["op"])(cmd)
            except Exception as exc:  # reported to the test, which fails on it
                answer = {"agent_error": repr(exc)}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    Agent().serve()
