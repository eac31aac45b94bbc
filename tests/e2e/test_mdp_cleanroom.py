"""End-to-end: our broker against clean-room MDP peers (tests/mdp_cleanroom).

The peers were written from ZeroMQ RFC 7 (MDP/0.1) and RFC 8 (MMI) only, so
these tests are independent evidence that `ainbox broker` speaks the
published protocol to peers that know nothing of our extensions, and that
our own actors and tools interoperate with such peers in both directions.
Hostile input goes through raw DEALER sockets to show the broker survives it.

Every wait is bounded; the harness tears every process down.
"""

import os
import threading
import time
import unittest

import msgpack
import zmq

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from mdp import (C_CLIENT, W_DISCONNECT, W_HEARTBEAT, W_READY, W_REPLY, W_WORKER, MdpClient,
                 WorkerThread, mmi_call, mmi_service, parse_client_reply)

SERVICE = b"cleanroom.echo"
# The harness runs the broker with AINBOX_HEARTBEAT_MS=200; MDP does not
# negotiate the interval, so the clean-room worker must use the same one.
HEARTBEAT_MS = 200
LIVENESS = 3


class CleanroomCase(AinboxTestCase):
    """A broker, a clean-room client, and helpers to add peers."""

    # The broker logs malformed input at WARN; nothing here should be ERROR.
    allowed_errors = ()
    broker_settings = {}

    def setUp(self):
        super().setUp()
        self.port = free_ports(1)[0]
        self.env = self.base_env(self.port, **self.broker_settings)
        self.endpoint = self.env["AINBOX_BROKER"]
        self.ctx = zmq.Context()
        self.worker_threads = []
        # Cleanups run LIFO: every socket and worker registered later is
        # closed before the context is terminated, and all of it before the
        # harness stops the processes and scans their logs.
        self.addCleanup(self.term_context)
        self.broker = self.start_broker("broker")
        self.client = self.new_client()

    # ------------------------------------------------------------ helpers

    def term_context(self):
        """Terminates the ZeroMQ context, unless a worker thread failed to
        stop: term() would then block forever on its socket, so the daemon
        thread is left to die with the process and the test fails."""
        stuck = [t.name for t in self.worker_threads if t.is_alive()]
        if stuck:
            self.fail(f"worker threads did not stop: {stuck}")
        self.ctx.term()

    def start_broker(self, name):
        """Spawns `ainbox broker` and waits until it answers MMI."""
        proc = self.spawn(name, ["broker"], self.env)
        probe = self.new_client()
        wait_until(lambda: mmi_service(probe, b"nobody", timeout_ms=300) is not None, 15,
                   f"{name} to answer mmi.service")
        return proc

    def new_client(self, retries=0):
        """A clean-room client on the shared context, closed at cleanup."""
        client = MdpClient(self.endpoint, ctx=self.ctx, retries=retries)
        self.addCleanup(client.close)
        return client

    def start_worker(self, service=SERVICE, handler=None, wait_registered=True,
                     heartbeat_ms=HEARTBEAT_MS, **worker_args):
        """Runs a clean-room worker in a thread; stops it (DISCONNECT) at cleanup."""
        args = dict(heartbeat_ms=heartbeat_ms, liveness=LIVENESS, ctx=self.ctx, **worker_args)
        if handler is not None:
            args["handler"] = handler
        thread = WorkerThread(self.endpoint, service, **args)
        thread.start()
        self.worker_threads.append(thread)
        self.addCleanup(thread.stop)
        self.assertTrue(thread.started.wait(5), "worker thread did not start")
        self.assertIsNone(thread.error)
        if wait_registered:
            self.wait_registered(service)
        return thread

    def wait_registered(self, service, timeout=10):
        """Waits until MMI says `service` has a worker."""
        wait_until(lambda: mmi_service(self.client, service, timeout_ms=500) == b"200",
                   timeout, f"mmi.service {service!r} to answer 200")

    def start_echo_actor(self):
        """Spawns our native `ainbox actor echo` and waits for it."""
        self.spawn("echo", ["actor", "echo"], self.env)
        self.wait_registered(b"echo", timeout=15)

    def raw_dealer(self):
        """A bare DEALER socket to the broker, for hand-made frames."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self.addCleanup(sock.close, 0)
        return sock

    @staticmethod
    def recv_within(sock, timeout_ms):
        """The next message on sock, or None after timeout_ms."""
        if sock.poll(timeout_ms, zmq.POLLIN):
            return sock.recv_multipart()
        return None

    def recv_worker_command(self, sock, timeout_ms, skip=(W_HEARTBEAT,)):
        """The next message on sock that is not a worker command in `skip`
        (heartbeats by default), or None after timeout_ms."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                return None
            frames = self.recv_within(sock, left)
            if frames is None:
                return None
            if len(frames) >= 3 and frames[:2] == [b"", W_WORKER] and frames[2] in skip:
                continue
            return frames

    def raw_echo_envelope(self, body_frame, timeout_ms=5000):
        """Sends one hand-made client REQUEST to service "echo" on a raw
        DEALER and returns the decoded reply envelope."""
        sock = self.raw_dealer()
        sock.send_multipart([b"", C_CLIENT, b"echo", body_frame])
        frames = self.recv_within(sock, timeout_ms)
        self.assertIsNotNone(frames, "no reply from service echo")
        body = parse_client_reply(frames, b"echo")
        self.assertEqual(len(body), 1, f"reply body frames: {body!r}")
        return proto.decode(body[0])

    def assert_serves(self, client, service=SERVICE, frames=(b"still", b"alive"),
                      timeout_ms=3000):
        """One request to the clean-room echo worker, answered exactly."""
        self.assertEqual(client.request(service, list(frames), timeout_ms), list(frames))

    def worker_row(self, service):
        """The broker's row for the one worker of `service` (ainbox-admin)."""
        rows = [w for w in self.admin(self.env, "--json", "workers")["workers"]
                if w["service"] == service.decode()]
        self.assertEqual(len(rows), 1, rows)
        return rows[0]


