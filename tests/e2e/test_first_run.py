"""End-to-end: what a new user meets first (deploy/run-bundle.sh, GET /health).

- The run command keeps the bundle running: a bundle killed with SIGKILL
  is restarted, each restart logged with its count, and SIGTERM stops the
  script and the bundle cleanly.
- In development it generates the sign-in secrets and keeps them under its
  var directory: POST /api/v1/dev/session signs in at once, and the same
  secrets are used again on the next run.
- GET /health says what does not work: each disabled service and why.
- The default bundle leaves the name "echo" to outside MDP workers.

run-bundle.sh runs here with its test switches (no install or build, no
private Redis/PostgreSQL of its own: the harness's are passed in).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from ainbox_harness import AinboxTestCase, Proc, free_ports, wait_until
from mdp import MdpClient, WorkerThread

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy", "run-bundle.sh")


def access_token(secret, sub="42"):
    """An HS256 access token as our issuer writes it (edge/README.md),
    minted here independently of the C code."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    kid = b64(hmac.new(secret.encode(), b"ainbox/jwt-kid/v1", hashlib.sha256).digest()[:6])
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    payload = {"sub": sub, "sid": "7", "role": "user", "typ": "access", "iat": now - 5,
               "exp": now + 600, "jti": b64(b"j" * 32)}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())
    return f"{signing}.{sig}"


