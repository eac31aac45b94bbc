"""ainbox_sse: raw server-sent-event clients for end-to-end tests.

Plain sockets, no HTTP library, so a test sees exactly the bytes the edge
wrote: the head, `retry:` lines, comments, events and where the stream
ends. Every read has a deadline.
"""

import resource
import selectors
import socket
import time


def request(path, headers=None):
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n"
            ).encode()


def raise_fd_limit(need):
    """Raises this process's soft descriptor limit towards the hard one so
    that it can hold `need` sockets; fails the test if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need + 256), hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 64:
        raise AssertionError(f"need {need} descriptors, the limit is {soft}")


def parse_block(block):
    """An SSE block (text between blank lines) as (fields, comments)."""
    fields, comments = {}, []
    for line in block.split("\n"):
        if not line:
            continue
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
    return fields, comments


class SseReader:
    """One raw SSE client: reads the head, then blocks, with deadlines.

    `rcvbuf` sets SO_RCVBUF before connecting (a slow consumer's small
    window); `headers` adds request headers (e.g. Last-Event-ID)."""

    def __init__(self, port, path, timeout=5, rcvbuf=None, headers=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(request(path, headers))
        self.buf = b""
        self.comments = []
        head = self._until(b"\r\n\r\n", timeout)
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode(errors="replace").lower()

    def _until(self, sep, timeout):
        deadline = time.monotonic() + timeout
        while sep not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"SSE: no {sep!r} within {timeout}s; got {self.buf[-300:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"SSE: connection closed; got {self.buf[-300:]!r}")
            self.buf += chunk
        part, self.buf = self.buf.split(sep, 1)
        return part

    def block(self, timeout=5):
        """The next block as a dict of its fields (comments collected in
        self.comments); may be only a `retry:` or only comments."""
        fields, comments = parse_block(self._until(b"\n\n", timeout).decode())
        self.comments += comments
        return fields

    def event(self, timeout=5):
        """The next block with `data` (comment-only and retry-only blocks
        skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self.block(max(0.01, deadline - time.monotonic()))
            if "data" in fields:
                return fields

    def comment(self, timeout=5):
        """Waits for the next comment line; returns its text."""
        deadline = time.monotonic() + timeout
        seen = len(self.comments)
        while len(self.comments) == seen:
            fields = self.block(max(0.01, deadline - time.monotonic()))
            if "data" in fields:
                raise AssertionError(f"SSE: an event where a comment was expected: {fields}")
        return self.comments[seen]

    def ends(self, timeout=5):
        """True once the server has closed the stream (EOF or reset),
        reading and keeping whatever comes before; False at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self):
        self.sock.close()


class Swarm:
    """Many raw SSE clients at once, opened and checked with one selector.

    open() connects every path, sends its request and waits until each has
    its head and `connected` frame; the sockets stay open (unread) until
    close()."""

    def __init__(self, port):
        self.port = port
        self.socks = []

    def open(self, paths, timeout=60, batch=200):
        sel = selectors.DefaultSelector()
        bufs = {}
        try:
            for i in range(0, len(paths), batch):
                for path in paths[i:i + batch]:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
                    s.sendall(request(path))
                    s.setblocking(False)
                    self.socks.append(s)
                    bufs[s] = b""
                    sel.register(s, selectors.EVENT_READ)
                self._read_heads(sel, bufs, timeout)
            waiting = [b for b in bufs.values() if b'"type":"connected"' not in b]
            if waiting:
                raise AssertionError(f"{len(waiting)} of {len(paths)} streams did not start; "
                                     f"one got {waiting[0][:300]!r}")
            return [bufs[s] for s in self.socks[-len(paths):]] if paths else []
        finally:
            sel.close()

    @staticmethod
    def _read_heads(sel, bufs, timeout):
        deadline = time.monotonic() + timeout
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(max(0.01, deadline - time.monotonic())):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                bufs[s] += chunk
                if not chunk or (b"\r\n\r\n" in bufs[s] and b'"type":"connected"' in bufs[s]):
                    sel.unregister(s)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
