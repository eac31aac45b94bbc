"""The cache actor against real Redis and PostgreSQL.

Each layer's time-to-live, seen through data changed behind the cache's
back; invalidation reaching the L1 of a second cache process (behind a
second broker, sharing Redis and PostgreSQL, as on another host); no stale
value put back by a load that raced a write; N concurrent misses costing
one L3 query; Redis killed and restarted under traffic; clearing one user
touching no other; malformed requests answered INVALID.

Layers are told apart by the actor's own counters (STATS), never by
timing.
"""

import signal
import subprocess
import time
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until

T0 = 1_700_000_000_000


def message(mid, thread, ms, labels=("INBOX",), unread=True, subject=None):
    return {"op": "upsert_message", "id": mid, "thread_id": thread, "sent_at_ms": ms,
            "labels": list(labels), "unread": unread, "subject": subject or f"subject {mid}",
            "from_name": "Ann", "from_addr": "ann@example.com", "to": ["me@example.com"],
            "snippet": f"snippet {mid}"}


class CacheCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()
        self.pg = self.start_migrated_postgres()
        # Users 1..3, each with one Gmail account (ids 1..3).
        self.pg.psql("insert into users (id, email) values (1, 'a@x'), (2, 'b@x'), (3, 'c@x');"
                     "insert into accounts (id, user_id, provider, address) values "
                     "(1, 1, 'gmail', 'a@x'), (2, 2, 'gmail', 'b@x'), (3, 3, 'gmail', 'c@x')")
        self.clients = {}

    # ------------------------------------------------------------- processes

    def start_cache(self, name="cache", broker=None, **extra):
        """A broker (unless given) with an events actor, and one cache actor
        process on it; returns the environment naming that broker. (A write
        is done once its events are published: without an events service
        its outbox row would wait for the relay.)"""
        if broker is None:
            port, = free_ports(1)
            env = self.base_env(port, REDIS_URL=self.redis.url, DATABASE_URL=self.pg.url,
                                **extra)
            self.spawn(f"broker-{port}", ["broker"], env)
            self.spawn(f"events-{port}", ["actor", "events"], env)
        else:
            env = dict(broker)
            env.update({k: str(v) for k, v in extra.items()})
        self.spawn(name, ["actor", "cache"], env)
        self.wait_services(env, ["cache"])
        wait_until(lambda: self.metric(env, "cache.redis.channel_up") == 1, 15,
                   "the cache to subscribe to its invalidation channel")
        return env

    def client(self, env):
        ep = env["AINBOX_BROKER"]
        if ep not in self.clients:
            self.clients[ep] = proto.Client(ep)
            self.addCleanup(self.clients[ep].close)
        return self.clients[ep]

    def call(self, env, msg, body, user=1, timeout_ms=5000):
        reply = self.client(env).call("cache", msg, proto.pack(body), user=user,
                                      timeout_ms=timeout_ms)
        self.assertIsNotNone(reply, f"no reply to {msg} {body}")
        return reply["status"], proto.body_map(reply)

    def ok(self, env, msg, body, user=1):
        status, data = self.call(env, msg, body, user)
        self.assertEqual(status, "OK", data)
        return data

    def stats(self, env):
        reply = self.client(env).call("cache", "STATS", b"", timeout_ms=5000)
        self.assertIsNotNone(reply)
        return proto.body_map(reply)["metrics"]

    def metric(self, env, name):
        reply = self.client(env).call("cache", "STATS", b"", timeout_ms=2000)
        return proto.body_map(reply)["metrics"].get(name) if reply else None

    def apply(self, env, changes, user=1, account=1):
        return self.ok(env, "MAIL_APPLY", {"account": account, "changes": changes}, user)

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.redis.socket, "--raw"] + list(args),
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [line for line in out.stdout.split("\n") if line]

    def seed(self, env, user=1, threads=5, per_thread=2):
        changes = []
        for t in range(threads):
            for m in range(per_thread):
                changes.append(message(f"u{user}t{t}m{m}", f"u{user}t{t}",
                                       T0 + t * 1000 + m, unread=(m == 0)))
        self.apply(env, changes, user=user, account=user)

    def read_source(self, env, msg, body, user=1):
        """(data, layer) of one read: the layer whose counter moved."""
        before = self.stats(env)
        data = self.ok(env, msg, body, user)
        after = self.stats(env)
        moved = [layer for layer in ("l1", "l2", "l3")
                 if after[f"cache.{layer}.hits"] > before[f"cache.{layer}.hits"]]
        self.assertEqual(len(moved), 1, f"one lookup, one outcome: {moved}")
        return data["data"], moved[0]

    def locked(self, table, seconds):
        """A psql session holding an exclusive lock on `table` for
        `seconds`; returns once the lock is held."""
        sql = (f"begin; lock table {table} in access exclusive mode; "
               f"select pg_sleep({seconds}); commit;")
        p = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                              f"host=127.0.0.1 port={self.pg.port} user=postgres "
                              f"dbname={self.pg.dbname}", "-c", sql],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(p.kill)
        wait_until(lambda: self.pg.psql(
            f"select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
            f"where c.relname = '{table}' and l.mode = 'AccessExclusiveLock' "
            f"and l.granted")[0][0] == "1", 10, f"the lock on {table}")
        return p

    def waiting_on_lock(self, n=1):
        wait_until(lambda: int(self.pg.psql(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock'")[0][0]) >= n,
            10, f"{n} queries to wait on the lock")


class ReadTest(CacheCase):

    def test_views_pages_and_etags(self):
        env = self.start_cache()
        self.seed(env, threads=7)
        # Newest first, every thread exactly once across pages.
        seen, cursor = [], None
        for _ in range(10):
            body = {"label": "INBOX", "limit": 3}
            if cursor:
                body["cursor"] = cursor
            data = self.ok(env, "MAIL_LIST", body)["data"]
            seen += [t["id"] for t in data["threads"]]
            cursor = data["next_cursor"]
            if not cursor:
                break
        self.assertEqual(seen, [f"u1t{t}" for t in range(6, -1, -1)])
        first = self.ok(env, "MAIL_LIST", {"role": "inbox"})
        self.assertEqual(first["data"]["total"], 7)
        self.assertEqual(first["data"]["unread"], 7)
        self.assertEqual(first["data"]["threads"][0]["count"], 2)
        # A thread with its messages, oldest first, bodies only on request.
        # The HTML goes out sanitised (mail/html.h), never raw.
        hostile = ('<p onclick="x()">hi</p><script>alert(1)</script>'
                   '<img src="https://t.example/p.gif"><img src="cid:logo">')
        self.apply(env, [{"op": "upsert_body", "id": "u1t3m1", "html": hostile, "text": "hi",
                          "attachments": [{"id": "a1", "filename": "f.pdf",
                                           "mime_type": "application/pdf", "size": 10}]},
                         {"op": "upsert_body", "id": "u1t3m0",
                          "html": "<p>only <b>html</b></p>"}])
        thread = self.ok(env, "MAIL_THREAD", {"thread": "u1t3", "bodies": True})["data"]
        self.assertEqual([m["id"] for m in thread["messages"]], ["u1t3m0", "u1t3m1"])
        shown = thread["messages"][1]
        self.assertNotIn("html", shown)
        self.assertTrue(shown["safe_html"].startswith("<!DOCTYPE html>"))
        self.assertIn("<p>hi</p>", shown["safe_html"])
        self.assertIn('<img data-blocked-src="https://t.example/p.gif">', shown["safe_html"])
        for bad in ("<script", "onclick", "alert"):
            self.assertNotIn(bad, shown["safe_html"])
        self.assertEqual((shown["has_html"], shown["blocked_images"], shown["cid_images"]),
                         (True, 1, 1))
        self.assertEqual(shown["attachments"][0]["filename"], "f.pdf")
        bare = self.ok(env, "MAIL_THREAD", {"thread": "u1t3"})["data"]
        for field in ("html", "safe_html", "text"):
            self.assertNotIn(field, bare["messages"][1])
        msg = self.ok(env, "MAIL_MESSAGE", {"message": "u1t3m1"})["data"]["message"]
        self.assertEqual((msg["text"], msg["thread"]), ("hi", "u1t3"))
        # No text part: the text of the HTML.
        only = self.ok(env, "MAIL_MESSAGE", {"message": "u1t3m0"})["data"]["message"]
        self.assertEqual((only["text"], only["has_html"]), ("only html", True))
        none = self.ok(env, "MAIL_MESSAGE", {"message": "u1t2m0"})["data"]["message"]
        self.assertEqual((none["safe_html"], none["has_html"], none["blocked_images"]),
                         (None, False, 0))
        counts = self.ok(env, "MAIL_COUNTS", {})["data"]["labels"]
        inbox = [c for c in counts if c["id"] == "INBOX"][0]
        self.assertEqual((inbox["total"], inbox["unread"], inbox["role"]), (7, 7, "inbox"))
        # ETag: the same answer has the same tag; the client's copy is enough.
        tag = self.ok(env, "MAIL_COUNTS", {})["etag"]
        again = self.ok(env, "MAIL_COUNTS", {"if_none_match": tag})
        self.assertEqual(again, {"etag": tag, "not_modified": True})
        self.apply(env, [{"op": "set_flags", "id": "u1t0m0", "unread": False}])
        changed = self.ok(env, "MAIL_COUNTS", {"if_none_match": tag})
        self.assertNotEqual(changed["etag"], tag)
        self.assertIn("data", changed)
        # Nothing of another user's, and a missing thread is NOT_FOUND.
        self.assertEqual(self.ok(env, "MAIL_LIST", {"label": "INBOX"}, user=2)["data"]["threads"],
                         [])
        status, _ = self.call(env, "MAIL_THREAD", {"thread": "u1t3"}, user=2)
        self.assertEqual(status, "NOT_FOUND")

    def test_malformed_requests_are_invalid(self):
        env = self.start_cache()
        bad = [
            ("MAIL_LIST", {"label": "INBOX", "role": "inbox"}),
            ("MAIL_LIST", {}),
            ("MAIL_LIST", {"role": "bogus"}),
            ("MAIL_LIST", {"label": "INBOX", "limit": 0}),
            ("MAIL_LIST", {"label": "INBOX", "limit": 101}),
            ("MAIL_LIST", {"label": "INBOX", "cursor": "x*y"}),
            ("MAIL_LIST", {"label": "IN:BOX"}),
            ("MAIL_LIST", {"label": 7}),
            ("MAIL_LIST", {"archive": "yes"}),
            ("MAIL_THREAD", {"thread": "a b"}),
            ("MAIL_THREAD", {}),
            ("MAIL_THREAD", {"thread": "t", "bodies": 1}),
            ("MAIL_MESSAGE", {"message": "x" * 300}),
            ("MAIL_COUNTS", {"account": "one"}),
            ("MAIL_APPLY", {"account": 1}),
            ("MAIL_APPLY", {"account": 1, "changes": []}),
            ("MAIL_APPLY", {"account": 1, "changes": [{"op": "explode"}]}),
            ("MAIL_APPLY", {"account": 1, "changes": [{"op": "set_flags", "id": "m",
                                                       "unread": "no"}]}),
            ("CACHE_CLEAR", {"user": 1, "prefixes": ["a b"]}),
            ("CACHE_CLEAR", {"prefixes": ["list:"]}),
        ]
        for msg, body in bad:
            user = 0 if msg == "CACHE_CLEAR" else 1
            status, data = self.call(env, msg, body, user=user)
            self.assertEqual(status, "INVALID", f"{msg} {body}: {data}")
            self.assertTrue(data.get("message"), f"{msg} {body}: a reason")
        # Not a map at all, and no user: INVALID too.
        for raw in (b"\xc1", b"\x93\x01\x02\x03", proto.pack("text")):
            reply = self.client(env).call("cache", "MAIL_LIST", raw, user=1)
            self.assertEqual(reply["status"], "INVALID")
        status, _ = self.call(env, "MAIL_LIST", {"label": "INBOX"}, user=0)
        self.assertEqual(status, "INVALID")
        # The error names the change at fault; another user's account is DENIED.
        status, data = self.call(env, "MAIL_APPLY", {"account": 1, "changes": [
            message("m1", "t1", T0), {"op": "set_flags", "id": "m1", "starred": 3}]})
        self.assertEqual(status, "INVALID")
        self.assertIn("changes[1]", data["message"])
        status, _ = self.call(env, "MAIL_APPLY", {"account": 2, "changes": [
            message("m1", "t1", T0)]}, user=1)
        self.assertEqual(status, "DENIED")
        # Still serving, and nothing was written by the refused batches.
        self.assertEqual(self.ok(env, "MAIL_LIST", {"label": "INBOX"})["data"]["threads"], [])
        self.assertGreaterEqual(self.stats(env)["cache.invalid"], len(bad))


class LayerTest(CacheCase):

    def test_each_layer_lives_its_ttl(self):
        # L1 0.5 s, L2 3 s. Data changed behind the cache's back (no
        # invalidation) shows each layer serving its copy until it expires.
        env = self.start_cache(AINBOX_CACHE_L1_TTL_MS=500, CACHE_TTL=3)
        self.seed(env, threads=1)
        view = ("MAIL_COUNTS", {})
        data, layer = self.read_source(env, *view)
        loaded = time.monotonic()
        self.assertEqual(layer, "l3")
        self.pg.psql("update labels set name = 'Renamed' where provider_id = 'INBOX'")
        data, layer = self.read_source(env, *view)
        self.assertEqual((layer, data["labels"][0]["name"]), ("l1", "INBOX"))
        time.sleep(0.8)
        data, layer = self.read_source(env, *view)
        self.assertEqual((layer, data["labels"][0]["name"]), ("l2", "INBOX"))
        # The L2 hit went back into L1.
        data, layer = self.read_source(env, *view)
        self.assertEqual(layer, "l1")
        time.sleep(max(0, loaded + 3.5 - time.monotonic()))
        data, layer = self.read_source(env, *view)
        self.assertEqual((layer, data["labels"][0]["name"]), ("l3", "Renamed"))
        # L2 keys carry the configured TTL.
        keys = self.redis_cli("keys", "ain:c:{1}:*")
        self.assertEqual(len(keys), 1)
        ttl = int(self.redis_cli("pttl", keys[0])[0])
        self.assertTrue(0 < ttl <= 3000, ttl)

    def test_concurrent_misses_cost_one_l3_query(self):
        env = self.start_cache()
        self.seed(env, threads=2)
        self.ok(env, "CACHE_CLEAR", {}, user=0)
        before = self.stats(env)
        lock = self.locked("labels", 3)
        corrs = [self.client(env).send("cache", "MAIL_COUNTS", proto.pack({}), user=1,
                                       timeout_ms=20000) for _ in range(20)]
        self.waiting_on_lock()
        # Every request is in the actor, waiting on the one load.
        wait_until(lambda: self.metric(env, "cache.coalesced") - before["cache.coalesced"] >= 19,
                   10, "19 requests to join the first one's load")
        lock.wait(timeout=20)
        replies = self.client(env).collect(corrs, 20)
        self.assertEqual(len(replies), 20)
        tags = {proto.body_map(r)["etag"] for r in replies.values()
                if r["status"] == "OK"}
        self.assertEqual(len(tags), 1, [r["status"] for r in replies.values()])
        after = self.stats(env)
        self.assertEqual(after["cache.l3.queries"] - before["cache.l3.queries"], 1)
        self.assertEqual(after["cache.l3.hits"] - before["cache.l3.hits"], 20)
        self.assertEqual(after["cache.lookups"] - before["cache.lookups"], 20)


class InvalidationTest(CacheCase):

    def test_a_write_reaches_the_l1_of_another_process(self):
        a = self.start_cache("cache-a")
        b = self.start_cache("cache-b")  # its own broker: another host, in effect
        self.seed(a, threads=3)
        view = ("MAIL_THREAD", {"thread": "u1t1"})
        for round_ in range(10):
            self.read_source(b, *view)
            _, layer = self.read_source(b, *view)
            self.assertEqual(layer, "l1")
            received = self.metric(b, "cache.invalidations.received")
            subject = f"round {round_}"
            self.apply(a, [message("u1t1m0", "u1t1", T0 + 1000, subject=subject)])
            wait_until(lambda: self.metric(b, "cache.invalidations.received") > received, 10,
                       "the invalidation to reach the other process")
            data, layer = self.read_source(b, *view)
            self.assertEqual(data["messages"][0]["subject"], subject)
            self.assertEqual(layer, "l3")  # L2 was dropped too
        # Another user's entries were never touched.
        self.seed(a, user=2, threads=1)
        self.read_source(b, "MAIL_COUNTS", {}, user=2)
        self.apply(a, [{"op": "set_flags", "id": "u1t0m0", "unread": False}])
        _, layer = self.read_source(b, "MAIL_COUNTS", {}, user=2)
        self.assertEqual(layer, "l1")

    def test_a_write_whose_writer_died_is_invalidated_from_the_outbox(self):
        # L1 off and a 10-minute L2: without the outbox, the view below
        # would stay stale for ten minutes.
        env = self.start_cache(CACHE_TTL=600, AINBOX_CACHE_L1_TTL_MS=0,
                               AINBOX_CACHE_OUTBOX_AGE_MS=300)
        self.seed(env, threads=2)
        # A writer that lives deletes its outbox row once it invalidated.
        wait_until(lambda: self.pg.psql("select count(*) from mail_outbox")[0][0] == "0", 10,
                   "the seed's outbox row to be deleted by its writer")
        view = ("MAIL_THREAD", {"thread": "u1t0"})
        self.read_source(env, *view)
        data, layer = self.read_source(env, *view)
        self.assertEqual((layer, data["messages"][0]["unread"]), ("l2", True))
        # A writer that dies between commit and invalidation: its
        # transaction (the same function MAIL_APPLY runs) commits, and
        # nobody invalidates.
        self.pg.psql("select count(*) from ain_mail_apply_outboxed(1, 1, "
                     "'[{\"op\": \"set_flags\", \"id\": \"u1t0m0\", \"unread\": false}]')")
        wait_until(lambda: self.metric(env, "cache.outbox.relayed") >= 1, 20,
                   "the cache actor to relay the dead writer's invalidation")
        data, layer = self.read_source(env, *view)
        self.assertEqual((layer, data["messages"][0]["unread"]), ("l3", False))
        wait_until(lambda: self.pg.psql("select count(*) from mail_outbox")[0][0] == "0", 10,
                   "the relayed row to be deleted")

    def test_a_load_that_raced_a_write_is_not_kept(self):
        # B starts loading a thread; the load reads the thread and its
        # messages, then waits on the attachments query (locked). Meanwhile
        # A marks a message read. B's load finishes with the old data: it
        # may answer the read that was already waiting, but must not go
        # into L1 or L2, so the next read sees the write.
        a = self.start_cache("cache-a")
        b = self.start_cache("cache-b")
        self.seed(a, threads=2)
        lock = self.locked("attachments", 3)
        corr = self.client(b).send("cache", "MAIL_THREAD", proto.pack({"thread": "u1t1"}),
                                   user=1, timeout_ms=20000)
        self.waiting_on_lock()
        before = self.stats(b)
        self.apply(a, [{"op": "set_flags", "id": "u1t1m0", "unread": False}])
        wait_until(lambda: self.metric(b, "cache.invalidations.received") >
                   before["cache.invalidations.received"], 10, "B to hear of the write")
        lock.wait(timeout=20)
        old = self.client(b).collect([corr], 20)[corr]
        self.assertEqual(old["status"], "OK")
        self.assertTrue(proto.body_map(old)["data"]["messages"][0]["unread"])
        data, layer = self.read_source(b, "MAIL_THREAD", {"thread": "u1t1"})
        self.assertFalse(data["messages"][0]["unread"])
        self.assertEqual(layer, "l3")
        self.assertGreaterEqual(self.metric(b, "cache.l2.stale_puts_skipped"), 1)


class OperationsTest(CacheCase):

    def test_clear_one_user_touches_no_other(self):
        env = self.start_cache()
        for user in (1, 2):
            self.seed(env, user=user, threads=2)
            self.read_source(env, "MAIL_COUNTS", {}, user=user)
            self.read_source(env, "MAIL_LIST", {"label": "INBOX"}, user=user)
        self.assertEqual(len(self.redis_cli("keys", "ain:c:{2}:*")), 2)
        # Users cannot clear anything; patterns are literal prefixes.
        status, _ = self.call(env, "CACHE_CLEAR", {"user": 2}, user=1)
        self.assertEqual(status, "DENIED")
        for hostile in ("*", "?", "[", "}:", "{2}:*"):
            self.ok(env, "CACHE_CLEAR", {"user": 1, "prefixes": [hostile]}, user=0)
        self.assertEqual(len(self.redis_cli("keys", "ain:c:{2}:*")), 2)
        self.assertEqual(len(self.redis_cli("keys", "ain:c:{1}:*")), 2)
        # One user's lists only, then all of one user's keys.
        self.ok(env, "CACHE_CLEAR", {"user": 1, "prefixes": ["list:"]}, user=0)
        self.assertEqual([k.split(":", 3)[3] for k in self.redis_cli("keys", "ain:c:{1}:*")],
                         ["counts:*"])
        # Through the admin CLI, as an operator would.
        cleared = self.admin(env, "--json", "cache-clear", "1")
        self.assertEqual(cleared["l2"], "cleared")
        self.assertEqual(self.redis_cli("keys", "ain:c:{1}:*"), [])
        self.assertEqual(len(self.redis_cli("keys", "ain:c:{2}:*")), 2)
        _, layer = self.read_source(env, "MAIL_COUNTS", {}, user=2)
        self.assertEqual(layer, "l1")
        _, layer = self.read_source(env, "MAIL_COUNTS", {}, user=1)
        self.assertEqual(layer, "l3")
        # Everything; a mistyped user is refused before anything is sent.
        self.assertEqual(self.admin(env, "cache-clear", "1x", check=False).returncode, 2)
        out = self.admin(env, "cache-clear", "all")
        self.assertIn("cleared everything", out.stdout)
        self.assertEqual(self.redis_cli("keys", "ain:c:*") + self.redis_cli("keys", "ain:ci:*"),
                         [])
        _, layer = self.read_source(env, "MAIL_COUNTS", {}, user=2)
        self.assertEqual(layer, "l3")

    def test_redis_killed_and_restarted(self):
        # Short L1 so reads reach L2 while it is there.
        env = self.start_cache(AINBOX_CACHE_L1_TTL_MS=200, AINBOX_CACHE_L1_DEGRADED_TTL_MS=100)
        self.seed(env, threads=3)
        views = [("MAIL_COUNTS", {}), ("MAIL_LIST", {"label": "INBOX"}),
                 ("MAIL_THREAD", {"thread": "u1t1"})]
        for v in views:
            self.ok(env, *v)
        self.redis.proc.kill9()
        wait_until(lambda: self.metric(env, "cache.redis.connected") == 0, 15,
                   "the cache to notice Redis is gone")
        self.assertEqual(self.metric(env, "cache.redis.channel_up"), 0)
        # Reads keep working (L1 and L3), and writes too.
        for i in range(30):
            for v in views:
                self.ok(env, *v)
            if i == 10:
                w = self.apply(env, [{"op": "set_flags", "id": "u1t1m0", "unread": False}])
                self.assertTrue(w["caches"].startswith("pending"), w)
            time.sleep(0.02)
        data = self.ok(env, "MAIL_THREAD", {"thread": "u1t1"})["data"]
        self.assertFalse(data["messages"][0]["unread"])
        self.redis.start()  # same port, empty
        wait_until(lambda: self.metric(env, "cache.redis.connected") == 1 and
                   self.metric(env, "cache.redis.channel_up") == 1, 20,
                   "the cache to reconnect by itself")
        # L2 fills and answers again.
        before = self.stats(env)["cache.l2.hits"]
        for _ in range(3):
            for v in views:
                self.ok(env, *v)
            time.sleep(0.3)
        self.assertGreater(self.stats(env)["cache.l2.hits"], before)
        data = self.ok(env, "MAIL_THREAD", {"thread": "u1t1"})["data"]
        self.assertFalse(data["messages"][0]["unread"])


class BundleTest(CacheCase):

    def test_the_bundle_serves_the_cache(self):
        # The cache actor as a thread beside the broker, the edge and the
        # other actors (the TSan run checks this one's threads).
        port, = free_ports(1)
        env = self.base_env(port, REDIS_URL=self.redis.url, DATABASE_URL=self.pg.url)
        self.spawn("bundle", ["run"], env)
        self.wait_services(env, ["cache", "monitor", "events"])
        wait_until(lambda: self.metric(env, "cache.redis.channel_up") == 1, 15,
                   "the cache to subscribe")
        self.seed(env, threads=4)
        for _ in range(3):
            self.assertEqual(len(self.ok(env, "MAIL_LIST", {"role": "inbox"})["data"]["threads"]),
                             4)
        self.apply(env, [{"op": "delete_message", "id": f"u1t0m{m}"} for m in range(2)])
        self.assertEqual(len(self.ok(env, "MAIL_LIST", {"role": "inbox"})["data"]["threads"]), 3)
        self.admin(env, "cache-clear", "all")
        self.assertEqual(len(self.ok(env, "MAIL_LIST", {"role": "inbox"})["data"]["threads"]), 3)


if __name__ == "__main__":
    unittest.main()