class FirstRunCase(AinboxTestCase):
    # A bundle killed with SIGKILL leaves nothing to scan; the restarted one
    # may log its peers' reconnections as warnings only.
    allowed_errors = ()

    def run_bundle(self, var, name="run-bundle", **settings):
        """Starts deploy/run-bundle.sh with `var` as its var directory."""
        port, = free_ports(1)
        # The demo (fake Google, demo sessions) is e2e.demo's: these tests are about the rest.
        settings.setdefault("AINBOX_DEMO", "false")
        self.env = self.base_env(port, NODE_ENV="development", RUN_BUNDLE_SKIP_SETUP="1",
                                 RUN_BUNDLE_NO_STORES="1", RUN_BUNDLE_VAR=var,
                                 RUN_BUNDLE_AINBOX=self.bin, **settings)
        for key in ("DATABASE_URL", "REDIS_URL", "JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET",
                    "AINBOX_TOKEN_KEY", "AINBOX_DEV_TOKEN"):
            if key not in settings:
                self.env.pop(key, None)
        proc = Proc(name, [SCRIPT], self.env, self.scratch)
        self.procs.append(proc)
        self.wait_health(self.env, timeout=30)
        return proc

    def bundle_pids(self, proc):
        """Pids of the bundles the script said it started, in order."""
        return [int(p) for p in re.findall(r"bundle started \(pid (\d+)\)", proc.log())]

    def health(self):
        status, body = self.http_json(self.env, "/health")
        return status, body

    def post_json(self, path, body):
        """POST as `curl -d` does (form content type, JSON text)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.env['HTTP_PORT']}{path}", method="POST",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status, res.headers.get_all("Set-Cookie") or [], res.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get_all("Set-Cookie") or [], err.read()


class RestartLoopTest(FirstRunCase):

    def test_killed_bundle_is_restarted_and_sigterm_stops_all(self):
        var = os.path.join(self.scratch, "var")
        script = self.run_bundle(var)
        first, = self.bundle_pids(script)
        for n in (1, 2):
            victim = self.bundle_pids(script)[-1]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: f"restart #{n}" in script.log(), 15, f"restart #{n} to be logged")
            wait_until(lambda: len(self.bundle_pids(script)) == n + 1, 15, "a new bundle")
            self.wait_health(self.env, timeout=30)
        self.assertIn("killed by signal 9", script.log())
        pids = self.bundle_pids(script)
        self.assertEqual(len(set(pids)), 3)
        self.assertEqual(script.stop(timeout=20), 0, script.log())
        self.assertIn("run-bundle: stopped (status 0)", script.log())
        for pid in pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}") and
                             open(f"/proc/{pid}/stat").read().split()[2] != "Z",
                             f"bundle {pid} outlived the script")

    def test_configuration_error_is_not_restarted(self):
        var = os.path.join(self.scratch, "var")
        port, = free_ports(1)
        env = self.base_env(port, RUN_BUNDLE_SKIP_SETUP="1", RUN_BUNDLE_NO_STORES="1",
                            RUN_BUNDLE_VAR=var, RUN_BUNDLE_AINBOX=self.bin,
                            AINBOX_QUEUE_MAX="not-a-number")
        proc = Proc("run-bundle-bad", [SCRIPT], env, self.scratch)
        self.procs.append(proc)
        proc.popen.wait(30)
        self.assertEqual(proc.popen.returncode, 2, proc.log())
        self.assertIn("AINBOX_QUEUE_MAX", proc.log())
        self.assertNotIn("restart #", proc.log())

    def test_production_without_secrets_refuses_to_start_and_generates_nothing(self):
        var = os.path.join(self.scratch, "var")
        port, = free_ports(1)
        env = self.base_env(port, NODE_ENV="production", RUN_BUNDLE_SKIP_SETUP="1",
                            RUN_BUNDLE_NO_STORES="1", RUN_BUNDLE_VAR=var,
                            RUN_BUNDLE_AINBOX=self.bin)
        for key in ("JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "AINBOX_TOKEN_KEY"):
            env.pop(key, None)
        proc = Proc("run-bundle-prod", [SCRIPT], env, self.scratch,
                    allow_errors=("JWT_ACCESS_SECRET", "failed to start"))
        self.procs.append(proc)
        proc.popen.wait(60)
        self.assertEqual(proc.popen.returncode, 1, proc.log())
        self.assertIn("could not start", proc.log())
        self.assertIn("JWT_ACCESS_SECRET", proc.log())
        self.assertNotIn("restart #", proc.log())
        self.assertFalse(os.path.exists(os.path.join(var, "dev-secrets")))
        self.assertFalse(os.path.exists(os.path.join(var, "dev-token")))
        # Nor the demo (its AINBOX_DEMO defaults to true): no fake Google, no demo sessions.
        self.assertFalse(os.path.exists(os.path.join(var, "fake-providers.log")))
        self.assertFalse(os.path.exists(os.path.join(var, "demo-tokens")))
        self.assertNotIn("demo", proc.log())


class DevelopmentSignInTest(FirstRunCase):

    def test_sign_in_works_at_once_and_secrets_are_kept(self):
        pg = self.start_postgres()
        var = os.path.join(self.scratch, "var")
        script = self.run_bundle(var, DATABASE_URL=pg.url)
        status, cookies, body = self.post_json("/api/v1/dev/session", {"email": "me@example.com"})
        self.assertEqual(status, 200, body)
        names = {c.split("=", 1)[0] for c in cookies}
        self.assertLessEqual({"access_token", "refresh_token"}, names, cookies)
        with open(os.path.join(var, "dev-secrets")) as f:
            secrets = f.read()
        self.assertEqual(oct(os.stat(os.path.join(var, "dev-secrets")).st_mode & 0o777), "0o600")
        for key in ("JWT_ACCESS_SECRET=", "JWT_REFRESH_SECRET=", "AINBOX_TOKEN_KEY="):
            self.assertIn(key, secrets)
        access = next(c for c in cookies if c.startswith("access_token=")).split(";")[0]
        self.assertNotIn("session", self.health()[1]["disabled"])
        self.assertEqual(script.stop(timeout=20), 0, script.log())

        # The next run uses the same secrets: the token minted before still works.
        self.run_bundle(var, name="run-bundle-2", DATABASE_URL=pg.url)
        with open(os.path.join(var, "dev-secrets")) as f:
            self.assertEqual(f.read(), secrets)
        status, _, body = self.http(self.env, "/api/v1/session", headers={"Cookie": access})
        self.assertEqual(status, 200, body)

    def test_configured_secrets_win_over_generated_ones(self):
        """A secret the environment sets is used, not the generated one: a
        token signed with it passes the edge (the session actor, without a
        store, then answers 503; a refused token would be 401)."""
        var = os.path.join(self.scratch, "var")
        mine = "configured-access-secret-" + "x" * 24
        self.run_bundle(var, JWT_ACCESS_SECRET=mine, JWT_REFRESH_SECRET="r" * 8 + "s" * 32)
        status, _, body = self.http(self.env, "/api/v1/session",
                                    headers={"Authorization": "Bearer " + access_token(mine)})
        self.assertEqual(status, 503, body)
        with open(os.path.join(var, "dev-secrets")) as f:
            generated = dict(line.split("=", 1) for line in f.read().split())
        status, _, body = self.http(
            self.env, "/api/v1/session",
            headers={"Authorization": "Bearer " + access_token(generated["JWT_ACCESS_SECRET"])})
        self.assertEqual(status, 401, body)


class HealthTest(FirstRunCase):

    def test_health_names_each_disabled_service_and_why(self):
        """No store, no secrets: the bundle runs, /health stays 200 for a
        load balancer (the required services are up), but says "degraded"
        and names every disabled service with its reason."""
        port, = free_ports(1)
        self.env = self.base_env(port)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        status, body = self.health()
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "degraded", body)
        disabled = body["disabled"]
        self.assertEqual(set(disabled), {"cache", "session", "accounts", "jobs", "sync"}, body)
        self.assertIn("DATABASE_URL", disabled["cache"])
        self.assertIn("DATABASE_URL", disabled["jobs"])
        self.assertIn("DATABASE_URL", disabled["sync"])
        self.assertIn("JWT_ACCESS_SECRET", disabled["session"])
        self.assertIn("AINBOX_TOKEN_KEY", disabled["accounts"])
        for name in ("monitor", "events", "cache", "ratelimit", "session", "accounts", "jobs",
                     "sync"):
            self.assertTrue(body["services"][name]["up"], body)
        self.assertTrue(body["services"]["monitor"]["required"])
        self.assertEqual(body["services"]["session"]["disabled"], disabled["session"])

    def test_required_disabled_service_fails_readiness(self):
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_HEALTH_SERVICES="monitor,events,session")
        self.spawn("bundle", ["run"], self.env)
        wait_until(lambda: "session" in self.health()[1].get("services", {}), 20,
                   "the session actor to answer")
        status, body = self.health()
        self.assertEqual(status, 503, body)
        self.assertIn("session", body["disabled"])

    def test_outside_echo_worker_is_welcome(self):
        """The default bundle has no echo actor: a plain MDP worker may be
        "echo", is listed by /health (not pinged) and serves clients."""
        port, = free_ports(1)
        self.env = self.base_env(port)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        worker = WorkerThread(self.env["AINBOX_BROKER"], b"echo", heartbeat_ms=200)
        worker.start()
        self.addCleanup(worker.stop)
        client = MdpClient(self.env["AINBOX_BROKER"])
        self.addCleanup(client.close)
        wait_until(lambda: client.request(b"echo", [b"hello"], 500) == [b"hello"], 15,
                   "the outside echo worker to serve")
        self.assertEqual(worker.worker.disconnects_in, 0)
        status, body = self.health()
        self.assertEqual(body["services"]["echo"], {"up": True, "kind": "plain MDP",
                                                    "workers": 1}, body)


class ServiceManagerTest(FirstRunCase):
    """deploy/systemd: the units are valid, and `ainbox run` speaks the notify protocol their
    Type=notify and WatchdogSec rely on (checked with a datagram listener: systemd is not PID 1
    here)."""

    def listener(self, name):
        path = os.path.join(self.scratch, f"{name}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(15)
        self.addCleanup(sock.close)
        return sock, path

    def check_notifications(self, proc, sock):
        """After READY: WATCHDOG=1 keeps coming (every 200 ms: half of WatchdogSec); SIGTERM
        ends the process with 0, after STOPPING=1."""
        for _ in range(3):
            self.assertEqual(sock.recv(64), b"WATCHDOG=1")
        self.assertEqual(proc.stop(), 0)
        got = []
        sock.settimeout(0.5)
        try:
            while True:
                got.append(sock.recv(64))
        except socket.timeout:
            pass
        self.assertIn(b"STOPPING=1", got)
        self.assertEqual(set(got) - {b"WATCHDOG=1", b"STOPPING=1"}, set())

    def test_bundle_notifies_ready_watchdog_and_stopping(self):
        sock, path = self.listener("bundle")
        port, = free_ports(1)
        self.env = self.base_env(port, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        bundle = self.spawn("bundle", ["run"], self.env)
        self.assertEqual(sock.recv(64), b"READY=1")
        self.wait_health(self.env)   # ready meant ready
        self.check_notifications(bundle, sock)

    def test_single_roles_notify_and_still_serve(self):
        """`ainbox broker`, `actor echo` and `edge` under a service manager: each runs its role
        under a supervisor thread and notifies from its main thread; they serve as before."""
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_HEALTH_SERVICES="echo", AINBOX_DEV_TOKEN="x",
                                 WATCHDOG_USEC="400000")
        procs = {}
        for name, args in (("broker", ["broker"]), ("echo", ["actor", "echo"]),
                           ("edge", ["edge"])):
            sock, path = self.listener(name)
            procs[name] = (self.spawn(name, args, dict(self.env, NOTIFY_SOCKET=path)), sock)
            self.assertEqual(sock.recv(64), b"READY=1", name)
        self.wait_health(self.env)
        out = self.admin(self.env, "ping", "echo")
        self.assertIn("reply from echo", out.stdout)
        for name in ("edge", "echo", "broker"):
            with self.subTest(role=name):
                self.check_notifications(*procs[name])

    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed (Debian package systemd)")
        units = os.path.join(ROOT, "deploy", "systemd")
        for name in sorted(os.listdir(units)):
            with open(os.path.join(units, name)) as f:
                text = f.read().replace("/usr/local/bin/ainbox", os.path.abspath(self.bin))
            target = name.replace("@.service", "@cache.service")
            with open(os.path.join(self.scratch, target), "w") as f:
                f.write(text)
            out = subprocess.run([analyze, "verify", "--man=no",
                                  os.path.join(self.scratch, target)],
                                 capture_output=True, text=True, timeout=60)
            with self.subTest(unit=name):
                self.assertEqual((out.returncode, out.stdout + out.stderr), (0, ""))
                self.assertIn("Restart=on-failure", text)


if __name__ == "__main__":
    unittest.main()
