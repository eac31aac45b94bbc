"""The Gmail API v1, as provider-apis.md §1 describes it, over the mailboxes of mailbox.py.

Paths (under the fake's one origin, userId "me" or the signed-in address):
  /gmail/v1/users/{userId}/profile | messages[...] | threads[...] | history | labels[...] |
      drafts[...] | watch | stop
  /upload/gmail/v1/users/{userId}/messages/send | drafts    (uploadType=media, message/rfc822)
  /batch/gmail/v1                                           (multipart/mixed, §1.6)

Every call goes through one pipeline, in this order: an injected fault (latency, 5xx, 429), the
access token (oauth.py's store: unknown or expired is Google's 401), the userId, the per-user
concurrency cap, the per-user and per-project quota (quota.py), then the method. Each step
answers with Google's own error body (§1.5) and is counted (GET /_fake/gmail/counters).
Mailbox changes are pushed to the watch's endpoint by push.py.
"""

import collections
import email
import email.policy
import email.utils
import json
import re
import sys
import threading
import time
import uuid

from ainfake import batch
from ainfake import mailbox as mb
from ainfake.common import Answer
from ainfake.gmail_errors import (GmailError, bad, error_answer, not_found, quota_error,
                                  rfc3339, server_error, unauthenticated)
from ainfake.push import Pusher
from ainfake.quota import Quota

PAGE_DEFAULT, PAGE_MAX = 100, 500
BATCH_MAX = 100
LABELS_PER_CALL = 100
BATCH_IDS_MAX = 1000
GENERATORS_MAX = 64
MSG_ID = re.compile(r"^[0-9a-f]{1,24}$")
FULL_SCOPE = "https://mail.google.com/"
TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")


def _page(query):
    try:
        n = int(query.get("maxResults", PAGE_DEFAULT))
        start = int(query.get("pageToken") or 0)
    except ValueError:
        raise bad("Invalid pageToken or maxResults")
    if n < 1 or start < 0:
        raise bad("Invalid value")
    return min(n, PAGE_MAX), start


# ----------------------------------------------------------------- routes

def _routes():
    """(verb, pattern under users/{userId}/, method name for quota and counters, handler)."""
    r = [("GET", r"profile", "getProfile", "profile"),
         ("GET", r"messages", "messages.list", "messages_list"),
         ("POST", r"messages/send", "messages.send", "messages_send"),
         ("POST", r"messages/batchModify", "messages.batchModify", "batch_modify"),
         ("POST", r"messages/batchDelete", "messages.batchDelete", "batch_delete"),
         ("GET", r"messages/(?P<id>[^/]+)", "messages.get", "messages_get"),
         ("DELETE", r"messages/(?P<id>[^/]+)", "messages.delete", "messages_delete"),
         ("POST", r"messages/(?P<id>[^/]+)/modify", "messages.modify", "messages_modify"),
         ("POST", r"messages/(?P<id>[^/]+)/trash", "messages.trash", "messages_trash"),
         ("POST", r"messages/(?P<id>[^/]+)/untrash", "messages.untrash", "messages_untrash"),
         ("GET", r"messages/(?P<id>[^/]+)/attachments/(?P<aid>[^/]+)",
          "messages.attachments.get", "attachment_get"),
         ("GET", r"threads", "threads.list", "threads_list"),
         ("GET", r"threads/(?P<id>[^/]+)", "threads.get", "threads_get"),
         ("DELETE", r"threads/(?P<id>[^/]+)", "threads.delete", "threads_delete"),
         ("POST", r"threads/(?P<id>[^/]+)/modify", "threads.modify", "threads_modify"),
         ("POST", r"threads/(?P<id>[^/]+)/trash", "threads.trash", "threads_trash"),
         ("POST", r"threads/(?P<id>[^/]+)/untrash", "threads.untrash", "threads_untrash"),
         ("GET", r"history", "history.list", "history_list"),
         ("GET", r"labels", "labels.list", "labels_list"),
         ("POST", r"labels", "labels.create", "labels_create"),
         ("GET", r"labels/(?P<id>[^/]+)", "labels.get", "labels_get"),
         ("GET", r"drafts", "drafts.list", "drafts_list"),
         ("POST", r"drafts", "drafts.create", "drafts_create"),
         ("POST", r"drafts/send", "drafts.send", "drafts_send"),
         ("GET", r"drafts/(?P<id>[^/]+)", "drafts.get", "drafts_get"),
         ("PUT", r"drafts/(?P<id>[^/]+)", "drafts.update", "drafts_update"),
         ("DELETE", r"drafts/(?P<id>[^/]+)", "drafts.delete", "drafts_delete"),
         ("POST", r"watch", "watch", "watch"),
         ("POST", r"stop", "stop", "stop")]
    return [(verb, re.compile(r"^/(?:upload/)?gmail/v1/users/(?P<user>[^/]+)/" + pat + "$"),
             name, handler) for verb, pat, name, handler in r]


