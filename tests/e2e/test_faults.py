"""Faults: workers killed or frozen mid-request, a broker restart, an actor
thread that fails inside the bundle. Nothing may be lost: every request
ends with an answer, and the right one."""

import os
import signal
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until


def delayed(delay_ms, tag):
    return proto.pack({"delay_ms": delay_ms, "data": tag.encode()})


class FaultCase(AinboxTestCase):

    def start_broker(self, **extra):
        port, = free_ports(1)
        self.env = self.base_env(port, **extra)
        self.broker = self.spawn("broker", ["broker"], self.env)
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)

    def start_echo(self, n=1):
        procs = [self.spawn(f"echo-{len(self.procs)}", ["actor", "echo"], self.env)
                 for _ in range(n)]
        return procs

    def workers(self, service="echo"):
        data = self.admin(self.env, "--json", "workers")
        return [w for w in data["workers"] if w["service"] == service]

    def holder(self, procs):
        """The echo process holding requests right now (by its pid in the
        broker's worker table: instance ids are per process)."""
        def find():
            for w in self.workers():
                if w["inflight"] > 0:
                    return w
            return None
        busy = wait_until(find, 5, "a worker to hold requests")
        for p in procs:
            if p.alive() and f"instance {busy['instance']}" in p.log():
                return p
        raise AssertionError("no process matches the busy worker")

    def broker_metric(self, name):
        return self.admin(self.env, "--json", "stats")["metrics"][name]


class TestWorkerDeath(FaultCase):

    def test_kill9_mid_request_is_answered_by_another_worker(self):
        self.start_broker()
        procs = self.start_echo(2)
        self.wait_services(self.env, ["echo"])
        wait_until(lambda: len(self.workers()) == 2, 10, "two echo workers")
        sent = {}
        for round_no in range(5):
            corrs = [self.client.send("echo", "ECHO_DELAY", delayed(400, f"r{round_no}-{i}"),
                                      timeout_ms=8000) for i in range(6)]
            sent.update({c: f"r{round_no}-{i}".encode() for i, c in enumerate(corrs)})
            victim = self.holder(procs)
            victim.kill9()
            procs.append(self.spawn(f"echo-{len(self.procs)}", ["actor", "echo"], self.env))
            got = self.client.collect(corrs, 10)
            self.assertEqual(set(got), set(corrs), f"round {round_no}: lost requests")
            for corr, reply in got.items():
                self.assertEqual(reply["status"], "OK", reply)
                self.assertEqual(reply["body"], sent[corr])
            wait_until(lambda: len(self.workers()) >= 2, 10, "the replacement to register")
        self.assertGreater(self.broker_metric("redispatched"), 0)
        self.assertEqual(self.broker_metric("worker_lost_requests"), 0)

    def test_non_idempotent_request_of_a_dead_worker_is_refused_not_repeated(self):
        self.start_broker()
        procs = self.start_echo(2)
        wait_until(lambda: len(self.workers()) == 2, 10, "two echo workers")
        corr = self.client.send("echo", "ECHO_ONCE", delayed(5000, "once"), timeout_ms=8000)
        victim = self.holder(procs)
        started = time.monotonic()
        victim.kill9()
        reply = self.client.collect([corr], 3).get(corr)
        self.assertIsNotNone(reply, "the request must be answered, not left to time out")
        self.assertEqual(reply["status"], "UNAVAILABLE")
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(self.broker_metric("worker_lost_requests"), 1)

    def test_a_frozen_worker_is_found_by_heartbeats(self):
        self.start_broker()
        procs = self.start_echo(2)
        wait_until(lambda: len(self.workers()) == 2, 10, "two echo workers")
        corr = self.client.send("echo", "ECHO_DELAY", delayed(300, "frozen"), timeout_ms=8000)
        victim = self.holder(procs)
        victim.signal(signal.SIGSTOP)  # a silent host: the connection stays up
        try:
            reply = self.client.collect([corr], 6).get(corr)
            self.assertIsNotNone(reply)
            self.assertEqual((reply["status"], reply["body"]), ("OK", b"frozen"))
            self.assertGreaterEqual(self.broker_metric("workers.expired"), 1)
        finally:
            victim.signal(signal.SIGCONT)
        # Thawed, it learns it was dropped (DISCONNECT) and registers again.
        wait_until(lambda: len(self.workers()) == 2, 10, "the thawed worker to re-register")


class TestBrokerRestart(FaultCase):

    def test_workers_re_register_and_clients_recover(self):
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_HEALTH_SERVICES="echo", AINBOX_DEV_TOKEN="x")
        broker = self.spawn("broker", ["broker"], self.env)
        self.start_echo(1)
        self.spawn("edge", ["edge"], self.env)
        self.wait_health(self.env)
        for _ in range(2):
            self.assertEqual(broker.stop(), 0)
            status, body = self.http_json(self.env, "/health")
            self.assertEqual(status, 503, body)  # honest while the broker is away
            broker = self.spawn("broker", ["broker"], self.env)
            # The same edge process (its clients) and the same echo process
            # (re-registering) serve again, with nothing restarted but the broker.
            self.wait_health(self.env, timeout=15)
        out = self.admin(self.env, "ping", "echo")
        self.assertIn("reply from echo", out.stdout)


class TestSupervisor(FaultCase):
    allowed_errors = ("failed: actor is broken", "ended with a failure", "restart intensity",
                      "cannot go on", "stopped after a failure", "failed; restarting")

    def test_failed_actor_thread_is_restarted_within_intensity(self):
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ECHO_FAULTS="true", AINBOX_RESTART_MAX=2,
                                 AINBOX_RESTART_WINDOW_MS=60000, AINBOX_ACTORS="echo",
                                 AINBOX_HEALTH_SERVICES="echo")
        bundle = self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)
        for attempt in range(2):
            reply = self.client.call("echo", "ECHO_FAULT")
            self.assertEqual(reply["status"], "UNAVAILABLE", reply)
            wait_until(lambda: self.client.call("echo", "ECHO", b"hi", timeout_ms=500),
                       10, f"echo to come back after failure {attempt + 1}")
            self.assertTrue(bundle.alive())
        # The third failure in the window exceeds AINBOX_RESTART_MAX=2.
        self.client.call("echo", "ECHO_FAULT", timeout_ms=1000)
        wait_until(lambda: not bundle.alive(), 10, "the bundle to give up")
        self.assertEqual(bundle.popen.returncode, 1)
        self.assertIn("restart intensity exceeded", bundle.log())


if __name__ == "__main__":
    unittest.main()