class MdpCleanroomTest(CleanroomCase):
    """Clean-room MDP client/worker <-> `ainbox broker` (+ `ainbox actor echo`)."""

    # ------------------------------------------------------------ a

    def test_a_echo_50_requests(self):
        """50 requests with opaque bodies, each echoed frame for frame."""
        worker = self.start_worker()
        bodies = [[os.urandom(1 + (i * 37) % 700)] for i in range(46)]
        bodies += [[b"one", b"\x00two\xff", b"three" * 100],   # a 3-frame body
                   [b"\x00" * 16, b"MDPC01", b"\x01"],        # header-like bytes in the body
                   [b"x", b"", b"z"],                          # an empty frame inside the body
                   [bytes([n]) * n for n in range(8)]]         # 8 frames, the first empty
        for i, body in enumerate(bodies):
            with self.subTest(request=i):
                self.assertEqual(self.client.request(SERVICE, body, 3000), body)
        self.assertEqual(worker.worker.requests, 50)
        self.assertEqual(worker.worker.overlaps, 0)

    # ------------------------------------------------------------ b

    def test_b_two_workers_share_load(self):
        """Two workers of one service both get requests; neither is ever
        sent a second request while it owes a reply (plain MDP)."""
        def slow_echo(body):
            time.sleep(0.03)   # long enough that concurrent clients overlap
            return body

        workers = [self.start_worker(handler=slow_echo) for _ in range(2)]
        clients = [self.new_client() for _ in range(4)]
        failures = []

        def run(idx, client):
            for n in range(6):
                body = [f"client {idx} request {n}".encode()]
                reply = client.request(SERVICE, body, 5000)
                if reply != body:
                    failures.append((idx, n, reply))

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads hung")
        self.assertEqual(failures, [])
        counts = [w.worker.requests for w in workers]
        self.assertEqual(sum(counts), 24, counts)
        self.assertTrue(all(c > 0 for c in counts), f"load not shared: {counts}")
        self.assertEqual([w.worker.overlaps for w in workers], [0, 0],
                         "a plain MDP worker got a REQUEST while it owed a REPLY")

    # ------------------------------------------------------------ c

    def test_c_mmi(self):
        """RFC 8: mmi.service 200/404; unknown mmi.* 501."""
        self.start_worker()
        self.assertEqual(mmi_service(self.client, SERVICE), b"200")
        self.assertEqual(mmi_service(self.client, b"cleanroom.nobody"), b"404")
        self.assertEqual(mmi_call(self.client, b"mmi.nonesuch", [b"x"]), b"501")

    # ------------------------------------------------------------ d

    def test_d_heartbeats_keep_idle_worker(self):
        """An idle worker outlives the broker's liveness window (600 ms)
        several times over: heartbeats flow both ways."""
        thread = self.start_worker()
        worker = thread.worker
        self.assert_serves(self.client)
        idle_until = time.monotonic() + 2.0
        while time.monotonic() < idle_until:   # bounded idle wait
            self.assertTrue(thread.is_alive())
            time.sleep(0.05)
        # The broker sent heartbeats (else the worker would have reconnected)...
        self.assertGreaterEqual(worker.heartbeats_in, 5, "broker sent too few HEARTBEATs")
        self.assertEqual(worker.silence_reconnects, 0)
        self.assertEqual(worker.disconnects_in, 0, "broker DISCONNECTed an idle, beating worker")
        self.assertEqual(worker.connects, 1)
        # ...and kept the worker (else the request would find no worker).
        self.assertEqual(mmi_service(self.client, SERVICE), b"200")
        self.assert_serves(self.client)

    # ------------------------------------------------------------ e

    def test_e_broker_restart(self):
        """After a broker restart on the same port the worker re-registers
        (RFC 7: on DISCONNECT or broker silence) and the client's retries on
        a new socket get answers again."""
        thread = self.start_worker()
        client = self.new_client(retries=1)
        self.assert_serves(client, frames=[b"before"])
        self.broker.stop()
        self.broker = self.start_broker("broker2")

        def answered():
            return client.request(SERVICE, [b"after"], 500) == [b"after"]
        wait_until(answered, 15, "the restarted broker to serve the clean-room worker")
        worker = thread.worker
        self.assertGreaterEqual(worker.connects, 2, "worker never sent READY again")
        # Either path is conformant; say which one was taken if this fails.
        self.assertGreaterEqual(worker.disconnects_in + worker.silence_reconnects, 1,
                                vars(worker))
        self.assertEqual(mmi_service(client, SERVICE), b"200")

    # ------------------------------------------------------------ f

    def test_f_cleanroom_client_to_native_actor(self):
        """A clean-room client talks to `ainbox actor echo` with our envelope."""
        self.start_echo_actor()
        request = proto.envelope("ECHO", corr=7, body=b"payload")
        reply = self.client.request(b"echo", [request], 5000)
        self.assertIsNotNone(reply, "no reply from the echo actor")
        self.assertEqual(len(reply), 1, reply)
        env = proto.decode(reply[0])
        self.assertEqual(env["status"], "OK", env)
        self.assertEqual(env["corr"], 7)
        self.assertEqual(env["body"], b"payload")

    # ------------------------------------------------------------ g

    def test_g_native_client_to_cleanroom_worker(self):
        """`ainbox-admin ping` against a clean-room worker.

        The worker sends back the admin's own PING envelope (same type and
        corr), so the admin can match the answer. ainbox-admin also requires
        a PING answer's body to name the answering "host" and "pid"
        (s_ping_answered in tools/admin/main.c), so the handler, which is
        test code and not part of the clean-room peer, puts them in the
        body; a pure echo (empty body) makes the admin exit 1 with
        "malformed reply from cleanroom.echo: no host or pid".
        """
        if os.sep in self.admin_bin and not os.path.exists(self.admin_bin):
            self.skipTest(f"{self.admin_bin} not built yet")
        seen = []

        def answer_ping(body):
            seen.append(proto.decode(body[0]))
            fields = msgpack.unpackb(body[0], raw=False)
            fields[7] = proto.pack({"host": "cleanroom", "pid": os.getpid()})
            return [proto.pack(fields)]

        thread = self.start_worker(handler=answer_ping)
        out = self.admin(self.env, "ping", SERVICE.decode(), check=False)
        self.assertEqual(out.returncode, 0, f"ainbox-admin ping failed: {out.stdout}{out.stderr}")
        self.assertGreaterEqual(thread.worker.requests, 1)
        self.assertEqual({m["type"] for m in seen}, {proto.MSG["PING"]})
        self.assertIn("cleanroom", out.stdout)

    # ------------------------------------------------------------ h

    def test_h_hostile_input(self):
        """Malformed and hostile frames on raw DEALERs; the broker drops or
        answers them and keeps serving."""
        self.start_worker()
        self.start_echo_actor()
        self.check_no_protocol()
        self.check_invalid_worker_commands()
        self.check_client_request_without_body()
        self.check_ready_with_invalid_names()
        self.check_reply_from_unknown_peer()
        self.check_bad_envelopes()

        # After all of that, normal service, both plain MDP and ours.
        self.assertTrue(self.broker.alive(), "the broker died")
        self.assert_serves(self.client)
        reply = self.client.request(b"echo", [proto.envelope("ECHO", corr=12, body=b"ok")], 5000)
        self.assertIsNotNone(reply, "no reply from echo after the hostile input")
        env = proto.decode(reply[0])
        self.assertEqual((env["status"], env["corr"], env["body"]), ("OK", 12, b"ok"))

    def check_no_protocol(self):
        """Frames in no protocol at all: RFC 7 says drop them."""
        with self.subTest("no protocol at all"):
            sock = self.raw_dealer()
            for frames in ([b"hello"], [b"\xff" * 64, b"world"], [b""], [b"", b""],
                           [b"", b"MDPX01", b"echo", b"x"], [b"", W_WORKER]):
                sock.send_multipart(frames)
            self.assertIsNone(self.recv_within(sock, 300),
                              "the broker answered frames that are no MDP")

    def check_invalid_worker_commands(self):
        """MDPW01 with an unknown command byte: an invalid message. RFC 7:
        drop it and treat the peer as invalid; the broker also "MAY send
        DISCONNECT at any time", so silence and DISCONNECT both conform."""
        for command in (b"\x09", b"\x01\x02", b""):
            with self.subTest("MDPW01 with an unknown command", command=command):
                sock = self.raw_dealer()
                sock.send_multipart([b"", W_WORKER, command])
                got = self.recv_worker_command(sock, 300)
                self.assertIn(got, (None, [b"", W_WORKER, W_DISCONNECT]))

    def check_client_request_without_body(self):
        """A 3-frame client REQUEST (RFC 7 says 4 or more) is invalid. RFC 7
        lets a broker drop it (SHOULD); ours answers INVALID wherever it can
        name the client, a deliberate choice (broker/README.md): a client
        learns at once instead of timing out. The reply is a well-formed
        MDP REPLY for the service it named."""
        with self.subTest("client request without body"):
            sock = self.raw_dealer()
            sock.send_multipart([b"", C_CLIENT, SERVICE])
            reply = self.recv_within(sock, 2000)
            self.assertIsNotNone(reply, "a malformed request named a client: answer it")
            self.assertEqual(reply[:3], [b"", C_CLIENT, SERVICE])
            self.assertEqual(proto.decode(reply[3])["status"], "INVALID")
        with self.subTest("client request with nine body frames"):
            sock = self.raw_dealer()
            sock.send_multipart([b"", C_CLIENT, SERVICE] + [b"x"] * 9)
            reply = self.recv_within(sock, 2000)
            self.assertIsNotNone(reply)
            self.assertEqual(proto.decode(reply[3])["status"], "INVALID")

    def check_ready_with_invalid_names(self):
        """READY with service names that are no printable string, and one in
        the mmi. namespace, which RFC 8 says MUST be disconnected."""
        for name in (b"", b"bad\x00name", b"\xff\xfe", b"new\nline", b"x" * 10000, b"mmi.evil"):
            with self.subTest("READY with invalid service name", name=name[:20]):
                sock = self.raw_dealer()
                sock.send_multipart([b"", W_WORKER, W_READY, name])
                got = self.recv_worker_command(sock, 500)
                if got is not None or name.startswith(b"mmi."):
                    self.assertEqual(got, [b"", W_WORKER, W_DISCONNECT])
                if name and not name.startswith(b"mmi."):
                    self.assertEqual(mmi_service(self.client, name), b"404")

    def check_reply_from_unknown_peer(self):
        """A worker REPLY, or a HEARTBEAT ("valid at any time, after a READY
        command"), from a peer that never sent READY is a valid but
        unexpected command: RFC 7 says the broker MUST send DISCONNECT. A
        DISCONNECT may come "at any time, including before READY", and then
        the broker "MUST send no further commands"."""
        unexpected = {"REPLY": [b"", W_WORKER, W_REPLY, b"\x00somebody", b"", b"body"],
                      "HEARTBEAT": [b"", W_WORKER, W_HEARTBEAT]}
        for what, frames in unexpected.items():
            with self.subTest(f"worker {what} from an unknown peer"):
                sock = self.raw_dealer()
                sock.send_multipart(frames)
                self.assertEqual(self.recv_worker_command(sock, 2000, skip=()),
                                 [b"", W_WORKER, W_DISCONNECT])
        with self.subTest("worker DISCONNECT from an unknown peer"):
            sock = self.raw_dealer()
            sock.send_multipart([b"", W_WORKER, W_DISCONNECT])
            self.assertIsNone(self.recv_within(sock, 300))

    def check_bad_envelopes(self):
        """Our envelope, broken in ways a parser must survive, sent to the
        echo actor over plain MDP: each is answered, INVALID or TOO_LARGE."""
        whole = proto.envelope("ECHO", corr=9, body=b"truncated payload")
        # msgpack array32 header claiming 2^28 elements, then two of them.
        bomb = b"\xdd" + (1 << 28).to_bytes(4, "big") + b"\x01\x40"
        cases = [("garbage bytes", b"\xc1\xc1 not msgpack", "INVALID"),
                 ("truncated envelope", whole[:-6], "INVALID"),
                 ("array32 claiming 2^28 elements", bomb, "INVALID"),
                 ("5 MB body", proto.envelope("ECHO", corr=11, body=b"B" * (5 << 20)),
                  "TOO_LARGE")]
        for what, frame, status in cases:
            with self.subTest(what):
                self.assertEqual(self.raw_echo_envelope(frame, 10000)["status"], status)
                # The broker must not keep anything of a refused message: a
                # normal request right after is still served.
                self.assert_serves(self.client, frames=[what.encode()])


