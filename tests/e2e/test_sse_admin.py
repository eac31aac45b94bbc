"""Another user's stream with an admin token (`?user=`), and the loadgen actor.

`GET /api/v1/emails/stream?user=N` is the caller's own stream when N is the
token's user, anyone's for an access token with role admin (operations and
the edge benchmark), 403 FORBIDDEN for any other user, 401 without a token.
The loadgen actor (benchmarks only) then publishes timed events to those
streams, through the events actor or straight on the bus, and answers what
it sent. Traffic stays on 127.0.0.1.
"""

import base64
import hashlib
import hmac
import json
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from ainbox_sse import SseReader

ACCESS = "a" * 16 + "-access-secret-for-tests-only"
REFRESH = "r" * 16 + "-refresh-secret-for-tests-only"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, role="user"):
    """An HS256 access token as our issuer writes it (runtime/jwt.h)."""
    kid = b64(hmac.new(ACCESS.encode(), b"ainbox/jwt-kid/v1", hashlib.sha256).digest()[:6])
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    now = int(time.time())
    payload = {"sub": str(sub), "sid": "7", "role": role, "typ": "access", "iat": now - 5,
               "exp": now + 600, "jti": b64(b"j" * 32)}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b64(hmac.new(ACCESS.encode(), signing.encode(), hashlib.sha256).digest())
    return f"{signing}.{sig}"


class TestSseAdmin(AinboxTestCase):

    def setUp(self):
        super().setUp()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events,loadgen",
                                 AINBOX_HEALTH_SERVICES="monitor", JWT_ACCESS_SECRET=ACCESS,
                                 JWT_REFRESH_SECRET=REFRESH)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.port = int(self.env["HTTP_PORT"])
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)

    def stream(self, user, tok):
        reader = SseReader(self.port, f"/api/v1/emails/stream?user={user}",
                           headers={"Authorization": f"Bearer {tok}"})
        self.addCleanup(reader.close)
        return reader

    def edge_metric(self, name):
        status, stats = self.http_json(self.env, "/stats")
        for p in stats.get("processes", []) if status == 200 else []:
            if p["report"]["service"] == "edge":
                return p["report"]["metrics"].get(name)
        return None

    def test_admin_may_open_any_users_stream_a_user_only_their_own(self):
        admin = self.stream(9, token(1, role="admin"))
        self.assertEqual(admin.status, 200)
        self.assertEqual(proto.json_type(admin.event()["data"]), "connected")
        own = self.stream(42, token(42))
        self.assertEqual(own.status, 200)
        self.assertEqual(proto.json_type(own.event()["data"]), "connected")
        # The admin's stream is user 9's: user 9's event reaches it, user 1's does not.
        for user in (1, 9):
            reply = self.client.call("events", "EVENT_PUBLISH",
                                     proto.pack({"data": f'{{"type":"t","to":{user}}}'}),
                                     user=user)
            self.assertEqual(reply and reply["status"], "OK", reply)
        self.assertEqual(json.loads(admin.event()["data"])["to"], 9)

        status, _, body = self.http(self.env, "/api/v1/emails/stream?user=9",
                                    headers={"Authorization": f"Bearer {token(42)}"})
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(body)["error"]["code"], "FORBIDDEN")
        self.assertEqual(self.http(self.env, "/api/v1/emails/stream?user=9")[0], 401)
        for bad in ("0", "abc", "-3", "9x"):
            status, _, _ = self.http(self.env, f"/api/v1/emails/stream?user={bad}",
                                     headers={"Authorization": f"Bearer {token(1, 'admin')}"})
            self.assertEqual(status, 400, bad)
        wait_until(lambda: self.edge_metric("sse.refused_foreign") == 1 and
                   self.edge_metric("sse.admin_streams") == 1, 15, "the metrics to count")

    def test_loadgen_reaches_the_streams_both_ways(self):
        readers = [self.stream(u, token(1, role="admin")) for u in (101, 102, 103)]
        for r in readers:
            self.assertEqual(proto.json_type(r.event()["data"]), "connected")
        time.sleep(0.3)  # the subscriptions travel to the publishers
        for mode in ("events", "events1", "bus"):
            reply = self.client.call("loadgen", "LOADGEN_RUN", proto.pack(
                {"users": 3, "first_user": 101, "rate": 4, "seconds": 1, "mode": mode}),
                timeout_ms=15000)
            self.assertEqual(reply and reply["status"], "OK", reply)
            got = proto.body_map(reply)
            self.assertEqual((got["mode"], got["scheduled"], got["sent"], got["unsent"],
                              got["failed"], got["acked"]), (mode, 12, 12, 0, 0, 12), got)
            for i, r in enumerate(readers):
                for _ in range(4):
                    data = json.loads(r.event()["data"])
                    self.assertEqual(data["type"], "bench")
                    self.assertEqual(data["user"], str(101 + i))
                    self.assertLess(abs(time.time() * 1e6 - data["ts"]), 5e6)
        # One run at a time, and bounded.
        reply = self.client.call("loadgen", "LOADGEN_RUN", proto.pack(
            {"users": 1, "seconds": 700}))
        self.assertEqual(reply and reply["status"], "INVALID", reply)


if __name__ == "__main__":
    unittest.main()
