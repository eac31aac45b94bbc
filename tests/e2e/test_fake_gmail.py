"""The fake Gmail API of tools/fakes, driven over HTTP only, as the sync actor will drive it.

A token from the fake's own Google sign-in, then: the profile; messages.list pages and filters;
messages.get in minimal, metadata, full and raw (raw parsed back with the email package: MIME
structure, a decoded non-ASCII subject, an attachment, an inline cid image, 7-bit clean bytes);
history pages (empty ones with a nextPageToken included), type and label filters, and 404
once the start id is too old; modify,
batchModify, trash, untrash and delete in history and label counts; send between two
mailboxes and drafts; threads; users.watch with the Pub/Sub push received by a listener here;
quota refusals with Google's bodies in both generations (new: messages.get 20 units; old: 5);
injected 5xx, 429 and latency (the concurrency cap); expiring tokens; the mail generator; the
batch endpoint. Each test has its own fake process.
"""

import base64
import email
import email.policy
import http.client
import json
import os
import re
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ainbox_harness import AinboxTestCase, Proc, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "tools", "fakes", "fake_providers.py")
REDIRECT = "http://127.0.0.1:9/cb"
SCOPE = "https://mail.google.com/ openid email"
U = "/gmail/v1/users/me"
A, B = "alice@gmail.test", "bob@gmail.test"


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Listener:
    """A tiny push endpoint: records every POST, answers with the next queued status."""

    def __init__(self):
        self.posts, self.statuses = [], []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = outer.statuses.pop(0) if outer.statuses else 204
                outer.posts.append({"path": self.path, "headers": dict(self.headers),
                                    "body": json.loads(body), "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/gmail"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def acked(self):
        return [p for p in self.posts if p["status"] < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeGmailCase(AinboxTestCase):
    fake_args = ()

    def setUp(self):
        super().setUp()
        self.start_fake(*self.fake_args)

    def start_fake(self, *extra):
        self.proc = Proc("fake", ["/usr/bin/python3", FAKE, "--port", "0", "--client",
                                  f"google:gid:gsec:{REDIRECT}", "--gmail-autocreate", "0",
                                  *extra], dict(os.environ), self.scratch)
        self.procs.append(self.proc)
        found = wait_until(lambda: re.search(r"ready (\d+)", self.proc.log()), 10, "the fake")
        self.port = int(found.group(1))

    # ------------------------------------------------------------- HTTP

    def http(self, method, path, body=None, headers=None, raw=False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        if raw or not data:
            return res.status, res.msg, data
        return res.status, res.msg, json.loads(data)

    def api(self, method, path, token, body=None, **query):
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        status, _, data = self.http(method, U + path, body,
                                    {"Authorization": "Bearer " + token} if token else {})
        return status, data

    def ok(self, method, path, token, body=None, **query):
        status, data = self.api(method, path, token, body, **query)
        self.assertIn(status, (200, 204), data)
        return data

    def ctl(self, method, path, body=None):
        status, _, data = self.http(method, "/_fake/" + path, body)
        self.assertEqual(status, 200, data)
        return data

    def token(self, addr, scope=SCOPE):
        q = urllib.parse.urlencode({"client_id": "gid", "redirect_uri": REDIRECT,
                                    "response_type": "code", "scope": scope,
                                    "login_hint": addr, "access_type": "offline"})
        status, msg, _ = self.http("GET", "/o/oauth2/v2/auth?" + q, raw=True)
        self.assertEqual(status, 302)
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(msg["Location"]).query)["code"][0]
        form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                       "client_id": "gid", "client_secret": "gsec",
                                       "redirect_uri": REDIRECT}).encode()
        status, _, tok = self.http("POST", "/token", form,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, tok)
        self.refresh = tok["refresh_token"]
        return tok["access_token"]

    def mailbox(self, addr, n, seed=1, **kw):
        return self.ctl("POST", "gmail/mailbox", {"email": addr, "messages": n, "seed": seed,
                                                  **kw})

    def all_ids(self, tok, **query):
        ids, token = [], None
        for _ in range(100):
            q = dict(query, **({"pageToken": token} if token else {}))
            page = self.ok("GET", "/messages", tok, **q)
            ids += [m["id"] for m in page.get("messages", [])]
            token = page.get("nextPageToken")
            if not token:
                return ids, page["resultSizeEstimate"]
        self.fail("messages.list never ended")

    def history(self, tok, start, **query):
        recs, token = [], None
        for _ in range(100):
            q = dict(query, startHistoryId=start, **({"pageToken": token} if token else {}))
            page = self.ok("GET", "/history", tok, **q)
            recs += page.get("history", [])
            token = page.get("nextPageToken")
            if not token:
                return recs, page["historyId"]
        self.fail("history.list never ended")

    def assert_google_error(self, status, data, code, reason, message=None):
        self.assertEqual(status, code, data)
        err = data["error"]
        self.assertEqual(err["code"], code)
        self.assertEqual(err["errors"][0]["reason"], reason, data)
        if message:
            self.assertIn(message, err["errors"][0]["message"])
        return err


class Messages(FakeGmailCase):

    def test_profile_and_list_pages(self):
        self.mailbox(A, 120, seed=5)
        tok = self.token(A)
        prof = self.ok("GET", "/profile", tok)
        self.assertEqual(prof["emailAddress"], A)
        self.assertEqual(prof["messagesTotal"], 120)
        self.assertTrue(prof["historyId"].isdigit())
        self.ctl("POST", "gmail/fault", {"kind": "empty_page"})
        ids, estimate = self.all_ids(tok, maxResults=17)
        self.assertEqual(len(ids), estimate)
        self.assertEqual(len(set(ids)), len(ids))
        everything, total = self.all_ids(tok, maxResults=500, includeSpamTrash="true")
        self.assertEqual(total, 120)
        self.assertLess(len(ids), 120, "spam and trash are left out by default")
        unread, _ = self.all_ids(tok, labelIds=["INBOX", "UNREAD"])
        self.assertTrue(unread)
        for mid in unread[:5]:
            m = self.ok("GET", f"/messages/{mid}", tok, format="minimal")
            self.assertTrue({"INBOX", "UNREAD"} <= set(m["labelIds"]))
            self.assertNotIn("payload", m)
        self.assertEqual(self.ok("GET", "/messages", tok, q="in:archive"),
                         {"resultSizeEstimate": 0})
        status, data = self.api("GET", "/messages", tok, q="is:bogus")
        self.assert_google_error(status, data, 400, "invalidArgument")
        self.assertEqual(data["error"]["status"], "INVALID_ARGUMENT")

    def test_get_in_every_format(self):
        self.mailbox(A, 40, seed=2)
        tok = self.token(A)
        ids, _ = self.all_ids(tok, includeSpamTrash="true")
        seen = {"inline": 0, "attachment": 0, "non_ascii": 0, "alternative": 0}
        for mid in ids:
            raw = b64d(self.ok("GET", f"/messages/{mid}", tok, format="raw")["raw"])
            self.assertTrue(all(b < 128 for b in raw), "7-bit clean: RFC 2047 / QP / base64")
            self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "CRLF line ends")
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            if any(ord(c) > 127 for c in str(msg["Subject"])):
                self.assertIn(b"=?utf-8?", raw.split(b"\r\n\r\n")[0])
                seen["non_ascii"] += 1
            for part in msg.walk():
                if part.get_content_type() == "multipart/alternative":
                    seen["alternative"] += 1
                if part.get_content_type() == "image/png" and part["Content-ID"]:
                    seen["inline"] += 1
                elif part.get_content_disposition() == "attachment":
                    seen["attachment"] += 1
                    self.assertTrue(part.get_filename())
        for what, n in seen.items():
            self.assertGreater(n, 0, f"no {what} in a 40-message synthetic mailbox")

        with_att = self.ok("GET", "/messages", tok, q="has:attachment")["messages"][0]["id"]
        full = self.ok("GET", f"/messages/{with_att}", tok)  # format=full by default
        self.assertEqual(full["payload"]["partId"], "")
        self.assertTrue(full["payload"]["mimeType"].startswith("multipart/"))
        self.assertNotIn("raw", full)
        leaves, stack = [], [full["payload"]]
        while stack:
            p = stack.pop()
            self.assertIn("partId", p)
            stack += p.get("parts", [])
            if not p.get("parts"):
                leaves.append(p)
        att = [p for p in leaves if p["filename"]]
        self.assertTrue(att)
        body = self.ok("GET", f"/messages/{with_att}/attachments/{att[0]['body']['attachmentId']}",
                       tok)
        self.assertEqual(len(b64d(body["data"])), att[0]["body"]["size"])
        text = [p for p in leaves if p["mimeType"] == "text/plain"][0]
        self.assertIn("Hello,", b64d(text["body"]["data"]).decode())
        self.assertTrue(full["internalDate"].isdigit())
        self.assertIsInstance(full["sizeEstimate"], int)

        meta = self.ok("GET", f"/messages/{with_att}", tok, format="metadata",
                       metadataHeaders=["Subject", "From"])
        self.assertEqual({h["name"] for h in meta["payload"]["headers"]}, {"Subject", "From"})
        self.assertNotIn("parts", meta["payload"])
        status, data = self.api("GET", "/messages/not-an-id", tok)
        self.assert_google_error(status, data, 400, "invalidArgument")
        status, data = self.api("GET", "/messages/0123456789abcdef", tok)
        err = self.assert_google_error(status, data, 404, "notFound",
                                       "Requested entity was not found.")
        self.assertEqual(err["status"], "NOT_FOUND")

    def test_same_seed_same_mailbox(self):
        self.mailbox(A, 30, seed=11)
        tok = self.token(A)
        ids, _ = self.all_ids(tok, includeSpamTrash="true")
        raw = self.ok("GET", f"/messages/{ids[3]}", tok, format="raw")["raw"]
        self.mailbox(A, 30, seed=11)
        again, _ = self.all_ids(tok, includeSpamTrash="true")
        self.assertEqual(again, ids)
        self.assertEqual(self.ok("GET", f"/messages/{ids[3]}", tok, format="raw")["raw"], raw)

    def test_threads(self):
        self.mailbox(A, 80, seed=4)
        tok = self.token(A)
        page = self.ok("GET", "/threads", tok, maxResults=100)
        self.assertTrue(all({"id", "snippet", "historyId"} <= set(t) for t in page["threads"]))
        multi = None
        for t in page["threads"]:
            got = self.ok("GET", f"/threads/{t['id']}", tok, format="minimal")
            if len(got["messages"]) > 1:
                multi = got
                break
        self.assertIsNotNone(multi, "replies thread with their first message")
        self.assertEqual(multi["messages"][0]["id"], multi["id"])
        self.ok("POST", f"/threads/{multi['id']}/modify", tok, {"addLabelIds": ["STARRED"]})
        got = self.ok("GET", f"/threads/{multi['id']}", tok, format="minimal")
        self.assertTrue(all("STARRED" in m["labelIds"] for m in got["messages"]))


