"""Back-pressure: a full service queue refuses explicitly (BUSY) and keeps
the broker's memory bounded; requests past their deadline are answered
TIMEOUT, never dropped in silence."""

import os
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class TestBackpressure(AinboxTestCase):

    def setUp(self):
        super().setUp()
        port, = free_ports(1)
        # One echo worker that holds one request at a time, a short queue.
        self.env = self.base_env(port, AINBOX_QUEUE_MAX=100, AINBOX_WORKER_CREDIT=1)
        self.broker = self.spawn("broker", ["broker"], self.env)
        self.spawn("echo", ["actor", "echo"], self.env)
        self.wait_services(self.env, ["echo"])
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)

    def occupy_worker(self, ms):
        """Makes the only echo worker busy for `ms` (a delayed echo)."""
        return self.client.send("echo", "ECHO_DELAY",
                                proto.pack({"delay_ms": ms, "data": b"busy"}), timeout_ms=ms + 5000)

    def test_full_queue_answers_busy_and_memory_stays_bounded(self):
        blocker = self.occupy_worker(3000)
        wait_until(lambda: self.admin(self.env, "--json", "services")["services"][0]["inflight"],
                   5, "the worker to hold the blocker")
        before = rss_kb(self.broker.pid)
        body = b"x" * 10000
        corrs = [self.client.send("echo", "ECHO", body, timeout_ms=20000) for _ in range(5000)]
        # Refusals come back at once, while the worker is still busy.
        busy = {}
        deadline = time.monotonic() + 10
        while len(busy) < 4900 and time.monotonic() < deadline:
            reply = self.client.recv(1000)
            if reply and reply["status"] == "BUSY":
                busy[reply["corr"]] = reply
        self.assertEqual(len(busy), 4900, "exactly the requests beyond the queue are refused")
        self.assertIn(b"queue full", busy[corrs[-1]]["body"])
        # 5000 x 10 kB offered = 50 MB; the broker may hold only the 100
        # queued and the one in flight, by its own account...
        held = self.admin(self.env, "--json", "stats")["metrics"]["held_bytes"]
        self.assertLessEqual(held, 101 * (10000 + 100))
        # ...and by the kernel's (not under sanitizers: ASan keeps freed
        # memory in quarantine).
        if os.environ.get("AINBOX_SANITIZED") != "1":
            grown = rss_kb(self.broker.pid) - before
            self.assertLess(grown, 20000, f"broker RSS grew {grown} kB")
        svc = self.admin(self.env, "--json", "services")["services"][0]
        self.assertEqual((svc["queued"], svc["busy"]), (100, 4900))
        # The queued ones are served once the worker is free.
        served = self.client.collect([blocker] + [c for c in corrs if c not in busy], 30)
        self.assertEqual(len(served), 101)
        self.assertTrue(all(r["status"] == "OK" for r in served.values()))

    def test_deadline_passed_in_queue_is_answered_timeout(self):
        self.occupy_worker(2000)
        started = time.monotonic()
        corr = self.client.send("echo", "ECHO", b"late", timeout_ms=300)
        reply = self.client.collect([corr], 5).get(corr)
        self.assertIsNotNone(reply, "an expired request must be answered")
        self.assertEqual(reply["status"], "TIMEOUT")
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertGreaterEqual(self.admin(self.env, "--json", "stats")["metrics"]
                                ["refused.expired"], 1)

    def test_request_already_expired_is_refused_at_once(self):
        env = proto.envelope("ECHO", 99, deadline_ms=proto.now_ms() - 1000)
        self.client.sock.send_multipart([b"", b"MDPC01", b"echo", env])
        reply = self.client.recv(2000)
        self.assertEqual((reply["corr"], reply["status"]), (99, "TIMEOUT"))


if __name__ == "__main__":
    unittest.main()
