"""The sync actor against the fake Gmail (tools/fakes), with real PostgreSQL and Redis.

A user signs in through the real OAuth flow against the fake; the test then plays the jobs
actor: it sends JOB_RUN for the account through the broker, as the jobs actor would, and
follows the answers (continue: run again; delay: wait what it says; done/fail: stop). Checked:
a backfill of a mailbox with every MIME shape equals the fake's mailbox (ids, threads, labels,
flags, decoded headers, bodies with their charsets decoded, attachments and inline cid: parts);
new mail, label changes and a permanent delete arrive by history; a history start too old
(404) resyncs to equality, deleting what the provider no longer has; an access token expiring
mid-run is refreshed once and the run goes on; invalid_grant flags the account and the user's
event stream says account_reauth_required; a storm of injected 429s is waited out, and the
fake never refuses a call of ours on its own quota (every 429 is one we injected); a second
run of an account while one holds it is told to wait.
"""

import base64
import email
import email.policy
import http.client
import json
import os
import time
import unittest
import urllib.parse

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, Proc, free_ports, wait_until
from ainbox_sse import SseReader

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "tools", "fakes", "fake_providers.py")
ACCESS = "a" * 16 + "-access-secret-for-tests-only"
REFRESH = "r" * 16 + "-refresh-secret-for-tests-only"
TOKEN_KEY = "6b1f" * 8 + "0123456789abcdef" * 2
ALICE = "alice@gmail.test"
U = "/gmail/v1/users/me"