class History(FakeGmailCase):

    def test_pages_filters_and_404(self):
        self.mailbox(A, 30, seed=3)
        tok = self.token(A)
        start = self.ok("GET", "/profile", tok)["historyId"]
        ids, _ = self.all_ids(tok, q="-is:starred")
        self.assertGreaterEqual(len(ids), 6)
        for i in range(12):
            mid = ids[i % 6]
            self.ok("POST", f"/messages/{mid}/modify", tok,
                    {"addLabelIds": ["STARRED"]} if i < 6 else {"removeLabelIds": ["STARRED"]})
        recs, hid = self.history(tok, start, maxResults=5)
        self.assertEqual(hid, self.ok("GET", "/profile", tok)["historyId"])
        self.assertEqual(len(recs), 12)
        nums = [int(r["id"]) for r in recs]
        self.assertEqual(nums, sorted(set(nums)), "ids increase")
        self.assertGreater(nums[0], int(start))
        self.assertEqual(sum("labelsAdded" in r for r in recs), 6)
        for r in recs:
            self.assertEqual(r["messages"][0]["id"], (r.get("labelsAdded") or
                                                      r.get("labelsRemoved"))[0]["message"]["id"])
        # Pages can come back empty and still carry a nextPageToken: paging goes on.
        self.ctl("POST", "gmail/fault", {"kind": "empty_page", "count": 2})
        again, _ = self.history(tok, start, maxResults=5)
        self.assertEqual(again, recs)
        self.assertEqual(self.ctl("GET", "gmail/counters")["injected"], {"empty_page": 2})
        added, _ = self.history(tok, start, historyTypes="labelAdded")
        self.assertEqual(len(added), 6)
        self.assertTrue(all(set(r) == {"id", "messages", "labelsAdded"} for r in added))
        self.assertEqual(added[0]["labelsAdded"][0]["labelIds"], ["STARRED"])
        self.assertEqual(len(self.history(tok, start, labelId="STARRED")[0]), 12)
        self.assertEqual(self.history(tok, start, labelId="SPAM")[0], [])
        # Nothing since now: only the historyId.
        self.assertEqual(self.ok("GET", "/history", tok, startHistoryId=hid), {"historyId": hid})
        status, data = self.api("GET", "/history", tok, startHistoryId="abc")
        self.assert_google_error(status, data, 400, "invalidArgument")
        status, data = self.api("GET", "/history", tok, startHistoryId="0")
        self.assert_google_error(status, data, 404, "notFound")

        self.ctl("POST", "gmail/expire_history", {"email": A})
        status, data = self.api("GET", "/history", tok, startHistoryId=start)
        self.assert_google_error(status, data, 404, "notFound")
        self.assertEqual(self.ok("GET", "/history", tok, startHistoryId=hid), {"historyId": hid})

        # A retention of 3 records: a start before the last 3 changes is too old.
        self.ctl("POST", "gmail/history", {"email": A, "keep": 3})
        for mid in ids[:5]:
            self.ok("POST", f"/messages/{mid}/modify", tok, {"addLabelIds": ["IMPORTANT"],
                                                             "removeLabelIds": ["IMPORTANT"]})
            self.ok("POST", f"/messages/{mid}/trash", tok)
        status, data = self.api("GET", "/history", tok, startHistoryId=hid)
        self.assert_google_error(status, data, 404, "notFound")

    def test_changes_in_history_and_counts(self):
        self.mailbox(A, 50, seed=8)
        tok = self.token(A)
        start = self.ok("GET", "/profile", tok)["historyId"]
        inbox = self.ok("GET", "/labels/INBOX", tok)
        unread = self.all_ids(tok, labelIds=["INBOX", "UNREAD"])[0]
        self.ok("POST", f"/messages/{unread[0]}/modify", tok, {"removeLabelIds": ["UNREAD"]})
        after = self.ok("GET", "/labels/INBOX", tok)
        self.assertEqual(after["messagesUnread"], inbox["messagesUnread"] - 1)
        self.assertEqual(after["messagesTotal"], inbox["messagesTotal"])

        plain = self.all_ids(tok, q="-is:starred in:inbox")[0][:3]
        starred = self.ok("GET", "/labels/STARRED", tok)["messagesTotal"]
        status, _ = self.api("POST", "/messages/batchModify", tok,
                             {"ids": plain, "addLabelIds": ["STARRED"]})
        self.assertEqual(status, 204)
        self.assertEqual(self.ok("GET", "/labels/STARRED", tok)["messagesTotal"], starred + 3)
        for body, why in (({"ids": plain, "addLabelIds": ["STARRED"],
                            "removeLabelIds": ["STARRED"]}, "both"),
                          ({"ids": ["18c0"] * 1001, "addLabelIds": ["STARRED"]}, "1001 ids"),
                          ({"ids": plain, "addLabelIds": ["SENT"]}, "SENT")):
            status, data = self.api("POST", "/messages/batchModify", tok, body)
            self.assertEqual(status, 400, why)
        status, data = self.api("POST", f"/messages/{plain[0]}/modify", tok,
                                {"addLabelIds": ["Label_99"]})
        self.assert_google_error(status, data, 400, "invalidArgument", "Invalid label")

        victim = plain[1]
        m = self.ok("POST", f"/messages/{victim}/trash", tok)
        self.assertIn("TRASH", m["labelIds"])
        self.assertNotIn("INBOX", m["labelIds"])
        self.assertNotIn(victim, self.all_ids(tok)[0])
        m = self.ok("POST", f"/messages/{victim}/untrash", tok)
        self.assertIn("INBOX", m["labelIds"])
        self.assertNotIn("TRASH", m["labelIds"])
        total = self.ok("GET", "/profile", tok)["messagesTotal"]
        status, _ = self.api("DELETE", f"/messages/{victim}", tok)
        self.assertEqual(status, 204)
        self.assertEqual(self.ok("GET", "/profile", tok)["messagesTotal"], total - 1)
        status, data = self.api("GET", f"/messages/{victim}", tok)
        self.assert_google_error(status, data, 404, "notFound")

        recs, _ = self.history(tok, start)
        kinds = [(k, e["message"]["id"], tuple(e.get("labelIds", ())))
                 for r in recs for k in ("messagesAdded", "messagesDeleted", "labelsAdded",
                                         "labelsRemoved") for e in r.get(k, [])]
        self.assertEqual(kinds[0], ("labelsRemoved", unread[0], ("UNREAD",)))
        self.assertEqual(kinds[1:4], [("labelsAdded", i, ("STARRED",)) for i in plain])
        self.assertIn(("labelsAdded", victim, ("TRASH",)), kinds)
        self.assertIn(("labelsRemoved", victim, ("TRASH",)), kinds)
        self.assertEqual(kinds[-1], ("messagesDeleted", victim, ()))


