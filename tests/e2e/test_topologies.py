"""The vertical slice, in both topologies, with the same answers.

HTTP -> edge -> broker -> actor -> reply (GET /health, GET /stats) and
actor -> bus -> edge -> SSE (an event published through the events actor
reaches a connected stream), first in the single-node bundle, then with the
broker, the edge and each actor as separate processes over tcp; the
normalised answers of both must be equal.
"""

import signal
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from ainbox_sse import SseReader

DEV_TOKEN = "test-dev-token"
ACTORS = ["monitor", "events", "echo"]


class SliceChecks(AinboxTestCase):
    """Runs the same checks against whatever topology `start()` builds and
    returns normalised answers for comparison."""

    def check_slice(self, env):
        answers = {}
        status, health = self.http_json(env, "/health")
        self.assertEqual(status, 200, health)
        self.assertEqual(health["status"], "ok")
        self.assertTrue(health["broker"]["up"])
        self.assertGreater(health["broker"]["latency_ms"], 0)
        for name in ("monitor", "events"):
            self.assertTrue(health["services"][name]["up"], health)
            self.assertGreaterEqual(health["services"][name]["workers"], 1)
        answers["health"] = {k: (v["up"], v["workers"]) for k, v in health["services"].items()}

        answers["services"] = self.check_admin(env)
        answers["stats"] = self.check_stats(env)
        answers["sse"] = self.check_sse(env)
        answers["errors"] = self.check_errors(env)
        return answers

    def check_admin(self, env):
        services = self.admin(env, "--json", "services")["services"]
        names = {s["name"]: (s["kind"], s["workers"]) for s in services}
        for actor in ACTORS:
            self.assertEqual(names.get(actor), ("native", 1), services)
        for actor in ACTORS:
            out = self.admin(env, "ping", actor)
            self.assertIn("reply from", out.stdout)
        return names

    def check_stats(self, env):
        def broker_requests(stats):
            return next((p["report"]["metrics"]["requests"] for p in stats.get("processes", [])
                         if p["report"]["service"] == "broker"), 0)

        def all_reported():
            # The broker's first report may predate the requests made so
            # far (reports come every AINBOX_METRICS_INTERVAL_MS): wait for
            # one that counts them.
            status, stats = self.http_json(env, "/stats")
            roles = {p["report"]["service"] for p in stats.get("processes", [])}
            return stats if status == 200 and {"broker", "edge", *ACTORS} <= roles \
                and broker_requests(stats) > 0 else None
        stats = wait_until(all_reported, 10, "every process to report its metrics")
        for key in ("uptime", "memory", "timestamp", "connections", "processes"):
            self.assertIn(key, stats)
        self.assertIn("maxConnections", stats["connections"])
        return sorted({p["report"]["service"] for p in stats["processes"]})

    def check_sse(self, env):
        port = int(env["HTTP_PORT"])
        reader = SseReader(port, f"/api/v1/emails/stream?user=42&token={DEV_TOKEN}")
        try:
            self.assertEqual(reader.status, 200)
            self.assertIn("content-type: text/event-stream", reader.headers)
            first = reader.event()
            self.assertEqual(proto.json_type(first["data"]), "connected")
            client = proto.Client(env["AINBOX_BROKER"])
            try:
                data = '{"type":"new_email","subject":"Hello","n":1}'
                reply = client.call("events", "EVENT_PUBLISH", proto.pack({"data": data}), user=42)
                self.assertEqual(reply["status"], "OK", reply)
                event_id = proto.body_map(reply)["id"]
                got = reader.event()
                self.assertEqual(got["id"], event_id)
                self.assertEqual(got["data"], data)
                # Another user's event never reaches this stream.
                client.call("events", "EVENT_PUBLISH", proto.pack({"data": data}), user=43)
                reply = client.call("events", "EVENT_PUBLISH",
                                    proto.pack({"data": '{"type":"second"}'}), user=42)
                self.assertEqual(reader.event()["id"], proto.body_map(reply)["id"])
            finally:
                client.close()
        finally:
            reader.close()
        return got["data"]

    def check_errors(self, env):
        results = {}
        for path, kw in (("/nope", {}), ("/health", {"method": "POST"}),
                         ("/api/v1/emails/stream?user=1", {}),
                         (f"/api/v1/emails/stream?user=x&token={DEV_TOKEN}", {})):
            status, body = self.http_json(env, path, **kw)
            self.assertIn("error", body)
            results[path + kw.get("method", "")] = (status, body["error"]["code"])
        self.assertEqual(results["/nope"], (404, "NOT_FOUND"))
        self.assertEqual(results["/healthPOST"], (405, "METHOD_NOT_ALLOWED"))
        self.assertEqual(results["/api/v1/emails/stream?user=1"], (401, "UNAUTHENTICATED"))
        return results


class TestTopologies(SliceChecks):

    def start_bundle(self):
        broker_port, = free_ports(1)
        env = self.base_env(broker_port, AINBOX_DEV_TOKEN=DEV_TOKEN,
                            AINBOX_ACTORS=",".join(ACTORS))
        proc = self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        return env, proc

    def start_processes(self):
        broker_port, = free_ports(1)
        env = self.base_env(broker_port, AINBOX_DEV_TOKEN=DEV_TOKEN)
        procs = [self.spawn("broker", ["broker"], env)]
        procs += [self.spawn(name, ["actor", name], env) for name in ACTORS]
        procs.append(self.spawn("edge", ["edge"], env))
        self.wait_health(env)
        # Health requires monitor and events only; the echo process registers on its own time,
        # and /health lists every service our actors serve: wait for all of them.
        self.wait_services(env, ACTORS)
        return env, procs

    def test_same_answers_in_bundle_and_processes(self):
        env, bundle = self.start_bundle()
        in_bundle = self.check_slice(env)
        self.assertEqual(bundle.stop(), 0, "the bundle must exit 0 on SIGTERM")

        env, procs = self.start_processes()
        apart = self.check_slice(env)
        for p in reversed(procs):
            self.assertEqual(p.stop(), 0, f"{p.name} must exit 0 on SIGTERM")
        self.assertEqual(in_bundle, apart)

    def test_sigint_stops_the_bundle_cleanly(self):
        env, bundle = self.start_bundle()
        bundle.signal(signal.SIGINT)
        wait_until(lambda: not bundle.alive(), 10, "the bundle to stop on SIGINT")
        self.assertEqual(bundle.popen.returncode, 0)
        self.assertIn("bundle stopped", bundle.log())


if __name__ == "__main__":
    unittest.main()
