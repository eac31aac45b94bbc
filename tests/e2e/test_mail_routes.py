"""The mail routes: the edge's route table onto the cache actor, with real
Redis and PostgreSQL.

Every route's shape against the contract (ainbox-contract.md 1.3: the
original frontend's Gmail routes and their Outlook twins, exact keys and
types), the provider-neutral /api/v1 routes, cursor pagination, ETags and
304, parameters that do not parse (400 naming them) or ask for what the
store cannot do (501), and above all: user B asking for user A's threads,
messages, accounts and folders through EVERY signed-in route of the table
(read from edge/routes.c, so a new route without a case fails here) gets
nothing of A's.

KeptAnswersCase: answers the edge serves without asking the cache actor
(edge/inval.c) stay exact: a write is seen by the next read, one user's
write leaves another's answers alone, and an unreadable invalidation, a
clear of everything, a lost subscription or a lapsed lease each send the
next read to the actor.
"""

import http.client
import json
import os
import re
import subprocess
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports

SECRETS = {"JWT_ACCESS_SECRET": "a" * 16 + "-access-secret-for-tests-only",
           "JWT_REFRESH_SECRET": "r" * 16 + "-refresh-secret-for-tests-only"}
ROUTES_C = os.path.join(os.path.dirname(__file__), "..", "..", "edge", "routes.c")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

GMAIL_ITEM = {"threadId": str, "id": str, "subject": str, "from": str, "originFrom": str,
              "latestFrom": str, "to": str, "date": str, "snippet": str, "labelIds": list,
              "isUnread": bool}
OUTLOOK_ITEM = {"id": str, "conversationId": str, "subject": str, "from": str, "to": list,
                "date": str, "snippet": str, "isRead": bool, "hasAttachments": bool,
                "importance": str, "latestFrom": str, "originFrom": str}
RFC5322 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} "
                     r"\d\d:\d\d:\d\d \+0000$")
ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def message(mid, thread, ms, labels, unread=False, **extra):
    return {"op": "upsert_message", "id": mid, "thread_id": thread, "sent_at_ms": ms,
            "labels": list(labels), "unread": unread, "subject": f"subject {mid}",
            "from_name": "Ann Example", "from_addr": f"sender-{mid[0]}@example.com",
            "to": "Me <me@example.com>, \"Doe, Jo\" <jo@example.com>",
            "snippet": f"snippet {mid}", **extra}


def user_routes():
    """(method, path) of every route of edge/routes.c that needs a signed-in user."""
    with open(ROUTES_C) as f:
        text = f.read()
    table = text[text.index("s_routes[] = {"):text.index("#define S_NROUTES")]
    routes = []
    for m in re.finditer(r'\{"(GET|POST|PUT|PATCH|DELETE)",\s*"([^"]+)",\s*(\w+)\s*(?:\(|,)\s*'
                         r'(\w+)?', table):
        method, path, handler, auth = m.groups()
        public = handler != "CALL" and handler != "LIST" and auth == "AIN__AUTH_NONE"
        if not public:
            routes.append((method, path))
    return routes