class SendAndDrafts(FakeGmailCase):

    def raw(self, to, subject, extra=""):
        msg = email.message.EmailMessage()
        if to:
            msg["To"] = to
        msg["Subject"] = subject
        if extra:
            msg["In-Reply-To"] = extra
        msg.set_content("Grüße!\n")
        return base64.urlsafe_b64encode(msg.as_bytes()).decode()

    def test_send_between_mailboxes(self):
        self.mailbox(A, 0)
        self.mailbox(B, 0)
        ta, tb = self.token(A), self.token(B)
        b_start = self.ok("GET", "/profile", tb)["historyId"]
        sent = self.ok("POST", "/messages/send", ta, {"raw": self.raw(B, "Café ☕")})
        self.assertEqual(sent["labelIds"], ["SENT"])
        self.assertEqual(sent["threadId"], sent["id"])
        recs, _ = self.history(tb, b_start)
        got = recs[0]["messagesAdded"][0]["message"]
        self.assertIn("INBOX", got["labelIds"])
        meta = self.ok("GET", f"/messages/{got['id']}", tb, format="metadata")
        headers = {h["name"]: h["value"] for h in meta["payload"]["headers"]}
        self.assertEqual(headers["Subject"], "Café ☕")
        self.assertTrue(headers["X-Ainbox-Fake-Sent-Ms"].isdigit())
        self.assertIn(A, headers["From"])
        # A reply from b joins b's thread.
        reply = self.ok("POST", "/messages/send", tb,
                        {"raw": self.raw(A, "Re: Café ☕"), "threadId": got["threadId"]})
        self.assertEqual(reply["threadId"], got["threadId"])
        self.assertEqual(len(self.ok("GET", f"/threads/{got['threadId']}", tb,
                                     format="minimal")["messages"]), 2)
        status, data = self.api("POST", "/messages/send", ta, {"raw": self.raw(None, "x")})
        self.assert_google_error(status, data, 400, "invalidArgument",
                                 "Recipient address required")
        status, data = self.api("POST", "/messages/send", ta, {})
        self.assert_google_error(status, data, 400, "invalidArgument", "'raw' RFC822 payload")
        # The media upload path sends the bytes as they are.
        status, _, data = self.http("POST", "/upload/gmail/v1/users/me/messages/send?"
                                    "uploadType=media", b64d(self.raw(B, "upload")),
                                    {"Authorization": "Bearer " + ta,
                                     "Content-Type": "message/rfc822"})
        self.assertEqual(status, 200, data)
        self.assertEqual(self.ok("GET", "/profile", tb)["messagesTotal"], 3)

    def test_drafts(self):
        self.mailbox(A, 0)
        self.mailbox(B, 0)
        ta = self.token(A)
        d = self.ok("POST", "/drafts", ta, {"message": {"raw": self.raw(B, "draft 1")}})
        self.assertTrue(d["id"].startswith("r"))
        self.assertEqual(d["message"]["labelIds"], ["DRAFT"])
        listed = self.ok("GET", "/drafts", ta)
        self.assertEqual(listed["drafts"][0]["id"], d["id"])
        got = self.ok("GET", f"/drafts/{d['id']}", ta, format="raw")
        self.assertIn(b"draft 1", b64d(got["message"]["raw"]))
        up = self.ok("PUT", f"/drafts/{d['id']}", ta,
                     {"id": d["id"], "message": {"raw": self.raw(B, "draft 2")}})
        self.assertEqual(up["id"], d["id"])
        self.assertNotEqual(up["message"]["id"], d["message"]["id"], "a new message per update")
        status, _ = self.api("GET", f"/messages/{d['message']['id']}", ta)
        self.assertEqual(status, 404)
        sent = self.ok("POST", "/drafts/send", ta, {"id": d["id"]})
        self.assertIn("SENT", sent["labelIds"])
        self.assertNotIn("DRAFT", sent["labelIds"])
        self.assertEqual(self.ok("GET", "/drafts", ta), {"resultSizeEstimate": 0})
        status, data = self.api("GET", f"/drafts/{d['id']}", ta)
        self.assert_google_error(status, data, 404, "notFound")
        self.assertEqual(self.ok("GET", "/profile", self.token(B))["messagesTotal"], 1)
        d2 = self.ok("POST", "/drafts", ta, {"message": {"raw": self.raw(None, "no one")}})
        status, data = self.api("POST", "/drafts/send", ta, {"id": d2["id"]})
        self.assert_google_error(status, data, 400, "invalidArgument",
                                 "Recipient address required")
        status, _ = self.api("DELETE", f"/drafts/{d2['id']}", ta)
        self.assertEqual(status, 204)
        status, _ = self.api("DELETE", f"/drafts/{d2['id']}", ta)
        self.assertEqual(status, 404)

    def test_labels(self):
        self.mailbox(A, 5)
        ta = self.token(A)
        labels = self.ok("GET", "/labels", ta)["labels"]
        by_id = {x["id"]: x for x in labels}
        self.assertEqual(by_id["INBOX"]["type"], "system")
        self.assertNotIn("messagesTotal", by_id["INBOX"], "counts only via labels.get")
        made = self.ok("POST", "/labels", ta, {"name": "Fake/Ünïcode"})
        self.assertEqual(made["type"], "user")
        status, data = self.api("POST", "/labels", ta, {"name": "Fake/Ünïcode"})
        self.assertEqual(status, 409, data)
        self.assertEqual(self.ok("GET", f"/labels/{made['id']}", ta)["messagesTotal"], 0)
        status, data = self.api("GET", "/labels/Label_404", ta)
        self.assert_google_error(status, data, 404, "notFound")