def http_call(port, path, method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    h = dict(headers or {})
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    cookies = {}
    for line in res.msg.get_all("Set-Cookie") or []:
        name, _, value = line.partition(";")[0].partition("=")
        cookies[name] = value
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return res.status, res.msg, cookies, parsed


class Listener:
    """A push endpoint standing in for the edge's webhook: records each Pub/Sub POST."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.posts = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/gmail"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def norm(text):
    return (text or "").replace("\r\n", "\n").strip()


class SyncBase(AinboxTestCase):
    """Fake providers, a bundle, a signed-in Gmail user; helpers. No tests of its own."""

    MESSAGES = 28
    # No jobs actor: the tests play it, sending JOB_RUN as it would.
    ACTORS = "monitor,events,cache,ratelimit,session,accounts,sync"
    EXTRA_ENV = {}

    def setUp(self):
        super().setUp()
        self.pg = self.start_migrated_postgres()
        self.redis = self.start_redis()
        broker, self.edge_port, self.fport = free_ports(3)
        self.fake_url = f"http://127.0.0.1:{self.fport}"
        edge = f"http://127.0.0.1:{self.edge_port}"
        self.fake_proc = Proc("fakes", ["/usr/bin/python3", FAKE, "--port", str(self.fport),
                                        "--client", f"google:g-id:g-secret:{edge}/google/callback",
                                        "--gmail-mailbox", f"{ALICE}:{self.MESSAGES}:7"],
                              dict(os.environ), self.scratch)
        self.procs.append(self.fake_proc)
        wait_until(lambda: f"ready {self.fport}" in self.fake_proc.log(), 10, "the fakes")
        self.env = self.base_env(
            broker, self.edge_port,
            AINBOX_ACTORS=self.ACTORS, AINBOX_HEALTH_SERVICES=self.ACTORS,
            AINBOX_API_RATELIMIT="false", DATABASE_URL=self.pg.url, REDIS_URL=self.redis.url,
            JWT_ACCESS_SECRET=ACCESS, JWT_REFRESH_SECRET=REFRESH, AINBOX_TOKEN_KEY=TOKEN_KEY,
            FRONTEND_BASE_URL="http://front.test", GOOGLE_CLIENT_ID="g-id",
            GOOGLE_CLIENT_SECRET="g-secret", GOOGLE_CALLBACK_URL=f"{edge}/google/callback",
            AINBOX_GOOGLE_AUTH_URL=f"{self.fake_url}/o/oauth2/v2/auth",
            AINBOX_GOOGLE_TOKEN_URL=f"{self.fake_url}/token",
            AINBOX_GOOGLE_USERINFO_URL=f"{self.fake_url}/v1/userinfo",
            AINBOX_GMAIL_API_URL=self.fake_url, AINBOX_SYNC_PAGE="8",
            AINBOX_GMAIL_PUSH_TOPIC="projects/ainbox-test/topics/gmail",
            AINBOX_OAUTH_HTTP_TIMEOUT_MS="3000", **self.EXTRA_ENV)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)
        self.cookies = self.login(ALICE)
        rows = self.pg.psql("select a.id, a.user_id from accounts a")
        self.assertEqual(len(rows), 1, rows)
        self.account, self.user = int(rows[0][0]), int(rows[0][1])
        self.job = 0

    # ------------------------------------------------------------- helpers

    def fake(self, method, path, body=None):
        status, _, _, data = http_call(self.fport, path, method, body)
        self.assertIn(status, (200, 204), data)
        return data

    def login(self, address):
        status, msg, cookies, _ = http_call(self.edge_port, "/google?login_hint=" +
                                            urllib.parse.quote(address))
        self.assertEqual(status, 302)
        verifier = cookies["oauth_google"]
        location = msg["Location"]
        status, msg, _, _ = http_call(self.fport, location[len(self.fake_url):])
        self.assertEqual(status, 302)
        back = urllib.parse.urlsplit(msg["Location"])
        status, msg, cookies, body = http_call(self.edge_port, back.path + "?" + back.query,
                                               headers={"Cookie": f"oauth_google={verifier}"})
        self.assertEqual(status, 302, body)
        return cookies

    def provider_token(self):
        reply = self.client.call("accounts", "ACCOUNT_TOKEN",
                                 proto.pack({"account": self.account}), user=self.user,
                                 timeout_ms=8000)
        self.assertEqual(reply["status"], "OK", reply)
        return proto.body_map(reply)["access_token"]

    def gmail(self, path, method="GET", body=None, token=None):
        status, _, _, data = http_call(self.fport, U + path, method, body,
                                       {"Authorization": f"Bearer {token or self.provider_token()}"})
        return status, data

    def run_job(self, max_runs=400, lease_ms=20000):
        """Plays the jobs actor for one job until it ends; returns (result, answers)."""
        self.job += 1
        answers = []
        payload = {}
        for attempt in range(max_runs):
            body = {"id": self.job, "kind": "gmail.sync", "user": self.user,
                    "account": self.account, "payload": payload, "attempt": 1,
                    "lease_ms": lease_ms}
            reply = self.client.call("sync", "JOB_RUN", proto.pack(body), user=self.user,
                                     timeout_ms=lease_ms)
            self.assertIsNotNone(reply, "JOB_RUN was not answered")
            self.assertEqual(reply["status"], "OK", reply)
            answer = proto.body_map(reply)
            answers.append(answer)
            result = answer["result"]
            if result in ("done", "fail"):
                return result, answers
            if result == "continue":
                payload = answer.get("payload", {})
            elif result in ("delay", "retry"):
                time.sleep(min(answer.get("delay_ms", 0), 5000) / 1000 + 0.05)
        self.fail(f"the job did not end in {max_runs} runs: {answers[-5:]}")

    def provider_mailbox(self):
        """Every message of the fake's mailbox, parsed from format=raw, keyed by id."""
        self.fake("POST", "/_fake/gmail/quota", {"user_per_min": 0})  # the reads are ours
        token = self.provider_token()
        ids, page = [], None
        while True:
            q = "?includeSpamTrash=true&maxResults=500" + (f"&pageToken={page}" if page else "")
            status, data = self.gmail("/messages" + q, token=token)
            self.assertEqual(status, 200, data)
            ids += [m["id"] for m in data.get("messages", [])]
            page = data.get("nextPageToken")
            if not page:
                break
        out = {}
        for mid in ids:
            status, m = self.gmail(f"/messages/{mid}?format=raw", token=token)
            self.assertEqual(status, 200, m)
            msg = email.message_from_bytes(b64d(m["raw"]), policy=email.policy.default)
            html = text = None
            atts = []
            for part in msg.walk():
                if part.is_multipart():
                    continue
                fn = part.get_filename()
                ctype = part.get_content_type()
                disp = part.get_content_disposition()
                if not fn and disp != "attachment" and ctype == "text/html" and html is None:
                    html = part.get_content()
                elif not fn and disp != "attachment" and ctype == "text/plain" and text is None:
                    text = part.get_content()
                elif not (not fn and disp != "attachment" and part.get_content_maintype() == "text"):
                    cid = part.get("Content-ID")
                    atts.append((fn, ctype, len(part.get_payload(decode=True) or b""),
                                 cid.strip("<>") if cid else None))
            labels = sorted(m.get("labelIds", []))
            out[mid] = {"thread": m["threadId"], "labels": [x for x in labels if x != "UNREAD"],
                        "unread": "UNREAD" in labels, "starred": "STARRED" in labels,
                        "subject": str(msg["Subject"] or ""),
                        "from": msg["From"].addresses[0].addr_spec if msg["From"] else None,
                        "snippet": m.get("snippet"), "html": norm(html), "text": norm(text),
                        "atts": sorted(atts, key=repr), "date": int(m["internalDate"])}
        self.fake("POST", "/_fake/gmail/quota", {"mode": "new"})  # back to the default limits
        return out

    def stored_mailbox(self):
        rows = self.pg.psql(
            "select json_build_object('id', m.provider_id, 'thread', t.provider_id, "
            "'labels', m.label_ids, 'unread', m.unread, 'starred', m.starred, "
            "'subject', m.subject, 'from', m.from_addr, 'snippet', m.snippet, "
            "'html', b.html, 'text', b.text, 'date', "
            "(extract(epoch from m.sent_at) * 1000)::bigint, 'atts', coalesce((select "
            "json_agg(json_build_array(a.filename, a.mime_type, a.size_bytes, a.content_id)) "
            "from attachments a where a.message_id = m.id), '[]')) "
            f"from messages m join threads t on t.id = m.thread_id "
            f"left join bodies b on b.message_id = m.id where m.account_id = {self.account}")
        out = {}
        for (row,) in rows:
            r = json.loads(row)
            out[r["id"]] = {"thread": r["thread"], "labels": sorted(r["labels"]),
                            "unread": r["unread"], "starred": r["starred"],
                            "subject": r["subject"] or "", "from": r["from"],
                            "snippet": r["snippet"], "html": norm(r["html"]),
                            "text": norm(r["text"]),
                            "atts": sorted([tuple(a) for a in r["atts"]], key=repr),
                            "date": r["date"]}
        return out

    def assert_equal_mailboxes(self):
        want, got = self.provider_mailbox(), self.stored_mailbox()
        self.assertEqual(sorted(want), sorted(got), "the same message ids")
        for mid in want:
            w, g = dict(want[mid]), dict(got[mid])
            if w["starred"]:
                w["labels"] = sorted(w["labels"])
            self.assertEqual(w, g, f"message {mid}")
        return want

    def backfill(self):
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        return answers

    def cursor(self):
        return self.pg.psql(f"select sync_cursor, sync_state, sync_full is null "
                            f"from accounts where id = {self.account}")[0]



class SyncCase(SyncBase):

    def test_backfill_equals_the_mailbox_with_every_mime_case(self):
        answers = self.backfill()
        self.assertGreater(sum(a["result"] == "continue" for a in answers), 4,
                           "a backfill runs in bounded slices")
        # Every slice's writes were taken at once: none refused (say, an idempotency key
        # reused for other changes) and retried.
        self.assertFalse([a for a in answers if a["result"] in ("retry", "fail")], answers)
        want = self.assert_equal_mailboxes()
        # The mailbox has every MIME shape the fake renders, so the comparison covered them.
        self.assertTrue(any(m["html"] and m["text"] for m in want.values()), "alternative")
        self.assertTrue(any(any(a[3] for a in m["atts"]) for m in want.values()), "inline cid")
        self.assertTrue(any(any(a[1] == "application/pdf" for a in m["atts"])
                            for m in want.values()), "attachments")
        self.assertTrue(any(any(ord(c) > 127 for c in m["subject"]) for m in want.values()),
                        "non-ASCII headers")
        cursor, state, idle = self.cursor()
        profile = self.gmail("/profile")[1]
        self.assertEqual((state, idle), ("idle", "t"))
        self.assertLessEqual(int(cursor), int(profile["historyId"]))
        # Progress went to the user's event log (EVENT_REPLAY reads it).
        reply = self.client.call("events", "EVENT_REPLAY", proto.pack({"after": "0-0", "since": True}),
                                 user=self.user)
        events = [json.loads(e["data"]) for e in proto.body_map(reply)["events"]]
        phases = [e["phase"] for e in events if e["type"] == "sync_progress"]
        self.assertIn("metadata", phases)
        self.assertIn("bodies", phases)
        self.assertEqual(phases[-1], "done")
        # A first backfill is quiet: what was there before sign-in is not news.
        self.assertNotIn("new_email", [e["type"] for e in events])
        self.assertIn("unread_count_updated", [e["type"] for e in events])
        counters = self.fake("GET", "/_fake/gmail/counters")
        self.assertEqual(counters["sent_429"], 0, counters)

    def test_history_brings_new_mail_label_changes_and_deletes(self):
        self.backfill()
        before = self.cursor()[0]
        delivered = self.fake("POST", "/_fake/gmail/deliver",
                              {"email": ALICE, "subject": "Ünïcode news", "count": 2})
        ids = sorted(self.stored_mailbox())
        self.assertEqual(self.gmail(f"/messages/{ids[0]}/modify", "POST",
                                    {"addLabelIds": ["STARRED"],
                                     "removeLabelIds": ["UNREAD"]})[0], 200)
        self.assertEqual(self.gmail(f"/messages/{ids[1]}", "DELETE")[0], 204)
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers)
        self.assertLessEqual(len(answers), 3, "history, not a new backfill")
        stored = self.assert_equal_mailboxes()
        for d in delivered["delivered"]:
            self.assertIn(d["id"], stored)
        # What history brought is news: new_email for each delivered message, one for the
        # deleted one.
        reply = self.client.call("events", "EVENT_REPLAY", proto.pack({"after": "0-0",
                                                                        "since": True}),
                                 user=self.user)
        events = [json.loads(e["data"]) for e in proto.body_map(reply)["events"]]
        news = {e["email"]["id"] for e in events if e["type"] == "new_email"}
        self.assertEqual(news, {d["id"] for d in delivered["delivered"]})
        self.assertIn(ids[1], {e["emailId"] for e in events if e["type"] == "email_deleted"})
        self.assertNotIn(ids[1], stored)
        self.assertGreater(int(self.cursor()[0]), int(before))

    def test_history_404_resyncs_to_equality(self):
        self.backfill()
        ids = sorted(self.stored_mailbox())
        self.assertEqual(self.gmail(f"/messages/{ids[2]}", "DELETE")[0], 204)
        self.assertEqual(self.gmail(f"/messages/{ids[3]}/modify", "POST",
                                    {"addLabelIds": ["TRASH"]})[0], 200)
        self.fake("POST", "/_fake/gmail/deliver", {"email": ALICE, "count": 1})
        self.fake("POST", "/_fake/gmail/expire_history", {"email": ALICE})
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        self.assertGreater(len(answers), 3, "a full resync ran")
        stored = self.assert_equal_mailboxes()
        self.assertNotIn(ids[2], stored)
        wait_until(lambda: self.pg.psql("select count(*) from sync_seen")[0][0] == "0", 10,
                   "the resync's seen ids to go")

    def test_token_expiring_mid_run_is_refreshed(self):
        # One slice first: the sync actor now holds a cached access token.
        body = {"id": 99, "kind": "gmail.sync", "user": self.user, "account": self.account,
                "payload": {}, "attempt": 1, "lease_ms": 20000}
        reply = self.client.call("sync", "JOB_RUN", proto.pack(body), user=self.user,
                                 timeout_ms=20000)
        self.assertEqual(proto.body_map(reply)["result"], "continue")
        before = len(self.fake("GET", "/_fake/google/requests")["token"])
        self.fake("POST", "/_fake/google/expire", {"email": ALICE})
        self.fake("POST", "/_fake/gmail/counters/reset")
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        self.assertTrue(all(a["result"] != "retry" for a in answers), answers)
        counters = self.fake("GET", "/_fake/gmail/counters")
        self.assertGreaterEqual(counters["statuses"].get("401", 0), 1, counters)
        refreshes = self.fake("GET", "/_fake/google/requests")["token"][before:]
        self.assertTrue(any(r["grant_type"] == "refresh_token" and r["status"] == 200
                            for r in refreshes), refreshes)
        self.assert_equal_mailboxes()

    def test_invalid_grant_flags_the_account_and_tells_the_user(self):
        sse = SseReader(self.edge_port, "/api/v1/emails/stream",
                        headers={"Cookie": f"access_token={self.cookies['access_token']}"})
        self.assertEqual(sse.status, 200)
        self.fake("POST", "/_fake/google/revoke", {"email": ALICE})
        result, answers = self.run_job()
        self.assertEqual(result, "done")
        self.assertIn("sign-in", answers[-1].get("error", ""))
        self.assertEqual(self.cursor()[1], "revoked")
        deadline = time.monotonic() + 10
        while True:
            ev = json.loads(sse.event(timeout=max(0.1, deadline - time.monotonic()))["data"])
            if ev["type"] == "account_reauth_required":
                break
        self.assertEqual((ev["account"], ev["provider"], ev["address"]),
                         (self.account, "gmail", ALICE))
        self.assertIn("timestamp", ev)
        sse.close()
        # Later runs do not call the provider for a revoked account.
        self.fake("POST", "/_fake/gmail/counters/reset")
        self.assertEqual(self.run_job()[0], "done")
        self.assertEqual(sum(self.fake("GET", "/_fake/gmail/counters")["requests"].values()), 0)

    def test_429_storm_is_waited_out_without_a_429_of_our_own(self):
        self.fake("POST", "/_fake/gmail/fault", {"kind": "rate", "count": 6, "reason": "user"})
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        self.assertGreaterEqual(sum(a["result"] == "delay" for a in answers), 1)
        self.assertFalse(any(a["result"] == "fail" for a in answers))
        counters = self.fake("GET", "/_fake/gmail/counters")
        refusals = counters["quota_refusals"]
        self.assertEqual(sum(refusals.values()) if isinstance(refusals, dict) else refusals, 0,
                         counters)
        self.assertEqual(counters["sent_429"], 6, counters)  # exactly the injected ones
        self.assert_equal_mailboxes()

    def test_a_provider_slower_than_the_lease_ends_the_slice_and_the_next_run_goes_on(self):
        self.fake("POST", "/_fake/gmail/fault", {"kind": "latency", "ms": 4000, "count": 1})
        body = {"id": 77, "kind": "gmail.sync", "user": self.user, "account": self.account,
                "payload": {}, "attempt": 1, "lease_ms": 2500}
        reply = self.client.call("sync", "JOB_RUN", proto.pack(body), user=self.user,
                                 timeout_ms=2500)
        self.assertIsNotNone(reply, "answered before the job's lease ended")
        answer = proto.body_map(reply)
        self.assertEqual(answer["result"], "retry", answer)
        self.assertIn("out of time", answer["error"])
        # The lease went with the slice: the next run is not told to wait, and the slow
        # answer arriving meanwhile (cancelled) changes nothing.
        time.sleep(2)
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        self.assertFalse(any("another run" in a.get("error", "") for a in answers), answers)
        self.assert_equal_mailboxes()

    def test_a_finished_sync_starts_the_watch_and_gmail_pushes(self):
        listener = Listener()
        self.addCleanup(listener.close)
        self.fake("POST", "/_fake/gmail/push", {"url": listener.url})
        self.backfill()
        until = int(self.pg.psql(f"select (extract(epoch from sync_watch_until) * 1000)::bigint "
                                 f"from accounts where id = {self.account}")[0][0])
        self.assertGreater(until, time.time() * 1000 + 6 * 86400000, "Gmail's 7 days")
        self.fake("POST", "/_fake/gmail/deliver", {"email": ALICE, "count": 1})
        wait_until(lambda: listener.posts, 10, "Gmail's push after new mail")
        note = json.loads(b64d(listener.posts[0]["message"]["data"]))
        self.assertEqual(note["emailAddress"], ALICE)
        # Up to date with a watch of days left: the next sync does not watch again.
        self.fake("POST", "/_fake/gmail/counters/reset")
        self.assertEqual(self.run_job()[0], "done")
        self.assertNotIn("watch", self.fake("GET", "/_fake/gmail/counters")["requests"])

    def test_a_topic_gmail_refuses_does_not_fail_the_sync(self):
        self.fake("POST", "/_fake/gmail/push", {"publish_denied": True})
        result, answers = self.run_job()
        self.assertEqual(result, "done", answers[-3:])
        self.assertEqual(self.fake("GET", "/_fake/gmail/counters")["requests"].get("watch"), 1)
        # Tried again in an hour, not at every run.
        self.assertEqual(self.run_job()[0], "done")
        self.assertEqual(self.fake("GET", "/_fake/gmail/counters")["requests"].get("watch"), 1)
        self.assert_equal_mailboxes()

    def test_one_run_per_account_at_once(self):
        body = {"kind": "gmail.sync", "user": self.user, "account": self.account,
                "payload": {}, "attempt": 1, "lease_ms": 20000}
        # A slow provider keeps the first run inside its slice while the second arrives.
        self.fake("POST", "/_fake/gmail/fault", {"kind": "latency", "ms": 1500, "count": 2})
        first = self.client.send("sync", "JOB_RUN", proto.pack(dict(body, id=501)),
                                 user=self.user, timeout_ms=20000)
        time.sleep(0.3)
        second = self.client.send("sync", "JOB_RUN", proto.pack(dict(body, id=502)),
                                  user=self.user, timeout_ms=20000)
        got = self.client.collect([first, second], 25)
        self.assertEqual(len(got), 2)
        a, b = proto.body_map(got[first]), proto.body_map(got[second])
        self.assertEqual(a["result"], "continue", a)
        self.assertEqual(b["result"], "delay", b)
        self.assertGreater(b["delay_ms"], 0)


