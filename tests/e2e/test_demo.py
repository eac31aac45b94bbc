"""End-to-end: the demo a newcomer watches, and the Gmail webhook it relies on.

- POST /webhooks/gmail/notifications: a push with the subscription's token becomes SYNC_PUSH
  {email, history_id} (envelope user 0) to the sync service, answered 204; without the token
  (missing, wrong, in the wrong place) every refusal is the same 401 and nothing reaches the
  sync service; malformed bodies are 400, counted, and reach nothing; a sync service that does
  not take the push is a 503 (Pub/Sub delivers again); without a token configured the route is
  off and /health says so. The fake Gmail's own Pub/Sub push (users.watch, then new mail)
  reaches the sync service through it. The sync service here is a clean-room MDP worker
  (tests/mdp_cleanroom) that records what it gets.
- deploy/run-bundle.sh in development: the fake Google with demo mailboxes, var/demo-tokens
  with one live session per demo identity (signed in through the real OAuth flow), renewed
  before expiry; the tokens sign in, the admin's reaches another user's stream; the built-in
  page (no external asset) signs in in a real browser (headless Chromium, if installed) and
  shows a live event. Production runs no demo, serves no page, and refuses a plain-http
  provider (the fake).
- The inbox filling and new mail arriving live need the sync and jobs actors: those checks are
  skipped, saying so, until actors/sync exists in this tree.
"""

import base64
import json
import os
import re
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import ainbox_proto as proto
import msgpack
from ainbox_browser import Browser, chromium_path
from ainbox_harness import AinboxTestCase, Proc, free_ports, wait_until
from ainbox_sse import SseReader
from mdp import WorkerThread

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy", "run-bundle.sh")
FAKE = os.path.join(ROOT, "tools", "fakes", "fake_providers.py")
WEB = os.path.join(ROOT, "edge", "web")
SYNC_BUILT = os.path.isdir(os.path.join(ROOT, "actors", "sync"))
NO_SYNC = ("actors/sync is not in this tree yet: the inbox fills only once the sync actor "
           "(issue 14 section 4) and the jobs actor (section 2) exist")
TOKEN = "push-token-" + "k" * 32
PATH = "/webhooks/gmail/notifications"


def push_body(email="alice@gmail.test", history=1234, urlsafe=False, as_string=False, **extra):
    inner = json.dumps({"emailAddress": email,
                        "historyId": str(history) if as_string else history}).encode()
    data = (base64.urlsafe_b64encode(inner).rstrip(b"=") if urlsafe
            else base64.b64encode(inner)).decode()
    body = {"message": {"data": data, "messageId": "136969346945", "message_id": "136969346945",
                        "publishTime": "2026-12-07T22:00:00.123Z"},
            "subscription": "projects/demo/subscriptions/ainbox-push"}
    body.update(extra)
    return json.dumps(body).encode()


class SyncRecorder:
    """A plain MDP worker named "sync" that records each request's envelope and answers
    {queued: true} in our envelope (same type and corr)."""

    def __init__(self, endpoint):
        self.seen = []
        self.lock = threading.Lock()
        self.thread = WorkerThread(endpoint, b"sync", handler=self.handle, heartbeat_ms=200)
        self.thread.start()

    def handle(self, frames):
        env = proto.decode(frames[0])
        with self.lock:
            self.seen.append({"type": env["type"], "user": env["user"],
                              "body": proto.body_map(env)})
        fields = msgpack.unpackb(frames[0], raw=False)
        fields[6] = proto.STATUS["OK"]
        fields[7] = proto.pack({"queued": True})
        return [proto.pack(fields)]

    def got(self):
        with self.lock:
            return list(self.seen)

    def stop(self):
        self.thread.stop()


class WebhookCase(AinboxTestCase):

    def start_bundle(self, **settings):
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events", **settings)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)

    def start_sync(self):
        rec = SyncRecorder(self.env["AINBOX_BROKER"])
        self.addCleanup(rec.stop)
        self.wait_services(self.env, ["sync"])
        return rec

    def push(self, query="token=" + TOKEN, body=None, headers=None, method="POST"):
        url = f"http://127.0.0.1:{self.env['HTTP_PORT']}{PATH}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, method=method, data=body if body is not None
                                     else push_body(), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def metric(self, name):
        """The edge's counter `name` as /stats reports it (0 until reported)."""
        status, stats = self.http_json(self.env, "/stats")
        total = 0
        for proc in (stats.get("processes") or []) if isinstance(stats, dict) else []:
            total += int(((proc.get("report") or {}).get("metrics") or {}).get(name, 0))
        return total