class Push(FakeGmailCase):

    def setUp(self):
        super().setUp()
        self.listener = Listener()
        self.addCleanup(self.listener.close)
        self.ctl("POST", "gmail/push", {"url": self.listener.url, "token": "s3cret",
                                        "bearer": "oidc-like"})

    def deliver(self, addr, count=1):
        return self.ctl("POST", "gmail/deliver", {"email": addr, "count": count})["delivered"]

    def test_watch_and_notifications(self):
        self.mailbox(A, 3)
        ta = self.token(A)
        status, data = self.api("POST", "/watch", ta, {"topicName": "not-a-topic"})
        self.assert_google_error(status, data, 400, "invalidArgument", "topicName")
        self.ctl("POST", "gmail/push", {"publish_denied": True})
        status, data = self.api("POST", "/watch", ta, {"topicName": "projects/p/topics/t"})
        self.assert_google_error(status, data, 403, "forbidden", "Cloud PubSub")
        self.ctl("POST", "gmail/push", {"publish_denied": False})
        w = self.ok("POST", "/watch", ta, {"topicName": "projects/ainbox-test/topics/gmail"})
        self.assertTrue(w["historyId"].isdigit())
        days = (int(w["expiration"]) / 1000 - __import__("time").time()) / 86400
        self.assertAlmostEqual(days, 7, delta=0.1)

        first = self.deliver(A)[0]
        wait_until(lambda: self.listener.acked(), 10, "the first push")
        post = self.listener.posts[0]
        self.assertEqual(urllib.parse.urlsplit(post["path"]).path, "/webhooks/gmail")
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(post["path"]).query),
                         {"token": ["s3cret"]})
        self.assertEqual(post["headers"]["Authorization"], "Bearer oidc-like")
        body = post["body"]
        self.assertEqual(body["subscription"], "projects/ainbox-test/subscriptions/ainbox-push")
        data = json.loads(base64.b64decode(body["message"]["data"]))
        self.assertEqual(data, {"emailAddress": A, "historyId": int(first["historyId"])})
        self.assertTrue(body["message"]["messageId"])
        self.assertRegex(body["message"]["publishTime"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        # A burst is coalesced: one notification carries the newest historyId.
        burst = self.deliver(A, 5)
        last = int(burst[-1]["historyId"])
        wait_until(lambda: any(json.loads(base64.b64decode(p["body"]["message"]["data"]))
                               ["historyId"] == last for p in self.listener.posts), 10,
                   "the coalesced push")
        self.assertLessEqual(len(self.listener.posts), 3, "5 changes, at most 2 more pushes")
        self.assertGreaterEqual(self.ctl("GET", "gmail/pushes")["counts"]["coalesced"], 3)

        # A dropped notification never arrives; the next one does.
        n = len(self.listener.posts)
        self.ctl("POST", "gmail/fault", {"kind": "drop_push"})
        self.deliver(A)
        wait_until(lambda: self.ctl("GET", "gmail/pushes")["counts"].get("dropped"), 10,
                   "the drop")
        after = self.deliver(A)[0]
        wait_until(lambda: len(self.listener.posts) > n, 10, "the push after the drop")
        self.assertEqual(len(self.listener.posts), n + 1)
        self.assertEqual(json.loads(base64.b64decode(self.listener.posts[-1]["body"]["message"]
                                                     ["data"]))["historyId"],
                         int(after["historyId"]))

        # A refused push is retried (at-least-once).
        self.listener.statuses = [500]
        n = len(self.listener.posts)
        self.deliver(A)
        wait_until(lambda: len(self.listener.acked()) > len([p for p in self.listener.posts[:n]
                                                             if p["status"] < 300]), 15,
                   "the retried push")
        self.assertEqual(self.listener.posts[n]["status"], 500)
        self.assertGreaterEqual(self.ctl("GET", "gmail/pushes")["counts"]["retried"], 1)

        status, _ = self.api("POST", "/stop", ta)
        self.assertEqual(status, 204)

    def test_label_filter(self):
        self.mailbox(A, 3)
        ta = self.token(A)
        self.ok("POST", "/watch", ta, {"topicName": "projects/p/topics/t",
                                       "labelIds": ["STARRED"],
                                       "labelFilterBehavior": "include"})
        self.deliver(A)  # INBOX only: filtered out, never even pending
        mid = self.all_ids(ta)[0][0]
        m = self.ok("POST", f"/messages/{mid}/modify", ta, {"addLabelIds": ["STARRED"]})
        wait_until(lambda: self.listener.acked(), 10, "the STARRED push")
        data = json.loads(base64.b64decode(self.listener.posts[0]["body"]["message"]["data"]))
        self.assertEqual(str(data["historyId"]),
                         self.ok("GET", f"/messages/{m['id']}", ta, format="minimal")
                         ["historyId"])
        self.assertEqual(len(self.ctl("GET", "gmail/pushes")["log"]), 1)


class Quota(FakeGmailCase):

    def spend_until_refused(self, tok, mid, limit=12):
        for _ in range(limit):
            status, msg, data = self.http("GET", f"{U}/messages/{mid}?format=minimal", None,
                                          {"Authorization": "Bearer " + tok})
            if status != 200:
                return status, msg, data
        self.fail("never refused")

    def test_default_is_the_2026_table(self):
        q = self.ctl("GET", "gmail/quota")
        self.assertEqual((q["mode"], q["user_per_min"], q["project_per_min"]),
                         ("new", 6000, 1200000))
        self.assertEqual((q["costs"]["messages.get"], q["costs"]["threads.get"],
                          q["costs"]["history.list"], q["costs"]["messages.send"]),
                         (20, 40, 2, 100))
        q = self.ctl("POST", "gmail/quota", {"mode": "old"})
        self.assertEqual((q["user_per_min"], q["costs"]["messages.get"],
                          q["costs"]["threads.get"]), (15000, 5, 10))

    def test_user_limit_in_both_modes(self):
        self.mailbox(A, 5)
        tok = self.token(A)
        mid = self.all_ids(tok)[0][0]
        self.ctl("POST", "gmail/counters/reset")
        self.ok("GET", f"/messages/{mid}", tok, format="minimal")
        self.assertEqual(self.ctl("GET", "gmail/counters")["units"][A], 20)
        self.assertEqual(self.ctl("GET", "gmail/counters")["sent_429"], 0)

        self.ctl("POST", "gmail/quota", {"mode": "new", "user_per_min": 100})
        status, msg, data = self.spend_until_refused(tok, mid)
        err = self.assert_google_error(status, data, 429, "rateLimitExceeded",
                                       "User-rate limit exceeded.  Retry after ")
        self.assertEqual(err["status"], "RESOURCE_EXHAUSTED")
        self.assertEqual(err["errors"][0]["domain"], "usageLimits")
        self.assertGreaterEqual(int(msg["Retry-After"]), 1)
        c = self.ctl("GET", "gmail/counters")
        self.assertEqual(c["sent_429"], 1)
        self.assertEqual(c["quota_refusals"], {"429 user": 1})
        self.assertLessEqual(c["units"][A], 20 + 100)

        self.ctl("POST", "gmail/quota", {"mode": "old", "user_per_min": 100, "style": "403"})
        self.ctl("POST", "gmail/counters/reset")
        status, msg, data = self.spend_until_refused(tok, mid, 30)
        self.assert_google_error(status, data, 403, "userRateLimitExceeded",
                                 "User Rate Limit Exceeded")
        c = self.ctl("GET", "gmail/counters")
        self.assertEqual(c["units"][A] % 5, 0)
        self.assertGreaterEqual(c["requests"]["messages.get"], 20, "5 units a get: 20 fit")
        self.ctl("POST", "gmail/quota", {"style": "429"})  # the same limit, the newer body
        status, msg, data = self.spend_until_refused(tok, mid, 3)
        self.assert_google_error(status, data, 429, "rateLimitExceeded",
                                 "User-rate limit exceeded.  Retry after ")
        self.assertEqual(self.ctl("GET", "gmail/counters")["sent_429"], 1)

    def test_project_limit(self):
        self.mailbox(A, 5)
        self.mailbox(B, 5)
        ta, tb = self.token(A), self.token(B)
        mid = self.all_ids(ta)[0][0]
        self.ctl("POST", "gmail/quota", {"user_per_min": 0, "project_per_min": 70})
        status, _, data = self.spend_until_refused(ta, mid)
        self.assert_google_error(status, data, 429, "rateLimitExceeded",
                                 "Resource has been exhausted")
        status, data = self.api("GET", "/labels", tb)  # the project's bucket is shared
        self.assertEqual(status, 200, "1 unit still fits")
        self.ctl("POST", "gmail/quota", {"style": "403", "project_per_min": 10})
        status, _, data = self.spend_until_refused(tb, self.all_ids(tb)[0][0])
        self.assert_google_error(status, data, 403, "rateLimitExceeded", "Quota exceeded for "
                                 "quota metric 'Queries'")


class Faults(FakeGmailCase):

    def test_injected_5xx_and_429(self):
        self.mailbox(A, 5)
        tok = self.token(A)
        self.ctl("POST", "gmail/fault", {"kind": "status", "status": 503, "count": 2})
        for _ in range(2):
            status, data = self.api("GET", "/profile", tok)
            self.assert_google_error(status, data, 503, "backendError")
        self.ok("GET", "/profile", tok)
        self.ctl("POST", "gmail/fault", {"kind": "rate"})
        status, data = self.api("GET", "/profile", tok)
        self.assert_google_error(status, data, 429, "rateLimitExceeded")
        c = self.ctl("GET", "gmail/counters")
        self.assertEqual(c["injected"], {"status": 2, "rate": 1})
        self.assertEqual(c["sent_429"], 1)

    def test_latency_and_concurrency_cap(self):
        self.mailbox(A, 5)
        tok = self.token(A)
        self.ctl("POST", "gmail/quota", {"concurrency": 1})
        self.ctl("POST", "gmail/fault", {"kind": "latency", "ms": 3000})
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=self.api("GET", "/profile", tok)))
        t.start()
        wait_until(lambda: self.ctl("GET", "gmail/counters")["inflight"] >= 1, 10,
                   "the slow call in flight")
        status, data = self.api("GET", "/labels", tok)
        self.assert_google_error(status, data, 429, "rateLimitExceeded",
                                 "Too many concurrent requests for user")
        t.join(20)
        self.assertEqual(slow["r"][0], 200)
        c = self.ctl("GET", "gmail/counters")
        self.assertGreaterEqual(c["peak_concurrency"], 2)
        self.assertEqual(c["quota_refusals"], {"429 concurrent": 1})

    def test_expired_and_missing_token(self):
        self.mailbox(A, 5)
        tok = self.token(A)
        self.ok("GET", "/profile", tok)
        self.ctl("POST", "google/expire", {"email": A})
        status, msg, data = self.http("GET", U + "/profile", None,
                                      {"Authorization": "Bearer " + tok})
        err = self.assert_google_error(status, data, 401, "authError", "Invalid Credentials")
        self.assertEqual(err["status"], "UNAUTHENTICATED")
        self.assertEqual(err["errors"][0]["location"], "Authorization")
        self.assertIn('error="invalid_token"', msg["WWW-Authenticate"])
        status, data = self.api("GET", "/profile", None)
        self.assert_google_error(status, data, 401, "required")
        form = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": "gid",
                                       "client_secret": "gsec",
                                       "refresh_token": self.refresh}).encode()
        status, _, fresh = self.http("POST", "/token", form,
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200)
        self.ok("GET", "/profile", fresh["access_token"])
        status, _, data = self.http("GET", f"/gmail/v1/users/{B}/profile", None,
                                    {"Authorization": "Bearer " + fresh["access_token"]})
        self.assertEqual(status, 403, data)