if __name__ == "__main__":
    unittest.main()


class SyncFlowCase(SyncBase):
    """The whole flow with the jobs actor: sign-in, a backfill the fallback poll starts, new
    mail pushed by Gmail (the fake, after the watch the sync started) and handed over as the
    edge's webhook does (SYNC_PUSH), and new_email on the user's stream."""

    MESSAGES = 12
    ACTORS = "monitor,events,cache,ratelimit,session,accounts,jobs,sync"
    EXTRA_ENV = {"AINBOX_SYNC_POLL_S": "5"}

    def wait_synced(self, timeout=60):
        wait_until(lambda: self.cursor()[0] and self.cursor()[2] == "t", timeout,
                   "the account's sync to finish")

    def test_sign_in_backfill_new_mail_on_the_stream(self):
        listener = Listener()
        self.addCleanup(listener.close)
        self.fake("POST", "/_fake/gmail/push", {"url": listener.url})
        # The edge asked for the backfill when the account signed in (SYNC_START; the poll
        # would find it too, later), and the jobs actor runs it.
        reply = self.client.call("sync", "STATS", b"", timeout_ms=5000)
        self.assertEqual(proto.body_map(reply)["metrics"]["sync.starts"], 1)
        self.wait_synced()
        self.assert_equal_mailboxes()
        sse = SseReader(self.edge_port, "/api/v1/emails/stream",
                        headers={"Cookie": f"access_token={self.cookies['access_token']}"})
        self.addCleanup(sse.close)
        self.assertEqual(sse.status, 200)
        wait_until(lambda: self.pg.psql(f"select sync_watch_until is not null from accounts "
                                        f"where id = {self.account}")[0][0] == "t", 30,
                   "the watch")
        delivered = self.fake("POST", "/_fake/gmail/deliver",
                              {"email": ALICE, "subject": "Live: ça marche"})["delivered"][0]
        wait_until(lambda: listener.posts, 10, "Gmail's push")
        note = json.loads(b64d(listener.posts[-1]["message"]["data"]))
        reply = self.client.call("sync", "SYNC_PUSH", proto.pack(
            {"email": note["emailAddress"], "history_id": str(note["historyId"])}))
        self.assertEqual(reply["status"], "OK", reply)
        self.assertTrue(proto.body_map(reply)["queued"])
        deadline = time.monotonic() + 15
        while True:
            ev = json.loads(sse.event(timeout=max(0.1, deadline - time.monotonic()))["data"])
            if ev["type"] == "new_email" and ev["email"]["id"] == delivered["id"]:
                break
        self.assertEqual(ev["email"]["subject"], "Live: ça marche")
        self.assertEqual(ev["email"]["threadId"], delivered["threadId"])
        self.assertIn("INBOX", ev["email"]["labelIds"])
        self.assertEqual(ev["source"], "gmail")
        self.assert_equal_mailboxes()
        # A push for an address nobody has queues nothing.
        reply = self.client.call("sync", "SYNC_PUSH", proto.pack(
            {"email": "nobody@gmail.test", "history_id": "1"}))
        self.assertFalse(proto.body_map(reply)["queued"])

    def test_sync_start_runs_a_sync_now(self):
        self.wait_synced()
        self.fake("POST", "/_fake/gmail/deliver", {"email": ALICE, "count": 2})
        reply = self.client.call("sync", "SYNC_START", proto.pack({"account": self.account}),
                                 user=self.user)
        self.assertEqual(reply["status"], "OK", reply)
        self.assertGreater(proto.body_map(reply)["job"], 0)
        wait_until(lambda: len(self.stored_mailbox()) == self.MESSAGES + 2, 30,
                   "the two new messages in the store")
        self.assert_equal_mailboxes()
        # Another user's account is not found, and nothing is queued for it.
        reply = self.client.call("sync", "SYNC_START", proto.pack({"account": self.account}),
                                 user=self.user + 1000)
        self.assertEqual(reply["status"], "NOT_FOUND", reply)


