"""ainbox_proto: our wire protocol for tests written in Python.

Message type ids and status codes are read from proto/msgtypes.def and
proto/status.h, so they are declared once, in C, and never copied here.
The envelope is [version, type, corr, user, deadline_ms, trace, status,
body] in msgpack (proto/envelope.h).
"""

import os
import re
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_VERSION = 1


def _read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


MSG = {m.group(2): int(m.group(1)) for m in
       re.finditer(r"^AIN_MSG\((\d+),\s*(\w+),", _read("proto/msgtypes.def"), re.M)}
STATUS = {m.group(1): int(m.group(2)) for m in
          re.finditer(r"AIN_STATUS_(\w+) = (\d+),", _read("proto/status.h"))}
STATUS_NAME = {v: k for k, v in STATUS.items()}


def now_ms():
    return int(time.time() * 1000)


def envelope(msg, corr, user=0, timeout_ms=5000, trace=0, status=0, body=b"", deadline_ms=None):
    """Encodes a request envelope; `msg` is a type name or id."""
    type_id = MSG[msg] if isinstance(msg, str) else msg
    if deadline_ms is None:
        deadline_ms = now_ms() + timeout_ms
    return msgpack.packb([PROTO_VERSION, type_id, corr, user, deadline_ms, trace, status,
                          bytes(body)], use_bin_type=True)


def decode(data):
    """Decodes an envelope into a dict (raises on anything else)."""
    fields = msgpack.unpackb(data, raw=False)
    if not isinstance(fields, list) or len(fields) != 8:
        raise ValueError("not an envelope")
    version, type_id, corr, user, deadline, trace, status, body = fields
    return {"version": version, "type": type_id, "corr": corr, "user": user,
            "deadline_ms": deadline, "trace": trace, "status": STATUS_NAME.get(status, status),
            "body": body}


def body_map(reply):
    """The reply's body as a Python value (msgpack-decoded; {} if empty)."""
    return msgpack.unpackb(reply["body"], raw=False) if reply["body"] else {}


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


class Client:
    """A test client: MDP client framing with our envelope in the body, many
    requests in flight on one DEALER socket, replies matched by corr."""

    def __init__(self, endpoint):
        import zmq
        self._zmq = zmq
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.next_corr = 1

    def close(self):
        self.sock.close(0)

    def send(self, service, msg, body=b"", user=0, timeout_ms=5000, corr=None):
        """Sends one request; returns its corr."""
        if corr is None:
            corr = self.next_corr
            self.next_corr += 1
        env = envelope(msg, corr, user=user, timeout_ms=timeout_ms, body=body)
        self.sock.send_multipart([b"", b"MDPC01", service.encode(), env])
        return corr

    def recv(self, timeout_ms):
        """The next reply as a dict (see decode), or None after timeout_ms."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        if len(frames) != 4 or frames[1] != b"MDPC01":
            raise AssertionError(f"not an MDP reply: {frames!r}")
        reply = decode(frames[3])
        reply["service"] = frames[2].decode()
        return reply

    def call(self, service, msg, body=b"", user=0, timeout_ms=5000):
        """One request and its reply (None if none came in time)."""
        corr = self.send(service, msg, body, user, timeout_ms)
        deadline = time.monotonic() + timeout_ms / 1000 + 1
        while time.monotonic() < deadline:
            reply = self.recv(int((deadline - time.monotonic()) * 1000) + 1)
            if reply is None:
                return None
            if reply["corr"] == corr:
                return reply
        return None

    def collect(self, corrs, timeout_s):
        """Replies for every corr in `corrs` (dict corr -> reply), waiting at
        most timeout_s in all; missing ones are absent."""
        want, got = set(corrs), {}
        deadline = time.monotonic() + timeout_s
        while want - set(got) and time.monotonic() < deadline:
            reply = self.recv(max(1, int((deadline - time.monotonic()) * 1000)))
            if reply is not None and reply["corr"] in want:
                got[reply["corr"]] = reply
        return got


def read_cert(path):
    """(public, secret) Z85 keys of a zcert file (`ainbox keygen`); secret is
    None in a public one."""
    with open(path) as f:
        text = f.read()
    pub = re.search(r'public-key = "(.{40})"', text).group(1).encode()
    sec = re.search(r'secret-key = "(.{40})"', text)
    return pub, sec.group(1).encode() if sec else None


def json_type(text):
    """The "type" field of a JSON event text."""
    import json
    return json.loads(text)["type"]