class MailCase(AinboxTestCase):
    """A bundle with the cache actor and two signed-in users, each with a seeded Gmail account;
    helpers, no tests."""

    EXTRA_ENV = {}

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()
        self.pg = self.start_migrated_postgres()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events,session,cache,ratelimit",
                                 AINBOX_HEALTH_SERVICES="monitor,session,cache",
                                 AINBOX_API_RATELIMIT="false", DATABASE_URL=self.pg.url,
                                 REDIS_URL=self.redis.url, **SECRETS, **self.EXTRA_ENV)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)
        self.a = self.sign_in("ann@example.com")
        self.b = self.sign_in("bob@example.com")
        self.seed(self.a, "a")
        self.seed(self.b, "b")

    # ------------------------------------------------------------- helpers

    def request(self, path, token, method="GET", headers=None):
        """(status, headers, parsed body or None)."""
        conn = http.client.HTTPConnection("127.0.0.1", int(self.env["HTTP_PORT"]), timeout=5)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        conn.request(method, path, headers=h)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, res.msg, json.loads(data) if data else None

    def get(self, path, who, status=200, **kw):
        got, headers, body = self.request(path, who["token"], **kw)
        self.assertEqual(got, status, f"{path}: {body}")
        return body

    def sign_in(self, email):
        conn = http.client.HTTPConnection("127.0.0.1", int(self.env["HTTP_PORT"]), timeout=5)
        conn.request("POST", "/api/v1/dev/session", body=json.dumps({"email": email}),
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        body = json.loads(res.read())
        self.assertEqual(res.status, 200, body)
        token = None
        for line in res.msg.get_all("Set-Cookie"):
            name, _, rest = line.partition("=")
            if name == "access_token":
                token = rest.split(";")[0]
        conn.close()
        user = int(body["data"]["user"]["id"])
        return {"user": user, "token": token, "email": email}

    def seed(self, who, tag):
        """One Gmail account with a thread in each folder; ids carry the tag."""
        u = who["user"]
        rows = self.pg.psql(f"insert into accounts (user_id, provider, address) values "
                            f"({u}, 'gmail', '{who['email']}') returning id")
        who["account"] = int(rows[0][0])
        t = tag
        changes = [
            message(f"{t}m1", f"{t}inbox", T0 + 1000, ["INBOX", "UNREAD"], unread=True),
            message(f"{t}m2", f"{t}inbox", T0 + 2000, ["INBOX"], from_name="Cy",
                    from_addr="cy@example.com"),
            message(f"{t}m3", f"{t}sent", T0 + 3000, ["SENT"], is_sent=True),
            message(f"{t}m4", f"{t}draft", T0 + 4000, ["DRAFT"]),
            message(f"{t}m5", f"{t}spam", T0 + 5000, ["SPAM"], unread=True),
            message(f"{t}m6", f"{t}trash", T0 + 6000, ["TRASH"]),
            message(f"{t}m7", f"{t}star", T0 + 7000, ["INBOX", "STARRED"], starred=True),
            message(f"{t}m8", f"{t}archived", T0 + 8000, []),
            {"op": "upsert_body", "id": f"{t}m2",
             "html": "<p>Hello <b>there</b><script>alert(1)</script>"
                     "<img src=\"cid:logo\"><img src=\"https://img.example/t.png\"></p>",
             "text": "Hello there",
             "attachments": [{"id": f"{t}att1", "filename": "a.pdf",
                              "mime_type": "application/pdf", "size": 1234,
                              "content_id": None, "inline": False}]},
        ] + [message(f"{t}p{i}", f"{t}page{i}", T0 - 10_000 - i, ["INBOX"]) for i in range(5)]
        reply = self.client.call("cache", "MAIL_APPLY",
                                 proto.pack({"account": who["account"], "changes": changes}),
                                 user=u, timeout_ms=10000)
        self.assertEqual(reply["status"], "OK", proto.body_map(reply))

    def assert_keys(self, obj, spec, where, optional=()):
        keys = set(obj) - set(optional)
        self.assertEqual(keys, set(spec), where)
        for k, kind in spec.items():
            self.assertIsInstance(obj[k], kind, f"{where}.{k}")


class MailRoutesCase(MailCase):

    # ------------------------------------------------------------- shapes

    def test_gmail_routes_have_the_originals_shapes(self):
        a = self.a
        page = self.get("/threads?maxResults=50", a)
        self.assertEqual(set(page) - {"total"}, {"nextPageToken", "threads"})
        ids = [t["threadId"] for t in page["threads"]]
        # Newest first; inbox only (starred mail is in the inbox too).
        self.assertEqual(ids[:2], ["astar", "ainbox"])
        self.assertNotIn("asent", ids)
        for t in page["threads"]:
            self.assert_keys(t, GMAIL_ITEM, "threads[]")
            self.assertRegex(t["date"], RFC5322)
        inbox = page["threads"][1]
        self.assertEqual(inbox["id"], "am2")  # the latest message
        self.assertTrue(inbox["isUnread"])
        self.assertEqual(inbox["latestFrom"], "Cy <cy@example.com>")
        self.assertEqual(inbox["originFrom"], "Ann Example <sender-a@example.com>")
        self.assertIn("INBOX", inbox["labelIds"])

        for q, expect in (("in:trash", "atrash"), ("in:spam", "aspam"), ("is:starred", "astar"),
                          ("in:archive", "aarchived"), ("in:inbox", "ainbox")):
            got = [t["threadId"] for t in self.get(f"/threads?q={q}&maxResults=50", a)["threads"]]
            self.assertIn(expect, got, q)
            self.assertTrue(all(x.startswith("a") for x in got), q)

        sent = self.get("/threads/sent?maxResults=50&fields=ignored", a)
        self.assertEqual([t["threadId"] for t in sent["threads"]], ["asent"])
        spec = {k: v for k, v in GMAIL_ITEM.items() if k not in ("originFrom", "latestFrom")}
        self.assert_keys(sent["threads"][0], spec, "sent threads[]")

        drafts = self.get("/drafts?maxResults=50", a)
        self.assertEqual(set(drafts) - {"total"}, {"nextPageToken", "drafts"})
        self.assert_keys(drafts["drafts"][0], {"draftId": str, "id": str, "subject": str,
                                               "from": str, "to": str, "date": str,
                                               "snippet": str, "labelIds": list}, "drafts[]")
        self.assertEqual(drafts["drafts"][0]["id"], "am4")

        thread = self.get("/threads/ainbox?includeAttachments=true", a)
        self.assertEqual(set(thread), {"threadId", "messages"})
        self.assertEqual(thread["threadId"], "ainbox")
        self.assertEqual([m["id"] for m in thread["messages"]], ["am1", "am2"])  # oldest first
        m2 = thread["messages"][1]
        self.assertEqual(set(m2), {"id", "threadId", "subject", "from", "to", "date", "snippet",
                                   "labelIds", "isUnread", "text", "html", "attachments"})
        self.assertEqual(m2["from"], "Cy <cy@example.com>")
        self.assertEqual(m2["text"], "Hello there")
        self.assertEqual(m2["attachments"][0]["filename"], "a.pdf")
        self.assertEqual(m2["attachments"][0]["mimeType"], "application/pdf")
        self.assertIsNone(thread["messages"][0]["html"])  # no body stored

        self.assertEqual(self.get("/gmail/spam-stats", a), {"total": 1, "unread": 1})
        self.assertEqual(self.get("/api/notifications/count?unreadOnly=true", a),
                         {"success": True, "count": 0})

        content = self.get("/emails/am2/content?allowRemoteImages=false", a)
        self.assertEqual(set(content), {"id", "subject", "from", "to", "cc", "bcc", "date",
                                        "hasHtml", "srcDoc", "textFallback", "inlineCidCount",
                                        "blockedImages", "attachments"})
        self.assertEqual(content["from"], {"name": "Cy", "email": "cy@example.com"})
        self.assertEqual(content["to"], ["Me <me@example.com>", "\"Doe, Jo\" <jo@example.com>"])
        self.assertEqual(content["textFallback"], "Hello there")
        self.assertRegex(content["date"], RFC5322)
        # The body as a sanitised document for the iframe: no script, the text
        # and formatting kept, the cid: image counted, a CSP of its own.
        self.assertTrue(content["hasHtml"])
        doc = content["srcDoc"]
        self.assertTrue(doc.startswith("<!DOCTYPE html>"), doc[:80])
        self.assertNotIn("<script", doc.lower())
        self.assertNotIn("alert(1)", doc)
        self.assertIn("<b>there</b>", doc)
        self.assertIn("Content-Security-Policy", doc)
        self.assertEqual(content["inlineCidCount"], 1)
        self.assertEqual(content["blockedImages"], 1)
        self.assertNotIn(' src="https://img.example/t.png"', doc)
        opened = self.get("/emails/am2/content?allowRemoteImages=true", a)["srcDoc"]
        self.assertIn(' src="https://img.example/t.png"', opened)
        self.assertNotIn("<script", opened.lower())
        self.assertEqual(m2["html"], doc)  # the thread's message carries the same document

    def test_outlook_twins_have_the_originals_shapes(self):
        a = self.a
        inbox = self.get("/outlook/inbox?top=50&filter=isRead%20eq%20false", a)
        self.assertEqual(set(inbox) - {"total"},
                         {"folder", "unreadOnly", "nextSkipToken", "messages"})
        self.assertEqual(inbox["folder"], "inbox")
        for m in inbox["messages"]:
            self.assert_keys(m, OUTLOOK_ITEM, "messages[]")
            self.assertRegex(m["date"], ISO8601)
        first = inbox["messages"][1]
        self.assertEqual((first["id"], first["conversationId"]), ("am2", "ainbox"))
        self.assertFalse(first["isRead"])
        self.assertEqual(first["to"], ["Me <me@example.com>", "\"Doe, Jo\" <jo@example.com>"])
        for folder, expect in (("deleteditems", "atrash"), ("junkemail", "aspam"),
                               ("inbox", "ainbox")):
            got = self.get(f"/outlook/messages?folder={folder}&top=50", a)
            self.assertEqual(got["folder"], folder)
            self.assertIn(expect, [m["conversationId"] for m in got["messages"]])
        self.assertEqual([m["conversationId"] for m in
                          self.get("/outlook/sent?top=50", a)["messages"]], ["asent"])
        self.assertEqual([m["conversationId"] for m in
                          self.get("/outlook/drafts?top=50", a)["messages"]], ["adraft"])
        thread = self.get("/outlook/thread/ainbox?includeAttachments=true", a)
        self.assertEqual(thread["threadId"], "ainbox")
        spec = {k: v for k, v in OUTLOOK_ITEM.items() if k not in ("latestFrom", "originFrom")}
        for m in thread["messages"]:
            self.assert_keys(m, spec, "thread messages[]",
                             optional=("html", "text", "attachments"))
        self.assertEqual(self.get("/outlook/spam-stats", a), {"total": 1, "unread": 1})
        # Graph's default page is 10.
        self.assertEqual(len(self.get("/outlook/inbox", a)["messages"]), 7)

    def test_neutral_api_pages_with_cursors(self):
        a = self.a
        labels = self.get("/api/v1/labels", a)["data"]["labels"]
        roles = {l["role"]: l for l in labels if l["role"]}
        self.assertEqual(roles["spam"]["total"], 1)
        self.assertEqual(roles["inbox"]["unread"], 1)
        seen, cursor = [], ""
        for _ in range(10):  # 7 inbox threads, 3 a page
            page = self.get(f"/api/v1/threads?role=inbox&limit=3{cursor}", a)
            self.assertEqual(set(page), {"data", "error", "meta", "requestId"})
            seen += [t["id"] for t in page["data"]["threads"]]
            nxt = page["data"]["next_cursor"]
            if not nxt:
                break
            cursor = f"&cursor={nxt}"
        self.assertEqual(len(seen), 7)
        self.assertEqual(len(set(seen)), 7)
        arch = self.get("/api/v1/threads?archive=true", a)["data"]["threads"]
        # Gmail's archive: in no inbox, trash or spam label (sent and drafts are in it too).
        self.assertIn("aarchived", [t["id"] for t in arch])
        self.assertFalse({"ainbox", "atrash", "aspam"} & {t["id"] for t in arch})
        thread = self.get("/api/v1/threads/ainbox", a)["data"]
        self.assertEqual(thread["thread"]["id"], "ainbox")
        self.assertEqual(len(thread["messages"]), 2)
        msg = self.get(f"/api/v1/messages/am2?account={a['account']}", a)["data"]["message"]
        self.assertEqual(msg["id"], "am2")
        self.assertNotIn("<script", json.dumps(msg).lower())

    def test_etags_answer_304_until_the_data_changes(self):
        a = self.a
        status, headers, body = self.request("/threads?maxResults=50", a["token"])
        self.assertEqual(status, 200)
        etag = headers["ETag"]
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertEqual(headers["Cache-Control"], "private, no-cache")
        again = self.request("/threads?maxResults=50", a["token"])
        self.assertEqual((again[0], again[1]["ETag"], again[2]), (200, etag, body))
        status, headers, body = self.request("/threads?maxResults=50", a["token"],
                                             headers={"If-None-Match": etag})
        self.assertEqual((status, body), (304, None))
        self.assertEqual(headers["ETag"], etag)
        reply = self.client.call("cache", "MAIL_APPLY", proto.pack(
            {"account": a["account"], "changes": [message("am9", "ainbox", T0 + 9000,
                                                          ["INBOX"])]}),
            user=a["user"], timeout_ms=10000)
        self.assertEqual(reply["status"], "OK")
        status, headers, body = self.request("/threads?maxResults=50", a["token"],
                                             headers={"If-None-Match": etag})
        self.assertEqual(status, 200)
        self.assertNotEqual(headers["ETag"], etag)
        self.assertEqual(body["threads"][0]["id"], "am9")

    def test_bad_parameters_are_named(self):
        a = self.a
        for path, status, code, word in (
                ("/threads?maxResults=ten", 400, "INVALID_PARAMETER", "maxResults"),
                ("/threads?maxResults=-1", 400, "INVALID_PARAMETER", "maxResults"),
                ("/threads?q=from:bob", 501, "NOT_IMPLEMENTED", "search"),
                ("/threads?pageToken=garbage", 400, "INVALID", "cursor"),
                # Out of PostgreSQL's range: the actor's 400, not the store's error (503).
                ("/api/v1/threads?role=inbox&cursor=99999999999999999999.1", 400, "INVALID",
                 "cursor"),
                ("/api/v1/threads?role=inbox&cursor=1.99999999999999999999", 400, "INVALID",
                 "cursor"),
                ("/api/v1/threads?role=inbox&cursor=9223372036854775807.1", 400, "INVALID",
                 "cursor"),
                # A NUL byte cut the id short (thread "at0").
                ("/api/v1/threads/at0%00x", 400, "BAD_REQUEST", "NUL"),
                ("/api/v1/threads?role=inbox%00x", 400, "INVALID_PARAMETER", "NUL"),
                ("/outlook/messages?folder=bogus", 400, "INVALID_PARAMETER", "folder"),
                ("/api/v1/threads?archive=maybe", 400, "INVALID_PARAMETER", "archive"),
                ("/api/v1/threads?role=inbox&limit=1000", 400, "INVALID", "limit"),
                ("/api/v1/threads?role=nonsense", 400, "INVALID", "role"),
                ("/api/v1/threads", 400, "INVALID", "label"),
                ("/api/v1/threads?role=inbox&account=x", 400, "INVALID_PARAMETER", "account"),
                ("/threads/a%20b", 400, "INVALID", "thread"),
                ("/threads/" + "x" * 300, 404, "NOT_FOUND", "route"),
                ("/threads/nosuchthread", 404, "NOT_FOUND", "thread"),
                ("/threads?pageToken=" + "9" * 600, 400, "INVALID_PARAMETER", "too long"),
                ("/threads?pageToken=%FF", 400, "INVALID_PARAMETER", "UTF-8")):
            got, _, body = self.request(path, a["token"])
            self.assertEqual(got, status, f"{path}: {body}")
            self.assertEqual(body["error"]["code"], code, path)
            self.assertIn(word, body["error"]["message"], path)
        # maxResults above the original's 50 is clamped, not refused.
        self.assertEqual(len(self.get("/threads?maxResults=500", a)["threads"]), 7)
        got, headers, body = self.request("/threads", a["token"], method="POST")
        self.assertEqual(got, 405)
        self.assertEqual(headers["Allow"], "GET")
        for path in ("/threads", "/threads/ainbox", "/gmail/spam-stats", "/outlook/inbox"):
            got, _, body = self.request(path, None)
            self.assertEqual(got, 401, path)

    # ------------------------------------------------------------- isolation

    def test_no_route_lets_one_user_read_anothers_mail(self):
        a, b = self.a, self.b
        acct = a["account"]
        # For every signed-in route: B's request naming A's objects. Objects
        # answer 404 (never "forbidden": that would confirm they exist);
        # lists and counts answer B's own data only.
        cases = {
            ("GET", "/stats"): None,  # operational, no mail; admins only in production
            ("GET", "/api/v1/emails/stream"): None,  # test_sse_pump: a stream is its user's
            ("GET", "/api/v1/limits"): ("/api/v1/limits", 200),
            ("GET", "/api/v1/session"): ("/api/v1/session", 200),
            ("POST", "/api/v1/terms/accept"): None,  # test_sessions: terms are the caller's
            ("GET", "/api/v1/labels"): (f"/api/v1/labels?account={acct}", 200),
            ("GET", "/api/v1/threads"): (f"/api/v1/threads?role=inbox&account={acct}", 200),
            ("GET", "/api/v1/threads/:id"): ("/api/v1/threads/ainbox", 404),
            ("GET", "/api/v1/messages/:id"): (f"/api/v1/messages/am2?account={acct}", 404),
            ("GET", "/threads"): ("/threads?maxResults=50", 200),
            ("GET", "/threads/sent"): ("/threads/sent", 200),
            ("GET", "/threads/:id"): ("/threads/ainbox", 404),
            ("GET", "/drafts"): ("/drafts", 200),
            ("GET", "/gmail/spam-stats"): ("/gmail/spam-stats", 200),
            ("GET", "/emails/:id/content"): ("/emails/am2/content", 404),
            ("GET", "/api/notifications/count"): ("/api/notifications/count", 200),
            ("GET", "/outlook/inbox"): ("/outlook/inbox", 200),
            ("GET", "/outlook/sent"): ("/outlook/sent", 200),
            ("GET", "/outlook/drafts"): ("/outlook/drafts", 200),
            ("GET", "/outlook/messages"): ("/outlook/messages?folder=junkemail", 200),
            ("GET", "/outlook/thread/:id"): ("/outlook/thread/ainbox", 404),
            ("GET", "/outlook/spam-stats"): ("/outlook/spam-stats", 200),
        }
        table = user_routes()
        self.assertGreater(len(table), 15)
        missing = [r for r in table if r not in cases]
        self.assertEqual(missing, [], "signed-in routes without a cross-user case")
        # A reads first, so any answer the edge keeps (rendered.c) is A's.
        for (method, _), case in cases.items():
            if case is not None:
                self.request(case[0], a["token"], method=method)
        a_ids = re.compile(r'"a(inbox|sent|draft|spam|trash|star|archived|page\d|m\d|p\d|att1)"')
        for (method, _), case in cases.items():
            if case is None:
                continue
            path, status = case
            got, _, body = self.request(path, b["token"], method=method)
            self.assertEqual(got, status, f"B {path}: {body}")
            text = json.dumps(body)
            self.assertIsNone(a_ids.search(text), f"B saw A's data through {path}: {text}")
            self.assertNotIn("ann@example.com", text, path)
        # B's own data is there, through the same routes.
        self.assertIn("binbox", [t["threadId"] for t in self.get("/threads", b)["threads"]])
        self.assertEqual(self.get("/threads/binbox", b)["threadId"], "binbox")
        # The user is the token's: no parameter names another (a `user` is ignored).
        self.assertNotIn("ainbox", json.dumps(self.get(f"/threads?user={a['user']}", b)))


class KeptAnswersCase(MailCase):
    """Answers served without asking (AINBOX_EDGE_FRESH_MS): the lease is long here, so every
    read that asks the actor does so because an invalidation said it must."""

    EXTRA_ENV = {"AINBOX_EDGE_FRESH_MS": "60000"}
    KINDS = ("http.rendered_fresh", "http.rendered_hits", "http.rendered_builds")

    def edge_metrics(self):
        """The edge's latest metrics report (via the monitor), or {}."""
        conn = http.client.HTTPConnection("127.0.0.1", int(self.env["HTTP_PORT"]), timeout=5)
        conn.request("GET", "/stats")
        res = conn.getresponse()
        body = json.loads(res.read())
        conn.close()
        for p in body.get("processes", []) if res.status == 200 else []:
            if p["report"]["service"] == "edge":
                return p["report"]["metrics"]
        return {}

    def counts(self, total=None):
        """(fresh, hits, builds, unsettled): answers sent without asking, asked and copied, asked
        and built, and requests that stopped waiting for the invalidation follower to apply what
        had reached it (inval.c, s_settle). With `total`, waits (bounded) for a report in which
        the first three add up to it."""
        deadline = time.monotonic() + 15
        while True:
            m = self.edge_metrics()
            got = tuple(m.get(k, 0) for k in self.KINDS + ("inval.unsettled",))
            if total is None and m or total is not None and sum(got[:3]) == total:
                return got
            self.assertLess(time.monotonic(), deadline, f"edge metrics stuck at {got}")
            time.sleep(0.1)

    def expect(self, before, fresh=0, hits=0, builds=0):
        """Checks the counts moved by exactly (fresh, hits, builds), but for one thing: a follower
        that did not get a core in time (CPU load) makes a request ask the actor where it need
        not, and each such request is counted (unsettled); one of those may turn a kept answer
        served fresh into one asked and copied (a hit), never into a build, and never without
        being counted. Returns the new counts."""
        want = (before[0] + fresh, before[1] + hits, before[2] + builds)
        got = self.counts(sum(want))
        moved = got[1] - want[1]
        unsettled = got[3] - before[3]
        self.assertTrue(0 <= moved <= unsettled and got[:3] == (want[0] - moved, got[1], want[2]),
                        f"(fresh, hits, builds): got {got[:3]}, wanted {want}; "
                        f"{unsettled} unsettled may move fresh to hits")
        return got

    def write(self, who, mid, ms):
        reply = self.client.call("cache", "MAIL_APPLY", proto.pack(
            {"account": who["account"], "changes": [message(mid, mid + "t", ms, ["INBOX"])]}),
            user=who["user"], timeout_ms=10000)
        self.assertEqual(reply["status"], "OK", proto.body_map(reply))

    def newest(self, who):
        """The id of the newest message of the inbox page."""
        return self.get("/threads?maxResults=50", who)["threads"][0]["id"]

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.redis.socket] + list(args),
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_a_write_is_seen_by_the_next_read(self):
        a = self.a
        c = self.counts()
        first = self.get("/threads?maxResults=50", a)
        self.assertEqual(self.get("/threads?maxResults=50", a), first)
        c = self.expect(c, fresh=1, builds=1)
        for i in range(20):
            self.write(a, f"aw{i}", T0 + 100_000 + i)
            self.assertEqual(self.newest(a), f"aw{i}", "a read right after the write")
            self.assertEqual(self.newest(a), f"aw{i}")
        # Each read after a write asked and built; each one after that was served as kept.
        self.expect(c, fresh=20, builds=20)

    def test_one_users_write_leaves_anothers_answers_kept(self):
        a, b = self.a, self.b
        c = self.counts()
        self.assertEqual(self.newest(a), "am7")
        self.assertEqual(self.newest(b), "bm7")
        self.assertEqual(self.newest(b), "bm7")
        c = self.expect(c, fresh=1, builds=2)
        self.write(a, "anew", T0 + 100_000)
        self.assertEqual(self.newest(b), "bm7")
        self.assertEqual(self.newest(a), "anew")
        self.expect(c, fresh=1, builds=1)

    def test_an_unreadable_invalidation_or_a_clear_drops_every_kept_answer(self):
        a, b = self.a, self.b
        c = self.counts()
        for who in (a, b, a, b):
            self.newest(who)
        c = self.expect(c, fresh=2, builds=2)
        # Someone else's message on the channel: whose it was is unknown.
        self.redis_cli("PUBLISH", "ain:cache:inval", "not msgpack")
        deadline = time.monotonic() + 15
        while self.edge_metrics().get("inval.bad", 0) != 1:
            self.assertLess(time.monotonic(), deadline, "inval.bad never counted")
            time.sleep(0.1)
        for who in (a, b, a, b):
            self.newest(who)
        c = self.expect(c, fresh=2, hits=2)  # asked (tags unchanged), then kept again
        # An operator's clear of everything.
        reply = self.client.call("cache", "CACHE_CLEAR", proto.pack({}), user=0,
                                 timeout_ms=10000)
        self.assertEqual(reply["status"], "OK", proto.body_map(reply))
        for who in (a, b):
            self.newest(who)
        self.expect(c, hits=2)

    def test_a_lost_subscription_sends_every_read_to_the_actor(self):
        a = self.a
        c = self.counts()
        self.newest(a)
        self.newest(a)
        c = self.expect(c, fresh=1, builds=1)
        self.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
        self.write(a, "alost", T0 + 100_000)
        self.assertEqual(self.newest(a), "alost", "a read right after the write")
        c = self.expect(c, builds=1)
        # Back by itself (the edge resubscribes), and kept answers are served again.
        deadline = time.monotonic() + 20
        while True:
            self.assertEqual(self.newest(a), "alost")
            got = self.counts(sum(c[:3]) + 1)
            if got[0] > c[0]:
                break
            c = got
            self.assertLess(time.monotonic(), deadline, "kept answers never served again")
            time.sleep(0.2)


class LeaseCase(MailCase):
    """A kept answer older than AINBOX_EDGE_FRESH_MS is asked about again."""

    EXTRA_ENV = {"AINBOX_EDGE_FRESH_MS": "200"}
    edge_metrics, counts, expect, newest = (KeptAnswersCase.edge_metrics,
                                            KeptAnswersCase.counts, KeptAnswersCase.expect,
                                            KeptAnswersCase.newest)
    KINDS = KeptAnswersCase.KINDS

    def test_a_lapsed_lease_asks_again(self):
        c = self.counts()
        self.newest(self.a)
        time.sleep(1.0)  # five leases: well past it
        self.newest(self.a)
        self.expect(c, hits=1, builds=1)


if __name__ == "__main__":
    unittest.main()
