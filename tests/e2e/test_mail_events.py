"""A mail write announces itself: store change -> invalidation -> user event,
one flow owned by the mail writer (the cache actor's MAIL_APPLY), with real
PostgreSQL and Redis, one process per role (broker, events, cache, edge).

- A new message reaches its owner's SSE stream as `new_email` with the
  original's shape, a flag change as `email_updated`, a delete as
  `email_deleted`, each followed by `unread_count_updated` with the inbox's
  counts; another user's stream gets none of it.
- A writer that dies right after its commit (its transaction committed, its
  announcement never ran, then `kill -9`), or after its commit and
  invalidation while its publish waits on a frozen events actor (both
  killed): after a restart the relay invalidates the caches and publishes
  the events, and an SSE client that resumes with Last-Event-ID gets them.
- An outbox row announced twice (the writer published, then died before
  deleting it) reaches the user once.
- A write retried with the same key is applied once and answered
  `replayed: true` (also when the first was answered TIMEOUT while the
  store was held up, and committed later); the key reused for other
  changes is CONFLICT.
"""

import http.client
import json
import signal
import subprocess
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until
from ainbox_sse import SseReader

DEV_TOKEN = "test-dev-token"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

NEW_EMAIL_KEYS = {"id", "threadId", "messageId", "from", "to", "subject", "snippet", "preview",
                  "date", "labelIds", "isRead", "isStarred", "hasAttachment"}


def message(mid, thread, ms, labels=("INBOX",), unread=True):
    return {"op": "upsert_message", "id": mid, "thread_id": thread, "sent_at_ms": ms,
            "labels": list(labels), "unread": unread, "subject": f"subject {mid}",
            "from_name": "Ann Example", "from_addr": "ann@example.com",
            "to": ["me@example.com"], "snippet": f"snippet {mid}",
            "header_message_id": f"<{mid}@example.com>"}


class MailEventsCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()
        self.pg = self.start_migrated_postgres()
        self.pg.psql("insert into users (id, email) values (1, 'a@x'), (2, 'b@x');"
                     "insert into accounts (id, user_id, provider, address) values "
                     "(1, 1, 'gmail', 'a@x'), (2, 2, 'gmail', 'b@x')")
        broker_port, = free_ports(1)
        self.env = self.base_env(broker_port, AINBOX_DEV_TOKEN=DEV_TOKEN,
                                 REDIS_URL=self.redis.url, DATABASE_URL=self.pg.url,
                                 AINBOX_CACHE_OUTBOX_AGE_MS=500, CACHE_TTL=600,
                                 AINBOX_CACHE_L1_TTL_MS=0)
        self.port = int(self.env["HTTP_PORT"])
        self.client = proto.Client(self.env["AINBOX_BROKER"])
        self.addCleanup(self.client.close)
        self.spawn("broker", ["broker"], self.env)
        self.spawn("events", ["actor", "events"], self.env)
        self.cache = self.start_cache("cache")
        self.spawn("edge", ["edge"], self.env)
        self.wait_services(self.env, ["events", "cache"])
        wait_until(lambda: self.metric("events", "events.redis.connected") == 1, 15,
                   "the events actor to reach Redis")
        wait_until(lambda: self.http_up(), 30, "the edge to serve streams")

    # ------------------------------------------------------------- helpers

    def start_cache(self, name):
        proc = self.spawn(name, ["actor", "cache"], self.env)
        self.wait_services(self.env, ["cache"])
        wait_until(lambda: self.metric("cache", "cache.redis.channel_up") == 1, 15,
                   "the cache to subscribe to its invalidation channel")
        return proc

    def http_up(self):
        """The edge answers a stream request 200 (not merely accepts connections)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", self.path(9))
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def path(self, user):
        return f"/api/v1/emails/stream?user={user}&token={DEV_TOKEN}"

    def metric(self, service, name):
        reply = self.client.call(service, "STATS", b"", timeout_ms=2000)
        return proto.body_map(reply)["metrics"].get(name) if reply else None

    def call(self, msg, body, user, service="cache"):
        reply = self.client.call(service, msg, proto.pack(body), user=user, timeout_ms=10000)
        self.assertIsNotNone(reply, f"no reply to {msg}")
        return reply["status"], proto.body_map(reply)

    def apply(self, user, changes, key=None, status="OK", quiet=None):
        body = {"account": user, "changes": changes}
        if key is not None:
            body["key"] = key
        if quiet is not None:
            body["quiet"] = quiet
        got, data = self.call("MAIL_APPLY", body, user)
        self.assertEqual(got, status, data)
        return data

    def open(self, user, last_id=None):
        headers = {"Last-Event-ID": last_id} if last_id else None
        reader = SseReader(self.port, self.path(user), headers=headers)
        self.addCleanup(reader.close)
        self.assertEqual(reader.status, 200)
        if not last_id:
            self.assertEqual(proto.json_type(reader.event()["data"]), "connected")
        return reader

    def events(self, reader, count, timeout=15):
        """The next `count` events as (id, parsed data), `connected` skipped."""
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            ev = reader.event(max(0.05, deadline - time.monotonic()))
            data = json.loads(ev["data"])
            if data["type"] in ("connected", "reset"):
                continue
            out.append((ev.get("id"), data))
        return out

    def inbox(self, user):
        rows = self.pg.psql(f"select unread, total from labels where user_id = {user} "
                            f"and role = 'inbox'")
        return tuple(int(x) for x in rows[0]) if rows else None

    # ------------------------------------------------------------- tests

    def test_writes_reach_their_users_stream_with_the_originals_shapes(self):
        ann, bob = self.open(1), self.open(2)
        reply = self.apply(1, [message("m1", "t1", T0)])
        self.assertEqual((reply["events"], reply["replayed"], reply["caches"]),
                         (2, False, "invalidated"))
        (id1, new), (id2, counts) = self.events(ann, 2)
        self.assertEqual(new["type"], "new_email")
        self.assertEqual(set(new["email"]), NEW_EMAIL_KEYS)
        email = new["email"]
        self.assertEqual((email["id"], email["threadId"], email["messageId"], email["from"],
                          email["to"], email["subject"], email["snippet"], email["preview"]),
                         ("m1", "t1", "<m1@example.com>", "Ann Example <ann@example.com>",
                          "me@example.com", "subject m1", "snippet m1", "snippet m1"))
        self.assertEqual(email["date"], "Thu, 1 Jan 2026 00:00:00 +0000")
        self.assertEqual(sorted(email["labelIds"]), ["INBOX", "UNREAD"])
        self.assertEqual((email["isRead"], email["isStarred"], email["hasAttachment"]),
                         (False, False, False))
        self.assertEqual(new["source"], "gmail")
        self.assertRegex(new["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((counts["type"], counts["unread"], counts["total"], counts["source"]),
                         ("unread_count_updated", 1, 1, "gmail"))
        self.assertIsNotNone(id1)
        self.assertIsNotNone(id2)

        reply = self.apply(1, [{"op": "set_flags", "id": "m1", "unread": False,
                                "starred": True}])
        self.assertEqual(reply["events"], 2)
        (_, upd), (_, counts) = self.events(ann, 2)
        self.assertEqual(upd["type"], "email_updated")
        self.assertEqual(set(upd["email"]),
                         {"id", "threadId", "isRead", "isStarred", "labelIds", "source"})
        self.assertEqual((upd["email"]["id"], upd["email"]["threadId"], upd["email"]["isRead"],
                          upd["email"]["isStarred"], sorted(upd["email"]["labelIds"]),
                          upd["source"]),
                         ("m1", "t1", True, True, ["INBOX", "STARRED"], "gmail"))
        self.assertEqual((counts["type"], counts["unread"], counts["total"]),
                         ("unread_count_updated", 0, 1))

        # A label change of a message outside the inbox: no inbox counts.
        self.apply(1, [message("m2", "t2", T0 + 1, labels=("Work",), unread=False)])
        (_, new2), = self.events(ann, 1)
        self.assertEqual((new2["type"], new2["email"]["id"], new2["email"]["isRead"]),
                         ("new_email", "m2", True))

        reply = self.apply(1, [{"op": "delete_message", "id": "m1"}])
        self.assertEqual(reply["events"], 2)
        (_, gone), (_, counts) = self.events(ann, 2)
        self.assertEqual(gone["type"], "email_deleted")
        self.assertEqual(set(gone), {"type", "emailId", "threadId", "reason", "source",
                                     "timestamp"})
        self.assertEqual((gone["emailId"], gone["threadId"], gone["reason"]),
                         ("m1", "t1", "deleted"))
        self.assertEqual((counts["unread"], counts["total"]), (0, 0))
        # A no-op (a message the store does not have) announces nothing.
        self.assertEqual(self.apply(1, [{"op": "set_flags", "id": "nope", "unread": True}])
                         ["events"], 0)

        # Bob's stream saw none of Ann's events: his first is his own.
        self.apply(2, [message("b1", "bt1", T0)])
        (_, first), = self.events(bob, 1)
        self.assertEqual((first["type"], first["email"]["id"]), ("new_email", "b1"))
        self.assertEqual(self.pg.psql("select count(*) from mail_outbox"), [["0"]])

    def test_a_quiet_write_announces_the_counts_only(self):
        # A backfill's writes: mail already in the mailbox is not new_email.
        ann = self.open(1)
        reply = self.apply(1, [message("q1", "qt1", T0), message("q2", "qt2", T0 + 1)],
                           quiet=True)
        self.assertEqual(reply["events"], 1)
        (_, counts), = self.events(ann, 1)
        self.assertEqual((counts["type"], counts["unread"], counts["total"]),
                         ("unread_count_updated", 2, 2))
        # The next write that is not quiet is announced whole, and is the
        # next event the stream sees.
        self.apply(1, [{"op": "set_flags", "id": "q1", "unread": False}])
        (_, upd), (_, counts) = self.events(ann, 2)
        self.assertEqual((upd["type"], upd["email"]["id"]), ("email_updated", "q1"))
        self.assertEqual((counts["unread"], counts["total"]), (1, 2))
        self.apply(1, [{"op": "set_flags", "id": "q2", "unread": False}], status="INVALID",
                   quiet="yes")

    def test_a_writer_killed_after_its_commit_is_announced_by_the_relay(self):
        ann = self.open(1)
        self.apply(1, [message("m1", "t1", T0)])
        _, (last, _) = self.events(ann, 2)
        view = {"thread": "t1"}
        status, before = self.call("MAIL_THREAD", view, 1)
        self.assertEqual(status, "OK")
        self.assertEqual(before["data"]["messages"][0]["unread"], True)
        # The writer commits and dies before announcing: frozen first, so
        # that it cannot run the announcement, the write committed in its
        # transaction (the function MAIL_APPLY runs), then kill -9.
        self.cache.signal(signal.SIGSTOP)
        self.pg.psql("select count(*) from ain_mail_apply_outboxed(1, 1, "
                     "'[{\"op\": \"set_flags\", \"id\": \"m1\", \"unread\": false}]')")
        self.cache.kill9()
        ann.close()
        self.assertEqual(self.pg.psql("select jsonb_array_length(events) from mail_outbox"),
                         [["2"]])
        # A new cache process relays it: the events reach the log...
        self.cache = self.start_cache("cache-2")
        wait_until(lambda: self.pg.psql("select count(*) from mail_outbox") == [["0"]], 30,
                   "the relay to announce and delete the row")
        self.assertGreaterEqual(self.metric("cache", "cache.outbox.relayed"), 1)
        # ... and the client resuming from the last id it saw gets them.
        resumed = self.open(1, last_id=last)
        got = self.events(resumed, 2)
        self.assertEqual([(d["type"], d.get("email", {}).get("isRead")) for _, d in got],
                         [("email_updated", True), ("unread_count_updated", None)])
        # The cache (a 10-minute L2) was invalidated too.
        status, after = self.call("MAIL_THREAD", view, 1)
        self.assertEqual(after["data"]["messages"][0]["unread"], False)

    def test_a_writer_killed_while_publishing_is_announced_by_the_relay(self):
        """A real MAIL_APPLY whose writer dies after its commit and
        invalidation, while its publish waits on a frozen events actor."""
        ann = self.open(1)
        self.apply(1, [message("m1", "t1", T0)])
        _, (last, _) = self.events(ann, 2)
        events = [p for p in self.procs if p.name == "events"][0]
        events.signal(signal.SIGSTOP)
        reply = self.apply(1, [{"op": "set_flags", "id": "m1", "unread": False}])
        self.assertEqual((reply["events"], reply["caches"]), (2, "invalidated"))
        self.cache.kill9()
        events.kill9()  # the publish it was handed dies with it
        ann.close()
        self.assertEqual(self.pg.psql("select count(*) from mail_outbox"), [["1"]])
        self.spawn("events-2", ["actor", "events"], self.env)
        self.cache = self.start_cache("cache-2")
        wait_until(lambda: self.pg.psql("select count(*) from mail_outbox") == [["0"]], 30,
                   "the relay to announce and delete the row")
        resumed = self.open(1, last_id=last)
        got = self.events(resumed, 2)
        self.assertEqual([(d["type"], d.get("email", {}).get("isRead")) for _, d in got],
                         [("email_updated", True), ("unread_count_updated", None)])

    def test_a_row_announced_twice_reaches_the_user_once(self):
        # Keep a copy of every outbox row, to put one back after its
        # writer deleted it: as if the writer had published and died
        # before its delete.
        self.pg.psql("create table outbox_copy (like mail_outbox);"
                     "create function copy_row() returns trigger language plpgsql as $$ "
                     "begin insert into outbox_copy select new.*; return new; end $$;"
                     "create trigger copy_row after insert on mail_outbox "
                     "for each row execute function copy_row()")
        ann = self.open(1)
        self.apply(1, [message("m1", "t1", T0)])
        first = self.events(ann, 2)
        self.assertEqual(self.pg.psql("select count(*) from mail_outbox"), [["0"]])
        self.pg.psql("insert into mail_outbox (id, user_id, changed, events, created_at) "
                     "select id, user_id, changed, events, now() - interval '1 minute' "
                     "from outbox_copy")
        wait_until(lambda: self.pg.psql("select count(*) from mail_outbox") == [["0"]], 30,
                   "the relay to announce the row again and delete it")
        self.assertEqual(self.metric("events", "events.duplicates"), 2)
        # Nothing more reached the stream: the next event is a new write's.
        self.apply(1, [message("m2", "t2", T0 + 1, unread=False, labels=("Work",))])
        (next_id, nxt), = self.events(ann, 1)
        self.assertEqual((nxt["type"], nxt["email"]["id"]), ("new_email", "m2"))
        self.assertNotIn(next_id, [i for i, _ in first])

    def test_a_retried_write_is_applied_once(self):
        ann = self.open(1)
        changes = [message("m1", "t1", T0), message("m2", "t1", T0 + 1)]
        first = self.apply(1, changes, key="write-1")
        self.assertEqual((first["replayed"], first["events"]), (False, 3))
        self.assertEqual(self.inbox(1), (1, 1))
        self.events(ann, 3)
        # The same write again, as after an UNAVAILABLE answer.
        again = self.apply(1, changes, key="write-1")
        self.assertTrue(again["replayed"])
        self.assertEqual(again["changed"], first["changed"])
        self.assertEqual(self.inbox(1), (1, 1))
        self.assertEqual(self.pg.psql("select count(*), sum(version) from messages"),
                         [["2", "2"]])
        # The key with other changes: refused, nothing applied.
        self.apply(1, [{"op": "set_flags", "id": "m1", "unread": False}], key="write-1",
                   status="CONFLICT")
        self.assertEqual(self.inbox(1), (1, 1))
        # Keys are per user: Bob's "write-1" is his own.
        self.assertFalse(self.apply(2, [message("b1", "bt1", T0)], key="write-1")["replayed"])
        # Malformed keys are INVALID.
        for bad in ("", "k" * 129, 7):
            self.apply(1, changes, key=bad, status="INVALID")
        # The stream got the first write's events once: the next is new.
        self.apply(1, [{"op": "set_flags", "id": "m2", "unread": False}])
        (_, upd), = self.events(ann, 1)
        self.assertEqual((upd["type"], upd["email"]["id"]), ("email_updated", "m2"))
        self.assertEqual(self.metric("cache", "cache.writes_replayed"), 1)

    def test_a_write_answered_too_late_and_retried_with_its_key_is_applied_once(self):
        # The store is held up past the caller's deadline: the caller hears
        # TIMEOUT (or nothing), yet the write commits once the lock goes.
        # (The actor's sweep logs the request it still holds past its
        # deadline as an ERROR, on purpose: runtime/actor.c.)
        self.allowed_errors = ("never answered",)
        sql = ("begin; lock table threads in access exclusive mode; "
               "select pg_sleep(4); commit;")
        lock = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                 f"host=127.0.0.1 port={self.pg.port} user=postgres "
                                 f"dbname={self.pg.dbname}", "-c", sql],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lock.kill)
        wait_until(lambda: self.pg.psql(
            "select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
            "where c.relname = 'threads' and l.mode = 'AccessExclusiveLock' and l.granted")
            == [["1"]], 10, "the lock on threads")
        changes = [message("m1", "t1", T0)]
        body = proto.pack({"account": 1, "changes": changes, "key": "late-1"})
        reply = self.client.call("cache", "MAIL_APPLY", body, user=1, timeout_ms=1000)
        self.assertIn(reply["status"] if reply else None, (None, "TIMEOUT", "UNAVAILABLE"))
        # The retry, same key, same changes: applied once, answered replayed.
        again = self.apply(1, changes, key="late-1")
        self.assertTrue(again["replayed"])
        self.assertEqual(again["events"], 2)
        lock.wait(30)
        self.assertEqual(self.pg.psql("select count(*) from messages"), [["1"]])
        self.assertEqual(self.inbox(1), (1, 1))


if __name__ == "__main__":
    unittest.main()
