"""The edge against slow and greedy clients (edge/guard.c, edge/README.md "Slow clients").

civetweb holds a worker thread for every connection it is reading, however slowly the client
sends. The edge bounds that: a total deadline for a request's head and for its body, a cap of
connections per client address, a bound on all connections (the oldest idle or reading ones
are closed so a new one always finds a worker), and refusals before routing: a body larger
than any route takes (413, closed at once), too many header lines (431), a NUL byte in the
path (400).

Slow connections come from 127.0.0.2 and up, so the test's own requests (127.0.0.1) are not
the ones capped. Nothing here asserts a timing beyond generous bounds on waits.
"""

import json
import socket
import time
import unittest

from ainbox_harness import AinboxTestCase, free_ports, wait_until


def slow_connection(port, source, head=b"GET /health HTTP/1.1\r\nHost: x\r\n"):
    """A connection from `source` that sent the start of a request head and no end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(head)
    return sock


def ended(sock):
    """(True, what the edge sent) if the edge closed `sock`, else (False, b"") without waiting."""
    got = b""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, got
            got += chunk
    except BlockingIOError:
        return False, got
    except ConnectionResetError:
        return True, got
    finally:
        sock.setblocking(True)


def read_to_end(sock, timeout=5):
    """Everything the edge sends until it closes the connection; raises on timeout."""
    sock.settimeout(timeout)
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


class SlowClientCase(AinboxTestCase):
    SETTINGS = {}

    def setUp(self):
        super().setUp()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events", AINBOX_DEV_TOKEN="dev",
                                 AINBOX_HEALTH_SERVICES="monitor", **self.SETTINGS)
        self.port = int(self.env["HTTP_PORT"])
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.socks = []
        self.addCleanup(lambda: [s.close() for s in self.socks])

    def hold(self, n, sources):
        """n slow connections spread over the addresses `sources`."""
        for i in range(n):
            self.socks.append(slow_connection(self.port, sources[i % len(sources)]))
        return self.socks[-n:]

    def metric(self, name):
        _, stats = self.http_json(self.env, "/stats")
        return sum(v for p in stats["processes"] for k, v in p["report"]["metrics"].items()
                   if k.endswith(name))


class PerAddressCase(SlowClientCase):
    SETTINGS = {"AINBOX_EDGE_PER_ADDR_MAX": 8, "AINBOX_EDGE_HEADER_TIMEOUT_MS": 30000}

    def test_connections_beyond_the_cap_are_refused(self):
        socks = self.hold(20, ["127.0.0.2"])
        closed = {}

        def twelve_closed():
            for i, s in enumerate(socks):
                if i not in closed:
                    done, got = ended(s)
                    if done:
                        closed[i] = got
            return len(closed) >= 12
        wait_until(twelve_closed, 10, "12 of 20 connections from one address to be refused")
        time.sleep(1)  # a few more looks of the watch: no more go
        twelve_closed()
        self.assertEqual(len(closed), 12, sorted(closed))
        for got in closed.values():
            self.assertTrue(got.startswith(b"HTTP/1.1 429"), got[:80])
            self.assertIn(b"TOO_MANY_CONNECTIONS", got)
        # Another address is not affected.
        other = self.hold(8, ["127.0.0.3"])
        time.sleep(1)
        self.assertFalse(any(ended(s)[0] for s in other))
        self.assertEqual(self.http(self.env, "/health")[0], 200)
        wait_until(lambda: self.metric("http.conn_refused") >= 12, 10, "the refusals counted")


class DeadlineCase(SlowClientCase):
    SETTINGS = {"AINBOX_EDGE_HEADER_TIMEOUT_MS": 1500, "AINBOX_EDGE_BODY_TIMEOUT_MS": 1000}

    def test_a_trickled_body_is_cut_at_the_deadline(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.socks.append(sock)
        sock.sendall(b"POST /api/v1/dev/session HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"email\"")
        end = time.monotonic() + 8
        got, closed = b"", False
        while time.monotonic() < end and not closed:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            closed, chunk = ended(sock)
            got += chunk
        if not closed:
            try:
                got += read_to_end(sock, timeout=2)
            except socket.timeout:
                pass
        self.assertTrue(got.startswith(b"HTTP/1.1 408"), got[:80])
        self.assertIn(b"REQUEST_TIMEOUT", got)

    def test_a_trickled_head_is_cut_at_the_deadline(self):
        sock, = self.hold(1, ["127.0.0.2"])
        # One more header line every 200 ms: each read is quick, the head never ends.
        end = time.monotonic() + 8
        closed = False
        while time.monotonic() < end and not closed:
            try:
                sock.sendall(b"X-Slow: a\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            closed = ended(sock)[0]
        self.assertTrue(closed, "the edge kept reading a head that never ended")

    def test_health_answers_while_many_slow_connections_are_held(self):
        # 160 slow connections (16 addresses, 10 each) against 256 workers (the harness's
        # AINBOX_EDGE_CONNECTIONS) and a 1.5 s deadline: the slow ones are cut and may come
        # back, /health answers meanwhile. Before, 16 threads: the 17th connection waited.
        self.hold(160, [f"127.0.0.{i}" for i in range(2, 18)])
        for _ in range(5):
            status, _ = self.http_json(self.env, "/health", timeout=3)
            self.assertEqual(status, 200)
            time.sleep(0.3)


class BoundCase(SlowClientCase):
    # 32 workers, a reserve of 2: past 30 connections the oldest idle or reading ones go.
    SETTINGS = {"AINBOX_EDGE_CONNECTIONS": 32, "AINBOX_EDGE_HEADER_TIMEOUT_MS": 60000}

    def test_the_oldest_slow_connections_make_room(self):
        socks = self.hold(60, [f"127.0.0.{i}" for i in range(2, 8)])
        # More slow connections than workers, none of them ever finishing: without the bound,
        # /health would wait for the 60 s deadline.
        status, _ = self.http_json(self.env, "/health", timeout=8)
        self.assertEqual(status, 200)
        shed = [got for done, got in (ended(s) for s in socks) if done]
        self.assertTrue(shed)
        self.assertTrue(any(got.startswith(b"HTTP/1.1 503") for got in shed), shed[:3])


class RefusedRequestsCase(SlowClientCase):

    def raw(self, data):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.socks.append(sock)
        sock.sendall(data)
        return read_to_end(sock)

    def test_a_huge_body_is_refused_and_the_connection_closed(self):
        for path in (b"POST /api/v1/terms/accept", b"GET /health"):
            # No body follows: the answer must come, and the end of the connection with it,
            # without the edge waiting for ten gigabytes.
            got = self.raw(path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n"
                           b"Content-Type: application/json\r\n\r\n")
            self.assertTrue(got.startswith(b"HTTP/1.1 413"), got[:80])
            self.assertIn(b"PAYLOAD_TOO_LARGE", got)
        self.assertEqual(self.http(self.env, "/health")[0], 200)

    def test_too_many_headers(self):
        lines = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(70))
        got = self.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n" + lines + b"Connection: close\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 431"), got[:80])
        self.assertIn(b"HEADERS_TOO_MANY", got)
        # 62 header lines are fine (63 with Host).
        lines = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(61))
        got = self.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n" + lines + b"Connection: close\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:80])

    def test_nul_bytes(self):
        for path in ("/api/v1/threads/at0%00x?token=dev&user=1", "/health%00"):
            status, _, body = self.http(self.env, path)
            self.assertEqual(status, 400, path)
            self.assertEqual(json.loads(body)["error"]["code"], "BAD_REQUEST")
        status, _, body = self.http(self.env, "/api/v1/threads?role=inbox%00x&token=dev&user=1")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"]["code"], "INVALID_PARAMETER")


if __name__ == "__main__":
    unittest.main()