class GmailWebhookTest(WebhookCase):

    def setUp(self):
        super().setUp()
        self.start_bundle(AINBOX_GMAIL_PUSH_TOKEN=TOKEN)

    def test_a_valid_push_becomes_sync_push(self):
        rec = self.start_sync()
        status, headers, body = self.push(body=push_body("alice@gmail.test", 1234))
        self.assertEqual((status, body), (204, b""))
        self.assertNotIn("Content-Length", headers)
        # The documentation's form: a string historyId, base64url without padding.
        status, _, body = self.push(body=push_body("bob@gmail.test", 99, urlsafe=True,
                                                   as_string=True))
        self.assertEqual(status, 204, body)
        got = rec.got()
        self.assertEqual([g["type"] for g in got], [proto.MSG["SYNC_PUSH"]] * 2)
        self.assertEqual([g["user"] for g in got], [0, 0])
        self.assertEqual([g["body"] for g in got],
                         [{"email": "alice@gmail.test", "history_id": 1234},
                          {"email": "bob@gmail.test", "history_id": 99}])

    def test_strangers_trigger_nothing_and_learn_nothing(self):
        rec = self.start_sync()
        forged = [
            ("no token", None, None),
            ("empty token", "token=", None),
            ("wrong token, same length", "token=" + "x" * len(TOKEN), None),
            ("a prefix of the token", "token=" + TOKEN[:-1], None),
            ("the token and more", "token=" + TOKEN + "x", None),
            ("another parameter", "secret=" + TOKEN, None),
            ("the token as a bearer", None, {"Authorization": "Bearer " + TOKEN}),
        ]
        bodies = set()
        for what, query, headers in forged:
            status, _, body = self.push(query=query, headers=headers)
            self.assertEqual(status, 401, what)
            bodies.add(body)
        # Whatever the body (a known address, an unknown one, garbage), the same answer.
        for body in (push_body("nobody@else.test"), b"not json", b""):
            status, _, answer = self.push(query="token=nope", body=body)
            self.assertEqual(status, 401)
            bodies.add(answer)
        self.assertEqual(len(bodies), 1, bodies)
        self.assertEqual(json.loads(bodies.pop()),
                         {"error": {"code": "UNAUTHORIZED", "message": "unauthorized"}})
        # A real push after them all is the only thing the sync service ever got.
        self.assertEqual(self.push(body=push_body("carol@gmail.test", 7))[0], 204)
        self.assertEqual([g["body"] for g in rec.got()],
                         [{"email": "carol@gmail.test", "history_id": 7}])
        wait_until(lambda: self.metric("webhook.gmail.refused") >= len(forged) + 3, 10,
                   "the refusals to be counted")

    def test_malformed_pushes_are_400_counted_and_reach_nothing(self):
        rec = self.start_sync()
        b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
        bad = {
            "not JSON": b"{",
            "not an object": b"[1]",
            "no message": b"{}",
            "no data": json.dumps({"message": {}}).encode(),
            "data not a string": json.dumps({"message": {"data": 5}}).encode(),
            "data not base64": json.dumps({"message": {"data": "!!!"}}).encode(),
            "data not JSON": json.dumps({"message": {"data": b64(b"hello")}}).encode(),
            "no emailAddress": json.dumps({"message": {"data": b64(
                b'{"historyId": 5}')}}).encode(),
            "bad emailAddress": push_body("no-at-sign", 5),
            "address with a space": push_body("a b@c.d", 5),
            "no historyId": json.dumps({"message": {"data": b64(
                b'{"emailAddress": "a@b.c"}')}}).encode(),
            "negative historyId": push_body(history=-4),
            "historyId zero": push_body(history=0),
            "historyId junk": push_body(history="12x", as_string=True),
            "duplicate members": b'{"message": {"data": "e30="}, "message": {}}',
            "data too long": json.dumps({"message": {"data": "A" * 4000}}).encode(),
        }
        for what, body in bad.items():
            status, _, answer = self.push(body=body)
            self.assertEqual(status, 400, f"{what}: {answer}")
            self.assertEqual(json.loads(answer)["error"]["code"], "INVALID_PUSH", what)
        self.assertEqual(self.push(body=push_body("dave@gmail.test", 8))[0], 204)
        self.assertEqual([g["body"] for g in rec.got()],
                         [{"email": "dave@gmail.test", "history_id": 8}])
        wait_until(lambda: self.metric("webhook.gmail.malformed") >= len(bad), 10,
                   "the malformed pushes to be counted")

    def test_a_push_the_sync_service_cannot_take_is_503_for_pubsub_to_retry(self):
        status, headers, body = self.push()
        self.assertEqual(status, 503, body)
        self.assertIn("Retry-After", headers)
        self.assertIn("sync", json.loads(body)["error"]["message"])
        # Once it runs, the same push (Pub/Sub's retry) gets through.
        rec = self.start_sync()
        self.assertEqual(self.push()[0], 204)
        self.assertEqual(len(rec.got()), 1)

    def test_the_fakes_pubsub_push_reaches_the_sync_service(self):
        """users.watch at the fake Gmail, then new mail: the fake's push (its token in the
        endpoint URL, as a Pub/Sub subscription carries it) becomes SYNC_PUSH here."""
        rec = self.start_sync()
        fport, = free_ports(1)
        fake = f"http://127.0.0.1:{fport}"
        redirect = "http://127.0.0.1:1/cb"
        proc = Proc("fakes", ["/usr/bin/python3", FAKE, "--port", str(fport), "--client",
                              f"google:cid:csecret:{redirect}", "--gmail-mailbox",
                              "alice@gmail.test:5", "--push-url",
                              f"http://127.0.0.1:{self.env['HTTP_PORT']}{PATH}",
                              "--push-token", TOKEN], self.env, self.scratch)
        self.procs.append(proc)
        wait_until(lambda: f"ready {fport}" in proc.log(), 10, "the fake providers")
        # An access token from the fake's authorization server, as the sync actor would hold.
        q = urllib.parse.urlencode({"client_id": "cid", "redirect_uri": redirect,
                                    "response_type": "code", "scope": "https://mail.google.com/",
                                    "login_hint": "alice@gmail.test"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None
        try:
            urllib.request.build_opener(NoRedirect).open(f"{fake}/o/oauth2/v2/auth?{q}")
            self.fail("the fake's authorize did not redirect")
        except urllib.error.HTTPError as err:
            code = urllib.parse.parse_qs(urllib.parse.urlsplit(
                err.headers["Location"]).query)["code"][0]
        form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                       "client_id": "cid", "client_secret": "csecret",
                                       "redirect_uri": redirect}).encode()
        with urllib.request.urlopen(f"{fake}/token", form, timeout=10) as res:
            access = json.loads(res.read())["access_token"]
        watch = urllib.request.Request(
            f"{fake}/gmail/v1/users/me/watch", method="POST",
            data=json.dumps({"topicName": "projects/demo/topics/gmail"}).encode(),
            headers={"Authorization": "Bearer " + access, "Content-Type": "application/json"})
        with urllib.request.urlopen(watch, timeout=10) as res:
            self.assertIn("historyId", json.loads(res.read()))
        deliver = urllib.request.Request(
            f"{fake}/_fake/gmail/deliver", method="POST",
            data=json.dumps({"email": "alice@gmail.test", "subject": "hello"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(deliver, timeout=10) as res:
            hid = int(json.loads(res.read())["delivered"][0]["historyId"])
        wait_until(lambda: rec.got(), 10, "the fake's push to reach the sync service")
        got = rec.got()[-1]
        self.assertEqual(got["type"], proto.MSG["SYNC_PUSH"])
        self.assertEqual(got["body"]["email"], "alice@gmail.test")
        self.assertGreaterEqual(got["body"]["history_id"], hid)
        # The fake counts the push once our 204 has reached it (after the sync service saw it).
        def counts():
            with urllib.request.urlopen(f"{fake}/_fake/gmail/pushes", timeout=10) as res:
                return json.loads(res.read())["counts"]
        wait_until(lambda: counts().get("acked", 0) >= 1, 10, "the fake to see its push acked")
        self.assertEqual(counts().get("nacked", 0), 0, counts())


class WebhookConfigTest(WebhookCase):

    def test_without_a_token_the_route_is_off_and_health_says_so(self):
        self.start_bundle()
        rec = self.start_sync()
        status, _, body = self.push()
        self.assertEqual(status, 503, body)
        self.assertEqual(json.loads(body)["error"]["code"], "NOT_CONFIGURED")
        status, health = self.http_json(self.env, "/health")
        self.assertEqual(status, 200, health)
        self.assertEqual(health["status"], "ok", health)  # off by configuration, not broken
        self.assertIn("AINBOX_GMAIL_PUSH_TOKEN", health["off"][f"POST {PATH}"])
        self.assertEqual(rec.got(), [])

    def test_a_configured_bearer_is_required_too(self):
        self.start_bundle(AINBOX_GMAIL_PUSH_TOKEN=TOKEN, AINBOX_GMAIL_PUSH_BEARER="b" * 40)
        rec = self.start_sync()
        status, health = self.http_json(self.env, "/health")
        self.assertEqual(health["off"], {}, health)
        self.assertEqual(self.push()[0], 401)
        self.assertEqual(self.push(headers={"Authorization": "Bearer " + "c" * 40})[0], 401)
        self.assertEqual(self.push(query=None, headers={"Authorization": "Bearer " + "b" * 40})[0],
                         401)
        self.assertEqual(rec.got(), [])
        self.assertEqual(self.push(headers={"Authorization": "Bearer " + "b" * 40})[0], 204)
        self.assertEqual(len(rec.got()), 1)

    def test_a_short_token_stops_the_edge(self):
        port, = free_ports(1)
        env = self.base_env(port, AINBOX_ACTORS="monitor", AINBOX_GMAIL_PUSH_TOKEN="short")
        out = subprocess.run([self.bin, "edge"], env=env, capture_output=True, text=True,
                             timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("AINBOX_GMAIL_PUSH_TOKEN", out.stdout + out.stderr)


class PageTest(WebhookCase):
    """The built-in page: its bytes, and that production does not serve it."""

    def test_the_page_is_served_with_no_external_asset(self):
        self.start_bundle()
        for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"),
                           ("/app.css", "text/css"), ("/dashboard", "text/html"),
                           ("/terms", "text/html")):
            status, headers, body = self.http(self.env, path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["Content-Type"].startswith(kind), headers)
            csp = headers["Content-Security-Policy"]
            self.assertIn("default-src 'none'", csp)
            self.assertIn("script-src 'self'", csp)
            self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
            # No CDN, no external font, image or script: nothing that names another origin.
            self.assertIsNone(re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body), path)
        with open(os.path.join(WEB, "index.html"), "rb") as f:
            self.assertEqual(self.http(self.env, "/")[2], f.read())
        with open(os.path.join(WEB, "app.js"), "rb") as f:
            js = f.read()
        self.assertEqual(self.http(self.env, "/app.js")[2], js)
        # The page uses the routes it claims to, and never parses server text as HTML.
        for route in (b"/api/v1/session", b"/api/v1/threads", b"/api/v1/emails/stream",
                      b"/auth/google", b"/api/v1/session/refresh"):
            self.assertIn(route, js)
        self.assertNotIn(b"innerHTML", js)
        self.assertIn(b'"sandbox", "allow-popups allow-popups-to-escape-sandbox"', js)

    def test_production_serves_no_page_and_refuses_a_plain_http_provider(self):
        port, = free_ports(1)
        secrets = {"JWT_ACCESS_SECRET": "a" * 40, "JWT_REFRESH_SECRET": "r" * 40}
        env = self.base_env(port, NODE_ENV="production", AINBOX_ACTORS="monitor",
                            AINBOX_HEALTH_SERVICES="monitor", **secrets)
        self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        for path in ("/", "/app.js", "/dashboard"):
            self.assertEqual(self.http(env, path)[0], 404, path)
        fake = dict(env, AINBOX_GOOGLE_TOKEN_URL="http://127.0.0.1:1/token")
        out = subprocess.run([self.bin, "config"], env=fake, capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 2, out.stdout)
        self.assertIn("AINBOX_GOOGLE_TOKEN_URL", out.stderr)


class DemoRunTest(AinboxTestCase):
    """deploy/run-bundle.sh's demo, on a private var directory and ports from the harness."""

    allowed_errors = ()

    def run_demo(self, **settings):
        http, broker, fake = free_ports(3)
        self.var = os.path.join(self.scratch, "var")
        self.pg = self.start_postgres()
        redis = self.start_redis()
        env = self.base_env(broker, http, NODE_ENV="development", RUN_BUNDLE_SKIP_SETUP="1",
                            RUN_BUNDLE_NO_STORES="1", RUN_BUNDLE_VAR=self.var,
                            RUN_BUNDLE_AINBOX=self.bin, DATABASE_URL=self.pg.url,
                            REDIS_URL=f"redis://127.0.0.1:{redis.port}", FAKE_PORT=fake,
                            AINBOX_DEMO_MESSAGES="20", AINBOX_DEMO_MAIL_EVERY="1s",
                            **settings)
        # The script's own port variable, not the harness's settings.
        env.pop("AINBOX_BROKER")
        env.pop("AINBOX_BROKER_BIND")
        env["BROKER_PORT"] = str(broker)
        for key in ("JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "AINBOX_TOKEN_KEY",
                    "AINBOX_DEV_TOKEN", "GOOGLE_CLIENT_ID"):
            env.pop(key, None)
        self.env = env
        self.script = Proc("run-bundle", [SCRIPT], env, self.scratch)
        self.procs.append(self.script)
        self.wait_health(env, timeout=60)
        self.fake = f"http://127.0.0.1:{fake}"
        self.broker = f"tcp://127.0.0.1:{broker}"

    def tokens(self):
        path = os.path.join(self.var, "demo-tokens")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f.read().splitlines()]

    def session(self, token):
        return self.http_json(self.env, "/api/v1/session",
                              headers={"Authorization": "Bearer " + token})

    def test_demo_tokens_sign_in_stream_and_are_renewed(self):
        self.run_demo(AINBOX_ACCESS_TTL_S="60")
        log = self.script.log()
        self.assertIn("demo: fake Google on " + self.fake, log)
        self.assertIn(f"open http://127.0.0.1:{self.env['HTTP_PORT']}/", log)
        wait_until(lambda: len(self.tokens()) == 3, 60, "var/demo-tokens to hold 3 sessions",
                   interval=0.2)
        lines = self.tokens()
        self.assertEqual([(k, e) for k, e, _ in lines],
                         [("gmail", "alice@gmail.test"), ("gmail", "bob@gmail.test"),
                          ("admin", "admin@ainbox.test")])
        mode = os.stat(os.path.join(self.var, "demo-tokens")).st_mode & 0o777
        self.assertEqual(oct(mode), "0o600")
        users = {}
        for kind, email, token in lines:
            status, body = self.session(token)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["data"]["user"]["email"], email)
            self.assertFalse(body["data"]["terms"]["required"], body)
            # The Gmail users came through the OAuth flow: their Google account is linked.
            self.assertEqual(body["data"]["providers"]["google"], kind == "gmail", body)
            users[email] = body["data"]["user"]["id"]
        alice, admin = lines[0][2], lines[2][2]
        # The Gmail user reads their own stream; another user's is the operator's only.
        reader = SseReader(int(self.env["HTTP_PORT"]), "/api/v1/emails/stream",
                           headers={"Authorization": "Bearer " + alice})
        self.addCleanup(reader.close)
        self.assertEqual(json.loads(reader.event(10)["data"])["type"], "connected")
        bob = users["bob@gmail.test"]
        status, _, _ = self.http(self.env, f"/api/v1/emails/stream?user={bob}",
                                 headers={"Authorization": "Bearer " + alice})
        self.assertEqual(status, 403)
        spy = SseReader(int(self.env["HTTP_PORT"]), f"/api/v1/emails/stream?user={bob}",
                        headers={"Authorization": "Bearer " + admin})
        self.addCleanup(spy.close)
        self.assertEqual(json.loads(spy.event(10)["data"])["type"], "connected")
        # An event published for alice reaches her open stream.
        client = proto.Client(self.broker)
        self.addCleanup(client.close)
        event = {"type": "unread_count_updated", "unread": 7, "total": 9, "source": "gmail",
                 "timestamp": "2026-12-08T00:00:00.000Z"}
        reply = client.call("events", "EVENT_PUBLISH", proto.pack({"data": json.dumps(event)}),
                            user=users["alice@gmail.test"])
        self.assertEqual(reply["status"], "OK", reply)
        self.assertEqual(json.loads(reader.event(10)["data"]), event)

        # The fake pushes each new message to the webhook with the token run-bundle.sh gave
        # both: never refused (503 while no sync service takes it, 204 once one does; 0, no
        # answer, for the first ones if the fake pushed before the edge listened).
        def pushes():
            with urllib.request.urlopen(f"{self.fake}/_fake/gmail/pushes", timeout=10) as res:
                return json.loads(res.read())["log"]
        wait_until(lambda: {204, 503} & {p["status"] for p in pushes()}, 30,
                   "the edge to answer the fake's pushes", interval=0.5)
        statuses = {p["status"] for p in pushes()}
        self.assertLessEqual(statuses, {0, 204, 503}, statuses)
        self.assertEqual({p["email"] for p in pushes()} - {"alice@gmail.test", "bob@gmail.test"},
                         set())

        # Renewed before expiry (60 s tokens: at 40 s), and the new one works.
        wait_until(lambda: self.tokens() and self.tokens()[0][2] != alice, 60,
                   "alice's token to be renewed", interval=0.5)
        status, body = self.session(self.tokens()[0][2])
        self.assertEqual(status, 200, body)
        self.assertEqual(self.script.stop(timeout=30), 0, self.script.log())
        self.assertNotIn("Traceback", self.script.log())

    @unittest.skipUnless(chromium_path(), "chromium is not installed (apt-get install chromium)")
    def test_the_page_signs_in_with_google_and_goes_live_in_a_browser(self):
        self.run_demo()
        base = f"http://127.0.0.1:{self.env['HTTP_PORT']}"
        with Browser(self.scratch) as b:
            b.open(f"{base}/")
            b.wait("!document.getElementById('signin').hidden", 20, "the sign-in form")
            # The real flow: the edge's /auth/google, the fake's consent, the callback, the page.
            b.eval("document.getElementById('hint').value = 'bob@gmail.test';"
                   "document.getElementById('signin-form').requestSubmit(); true")
            b.wait("document.getElementById('who').textContent.includes('bob@gmail.test')", 30,
                   "the page to show bob signed in")
            # A new user lands on /terms (demo_tokens.py may have accepted them first: then the
            # callback sent the browser to /dashboard).
            if b.eval("!document.getElementById('terms').hidden"):
                b.eval("document.getElementById('terms-accept').click(); true")
            b.wait("document.getElementById('live').textContent === 'live'", 20,
                   "the event stream to open")
            self.assertEqual(b.eval("location.pathname"), "/")
            user = b.eval("document.getElementById('who').textContent")
            bob = int(re.search(r"user (\d+)", user).group(1))
            client = proto.Client(self.broker)
            self.addCleanup(client.close)
            # Counts no mailbox has, so the sync's own unread_count_updated (bob's backfill
            # runs meanwhile, and may change #unread right after) cannot be mistaken for it.
            event = {"type": "unread_count_updated", "unread": 5, "total": 12345,
                     "source": "gmail", "timestamp": "2026-12-08T00:00:00.000Z"}
            reply = client.call("events", "EVENT_PUBLISH", proto.pack({"data": json.dumps(event)}),
                                user=bob)
            self.assertEqual(reply["status"], "OK", reply)
            b.wait("document.getElementById('events').textContent"
                   ".includes('unread_count_updated unread 5 of 12345')", 20,
                   "the live event to reach the page")
            if SYNC_BUILT:
                b.wait("document.querySelectorAll('#threads li[data-id]').length > 0", 120,
                       "bob's inbox to fill")

    @unittest.skipUnless(SYNC_BUILT, NO_SYNC)
    def test_the_inbox_fills_and_new_mail_arrives_live(self):
        self.run_demo()
        wait_until(lambda: len(self.tokens()) == 3, 60, "var/demo-tokens", interval=0.2)
        alice = self.tokens()[0][2]
        auth = {"Authorization": "Bearer " + alice}

        def inbox():
            status, body = self.http_json(self.env, "/api/v1/threads?role=inbox&limit=100",
                                          headers=auth)
            return body["data"]["threads"] if status == 200 else []
        wait_until(lambda: len(inbox()) > 0, 180, "alice's inbox to fill", interval=1)
        reader = SseReader(int(self.env["HTTP_PORT"]), "/api/v1/emails/stream", headers=auth)
        self.addCleanup(reader.close)
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline and not seen:
            data = json.loads(reader.event(max(0.1, deadline - time.monotonic()))["data"])
            if data.get("type") == "new_email":
                seen = data
        self.assertIsNotNone(seen, "no new_email within 60 s (mail arrives every second)")
        for key in ("id", "threadId", "subject", "from", "date", "isRead", "labelIds"):
            self.assertIn(key, seen["email"])
        self.assertEqual(seen["source"], "gmail")


if __name__ == "__main__":
    unittest.main()