class SlowHeartbeatTest(CleanroomCase):
    """Workers that beat at RFC 7's reference interval against a broker at
    our default (1000 ms x 3): MDP does not negotiate the interval, and a
    broker must not drop a worker that beats as the reference peers do,
    while it still finds our own (and fast plain) workers dead quickly."""

    broker_settings = {"AINBOX_HEARTBEAT_MS": "1000"}

    def test_slow_idle_workers_stay_registered(self):
        """An idle worker beating every 3.5 s, and one beating as the
        reference worker does (it looks at its 2.5 s clock only when it
        wakes: every 2.5 to 3.5 s), stay registered for 30 s: one READY,
        no DISCONNECT, and both answer a client afterwards."""
        fixed = self.start_worker(b"slow.fixed", heartbeat_ms=3500)
        woken = self.start_worker(b"slow.woken", heartbeat_ms=2500, beat_on_wake=True)
        self.assert_serves(self.client, b"slow.fixed", [b"first"])
        self.assert_serves(self.client, b"slow.woken", [b"first"])
        idle_until = time.monotonic() + 30
        while time.monotonic() < idle_until:   # idle: only MMI, which workers never see
            for thread in (fixed, woken):
                self.assertTrue(thread.is_alive())
                self.assertEqual(thread.worker.disconnects_in, 0,
                                 f"{thread.service!r} was dropped: {vars(thread.worker)}")
            time.sleep(1)
        for thread in (fixed, woken):
            worker = thread.worker
            with self.subTest(service=thread.service):
                self.assertEqual(worker.connects, 1, "the worker had to send READY again")
                self.assertEqual(worker.disconnects_in, 0)
                self.assertEqual(worker.silence_reconnects, 0)
                # It really was slow: about 9 (fixed) or 9-13 (woken) beats in 30 s, not 150.
                self.assertGreaterEqual(worker.heartbeats_out, 5)
                self.assertLessEqual(worker.heartbeats_out, 16)
                self.assertEqual(mmi_service(self.client, thread.service), b"200")
                self.assert_serves(self.client, thread.service, [b"after", b"30 s"])
                self.assertEqual(worker.connects, 1)
        # The broker learned the 3.5 s rhythm: three of them before it gives up.
        self.assertGreaterEqual(self.worker_row(b"slow.fixed")["window_ms"], 3 * 3500)

    def test_fast_workers_keep_fast_windows(self):
        """Our native worker states its interval (1000 ms: window 3 s); a plain worker beating
        every 200 ms is learned below the reference interval's 7.5 s, down to the broker's
        floor (3 s); a plain worker that falls silent is still dropped."""
        self.spawn("echo", ["actor", "echo"], self.env)
        self.wait_registered(b"echo", timeout=15)
        self.assertEqual(self.worker_row(b"echo")["window_ms"], 3000)
        fresh = self.raw_dealer()
        fresh.send_multipart([b"", W_WORKER, W_READY, b"slow.fresh"])
        self.wait_registered(b"slow.fresh")
        self.assertEqual(self.worker_row(b"slow.fresh")["window_ms"], 3 * 2500,
                         "before its first HEARTBEAT: the reference interval")
        self.start_worker(b"slow.fast", heartbeat_ms=200)
        wait_until(lambda: self.worker_row(b"slow.fast")["window_ms"] < 3 * 2500, 10,
                   "the broker to learn the 200 ms rhythm")
        self.assertGreaterEqual(self.worker_row(b"slow.fast")["window_ms"], 3000)
        # Silent after a few beats: dropped (no DISCONNECT is owed to a silent peer).
        sock = self.raw_dealer()
        sock.send_multipart([b"", W_WORKER, W_READY, b"slow.silent"])
        for _ in range(5):
            time.sleep(0.2)
            sock.send_multipart([b"", W_WORKER, W_HEARTBEAT])
        self.wait_registered(b"slow.silent")
        wait_until(lambda: mmi_service(self.client, b"slow.silent", timeout_ms=500) == b"404",
                   15, "the silent worker to be dropped")


if __name__ == "__main__":
    unittest.main()
