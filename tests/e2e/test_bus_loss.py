"""The edge across a loss of its links to the broker.

The edge reaches the broker (MDP) and the bus through TCP relays that the
test can cut (every connection closed, new ones refused) and heal, as a
partition between the edge's host and the broker's would.

- Events published while the bus link is down reach the open stream,
  without it reconnecting, once the link is back: the edge notices the loss
  from the broker's bus heartbeat (BUS_BEAT: a gap in its sequence) and
  catches its streams up from the event log (edge/catchup.c). Nothing is
  doubled, and live events follow in order.
- While the broker is unreachable, requests are refused with a 503 that
  says so (edge/link.c), /health too, and both recover by themselves.
"""

import json
import signal
import socket
import threading
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from ainbox_sse import SseReader

DEV_TOKEN = "test-dev-token"


class Relay:
    """A TCP relay on 127.0.0.1:port to 127.0.0.1:target that can be cut
    (connections closed, the port refusing) and healed."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.lock = threading.Lock()
        self.socks = []
        self.listener = None
        self.heal()

    def heal(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut(self):
        with self.lock:
            self.listener.close()
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.socks = []

    def _accept(self, ls):
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass


class TestBusLoss(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()
        broker_port, relay_port, mdp_port, http_port = free_ports(4)
        # Heartbeats of 500 ms: a frozen worker stays listed for 1.5 s, longer
        # than /health's 500 ms bound.
        self.env = self.base_env(broker_port, AINBOX_DEV_TOKEN=DEV_TOKEN,
                                 REDIS_URL=self.redis.url, AINBOX_HEALTH_SERVICES="events",
                                 AINBOX_HEARTBEAT_MS=500)
        self.spawn("broker", ["broker"], self.env)
        self.spawn("events", ["actor", "events"], self.env)
        self.wait_services(self.env, ["events"])
        self.relay = Relay(relay_port, broker_port + 2)
        self.addCleanup(self.relay.cut)
        self.mdp_relay = Relay(mdp_port, broker_port)
        self.addCleanup(self.mdp_relay.cut)
        self.edge_env = dict(self.env, HTTP_PORT=str(http_port),
                             AINBOX_BROKER=f"tcp://127.0.0.1:{mdp_port}",
                             AINBOX_BUS_IN=f"tcp://127.0.0.1:{broker_port + 1}",
                             AINBOX_BUS_OUT=f"tcp://127.0.0.1:{relay_port}")
        self.spawn("edge", ["edge"], self.edge_env)
        self.wait_health(self.edge_env)
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)

    def publish(self, user, n):
        reply = self.client.call("events", "EVENT_PUBLISH",
                                 proto.pack({"data": json.dumps({"type": "t", "n": n})}),
                                 user=user)
        self.assertIsNotNone(reply, "the events actor did not answer")
        self.assertEqual(reply["status"], "OK", reply)
        return proto.body_map(reply)["id"]

    def open(self, user):
        reader = SseReader(int(self.edge_env["HTTP_PORT"]),
                           f"/api/v1/emails/stream?user={user}&token={DEV_TOKEN}")
        self.addCleanup(reader.close)
        self.assertEqual(reader.status, 200)
        self.assertEqual(proto.json_type(reader.event()["data"]), "connected")
        return reader

    def read_events(self, reader, count, timeout=20):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            ev = reader.event(max(0.05, deadline - time.monotonic()))
            out.append((ev.get("id"), json.loads(ev["data"])))
        return out

    def live(self, user, reader):
        """Publishes until the stream gets an event (a user's first subscription reaches the
        publisher asynchronously: an event published before it arrives is filtered upstream,
        edge/README.md), then a marker, and reads up to it: the stream is live."""
        for _ in range(50):
            self.publish(user, 0)
            try:
                reader.event(0.2)
                break
            except (AssertionError, OSError):
                continue
        self.publish(user, -1)
        for _ in range(60):
            _, data = self.read_events(reader, 1)[0]
            if data["n"] == -1:
                return
        self.fail("the marker never arrived")

    def test_events_published_during_a_cut_reach_the_open_stream(self):
        users = (7, 8)
        readers = {u: self.open(u) for u in users}
        # Live first: the link works, and each user has a last id.
        for u in users:
            self.live(u, readers[u])
        self.relay.cut()
        time.sleep(2.0)  # a few beat intervals (500 ms here) go missing
        missed = {u: [self.publish(u, n) for n in range(1, 6)] for u in users}
        self.relay.heal()
        # Without reconnecting: the missed events, in order, then live ones.
        for u in users:
            got = self.read_events(readers[u], 5)
            self.assertEqual([i for i, _ in got], missed[u])
            self.assertEqual([d["n"] for _, d in got], [1, 2, 3, 4, 5])
        for u in users:
            live = self.publish(u, 6)
            [(event_id, data)] = self.read_events(readers[u], 1)
            self.assertEqual((event_id, data["n"]), (live, 6))
        # Nothing doubled: the stream is quiet afterwards.
        for u in users:
            try:
                ev = readers[u].event(0.5)
            except (AssertionError, OSError):
                continue
            self.fail(f"an unexpected event after catching up: {ev}")

    def test_the_bus_back_before_the_broker_link(self):
        """Both links cut, and the bus link back first: the catch-up cannot be
        sent until the broker link is back, and waits for it (within its
        deadline) rather than giving the stream up with a reset."""
        reader = self.open(9)
        # The stream's subscription reaches the publishers a moment after it
        # opens (the bus is fire-and-forget): publish until one arrives.
        for _ in range(10):
            self.publish(9, 0)
            try:
                self.assertEqual(self.read_events(reader, 1, timeout=1)[0][1]["n"], 0)
                break
            except (AssertionError, OSError):
                continue
        else:
            self.fail("no live event reached the stream")
        # A beat after the event, so the catch-up starts from its id (what is
        # delivered after the last beat in sequence is started before).
        time.sleep(0.6)
        self.mdp_relay.cut()
        self.relay.cut()
        time.sleep(1.0)
        missed = [self.publish(9, n) for n in range(1, 4)]
        self.relay.heal()
        time.sleep(1.5)  # the bus beats again; the catch-up has no broker link yet
        self.mdp_relay.heal()
        got = self.read_events(reader, 3)
        self.assertEqual([i for i, _ in got], missed, f"got {got}")

    def test_a_cut_off_edge_says_so_and_recovers(self):
        path = f"/api/v1/limits?token={DEV_TOKEN}&user=5"
        self.assertEqual(self.http(self.edge_env, "/health")[0], 200)
        self.mdp_relay.cut()
        self.relay.cut()

        def refused_for_the_broker():
            status, _, body = self.http(self.edge_env, path)
            return status == 503 and b"cannot reach its broker" in body

        # Within a few heartbeat intervals (200 ms here) every request is
        # refused for what it is, /health included.
        wait_until(refused_for_the_broker, 15, "requests refused for the unreachable broker")
        status, _, body = self.http(self.edge_env, "/health")
        self.assertEqual(status, 503)
        self.assertIn(b"cannot reach its broker", body)
        self.mdp_relay.heal()
        self.relay.heal()
        wait_until(lambda: self.http(self.edge_env, "/health")[0] == 200, 20,
                   "/health to recover")
        # No ratelimit worker here: the broker itself answers, at the call's deadline.
        status, _, body = self.http(self.edge_env, path, timeout=30)
        self.assertEqual(status, 504, body)
        self.assertNotIn(b"cannot reach its broker", body)

    def test_health_reports_a_frozen_service_within_its_bound(self):
        # A frozen events actor that the broker still lists (its host cut off, before the
        # broker notices): /health gives up on it at AINBOX_HEALTH_TIMEOUT_MS and says so,
        # instead of waiting for each service's call deadline in turn.
        events = [p for p in self.procs if p.name == "events"][0]
        self.assertEqual(self.http(self.edge_env, "/health")[0], 200)
        events.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            status, _, body = self.http(self.edge_env, "/health", timeout=30)
            took = time.monotonic() - t0
        finally:
            events.signal(signal.SIGCONT)
        self.assertEqual(status, 503, body)
        entry = json.loads(body)["services"]["events"]
        self.assertEqual((entry["up"], entry["status"]), (False, "TIMEOUT"), entry)
        self.assertIn("AINBOX_HEALTH_TIMEOUT_MS", entry["error"])
        print(f"\n/health with a frozen service answered in {took * 1000:.0f} ms")
        wait_until(lambda: self.http(self.edge_env, "/health")[0] == 200, 20, "/health back")


if __name__ == "__main__":
    unittest.main()