class ShortTokens(FakeGmailCase):
    fake_args = ("--access-ttl", "1", "--gmail-mailbox", f"{A}:7:3", "--quota", "old")

    def test_token_expires_mid_run(self):
        tok = self.token(A)
        self.assertEqual(self.ok("GET", "/profile", tok)["messagesTotal"], 7)
        self.assertEqual(self.ctl("GET", "gmail/quota")["mode"], "old")
        wait_until(lambda: self.api("GET", "/profile", tok)[0] == 401, 10, "the token expiry")


class Generator(FakeGmailCase):

    def test_generator_and_batch(self):
        self.mailbox(A, 4)
        self.mailbox(B, 0)
        ta = self.token(A)
        gid = self.ctl("POST", "gmail/generate", {"users": [A, B], "every_ms": 30,
                                                  "count": 3})["id"]
        wait_until(lambda: self.ok("GET", "/profile", ta)["messagesTotal"] == 7, 15,
                   "three generated messages")
        self.assertEqual(self.ctl("GET", "gmail/mailbox/" + B)["messagesTotal"], 3)
        self.assertEqual(self.ctl("POST", "gmail/generate/stop", {"id": gid})["stopped"], 1)
        newest = self.ok("GET", "/messages", ta, maxResults=1)["messages"][0]["id"]
        meta = self.ok("GET", f"/messages/{newest}", ta, format="metadata",
                       metadataHeaders="X-Ainbox-Fake-Sent-Ms")
        self.assertTrue(meta["payload"]["headers"][0]["value"].isdigit())

        # The batch endpoint: parts answered by Content-ID, each charged.
        self.ctl("POST", "gmail/counters/reset")
        parts = [f"GET {U}/messages/{newest}?format=minimal", f"GET {U}/messages/0000000000000001",
                 f"GET {U}/profile"]
        body = "".join(f"--b\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\n"
                       f"{line} HTTP/1.1\r\n\r\n" for i, line in enumerate(parts)) + "--b--\r\n"
        status, msg, data = self.http("POST", "/batch/gmail/v1", body.encode(),
                                      {"Authorization": "Bearer " + ta,
                                       "Content-Type": "multipart/mixed; boundary=b"}, raw=True)
        self.assertEqual(status, 200)
        boundary = re.search(r"boundary=(\S+)", msg["Content-Type"]).group(1)
        answers = {}
        for part in data.split(b"--" + boundary.encode())[1:-1]:
            cid = re.search(rb"Content-ID: <response-(\d+)>", part).group(1).decode()
            answers[cid] = int(re.search(rb"HTTP/1.1 (\d+)", part).group(1))
        self.assertEqual(answers, {"0": 200, "1": 404, "2": 200})
        self.assertEqual(self.ctl("GET", "gmail/counters")["units"][A], 20 + 20 + 1)
        # Google runs the parts at once: past the concurrency cap (10) they get 429.
        twelve = "".join(f"--b\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\n"
                         f"GET {U}/labels HTTP/1.1\r\n\r\n" for i in range(12)) + "--b--\r\n"
        for parallel, refused in ((True, 2), (False, 0)):
            self.ctl("POST", "gmail/quota", {"batch_parallel": parallel})
            status, _, data = self.http("POST", "/batch/gmail/v1", twelve.encode(),
                                        {"Authorization": "Bearer " + ta,
                                         "Content-Type": "multipart/mixed; boundary=b"},
                                        raw=True)
            self.assertEqual(status, 200)
            self.assertEqual(data.count(b"HTTP/1.1 429"), refused)
            self.assertEqual(data.count(b'"message": "Too many concurrent requests for user", '
                                        b'"errors"'), refused)
        too_many = "".join(f"--b\r\nContent-Type: application/http\r\n\r\nGET {U}/profile "
                           "HTTP/1.1\r\n\r\n" for _ in range(101)) + "--b--\r\n"
        status, _, data = self.http("POST", "/batch/gmail/v1", too_many.encode(),
                                    {"Authorization": "Bearer " + ta,
                                     "Content-Type": "multipart/mixed; boundary=b"})
        self.assertEqual(status, 400, data)


if __name__ == "__main__":
    unittest.main()