class SyncKillCase(SyncBase):
    """kill -9 of the sync actor's process in the middle of a backfill, then a new one: the job
    is not lost (the jobs actor runs it again when its lease ends; the account's own lease
    ends with it), the backfill continues where the store says it was, and ends equal to the
    mailbox with nothing stored twice and nothing dead-lettered."""

    MESSAGES = 40
    ACTORS = "monitor,events,cache,ratelimit,session,accounts,jobs"
    EXTRA_ENV = {"AINBOX_SYNC_POLL_S": "5", "AINBOX_JOBS_LEASE_MS": "4000"}

    def test_kill_9_mid_backfill_then_a_restart(self):
        first = self.spawn("sync-1", ["actor", "sync"], self.env)
        wait_until(lambda: len(self.stored_mailbox()) >= 8, 60, "a backfill under way")
        self.assertEqual(self.cursor()[0], "", "killed before the end")
        first.kill9()
        progress = self.pg.psql(f"select sync_full from accounts where id = {self.account}")
        self.spawn("sync-2", ["actor", "sync"], self.env)
        wait_until(lambda: self.cursor()[0] and self.cursor()[2] == "t", 90,
                   "the backfill to finish in the new process")
        self.assertTrue(progress[0][0], "the progress was in the store when the first died")
        self.assert_equal_mailboxes()
        dup = self.pg.psql("select count(*) - count(distinct (account_id, provider_id)) "
                           "from messages")
        self.assertEqual(dup[0][0], "0")
        reply = self.client.call("jobs", "JOBS_STATS", proto.pack({}))
        self.assertEqual(proto.body_map(reply)["dead"], 0, proto.body_map(reply))
