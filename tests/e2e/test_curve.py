"""End-to-end: CurveZMQ on the broker and the bus (broker/access.c).

A broker with AINBOX_CURVE_SECRET and AINBOX_CURVE_ALLOW_DIR, an echo
actor and an edge with keys of their own, all over tcp. Raw ZeroMQ peers
(python3-zmq, which speaks CURVE too) play the intruders: without a key,
with a key the broker does not know, and with allowed keys used beyond
their roles. Every wait is bounded; the harness scans the logs.
"""

import os
import shutil
import subprocess
import time
import unittest

import zmq

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until

SILENCE_MS = 1500  # how long "gets nothing" is watched


class CurveTest(AinboxTestCase):

    # The ERROR of the production test's broker, which refuses to start.
    allowed_errors = ("refusing to start with NODE_ENV=production",)

    def setUp(self):
        super().setUp()
        self.port = free_ports(1)[0]
        self.keys = os.path.join(self.scratch, "keys")
        self.allow = os.path.join(self.scratch, "allow")
        os.mkdir(self.keys)
        os.mkdir(self.allow)
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.term)
        self.keygen("broker", "broker")
        for name, role, extra in [("echo", "worker", ["--services", "echo"]),
                                  ("edge", "edge", []), ("admin", "admin", []),
                                  ("sub", "subscriber", []), ("pub", "publisher", []),
                                  ("stranger", "admin", [])]:
            self.keygen(name, role, *extra)
            if name != "stranger":
                self.allow_key(name)
        self.env = self.base_env(self.port)
        self.broker_env = dict(self.env, AINBOX_CURVE_SECRET=self.secret_path("broker"),
                               AINBOX_CURVE_ALLOW_DIR=self.allow)
        self.broker = self.spawn("broker", ["broker"], self.broker_env)
        self.spawn("echo", ["actor", "echo"], self.client_env("echo"))
        wait_until(lambda: self.echo_call("admin", "PING", timeout_ms=300) == "OK", 15,
                   "the echo actor to register over CURVE")

    # ------------------------------------------------------------ helpers

    def keygen(self, name, role, *extra):
        out = subprocess.run([self.bin, "keygen", name, "--role", role, "--dir", self.keys]
                             + list(extra), capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)

    def secret_path(self, name):
        return os.path.join(self.keys, f"{name}.cert_secret")

    def allow_key(self, name):
        shutil.copy(os.path.join(self.keys, f"{name}.cert"), self.allow)

    def client_env(self, name):
        return dict(self.env, AINBOX_CURVE_SECRET=self.secret_path(name),
                    AINBOX_CURVE_BROKER_KEY=os.path.join(self.keys, "broker.cert"))

    def socket(self, kind, name=None, port_offset=0, broker="broker"):
        """A raw socket connected to the broker (or the bus), as CURVE
        client with key `name` pinning the broker key `broker`, or without
        any key."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        # A refused handshake leaves a DEALER without a peer: sends would block.
        sock.setsockopt(zmq.SNDTIMEO, 500)
        if name is not None:
            pub, sec = proto.read_cert(self.secret_path(name))
            sock.curve_serverkey = proto.read_cert(os.path.join(self.keys, f"{broker}.cert"))[0]
            sock.curve_publickey = pub
            sock.curve_secretkey = sec
        sock.connect(f"tcp://127.0.0.1:{self.port + port_offset}")
        self.addCleanup(sock.close, 0)
        return sock

    def request(self, sock, service, msg, user=0, body=b"", timeout_ms=SILENCE_MS):
        """One MDP client request on `sock`; the decoded reply, or None."""
        if not self.send(sock, [b"", b"MDPC01", service.encode(),
                                proto.envelope(msg, 1, user=user, body=body)]):
            return None
        if not sock.poll(timeout_ms):
            return None
        frames = sock.recv_multipart()
        return proto.decode(frames[-1])

    @staticmethod
    def send(sock, frames):
        """Sends; False if it could not (no peer to send to)."""
        try:
            sock.send_multipart(frames)
            return True
        except zmq.Again:
            return False

    def echo_call(self, name, msg, user=0, timeout_ms=SILENCE_MS, service="echo"):
        """Status of one request from a fresh socket with key `name` (None: no reply)."""
        reply = self.request(self.socket(zmq.DEALER, name), service, msg, user,
                             timeout_ms=timeout_ms)
        return reply["status"] if reply else None

    def broker_metric(self, metric):
        reply = self.request(self.socket(zmq.DEALER, "admin"), "broker", "BROKER_STATS",
                             timeout_ms=5000)
        self.assertEqual(reply["status"], "OK")
        return proto.body_map(reply)["metrics"].get(metric, 0)

    def admin_cli(self, name, *args):
        env = self.client_env(name) if name else dict(self.env)
        return subprocess.run([self.admin_bin, "--broker", self.env["AINBOX_BROKER"],
                               "--timeout", "2000"] + list(args), env=env,
                              capture_output=True, text=True, timeout=30)

    def received(self, sock, timeout_ms=SILENCE_MS):
        return sock.poll(timeout_ms) != 0

    # ------------------------------------------------------------ tests

    def test_a_no_key_gets_nothing(self):
        """A raw client without a key, or with a key the broker does not
        know, gets no reply; a SUB without a key gets no events."""
        for name in (None, "stranger"):
            with self.subTest(key=name):
                sock = self.socket(zmq.DEALER, name)
                self.assertIsNone(self.request(sock, "echo", "PING"))
                self.assertIsNone(self.request(sock, "cache", "MAIL_THREAD", user=2,
                                               body=proto.pack({"thread": "t"})))
                self.send(sock, [b"", b"MDPC01", b"mmi.service", b"echo"])
                self.assertFalse(self.received(sock))
        # The broker publishes its own metrics every 300 ms: an allowed
        # subscriber sees them, a keyless one and a publisher-only one do not.
        subs = {}
        for name in (None, "pub", "sub"):
            subs[name] = self.socket(zmq.SUB, name, port_offset=2)
            subs[name].setsockopt(zmq.SUBSCRIBE, b"")
        self.assertTrue(self.received(subs["sub"], 10000), "allowed subscriber got nothing")
        self.assertFalse(self.received(subs[None]), "a keyless SUB received events")
        self.assertFalse(self.received(subs["pub"]), "a publisher-only key received events")
        self.assertGreaterEqual(self.broker_metric("auth.refused.handshake"), 2)

    def test_b_worker_key_is_not_an_operator(self):
        """With the echo worker's key: operator requests, requests for a
        user, and calls it was not given are refused with DENIED."""
        sock = self.socket(zmq.DEALER, "echo")
        cases = [("broker", "BROKER_WORKERS", 0), ("broker", "BROKER_SERVICES", 0), ("cache", "CACHE_CLEAR", 0),
                 ("ratelimit", "RATE_RESET", 0), ("echo", "ECHO", 2), ("session", "SESSION_OPEN", 0)]
        for service, msg, user in cases:
            with self.subTest(service=service, msg=msg):
                reply = self.request(sock, service, msg, user=user, timeout_ms=5000)
                self.assertIsNotNone(reply)
                self.assertEqual(reply["status"], "DENIED")
        sock.send_multipart([b"", b"MDPC01", b"mmi.service", b"echo"])
        self.assertTrue(self.received(sock, 5000))
        self.assertEqual(sock.recv_multipart()[-1], b"403")
        # Our compact framing ([AINC01 service][envelope]) is checked the same way.
        sock.send_multipart([b"AINC01echo", proto.envelope("ECHO", 9, user=2)])
        self.assertTrue(self.received(sock, 5000))
        frames = sock.recv_multipart()
        self.assertEqual(frames[0], b"AINC01echo")
        self.assertEqual(proto.decode(frames[-1])["status"], "DENIED")
        out = self.admin_cli("echo", "services")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("admin", out.stdout + out.stderr)
        self.assertGreaterEqual(self.broker_metric("auth.refused.request"), len(cases) + 3)

    def test_c_edge_and_admin_keys_work(self):
        """The edge's key may speak for users; the admin key runs ainbox-admin;
        neither key is needed nor usable without the broker's public key."""
        self.assertEqual(self.echo_call("edge", "ECHO", user=2), "OK")
        self.assertEqual(self.echo_call("edge", "CACHE_CLEAR", service="cache"), "DENIED")
        self.assertEqual(self.echo_call("edge", "BROKER_STATS", service="broker"), "DENIED")
        out = self.admin_cli("admin", "--json", "services")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("echo", out.stdout)
        # The same through ainbox-admin's options instead of the environment.
        out = self.admin_cli(None, "--key", self.secret_path("admin"), "--broker-key",
                             proto.read_cert(os.path.join(self.keys, "broker.cert"))[0].decode(),
                             "workers")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("echo", out.stdout)
        out = self.admin_cli(None, "services")
        self.assertNotEqual(out.returncode, 0, "ainbox-admin without a key got an answer")
        # A real edge over CURVE: /health pings echo through the broker.
        edge_env = dict(self.client_env("edge"), AINBOX_HEALTH_SERVICES="echo")
        self.spawn("edge", ["edge"], edge_env)
        self.wait_health(edge_env)

    def test_d_registration_needs_the_service_in_the_key(self):
        """A key may register only as the services its certificate names."""
        # Names that hide "echo" (MDP allows commas in a service name) are not "echo".
        for name in (b"cache", b",echo", b"echo,", b"ech"):
            self.socket(zmq.DEALER, "echo").send_multipart([b"", b"MDPW01", b"\x01", name])
        wait_until(lambda: self.broker_metric("auth.refused.register") >= 4, 10,
                   "the refused READYs to be counted")
        admin = self.socket(zmq.DEALER, "admin")
        for name in (b"cache", b",echo", b"echo,", b"ech", b"echo"):
            admin.send_multipart([b"", b"MDPC01", b"mmi.service", name])
            self.assertTrue(self.received(admin, 5000))
            self.assertEqual(admin.recv_multipart()[-1], b"200" if name == b"echo" else b"404",
                             name)

    def test_e_keys_added_and_removed_at_runtime(self):
        """A key copied into the directory is accepted without a restart; a
        key removed is refused for new connections and further requests."""
        self.keygen("late", "edge")
        self.assertIsNone(self.echo_call("late", "PING", timeout_ms=500))
        self.allow_key("late")
        wait_until(lambda: self.echo_call("late", "PING", timeout_ms=300) == "OK", 15,
                   "the added key to be accepted")
        kept = self.socket(zmq.DEALER, "late")
        self.assertEqual(self.request(kept, "echo", "PING", timeout_ms=5000)["status"], "OK")
        os.unlink(os.path.join(self.allow, "late.cert"))
        wait_until(lambda: self.echo_call("late", "PING", timeout_ms=300) is None, 15,
                   "the removed key to be refused")
        self.assertEqual(self.request(kept, "echo", "PING", timeout_ms=5000)["status"], "DENIED")

    def test_f_production_refuses_an_open_bind_without_keys(self):
        """NODE_ENV=production with a non-loopback bind and no keys: the
        broker refuses to start and says why; with keys it starts."""
        port = free_ports(1)[0]
        env = self.base_env(port, NODE_ENV="production", AINBOX_BROKER_BIND=f"tcp://*:{port}")
        open_broker = self.spawn("open-broker", ["broker"], env)
        wait_until(lambda: not open_broker.alive(), 15, "the open broker to exit")
        self.assertNotEqual(open_broker.popen.returncode, 0)
        self.assertIn("refusing to start with NODE_ENV=production", open_broker.log())
        env.update(AINBOX_CURVE_SECRET=self.secret_path("broker"))
        env.update(AINBOX_CURVE_ALLOW_DIR=self.allow)
        # One CURVE broker per process, but this is another process.
        keyed = self.spawn("keyed-broker", ["broker"], env)
        wait_until(lambda: "MDP on tcp://*" in keyed.log(), 15, "the keyed broker to bind")
        self.assertTrue(keyed.alive())

    def test_h_publishing_needs_a_publishing_role(self):
        """Events reach subscribers only from keys that may publish: a
        subscriber-only key's PUB is refused at the handshake."""
        sub = self.socket(zmq.SUB, "edge", port_offset=2)
        sub.setsockopt(zmq.SUBSCRIBE, b"u/2/")
        event = [b"u/2/", proto.envelope("USER_EVENT", 0, user=2)]

        def delivered(pub, seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                self.send(pub, event)  # until the subscription has reached the publisher
                if self.received(sub, 100):
                    return sub.recv_multipart()
            return None
        for name in (None, "sub", "stranger"):
            with self.subTest(key=name):
                pub = self.socket(zmq.PUB, name, port_offset=1)
                self.assertIsNone(delivered(pub, SILENCE_MS / 1000))
        self.assertEqual(delivered(self.socket(zmq.PUB, "pub", port_offset=1), 15), event)

    def test_g_broker_key_rotation_serves_both_keys(self):
        """AINBOX_CURVE_SECRET_NEXT on AINBOX_BROKER_BIND_NEXT: clients that
        pin the current key use the usual ports, clients that pin the next
        key the next ports, and both reach the same workers."""
        self.keygen("broker2", "broker")
        old_port, new_port = free_ports(2)
        env = self.base_env(old_port, AINBOX_CURVE_SECRET=self.secret_path("broker"),
                            AINBOX_CURVE_ALLOW_DIR=self.allow,
                            AINBOX_CURVE_SECRET_NEXT=self.secret_path("broker2"),
                            AINBOX_BROKER_BIND_NEXT=f"tcp://127.0.0.1:{new_port}")
        self.spawn("rotating-broker", ["broker"], env)
        moved = dict(self.client_env("echo"), AINBOX_BROKER=f"tcp://127.0.0.1:{new_port}",
                     AINBOX_CURVE_BROKER_KEY=os.path.join(self.keys, "broker2.cert"))
        self.spawn("moved-echo", ["actor", "echo"], moved)
        self.port = old_port

        def echoed():
            return self.echo_call("edge", "ECHO", user=2, timeout_ms=300) == "OK"
        wait_until(echoed, 15, "a client on the current key to reach the moved worker")
        # The next key is served only on the next ports, and the current one only on its own.
        self.port = new_port
        self.assertIsNone(self.echo_call("edge", "PING", timeout_ms=500))
        new = self.socket(zmq.DEALER, "edge", broker="broker2")
        self.assertEqual(self.request(new, "echo", "PING", timeout_ms=5000)["status"], "OK")
        self.port = old_port
        self.assertIsNone(self.request(self.socket(zmq.DEALER, "edge", broker="broker2"), "echo",
                                       "PING", timeout_ms=500))



if __name__ == "__main__":
    unittest.main()