ROUTES = _routes()


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.requests = collections.Counter()   # method name -> calls
            self.statuses = collections.Counter()   # HTTP status -> answers
            self.refusals = collections.Counter()   # "429 user", "403 project", ...
            self.units = collections.Counter()      # user -> units charged
            self.injected = collections.Counter()
            self.inflight = collections.Counter()   # user -> requests in flight
            self.inflight_all = self.peak_all = 0
            self.peak_user = 0

    def snapshot(self):
        with self.lock:
            return {"requests": dict(self.requests), "statuses": {str(k): v for k, v in
                                                                   self.statuses.items()},
                    "sent_429": self.statuses.get(429, 0),
                    "quota_refusals": dict(self.refusals),
                    "units": dict(self.units), "units_total": sum(self.units.values()),
                    "injected": dict(self.injected), "peak_concurrency": self.peak_all,
                    "peak_concurrency_user": self.peak_user,
                    "inflight": self.inflight_all}


class Gmail:
    def __init__(self, auth, quota_mode="new", push_url=None, push_token=None,
                 autocreate=25, history_keep=100000, history_keep_s=0, check_scopes=False):
        self.auth = auth  # google's AuthServer: the access tokens
        self.store = mb.Store()
        self.quota = Quota(quota_mode)
        self.pusher = Pusher(push_url, push_token)
        self.counters = Counters()
        self.faults = collections.deque()  # injected faults, consumed in order
        self.fault_lock = threading.Lock()
        self.autocreate = autocreate
        self.history_keep, self.history_keep_s = history_keep, history_keep_s
        self.check_scopes = check_scopes
        self.empty_pages = 0  # list pages to answer empty, with a nextPageToken
        self.publish_denied = False  # watch: Gmail may not publish to the topic (403)
        self.send_limit = 0  # messages.send per user before 429 (0: none)
        self.sends = collections.Counter()
        self.generators = {}
        self.gen_seq = 0

    # ------------------------------------------------------------- mailboxes

    def mailbox(self, addr, create=True):
        with self.store.lock:
            box = self.store.boxes.get(addr.lower())
            if box is None and create:
                box = self.new_mailbox(addr, self.autocreate)
            return box

    def new_mailbox(self, addr, count, seed=0, days=365, keep=None, keep_s=None):
        box = mb.Mailbox(addr.lower(), seed, self.history_keep if keep is None else keep,
                         self.history_keep_s if keep_s is None else keep_s)
        box.synthesize(count, days)
        box.on_change = lambda b, hid, labels: self.pusher.changed(b.email, hid, labels)
        with self.store.lock:
            old = self.store.boxes.get(box.email)
            if old:
                for m in old.messages.values():
                    self.store.forget(old, m)
            self.store.boxes[box.email] = box
        return box

    # ------------------------------------------------------------- the pipeline

    def serve(self, req):
        if req.path in ("/batch/gmail/v1", "/batch"):
            return self.batch(req)
        for verb, pattern, name, handler in ROUTES:
            m = pattern.match(req.path)
            if m and verb == req.method:
                return self.call(req, name, getattr(self, handler), m.groupdict())
        return error_answer(GmailError(404, "notFound", "Not Found"))

    def call(self, req, name, handler, args, batch_slot=0):
        c = self.counters
        with c.lock:
            c.requests[name] += 1
            c.inflight_all += 1
            c.peak_all = max(c.peak_all, c.inflight_all)
        try:
            answer = self._call(req, name, handler, args, batch_slot)
        except GmailError as e:
            answer = error_answer(e, e.headers)
        except Exception as e:  # noqa: BLE001 - the fake's own bug: a 500, counters kept right
            sys.stderr.write(f"fake gmail: {name}: {e!r}\n")
            answer = error_answer(GmailError(500, "backendError", "Backend Error"))
        with c.lock:
            c.inflight_all -= 1
            c.statuses[answer.status] += 1
            if getattr(req, "gmail_counted", False):
                c.inflight[req.gmail_user] -= 1
        return answer

    def _call(self, req, name, handler, args, batch_slot):
        delay_s = self._fault()
        grant = self.auth.grant_for(req.bearer() or "")
        if not grant:
            raise unauthenticated(bool(req.bearer()))
        addr = grant.identity.email.lower()
        if args["user"] not in ("me", addr) and args["user"].lower() != addr:
            raise GmailError(403, "forbidden", f"Delegation denied for {addr}")
        if self.check_scopes and name in ("messages.delete", "messages.batchDelete",
                                          "threads.delete") and \
                FULL_SCOPE not in (grant.scope or "").split():
            raise GmailError(403, "insufficientPermissions", "Insufficient Permission")
        req.gmail_user = addr
        c = self.counters
        if not self.quota.batch_parallel:
            batch_slot = 0
        with c.lock:
            cap = self.quota.concurrency
            if cap and c.inflight[addr] + batch_slot >= cap:
                over = True
            else:
                over = False
                c.inflight[addr] += 1
                req.gmail_counted = True
                c.peak_user = max(c.peak_user, c.inflight[addr] + batch_slot)
        if over:
            self._refused("429 concurrent")
            raise quota_error("concurrent", "429", 0)
        units, refused = self.quota.charge(addr, name)
        if refused:
            kind, wait_s = refused
            style = self.quota.style
            e = quota_error(kind, style, wait_s)
            self._refused(f"{e.status} {kind}")
            if self.quota.retry_after and e.status == 429:
                e.headers = {"Retry-After": str(max(1, int(wait_s + 0.999)))}
            raise e
        with c.lock:
            c.units[addr] += units
        if delay_s:  # a slow answer: the call is in flight (and counted) meanwhile
            time.sleep(delay_s)
        box = self.mailbox(addr)
        with self.store.lock:
            return handler(req, box, args)

    def _empty_page(self):
        """True for an injected empty page: no items but a nextPageToken (provider-apis.md §0
        item 10: clients must keep paging)."""
        with self.fault_lock:
            if self.empty_pages > 0:
                self.empty_pages -= 1
                with self.counters.lock:
                    self.counters.injected["empty_page"] += 1
                return True
        return False

    def _refused(self, what):
        with self.counters.lock:
            self.counters.refusals[what] += 1

    def _fault(self):
        """Raises the next injected failure, or returns the seconds to delay the answer."""
        with self.fault_lock:
            fault = self.faults.popleft() if self.faults else None
        if not fault:
            return 0
        kind = fault["kind"]
        with self.counters.lock:
            self.counters.injected[kind] += 1
        if kind == "latency":
            return min(float(fault.get("ms", 1000)), 120000) / 1000.0
        if kind == "status":
            raise server_error(int(fault.get("status", 503)))
        elif kind == "rate":
            e = quota_error(fault.get("reason", "user"), fault.get("style", self.quota.style),
                            float(fault.get("wait_s", 1)))
            if e.status == 429:
                e.headers = {"Retry-After": str(int(fault.get("wait_s", 1)))}
            raise e
        return 0

    # ------------------------------------------------------------- helpers

    def _json(self, req):
        if not req.body:
            return {}
        try:
            body = json.loads(req.body)
        except ValueError:
            raise GmailError(400, "parseError", "Invalid JSON payload received.")
        if not isinstance(body, dict):
            raise GmailError(400, "badRequest", "Invalid JSON payload received.")
        return body

    def _msg(self, box, mid):
        if not MSG_ID.match(mid or ""):
            raise bad("Invalid id value")
        msg = box.messages.get(mid)
        if not msg:
            raise not_found()
        return msg

    def _labels(self, box, body, key):
        ids = body.get(key) or []
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise bad(f"Invalid value for {key}")
        if len(ids) > LABELS_PER_CALL:
            raise bad(f"Too many labels in {key}")
        for lid in ids:
            if not box.label_ok(lid) or lid in mb.FIXED_LABELS:
                raise bad(f"Invalid label: {lid}")
        return ids

    def _format(self, req):
        fmt = req.query.get("format", "full").lower()
        if fmt not in ("minimal", "metadata", "full", "raw"):
            raise bad(f"Invalid value at 'format' ({fmt})")
        return fmt

    def message_json(self, box, msg, fmt, wanted=None):
        out = msg.ref()
        out.update(snippet=self._snippet(box, msg), sizeEstimate=self._size(box, msg),
                   historyId=str(msg.history_id), internalDate=str(msg.internal_ms))
        if fmt == "minimal":
            return out
        p = self.store.parsed(box, msg)
        if fmt == "raw":
            out["raw"] = mb.b64url(p.raw)
        elif fmt == "metadata":
            want = {h.lower() for h in wanted or ()}
            headers = [h for h in mb.headers_of(p.msg) if not want or h["name"].lower() in want]
            out["payload"] = {"partId": "", "mimeType": p.msg.get_content_type(),
                              "filename": "", "headers": headers, "body": {"size": 0}}
        else:
            out["payload"] = p.payload(msg.id)
        return out

    def _snippet(self, box, msg):
        if msg.raw is None and msg.recipe is not None:  # cheap: from the recipe's text
            return mb.snippet_escape(" ".join(mb._text(msg.recipe).split())[:160].rstrip())
        p = self.store.parsed(box, msg)
        return p.snippet

    def _size(self, box, msg):
        if msg.size is None:  # rendering is enough, parsing is the dear part
            msg.size = len(box.raw_of(msg))
        return msg.size

    def _matching(self, box, req):
        """Messages matching labelIds (all of them), q and includeSpamTrash, newest first."""
        label_ids = req.multi.get("labelIds", [])
        q = req.query.get("q", "")
        names = {name.lower(): lid for lid, name in box.user_labels.items()}
        try:
            pred = mb.compile_query(q, names)
        except ValueError as e:
            raise bad(f"Invalid query: {e}")
        spam_trash = req.query.get("includeSpamTrash", "false").lower() == "true" or \
            any(x in label_ids for x in ("SPAM", "TRASH")) or \
            re.search(r"\bin:(trash|spam|anywhere)\b", q.lower())
        out = [m for m in box.messages.values()
               if all(lid in m.labels for lid in label_ids) and
               (spam_trash or not (m.labels & {"SPAM", "TRASH"})) and pred(m)]
        out.sort(key=lambda m: (m.internal_ms, m.id), reverse=True)
        return out

    # ------------------------------------------------------------- profile, messages

    def profile(self, req, box, args):
        return Answer(200, {"emailAddress": box.email, "messagesTotal": len(box.messages),
                            "threadsTotal": len(box.threads), "historyId": str(box.history_id)})

    def messages_list(self, req, box, args):
        n, start = _page(req.query)
        hits = self._matching(box, req)
        if self._empty_page():
            return Answer(200, {"nextPageToken": str(start), "resultSizeEstimate": len(hits)})
        body = {}
        page = hits[start:start + n]
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + n < len(hits):
            body["nextPageToken"] = str(start + n)
        body["resultSizeEstimate"] = len(hits)
        return Answer(200, body)

    def messages_get(self, req, box, args):
        msg = self._msg(box, args["id"])
        return Answer(200, self.message_json(box, msg, self._format(req),
                                             req.multi.get("metadataHeaders")))

    def attachment_get(self, req, box, args):
        msg = self._msg(box, args["id"])
        ref = mb.parse_attachment_id(args["aid"])
        if not ref or ref[0] != msg.id:
            raise bad("Invalid attachment token")
        data = self.store.parsed(box, msg).parts.get(ref[1])
        if data is None:
            raise not_found()
        return Answer(200, {"attachmentId": args["aid"], "size": len(data),
                            "data": mb.b64url(data)})

    def messages_modify(self, req, box, args):
        msg = self._msg(box, args["id"])
        body = self._json(req)
        add, remove = self._labels(box, body, "addLabelIds"), \
            self._labels(box, body, "removeLabelIds")
        box.change_labels(msg, add, remove)
        return Answer(200, msg.ref())

    def batch_modify(self, req, box, args):
        body = self._json(req)
        ids = body.get("ids") or []
        if not isinstance(ids, list) or not ids:
            raise bad("No message ids specified")
        if len(ids) > BATCH_IDS_MAX:
            raise bad(f"Too many ids: at most {BATCH_IDS_MAX}")
        add, remove = self._labels(box, body, "addLabelIds"), \
            self._labels(box, body, "removeLabelIds")
        if set(add) & set(remove):
            raise bad("Label cannot be both added and removed")
        for mid in ids:
            if not isinstance(mid, str) or not MSG_ID.match(mid):
                raise bad("Invalid id value")
        for mid in ids:  # unknown ids are skipped, as Gmail does
            msg = box.messages.get(mid)
            if msg:
                box.change_labels(msg, add, remove)
        return Answer(204, b"", "text/html")

    def batch_delete(self, req, box, args):
        ids = self._json(req).get("ids") or []
        if not isinstance(ids, list) or len(ids) > BATCH_IDS_MAX:
            raise bad("Invalid ids")
        for mid in ids:
            msg = box.messages.get(mid) if isinstance(mid, str) else None
            if msg:
                box.delete(msg)
                self.store.forget(box, msg)
        return Answer(204, b"", "text/html")

    def messages_trash(self, req, box, args):
        msg = self._msg(box, args["id"])
        box.trash(msg)
        return Answer(200, msg.ref())

    def messages_untrash(self, req, box, args):
        msg = self._msg(box, args["id"])
        box.untrash(msg)
        return Answer(200, msg.ref())

    def messages_delete(self, req, box, args):
        msg = self._msg(box, args["id"])
        box.delete(msg)
        self.store.forget(box, msg)
        return Answer(204, b"", "text/html")

    # ------------------------------------------------------------- send and drafts

    def _raw_from(self, req, body, key_path):
        """The message bytes of a send or draft: the upload body or the JSON's raw."""
        if req.path.startswith("/upload/"):
            if req.query.get("uploadType", "media") != "media":
                raise bad("Only uploadType=media is faked")
            if not req.body:
                raise bad("Media upload has no content")
            return req.body
        node = body
        for k in key_path:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, str) or not node:
            raise bad("'raw' RFC822 payload message string or uploading message via /upload/* "
                      "URL required")
        try:
            return mb.b64url_decode(node)
        except ValueError:
            raise bad("Invalid value for ByteString: raw")

    def _outgoing(self, box, raw, need_recipients=True):
        """Parses a message to send: Gmail fills From, Date, Message-ID and drops Bcc."""
        parsed = email.message_from_bytes(raw, policy=email.policy.SMTP)
        rcpts = []
        for h in ("To", "Cc", "Bcc"):
            for v in parsed.get_all(h) or []:
                pairs = email.utils.getaddresses([str(v)])
                if any("@" not in a for _, a in pairs if a) or not any(a for _, a in pairs):
                    raise bad(f"Invalid {h} header")
                rcpts += [a.lower() for _, a in pairs if a]
        if need_recipients and not rcpts:
            raise bad("Recipient address required")
        if "From" not in parsed:
            parsed["From"] = box.email
        if "Date" not in parsed:
            parsed["Date"] = email.utils.formatdate(usegmt=True)
        if "Message-ID" not in parsed:
            parsed["Message-ID"] = f"<{uuid.uuid4().hex}@fake.ainbox.test>"
        return parsed, rcpts

    def _send(self, box, parsed, rcpts, thread_id, msg=None):
        """Stores the sent copy (or turns a draft into one) and delivers a copy to every
        recipient with a mailbox here. Returns the sent Msg."""
        if self.send_limit:
            self.sends[box.email] += 1
            if self.sends[box.email] > self.send_limit:
                raise GmailError(429, "rateLimitExceeded", "User-rate limit exceeded.  Retry "
                                 "after " + rfc3339(time.time() + 86400), domain="usageLimits")
        del parsed["Bcc"]
        raw = _bytes(parsed)
        to_self = box.email in rcpts
        if msg is None:
            labels = {"SENT", "INBOX", "UNREAD"} if to_self else {"SENT"}
            msg = box.add_raw(raw, labels, thread_id)
        else:  # drafts.send: the draft's message becomes the sent one
            msg.raw = raw
            self.store.forget(box, msg)
            box.change_labels(msg, ["SENT"] + (["INBOX", "UNREAD"] if to_self else []),
                              ["DRAFT"])
            for did, mid in list(box.drafts.items()):
                if mid == msg.id:
                    del box.drafts[did]
        stamp = str(int(time.time() * 1000))
        for rcpt in sorted(set(rcpts) - {box.email}):
            other = self.store.boxes.get(rcpt)
            if other:
                copy = email.message_from_bytes(raw, policy=email.policy.SMTP)
                copy[mb.SENT_MS_HEADER] = stamp
                other.add_raw(_bytes(copy), {"INBOX", "UNREAD", "CATEGORY_PERSONAL"})
        return msg

    def messages_send(self, req, box, args):
        body = {} if req.path.startswith("/upload/") else self._json(req)
        parsed, rcpts = self._outgoing(box, self._raw_from(req, body, ["raw"]))
        msg = self._send(box, parsed, rcpts, body.get("threadId") or req.query.get("threadId"))
        return Answer(200, msg.ref())

    def _draft_json(self, box, did, fmt=None):
        msg = box.messages[box.drafts[did]]
        return {"id": did, "message": self.message_json(box, msg, fmt) if fmt else msg.ref()}

    def _draft(self, box, did):
        if did not in box.drafts or box.drafts[did] not in box.messages:
            raise not_found()
        return did

    def drafts_list(self, req, box, args):
        n, start = _page(req.query)
        ids = sorted(box.drafts, key=lambda d: box.messages[box.drafts[d]].internal_ms,
                     reverse=True)
        body = {}
        if ids[start:start + n]:
            body["drafts"] = [{"id": d, "message": {"id": box.drafts[d], "threadId":
                                                    box.messages[box.drafts[d]].thread_id}}
                              for d in ids[start:start + n]]
        if start + n < len(ids):
            body["nextPageToken"] = str(start + n)
        body["resultSizeEstimate"] = len(ids)
        return Answer(200, body)

    def drafts_create(self, req, box, args):
        body = {} if req.path.startswith("/upload/") else self._json(req)
        parsed, _ = self._outgoing(box, self._raw_from(req, body, ["message", "raw"]), False)
        thread = (body.get("message") or {}).get("threadId")
        msg = box.add_raw(_bytes(parsed), {"DRAFT"}, thread)
        box.next_draft += box.rng.randrange(1, 1 << 30)
        did = f"r{box.next_draft}"
        box.drafts[did] = msg.id
        return Answer(200, self._draft_json(box, did))

    def drafts_get(self, req, box, args):
        did = self._draft(box, args["id"])
        return Answer(200, self._draft_json(box, did, self._format(req)))

    def drafts_update(self, req, box, args):
        did = self._draft(box, args["id"])
        body = {} if req.path.startswith("/upload/") else self._json(req)
        parsed, _ = self._outgoing(box, self._raw_from(req, body, ["message", "raw"]), False)
        old = box.messages[box.drafts[did]]
        # The draft keeps its id; its message is replaced (a new message id).
        msg = box.add_raw(_bytes(parsed), {"DRAFT"}, old.thread_id)
        box.delete(old)
        self.store.forget(box, old)
        box.drafts[did] = msg.id
        return Answer(200, self._draft_json(box, did))

    def drafts_delete(self, req, box, args):
        did = self._draft(box, args["id"])
        msg = box.messages[box.drafts[did]]
        box.delete(msg)
        self.store.forget(box, msg)
        return Answer(204, b"", "text/html")

    def drafts_send(self, req, box, args):
        body = self._json(req)
        did = self._draft(box, body.get("id") or "")
        msg = box.messages[box.drafts[did]]
        if (body.get("message") or {}).get("raw"):
            raw = self._raw_from(req, body, ["message", "raw"])
        else:
            raw = box.raw_of(msg)
        parsed, rcpts = self._outgoing(box, raw)
        msg = self._send(box, parsed, rcpts, msg.thread_id, msg=msg)
        return Answer(200, msg.ref())

    # ------------------------------------------------------------- threads

    def _thread(self, box, tid):
        if not MSG_ID.match(tid or ""):
            raise bad("Invalid id value")
        ids = box.threads.get(tid)
        if not ids:
            raise not_found()
        return [box.messages[i] for i in ids]

    def threads_list(self, req, box, args):
        n, start = _page(req.query)
        seen, order = set(), []
        for m in self._matching(box, req):
            if m.thread_id not in seen:
                seen.add(m.thread_id)
                order.append(m.thread_id)
        body = {}
        page = order[start:start + n]
        if page:
            out = []
            for tid in page:
                last = box.messages[box.threads[tid][-1]]
                hid = max(box.messages[i].history_id for i in box.threads[tid])
                out.append({"id": tid, "snippet": self._snippet(box, last),
                            "historyId": str(hid)})
            body["threads"] = out
        if start + n < len(order):
            body["nextPageToken"] = str(start + n)
        body["resultSizeEstimate"] = len(order)
        return Answer(200, body)

    def threads_get(self, req, box, args):
        msgs = self._thread(box, args["id"])
        fmt = self._format(req)
        wanted = req.multi.get("metadataHeaders")
        return Answer(200, {"id": args["id"],
                            "historyId": str(max(m.history_id for m in msgs)),
                            "messages": [self.message_json(box, m, fmt, wanted) for m in msgs]})

    def _thread_answer(self, box, tid, msgs):
        return Answer(200, {"id": tid, "historyId": str(max(m.history_id for m in msgs)),
                            "messages": [m.ref() for m in msgs]})

    def threads_modify(self, req, box, args):
        msgs = self._thread(box, args["id"])
        body = self._json(req)
        add, remove = self._labels(box, body, "addLabelIds"), \
            self._labels(box, body, "removeLabelIds")
        for m in msgs:
            box.change_labels(m, add, remove)
        return self._thread_answer(box, args["id"], msgs)

    def threads_trash(self, req, box, args):
        msgs = self._thread(box, args["id"])
        for m in msgs:
            box.trash(m)
        return self._thread_answer(box, args["id"], msgs)

    def threads_untrash(self, req, box, args):
        msgs = self._thread(box, args["id"])
        for m in msgs:
            box.untrash(m)
        return self._thread_answer(box, args["id"], msgs)

    def threads_delete(self, req, box, args):
        for m in self._thread(box, args["id"]):
            box.delete(m)
            self.store.forget(box, m)
        return Answer(204, b"", "text/html")

    # ------------------------------------------------------------- history

    def history_list(self, req, box, args):
        start = req.query.get("startHistoryId")
        if not start:
            raise GmailError(400, "invalidArgument", "Missing required parameter: "
                             "startHistoryId" if start is None else "Invalid startHistoryId")
        try:
            start = int(start)
        except ValueError:
            raise bad(f"Invalid value at 'start_history_id' (TYPE_UINT64), \"{start}\"")
        types = set()
        for t in req.multi.get("historyTypes", []):
            name = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                    "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}.get(t)
            if not name:
                raise bad(f"Invalid value at 'history_types' ({t})")
            types.add(name)
        label_id = req.query.get("labelId")
        n, _ = _page({"maxResults": req.query.get("maxResults", PAGE_DEFAULT)})
        after = start
        if req.query.get("pageToken"):
            try:
                after = max(start, int(req.query["pageToken"]))
            except ValueError:
                raise bad("Invalid pageToken")
        recs = box.history_since(start, types, label_id)
        if recs is None:
            raise not_found()
        recs = [r for r in recs if r["id"] > after]
        if self._empty_page():
            return Answer(200, {"historyId": str(box.history_id), "nextPageToken": str(after)})
        body = {}
        if recs[:n]:
            body["history"] = [self._history_json(r) for r in recs[:n]]
        if len(recs) > n:
            body["nextPageToken"] = str(recs[n - 1]["id"])
        body["historyId"] = str(box.history_id)
        return Answer(200, body)

    @staticmethod
    def _history_json(rec):
        ref = {"id": rec["message"]["id"], "threadId": rec["message"]["threadId"]}
        entry = {"message": rec["message"]}
        if "labelIds" in rec:
            entry["labelIds"] = rec["labelIds"]
        if rec["type"] == "messagesDeleted":
            entry = {"message": ref}
        return {"id": str(rec["id"]), "messages": [ref], rec["type"]: [entry]}

    # ------------------------------------------------------------- labels

    def labels_list(self, req, box, args):
        ids = mb.SYSTEM_LABELS + sorted(box.user_labels)
        return Answer(200, {"labels": [box.label_json(lid) for lid in ids]})

    def labels_get(self, req, box, args):
        if not box.label_ok(args["id"]):
            raise not_found()
        return Answer(200, box.label_json(args["id"], counts=True))

    def labels_create(self, req, box, args):
        name = self._json(req).get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad("Invalid label name")
        if name.upper() in mb.SYSTEM_LABELS or \
                name.lower() in (n.lower() for n in box.user_labels.values()):
            raise GmailError(409, "duplicate", "Label name exists or conflicts")
        return Answer(200, box.label_json(box.create_label(name)))

    # ------------------------------------------------------------- watch

    def watch(self, req, box, args):
        body = self._json(req)
        topic = body.get("topicName")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            raise bad("Invalid topicName does not match projects/SOME-ANGLE-PROJECT/topics/*")
        labels = body.get("labelIds") or []
        if not isinstance(labels, list) or not all(box.label_ok(x) for x in labels):
            raise bad("Invalid label in labelIds")
        behavior = (body.get("labelFilterBehavior") or body.get("labelFilterAction") or
                    "include").lower()
        if behavior not in ("include", "exclude"):
            raise bad(f"Invalid value at 'label_filter_behavior' ({behavior})")
        if self.publish_denied:
            raise GmailError(403, "forbidden", f"Error sending test message to Cloud PubSub "
                             f"{topic} : User not authorized to perform this action.")
        expiration = self.pusher.watch(box.email, topic, labels, behavior)
        return Answer(200, {"historyId": str(box.history_id), "expiration": str(expiration)})

    def stop(self, req, box, args):
        self.pusher.stop(box.email)
        return Answer(204, b"", "text/html")

    # ------------------------------------------------------------- batch (§1.6)

    def batch(self, req):
        ctype = req.headers.get("Content-Type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if req.method != "POST" or not ctype.startswith("multipart/mixed") or not m:
            return error_answer(bad("Batch requests need multipart/mixed with a boundary"))
        parts = batch.split_multipart(req.body, m.group(1).encode())
        if len(parts) > BATCH_MAX:
            return error_answer(bad(f"Too many requests in batch: at most {BATCH_MAX}"))
        out = []
        boundary = "batch_" + uuid.uuid4().hex
        for slot, part in enumerate(parts):
            inner, cid = batch.inner_request(part, req)
            if inner is None:
                answer = error_answer(bad("Malformed batch part"))
            else:
                answer = self._batch_one(inner, slot)
            out.append(batch.http_part(answer, cid))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p for p in out) + \
            b"--" + boundary.encode() + b"--\r\n"
        return Answer(200, body, f"multipart/mixed; boundary={boundary}")

    def _batch_one(self, inner, slot):
        for verb, pattern, name, handler in ROUTES:
            m = pattern.match(inner.path)
            if m and verb == inner.method:
                # The parts run at once at Google: part k sees k others in flight.
                return self.call(inner, name, getattr(self, handler), m.groupdict(), slot)
        return error_answer(GmailError(404, "notFound", "Not Found"))

    # ------------------------------------------------------------- generators

    def start_generator(self, users, every_ms, count=0):
        if len(self.generators) >= GENERATORS_MAX:
            raise ValueError("too many generators")
        with self.store.lock:
            self.gen_seq += 1
            gid = str(self.gen_seq)
        stop = threading.Event()
        state = {"users": list(users), "every_ms": every_ms, "count": count, "delivered": 0,
                 "stop": stop}
        self.generators[gid] = state

        def run():
            rounds = 0
            while not stop.wait(every_ms / 1000.0):
                for u in state["users"]:
                    try:
                        self.deliver(u)
                        state["delivered"] += 1
                    except Exception as e:  # noqa: BLE001 - a generator never dies silently
                        state["error"] = repr(e)
                rounds += 1
                if count and rounds >= count:
                    break
        threading.Thread(target=run, daemon=True, name=f"gen{gid}").start()
        return gid

    def stop_generators(self, gid=None):
        stopped = 0
        for k in [gid] if gid else list(self.generators):
            state = self.generators.pop(k, None)
            if state:
                state["stop"].set()
                stopped += 1
        return stopped

    def deliver(self, addr, subject=None, sender=None, labels=None):
        box = self.mailbox(addr)
        with self.store.lock:
            msg = box.deliver(subject, sender, labels=labels)
            return {"id": msg.id, "threadId": msg.thread_id, "historyId": str(msg.history_id),
                    "sentMs": int(self.store.parsed(box, msg).msg[mb.SENT_MS_HEADER])}

    def reset(self):
        self.stop_generators()
        with self.store.lock:
            self.store.boxes.clear()
            self.store.cache.clear()
        with self.fault_lock:
            self.faults.clear()
        self.counters.reset()
        self.pusher.reset()
        self.sends.clear()
        self.empty_pages, self.publish_denied = 0, False
        self.quota.set_mode(self.quota.mode)


def _bytes(parsed):
    """A client's message serialized again; one the generator cannot write is refused."""
    try:
        return parsed.as_bytes()
    except (ValueError, LookupError, TypeError, UnicodeError) as e:
        raise bad(f"Invalid RFC822 message: {e}")
