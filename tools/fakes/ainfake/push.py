"""users.watch state and the Pub/Sub push deliveries it causes.

After a watched mailbox changes, Pub/Sub POSTs to the push endpoint (provider-apis.md §1.4):

  {"message": {"data": base64(JSON {"emailAddress", "historyId"}), "messageId", "message_id",
               "publishTime", "publish_time"},
   "subscription": "projects/P/subscriptions/S"}

(Pub/Sub writes the message fields twice, camelCase and snake_case; historyId is a number.)
At most one notification per second per user: within the second, changes are coalesced into
one carrying the newest historyId, sent when the second is over ("coalesce", the default), or
dropped as Google's guide says it may ("drop"). The endpoint acknowledges with 102 or 2xx;
anything else, or no answer, is retried with backoff (at-least-once: duplicates are possible)
up to RETRIES times.

Authentication, as a Pub/Sub push subscription can do it: a shared token in the push URL's query
(`token=...`, set with --push-token or the control API), and optionally a fixed bearer token in
`Authorization` (Pub/Sub sends a Google-signed OIDC JWT there; the fake sends the configured
string as is, so a receiver can compare it but not verify a signature).

Faults: drop the next K notifications, duplicate the next K, delay every delivery by D ms.
One sender thread; the pending map has one entry per watched user, so it is bounded by them.
"""

import base64
import collections
import datetime
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

RETRIES = 5
TIMEOUT_S = 5
LOG_MAX = 500
WATCH_S = 7 * 86400


class Watch:
    def __init__(self, topic, label_ids, behavior):
        self.topic, self.label_ids, self.behavior = topic, set(label_ids or ()), behavior
        self.expiration_ms = int((time.time() + WATCH_S) * 1000)

    def wants(self, labels):
        if time.time() * 1000 > self.expiration_ms:
            return False
        if not self.label_ids:
            return True
        hit = bool(self.label_ids & set(labels))
        return hit if self.behavior != "exclude" else not hit


class Pusher:
    def __init__(self, url=None, token=None, bearer=None, subscription=None):
        self.lock = threading.Condition()
        self.url, self.token, self.bearer = url, token, bearer
        self.subscription = subscription
        self.excess = "coalesce"
        self.watches = {}   # email -> Watch
        self.pending = {}   # email -> {"hid", "due", "attempt"}
        self.last = {}      # email -> monotonic time of the last send
        self.drop_next = self.dup_next = 0
        self.delay_ms = 0
        self.seq = int(time.time()) * 1000
        self.log = collections.deque(maxlen=LOG_MAX)
        self.counts = collections.Counter()
        self.stopping = False
        threading.Thread(target=self._run, daemon=True, name="push").start()

    # ------------------------------------------------------------- watch

    def watch(self, email, topic, label_ids, behavior):
        with self.lock:
            w = self.watches[email] = Watch(topic, label_ids, behavior)
            return w.expiration_ms

    def stop(self, email):
        with self.lock:
            self.watches.pop(email, None)
            self.pending.pop(email, None)

    def changed(self, email, history_id, labels):
        """A mailbox changed: schedule a notification if it is watched and the change passes
        the watch's label filter."""
        with self.lock:
            w = self.watches.get(email)
            if not w or not w.wants(labels):
                return
            now = time.monotonic()
            due = max(now, self.last.get(email, 0) + 1.0)
            p = self.pending.get(email)
            if p:
                p["hid"] = max(p["hid"], history_id)
                self.counts["coalesced"] += 1
                return
            if due > now and self.excess == "drop":
                self.counts["rate_dropped"] += 1
                return
            self.pending[email] = {"hid": history_id, "due": due + self.delay_ms / 1000.0,
                                   "attempt": 0}
            self.lock.notify()

    def reset(self):
        with self.lock:
            self.watches.clear()
            self.pending.clear()
            self.last.clear()
            self.drop_next = self.dup_next = self.delay_ms = 0
            self.log.clear()
            self.counts.clear()

    # ------------------------------------------------------------- sending

    def _run(self):
        while True:
            with self.lock:
                while True:
                    now = time.monotonic()
                    ready = [(p["due"], e) for e, p in self.pending.items() if p["due"] <= now]
                    if ready:
                        email = min(ready)[1]
                        job = self.pending.pop(email)
                        self.last[email] = now
                        break
                    wait = min((p["due"] for p in self.pending.values()), default=now + 1) - now
                    self.lock.wait(max(0.01, min(wait, 1.0)))
                if self.drop_next > 0:
                    self.drop_next -= 1
                    self.counts["dropped"] += 1
                    self.log.append({"email": email, "historyId": job["hid"],
                                     "status": "dropped", "t": time.time()})
                    continue
                copies = 2 if self.dup_next > 0 else 1
                self.dup_next = max(0, self.dup_next - 1)
                url, token, bearer = self.url, self.token, self.bearer
                sub = self.subscription or self._subscription(email)
            for _ in range(copies):
                ok = self._post(url, token, bearer, sub, email, job["hid"])
            if not ok:
                self._retry(email, job)

    def _subscription(self, email):
        w = self.watches.get(email)
        project = w.topic.split("/")[1] if w else "ainbox-fake"
        return f"projects/{project}/subscriptions/ainbox-push"

    def _retry(self, email, job):
        with self.lock:
            if job["attempt"] + 1 >= RETRIES:
                self.counts["failed"] += 1
                return
            p = self.pending.get(email)
            if p:  # a newer change is pending anyway: it carries a newer historyId
                p["hid"] = max(p["hid"], job["hid"])
                return
            self.pending[email] = {"hid": job["hid"], "attempt": job["attempt"] + 1,
                                   "due": time.monotonic() + 0.5 * 2 ** job["attempt"]}
            self.counts["retried"] += 1
            self.lock.notify()

    def _post(self, url, token, bearer, subscription, email, history_id):
        if not url:
            with self.lock:
                self.counts["no_url"] += 1
            return True
        with self.lock:
            self.seq += 1
            mid = str(self.seq)
        now = datetime.datetime.now(datetime.timezone.utc)
        when = now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)
        data = base64.b64encode(json.dumps({"emailAddress": email, "historyId": history_id})
                                .encode()).decode()
        body = {"message": {"data": data, "messageId": mid, "message_id": mid,
                            "publishTime": when, "publish_time": when},
                "subscription": subscription}
        if token:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"token": token})
        headers = {"Content-Type": "application/json", "User-Agent": "APIs-Google; (+https://"
                   "developers.google.com/webmasters/APIs-Google.html)"}
        if bearer:
            headers["Authorization"] = "Bearer " + bearer
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        status = 0
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as res:
                status = res.status
        except urllib.error.HTTPError as e:
            status = e.code
        except (OSError, ValueError):
            status = 0
        ok = status == 102 or 200 <= status < 300
        with self.lock:
            self.counts["sent"] += 1
            self.counts["acked" if ok else "nacked"] += 1
            self.log.append({"email": email, "historyId": history_id, "status": status,
                             "messageId": mid, "t": time.time()})
        return ok
