"""The SSE stream pump, end to end in the bundle.

Streams are handed from civetweb to one pump thread, so an edge with sixteen
civetweb workers and four broker clients holds a thousand streams and still
answers GET /health;
an event reaches every tab of its user and no other user; the global and
per-user caps answer 200 with a retry hint and close; a consumer that
stops reading is cut while its user's other tab goes on; a closed client
gives its slot back; silence brings a heartbeat; stopping ends every
stream, with spread reconnection delays, and exits 0. Traffic stays on 127.0.0.1.
"""

import os
import selectors
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from ainbox_sse import SseReader, Swarm, raise_fd_limit

DEV_TOKEN = "test-dev-token"


def path(user):
    return f"/api/v1/emails/stream?user={user}&token={DEV_TOKEN}"


def read_until(socks, needle, timeout):
    """Reads the non-blocking sockets until each has sent `needle`; returns
    the ones that did not within `timeout`."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.01, deadline - time.monotonic())):
            s = key.fileobj
            chunk = s.recv(65536)
            bufs[s] += chunk
            if not chunk or needle in bufs[s]:
                sel.unregister(s)
    sel.close()
    return [s for s in socks if needle not in bufs[s]]


class TestSsePump(AinboxTestCase):

    def start(self, **settings):
        broker_port, = free_ports(1)
        self.env = self.base_env(broker_port, AINBOX_DEV_TOKEN=DEV_TOKEN,
                                 AINBOX_ACTORS="monitor,events", **settings)
        self.bundle = self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.port = int(self.env["HTTP_PORT"])
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)

    def open(self, user, **kw):
        reader = SseReader(self.port, path(user), **kw)
        self.addCleanup(reader.close)
        return reader

    def open_stream(self, user, **kw):
        reader = self.open(user, **kw)
        self.assertEqual(reader.status, 200)
        self.assertIn("content-type: text/event-stream", reader.headers)
        self.assertEqual(proto.json_type(reader.event()["data"]), "connected")
        return reader

    def publish(self, user, data):
        reply = self.client.call("events", "EVENT_PUBLISH", proto.pack({"data": data}), user=user)
        self.assertIsNotNone(reply, "the events actor did not answer")
        self.assertEqual(reply["status"], "OK", reply)
        return proto.body_map(reply)["id"]

    def edge_metrics(self):
        """The edge's latest metrics, as the monitor has them."""
        status, stats = self.http_json(self.env, "/stats")
        for p in stats.get("processes", []) if status == 200 else []:
            if p["report"]["service"] == "edge":
                return p["report"]["metrics"]
        return None

    def wait_metrics(self, what, check, timeout=15):
        """Waits until check(edge metrics) holds; returns the metrics."""
        def ok():
            m = self.edge_metrics()
            return m if m and check(m) else None
        return wait_until(ok, timeout, what, interval=0.1)

    def assert_refused(self, reader, reason):
        self.assertEqual(reader.status, 200)
        self.assertIn("content-type: text/event-stream", reader.headers)
        frame = reader.event()
        self.assertGreaterEqual(int(frame["retry"]), 10000)
        self.assertEqual(proto.json_type(frame["data"]), "retry")
        self.assertIn(f'"reason":"{reason}"', frame["data"])
        self.assertTrue(reader.ends(), "a refused stream must be closed")

    def test_a_thousand_streams_on_four_threads(self):
        streams, users = 1000, 250
        raise_fd_limit(streams + 100)
        # 16 civetweb workers (the fewest allowed) and 4 broker clients.
        self.start(AINBOX_EDGE_THREADS=4, AINBOX_EDGE_CONNECTIONS=16)
        swarm = Swarm(self.port)
        self.addCleanup(swarm.close)
        swarm.open([path(1000 + i % users) for i in range(streams)], timeout=120)
        # No stream holds a worker or a broker client.
        started = time.monotonic()
        status, health = self.http_json(self.env, "/health", timeout=5)
        self.assertEqual(status, 200, health)
        self.assertLess(time.monotonic() - started, 3)
        metrics = self.wait_metrics("1000 streams open",
                                    lambda m: m["sse.streams"] == streams, timeout=30)
        self.assertEqual(metrics["sse.users"], users)
        threads = len(os.listdir(f"/proc/{self.bundle.pid}/task"))
        self.assertLess(threads, 100, "the bundle must not hold a thread per stream")
        # An event reaches the four tabs of its user (one per `users`).
        event_id = self.publish(1007, '{"type":"new_email","n":7}')
        tabs = swarm.socks[7::users]
        self.assertEqual(len(tabs), 4)
        self.assertEqual(read_until(tabs, f"id: {event_id}".encode(), 20), [])
        # Closing the clients gives every slot back.
        swarm.close()
        self.wait_metrics("every stream closed",
                          lambda m: m["sse.streams"] == 0 and m["sse.users"] == 0
                          and m["sse.closed"] >= streams, timeout=30)

    def test_every_tab_of_a_user_gets_its_events_and_nobody_else(self):
        self.start(AINBOX_SSE_HEARTBEAT_MS=300)
        tabs = [self.open_stream(7) for _ in range(3)]
        other = self.open_stream(8)
        data = '{"type":"new_email","subject":"to user 7"}'
        event_id = self.publish(7, data)
        for tab in tabs:
            got = tab.event()
            self.assertEqual((got["id"], got["data"]), (event_id, data))
        # User 8's first event is its own: user 7's never reached it.
        own = self.publish(8, '{"type":"new_email","subject":"to user 8"}')
        self.assertEqual(other.event()["id"], own)
        # Silence brings a heartbeat comment.
        self.assertEqual(other.comment(timeout=5), "ping")
        metrics = self.wait_metrics("deliveries counted",
                                    lambda m: m["sse.events_delivered"] >= 4)
        self.assertEqual(metrics["sse.users"], 2)
        self.assertGreater(metrics["sse.bytes_written"], 0)

    def test_caps_answer_200_with_retry_and_close(self):
        self.start(MAX_CONNECTIONS=4, AINBOX_SSE_PER_USER_MAX=2)
        self.open_stream(1)
        self.open_stream(1)
        self.assert_refused(self.open(1), "user_limit")
        self.open_stream(2)
        last = self.open_stream(3)
        self.assert_refused(self.open(4), "edge_full")
        self.wait_metrics("the refusals counted",
                          lambda m: m["sse.refused_user"] == 1 and m["sse.refused_full"] == 1
                          and m["sse.streams"] == 4 and m["sse.max_streams"] == 4
                          and m["sse.max_per_user"] == 2)
        # A client that leaves gives its slot back.
        last.close()
        self.wait_metrics("the slot given back", lambda m: m["sse.streams"] == 3)
        self.open_stream(4)

    def test_a_consumer_that_stops_reading_is_cut_and_the_others_go_on(self):
        self.start()
        reading = self.open_stream(9)
        stopped = self.open_stream(9, rcvbuf=4096)
        payload = '{"type":"bulk","pad":"%s"}' % ("x" * 30000)
        for i in range(400):  # 12 MB at most
            event_id = self.publish(9, payload)
            self.assertEqual(reading.event()["id"], event_id)
            if i % 10 == 9 and (self.edge_metrics() or {}).get("sse.cut_slow", 0) >= 1:
                break
        else:
            self.fail("the consumer that stopped reading was never cut")
        self.wait_metrics("one stream left", lambda m: m["sse.streams"] == 1)
        event_id = self.publish(9, '{"type":"after"}')
        self.assertEqual(reading.event()["id"], event_id)
        self.assertTrue(stopped.ends(), "the cut stream must be closed")

    def test_stop_ends_every_stream_and_exits_cleanly(self):
        self.start()
        readers = [self.open_stream(20 + i % 5) for i in range(20)]
        self.assertEqual(self.bundle.stop(), 0)
        for reader in readers:
            self.assertTrue(reader.ends(), "stopping must close the stream")
            # ...with a reconnection delay, spread so that they do not all
            # come back at once.
            self.assertRegex(reader.buf, rb"retry: \d+\n\n$")
        delays = {int(r.buf.rsplit(b"retry: ", 1)[1]) for r in readers}
        self.assertGreater(len(delays), 10)
        self.assertTrue(all(1000 <= d < 10000 for d in delays), delays)
        self.assertNotIn("hand-off failed", self.bundle.log())


if __name__ == "__main__":
    unittest.main()
