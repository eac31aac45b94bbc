"""The mail store against a real, private PostgreSQL.

deploy/migrations/0002_mail_store.sql, applied by `ainbox migrate`: its
ain_mail_apply() must keep threads, thread_labels and label counts equal to
what the messages say (checked against plain SQL aggregates over messages),
and report exactly what changed (checked against before/after snapshots).
The cache actor's queries, lifted from actors/cache/queries.c, must page
through a folder exactly once, keep the archive and unified views right,
never return another user's rows, and read a folder page from the
thread_labels index at 20,000 threads.
"""

import json
import os
import random
import re
import subprocess
import time
import unittest

from ainbox_harness import AinboxTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUERIES_C = os.path.join(ROOT, "actors", "cache", "queries.c")

SEP, NULL = "\x1f", "\x1e"
T0 = 1_700_000_000_000  # epoch ms of the seeded mail
HIDDEN = ("inbox", "trash", "spam")  # roles that keep a thread out of the archive


def load_queries():
    """{name: sql} from queries.c: each constant is adjacent string literals."""
    with open(QUERIES_C) as f:
        src = f.read()
    found = {}
    for m in re.finditer(r'const char \*const (AIN_Q_\w+) =\s*((?:"[^"\\]*"\s*)+);', src):
        found[m.group(1)] = "".join(re.findall(r'"([^"\\]*)"', m.group(2)))
    return found


def lit(value):
    """A Python value as an SQL literal for EXECUTE."""
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def jlit(changes):
    return "$j$" + json.dumps(changes) + "$j$::jsonb"


def plan_nodes(plan):
    """Every node of an EXPLAIN (FORMAT JSON) plan tree."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


class MailStoreCase(AinboxTestCase):
    """A migrated database and the helpers every test here uses."""

    def setUp(self):
        super().setUp()
        self.pg = self.start_migrated_postgres()
        self.q = load_queries()

    # ------------------------------------------------------------- psql

    def run_sql(self, sql, check=True):
        """(rows, stderr): rows as tuples of str/None; fails on error if check."""
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
             "-F", SEP, "-P", "null=" + NULL,
             f"host=127.0.0.1 port={self.pg.port} user=postgres dbname={self.pg.dbname}"],
            input=sql, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"psql failed: {out.stderr}\nSQL: {sql[:2000]}")
        rows = [tuple(None if v == NULL else v for v in line.split(SEP))
                for line in out.stdout.split("\n") if line]
        return rows, (out.stderr if out.returncode != 0 else None)

    def rows(self, sql):
        return self.run_sql(sql)[0]

    def value(self, sql):
        return self.rows(sql)[0][0]

    def sqlstate(self, sql):
        """The SQLSTATE sql fails with (VERBOSITY=verbose puts it after ERROR:)."""
        rows, err = self.run_sql(sql, check=False)
        self.assertIsNotNone(err, f"expected an error from: {sql[:300]}")
        m = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s*(.*)", err)
        self.assertIsNotNone(m, err)
        return m.group(1), m.group(2)

    def query(self, name, *args):
        """Runs a cache query through PREPARE/EXECUTE, as the actor will."""
        return self.rows(f"prepare q as {self.q[name]};\n"
                         f"execute q({', '.join(lit(a) for a in args)});")

    # ------------------------------------------------------------- data

    def user(self, email):
        return int(self.value(f"insert into users (email) values ({lit(email)}) returning id"))

    def account(self, user, provider, address):
        return int(self.value(f"insert into accounts (user_id, provider, address) values "
                              f"({user}, {lit(provider)}, {lit(address)}) returning id"))

    def apply(self, user, account, changes):
        return set(self.rows(f"select kind, ref from ain_mail_apply({user}, {account}, "
                             f"{jlit(changes)})"))

    def thread(self, account, pid):
        rows = self.rows(
            "select row_to_json(t) from (select subject, snippet, message_count, unread_count, "
            "has_attachments, starred, origin_from, latest_from, latest_to, version, "
            "floor(extract(epoch from last_message_at) * 1000)::bigint as last_ms, "
            "(select provider_id from messages where id = latest_message_id) as latest "
            f"from threads where account_id = {account} and provider_id = {lit(pid)}) t")
        return json.loads(rows[0][0]) if rows else None

    def labels(self, account):
        return {r[0]: (r[1], int(r[2]), int(r[3])) for r in self.rows(
            f"select provider_id, role, total, unread from labels where account_id = {account}")}

    def fingerprint(self):
        """Changes whenever any mail table's content does."""
        return self.rows(
            "select (select md5(coalesce(string_agg(t::text, ',' order by t.id), ''))"
            "  from threads t),"
            " (select md5(coalesce(string_agg(m::text, ',' order by m.id), '')) from messages m),"
            " (select md5(coalesce(string_agg(l::text, ',' order by l.id), '')) from labels l),"
            " (select md5(coalesce(string_agg(x::text, ',' order by x.thread_id, x.label_id), ''))"
            "  from thread_labels x),"
            " (select count(*) from bodies), (select count(*) from attachments)")

    def assert_consistent(self):
        """Everything derived equals a recomputation from messages alone."""
        self.assertEqual(json.loads(self.value(self.consistency_sql())), [],
                         "derived data differs from the messages")

    def consistency_sql(self):
        """One row, a JSON array of (what, id, id) for every derived value
        that differs from its recomputation by plain SQL over messages."""
        from_sql = ("case when coalesce(m.from_name, '') = '' then nullif(m.from_addr, '') "
                    "when coalesce(m.from_addr, '') = '' then m.from_name "
                    "else m.from_name || ' <' || m.from_addr || '>' end")
        return f"""
            select coalesce(jsonb_agg(x), '[]') from (
            with agg as (
                select thread_id, count(*) mc, count(*) filter (where unread) uc,
                       max(sent_at) lm, bool_or(has_attachments) ha, bool_or(starred) st
                  from messages group by thread_id)
            select 'aggregates', t.id, a.thread_id from threads t
              full join agg a on a.thread_id = t.id
             where t.id is null or a.thread_id is null
                or (t.message_count, t.unread_count, t.last_message_at, t.has_attachments,
                    t.starred) is distinct from (a.mc, a.uc, a.lm, a.ha, a.st)
            union all
            select 'latest', t.id, null from threads t
              cross join lateral (select m.id, m.snippet, m.to_addrs, {from_sql} fr from messages m
                                   where m.thread_id = t.id order by m.sent_at desc, m.id desc
                                   limit 1) l
             where (t.latest_message_id, t.snippet, t.latest_to, t.latest_from)
                   is distinct from (l.id, l.snippet, l.to_addrs, l.fr)
            union all
            select 'origin', t.id, null from threads t
             where t.origin_from is distinct from
                   (select {from_sql} from messages m where m.thread_id = t.id
                     order by m.is_sent, m.sent_at, m.id limit 1)
            union all
            select 'owner', m.id, null from messages m join threads t on t.id = m.thread_id
              join accounts a on a.id = m.account_id
             where m.user_id <> t.user_id or t.user_id <> a.user_id or m.account_id <> t.account_id
            union all
            select 'flags', m.id, null from messages m
             where 'UNREAD' = any(m.label_ids) or m.starred <> ('STARRED' = any(m.label_ids))
            union all
            select 'thread_labels', x.thread_id, x.label_id from (
                (select distinct m.user_id, m.thread_id, l.id as label_id, t.last_message_at
                   from messages m cross join unnest(m.label_ids) p
                   join labels l on l.account_id = m.account_id and l.provider_id = p
                   join threads t on t.id = m.thread_id
                 except
                 select user_id, thread_id, label_id, last_message_at from thread_labels)
                union all
                (select user_id, thread_id, label_id, last_message_at from thread_labels
                 except
                 select distinct m.user_id, m.thread_id, l.id, t.last_message_at
                   from messages m cross join unnest(m.label_ids) p
                   join labels l on l.account_id = m.account_id and l.provider_id = p
                   join threads t on t.id = m.thread_id)) x
            union all
            select 'label counts', l.id, null from labels l
              left join (
                select l2.id, count(distinct m.thread_id) tot,
                       count(distinct m.thread_id) filter (where tu.u) unr
                  from labels l2
                  join messages m on m.account_id = l2.account_id
                                 and l2.provider_id = any(m.label_ids)
                  join (select thread_id, bool_or(unread) u from messages group by 1) tu
                    on tu.thread_id = m.thread_id
                 group by l2.id) c on c.id = l.id
             where (l.total, l.unread) is distinct from (coalesce(c.tot, 0), coalesce(c.unr, 0))
            union all
            select 'in_archive', t.id, null from threads t
             where t.in_archive = exists (
                   select 1 from messages m cross join unnest(m.label_ids) p
                     join labels l on l.account_id = m.account_id and l.provider_id = p
                    where m.thread_id = t.id and l.role in ('inbox', 'trash', 'spam'))
            union all
            select 'missing label', m.id, null from messages m cross join unnest(m.label_ids) p
             where not exists (select 1 from labels l where l.account_id = m.account_id
                                                        and l.provider_id = p)) x;"""

    def msg(self, pid, tpid, ms, labels, **kw):
        op = {"op": "upsert_message", "id": pid, "thread_id": tpid, "sent_at_ms": ms,
              "labels": labels, "subject": kw.pop("subject", f"subject {tpid}"),
              "from_name": kw.pop("from_name", "Bob"), "from_addr": kw.pop("from_addr", "bob@x"),
              "to": kw.pop("to", ["me@x"]), "snippet": kw.pop("snippet", f"snippet {pid}")}
        op.update(kw)
        return op


class TestApply(MailStoreCase):

    def setUp(self):
        super().setUp()
        self.a = self.user("a@x")
        self.b = self.user("b@x")
        self.ga = self.account(self.a, "gmail", "a@gmail.com")
        self.oa = self.account(self.a, "outlook", "a@outlook.com")
        self.gb = self.account(self.b, "gmail", "b@gmail.com")

    def test_thread_life_and_what_it_reports(self):
        ga = self.ga
        got = self.apply(self.a, ga, [
            self.msg("m1", "t1", T0, ["INBOX", "UNREAD"], subject="Hello", from_name="Bob",
                     from_addr="bob@x", to=["a@gmail.com"]),
            self.msg("m2", "t1", T0 + 1000, ["SENT"], subject="Re: Hello", from_name="Me",
                     from_addr="a@gmail.com", to="bob@x", is_sent=True),
            self.msg("m3", "t1", T0 + 2000, ["INBOX", "IMPORTANT"], subject="Re: Hello",
                     from_name="", from_addr="carol@x", to=["a@gmail.com", "bob@x"],
                     snippet="latest words", has_attachments=True)])
        self.assertEqual(got, {("message", "m1"), ("message", "m2"), ("message", "m3"),
                               ("thread", "t1"), ("label", "INBOX"), ("label", "SENT"),
                               ("label", "IMPORTANT"), ("role", "inbox"), ("role", "sent"),
                               ("role", "important"), ("counts", "")})
        t = self.thread(ga, "t1")
        self.assertEqual(t, {"subject": "Hello", "snippet": "latest words", "message_count": 3,
                             "unread_count": 1, "has_attachments": True, "starred": False,
                             "origin_from": "Bob <bob@x>", "latest_from": "carol@x",
                             "latest_to": "a@gmail.com, bob@x", "version": 1,
                             "last_ms": T0 + 2000, "latest": "m3"})
        self.assertEqual(self.labels(ga), {"INBOX": ("inbox", 1, 1), "SENT": ("sent", 1, 1),
                                           "IMPORTANT": ("important", 1, 1)})
        self.assert_consistent()

        # The same upsert again changes nothing, and says so.
        self.assertEqual(self.apply(self.a, ga, [
            self.msg("m2", "t1", T0 + 1000, ["SENT"], subject="Re: Hello", from_name="Me",
                     from_addr="a@gmail.com", to="bob@x", is_sent=True)]), set())
        self.assertEqual(self.thread(ga, "t1")["version"], 1)

        # Read: the thread's counts change in every label it is in.
        got = self.apply(self.a, ga, [{"op": "set_flags", "id": "m1", "unread": False}])
        self.assertEqual(got, {("message", "m1"), ("thread", "t1"), ("label", "INBOX"),
                               ("label", "SENT"), ("label", "IMPORTANT"), ("role", "inbox"),
                               ("role", "sent"), ("role", "important"), ("counts", "")})
        self.assertEqual(self.thread(ga, "t1")["version"], 2)
        self.assertEqual(self.labels(ga)["INBOX"], ("inbox", 1, 0))
        self.assertEqual(self.apply(self.a, ga, [{"op": "set_flags", "id": "m1",
                                                  "unread": False}]), set())

        # A body changes the thread's content, not any list.
        got = self.apply(self.a, ga, [{"op": "upsert_body", "id": "m3", "html": "<p>hi</p>",
                                       "text": "hi", "attachments": [
                                           {"id": "att1", "filename": "a.pdf", "size": 10,
                                            "mime_type": "application/pdf"},
                                           {"id": "att2", "filename": "logo.png",
                                            "content_id": "logo", "inline": True}]}])
        self.assertEqual(got, {("message", "m3"), ("thread", "t1")})
        self.assertEqual(self.value("select count(*) from attachments"), "2")
        self.apply(self.a, ga, [{"op": "upsert_body", "id": "m3", "html": "<p>hi!</p>",
                                 "attachments": [{"id": "att3", "filename": "b.txt"}]}])
        self.assertEqual(self.rows("select provider_attachment_id from attachments"), [("att3",)])
        self.assertEqual(self.thread(ga, "t1")["version"], 4)

        # Star: the STARRED label follows the flag.
        got = self.apply(self.a, ga, [{"op": "set_flags", "id": "m2", "starred": True}])
        self.assertIn(("label", "STARRED"), got)
        self.assertIn(("role", "starred"), got)
        self.assertEqual(self.labels(ga)["STARRED"], ("starred", 1, 0))
        self.assertTrue(self.thread(ga, "t1")["starred"])
        self.assert_consistent()

        # Archive: out of INBOX, the thread enters the archive list.
        got = self.apply(self.a, ga, [
            {"op": "set_labels", "id": "m1", "remove": ["INBOX"], "add": ["Label_7", "UNREAD"]},
            {"op": "set_labels", "id": "m3", "remove": ["INBOX"]}])
        self.assertEqual(got, {("message", "m1"), ("message", "m3"), ("thread", "t1"),
                               ("label", "INBOX"), ("label", "SENT"), ("label", "IMPORTANT"),
                               ("label", "STARRED"), ("label", "Label_7"), ("role", "inbox"),
                               ("role", "sent"), ("role", "important"), ("role", "starred"),
                               ("counts", ""), ("archive", "")})
        self.assertEqual(self.labels(ga)["INBOX"], ("inbox", 0, 0))
        self.assertEqual(self.labels(ga)["Label_7"], (None, 1, 1))
        self.assert_consistent()

        # A rename changes the label and the counts list, not the threads.
        self.assertEqual(self.apply(self.a, ga, [{"op": "upsert_label", "id": "Label_7",
                                                  "name": "Travel"}]),
                         {("label", "Label_7"), ("counts", "")})

        # Deleting messages one by one; the last one takes the thread.
        self.apply(self.a, ga, [{"op": "delete_message", "id": "m1"}])
        self.assertEqual(self.thread(ga, "t1")["message_count"], 2)
        self.assert_consistent()
        got = self.apply(self.a, ga, [{"op": "delete_message", "id": "m2"},
                                      {"op": "delete_message", "id": "m3"}])
        self.assertIsNone(self.thread(ga, "t1"))
        self.assertEqual(got, {("message", "m2"), ("message", "m3"), ("thread", "t1"),
                               ("label", "SENT"), ("label", "IMPORTANT"), ("label", "STARRED"),
                               ("role", "sent"), ("role", "important"), ("role", "starred"),
                               ("counts", ""), ("archive", "")})
        self.assertEqual(self.value("select count(*) from thread_labels"), "0")
        self.assertEqual(self.value("select count(*) from attachments"), "0")
        self.assertTrue(all(total == 0 for _r, total, _u in self.labels(ga).values()))
        self.assert_consistent()

    def test_inbox_role_and_outlook_folders(self):
        oa = self.oa
        got = self.apply(self.a, oa, [
            {"op": "upsert_label", "id": "AAMk-inbox", "name": "Inbox", "role": "inbox"},
            {"op": "upsert_label", "id": "AAMk-arch", "name": "Archive", "role": "archive"},
            self.msg("o1", "conv1", T0, ["AAMk-inbox"], unread=True)])
        self.assertIn(("role", "inbox"), got)
        self.assertIn(("label", "AAMk-inbox"), got)
        # A thread merely sitting in the inbox changes: the inbox view is told.
        got = self.apply(self.a, oa, [{"op": "set_flags", "id": "o1", "starred": True}])
        self.assertIn(("role", "inbox"), got)
        self.assertIn(("role", "starred"), got)  # Outlook's flag: the STARRED label
        # Moving to Archive: a folder change is a label change.
        got = self.apply(self.a, oa, [{"op": "set_labels", "id": "o1", "add": ["AAMk-arch"],
                                       "remove": ["AAMk-inbox"]}])
        self.assertTrue({("role", "inbox"), ("role", "archive"), ("archive", "")} <= got)
        self.assertEqual(self.labels(oa)["AAMk-arch"], ("archive", 1, 1))
        # A label that loses its role: the role lists are told, and since
        # no thread carries it, the archive list is not.
        got = self.apply(self.a, oa, [{"op": "upsert_label", "id": "AAMk-inbox", "role": None}])
        self.assertEqual(got, {("label", "AAMk-inbox"), ("role", "inbox"), ("counts", "")})
        # Deleting a folder takes it off its messages.
        got = self.apply(self.a, oa, [{"op": "delete_label", "id": "AAMk-arch"}])
        self.assertEqual(got, {("message", "o1"), ("thread", "conv1"), ("label", "AAMk-arch"),
                               ("label", "STARRED"), ("role", "archive"), ("role", "starred"),
                               ("counts", ""), ("archive", "")})
        self.assertEqual(self.rows("select label_ids from messages where provider_id = 'o1'"),
                         [("{STARRED}",)])
        self.assert_consistent()

    def test_refusals_change_nothing(self):
        self.apply(self.a, self.ga, [self.msg("m1", "t1", T0, ["INBOX"])])
        before = self.fingerprint()
        # B's account, applied as A; an account that does not exist.
        for user, account in ((self.a, self.gb), (self.b, self.ga), (self.a, 999999)):
            state, text = self.sqlstate(
                f"select * from ain_mail_apply({user}, {account}, "
                f"{jlit([self.msg('m1', 't1', T0, ['TRASH'])])})")
            self.assertEqual(state, "42501", text)
        # AIN_Q_APPLY is the same call.
        state, _ = self.sqlstate(f"prepare q as {self.q['AIN_Q_APPLY']};\n"
                                 f"execute q({self.a}, {self.gb}, '[]', null, false);")
        self.assertEqual(state, "42501")
        cases = [
            ("{}", "JSON array"),
            ("null", "JSON array"),
            ('"x"', "JSON array"),
            (json.dumps([{"op": "set_flags", "id": "m1", "unread": True}, {"op": "frobnicate"}]),
             'changes[1]: unknown op "frobnicate"'),
            (json.dumps([{"id": "m1"}]), "changes[0]: unknown op"),
            (json.dumps([{"op": "set_flags", "id": "m1", "unread": True}, 7]), "changes[1]"),
            (json.dumps([{"op": "set_flags", "id": "m1", "unread": "yes"}]), '"unread"'),
            (json.dumps([{"op": "set_flags", "id": "m1", "unread": True},
                         {"op": "upsert_message", "id": "m9", "thread_id": "t9"}]),
             "changes[1] (upsert_message)"),
            (json.dumps([{"op": "set_labels", "id": "m1", "add": "INBOX"}]), "changes[0]"),
            (json.dumps([{"op": "upsert_label", "id": "L", "name": "L", "role": "bogus"}]),
             'unknown role "bogus"'),
            (json.dumps([{"op": "delete_message"}]), '"id"'),
            (json.dumps([{"op": "upsert_message", "id": "m9", "thread_id": "t9",
                          "sent_at_ms": "soon"}]), '"sent_at_ms"'),
        ]
        for changes, words in cases:
            with self.subTest(changes=changes):
                state, text = self.sqlstate(
                    f"select * from ain_mail_apply({self.a}, {self.ga}, $j${changes}$j$::jsonb)")
                self.assertEqual(state, "22023", text)
                self.assertIn(words, text)
        self.assertEqual(self.fingerprint(), before)

    def snapshot_sql(self, account):
        """One row: what the caches could hold for one account, as JSON keyed
        by provider ids."""
        return f"""
            select jsonb_build_object(
              'threads', coalesce((select jsonb_object_agg(t.provider_id, jsonb_build_array(
                  t.subject, t.snippet, t.last_message_at, t.message_count, t.unread_count,
                  t.has_attachments, t.starred, t.origin_from, t.latest_from, t.latest_to,
                  (select provider_id from messages where id = t.latest_message_id),
                  array(select l.provider_id from thread_labels x join labels l on l.id = x.label_id
                         where x.thread_id = t.id order by 1), t.version))
                  from threads t where t.account_id = {account}), '{{}}'),
              'messages', coalesce((select jsonb_object_agg(provider_id, version) from messages
                                     where account_id = {account}), '{{}}'),
              'labels', coalesce((select jsonb_object_agg(provider_id,
                                      jsonb_build_array(name, role, total, unread))
                                    from labels where account_id = {account}), '{{}}'));"""

    def expected_changes(self, before, after):
        """The (kind, ref) rows a cache needs, derived from two snapshots."""
        out = set()
        for kind, key in (("message", "messages"), ("thread", "threads")):
            for ref in set(before[key]) | set(after[key]):
                if before[key].get(ref) != after[key].get(ref):
                    out.add((kind, ref))
        def row(t):  # a thread's list row: all but its version
            return t[:-1] if t else None
        labels = set()
        for ref in set(before["labels"]) | set(after["labels"]):
            if before["labels"].get(ref) != after["labels"].get(ref):
                labels.add(ref)
        for ref in set(before["threads"]) | set(after["threads"]):
            b, a = before["threads"].get(ref), after["threads"].get(ref)
            if row(b) != row(a):
                labels |= set((b or [[]] * 12)[11]) | set((a or [[]] * 12)[11])
        for ref in labels:
            out.add(("label", ref))
            for snap in (before, after):
                if ref in snap["labels"] and snap["labels"][ref][1]:
                    out.add(("role", snap["labels"][ref][1]))
        if before["labels"] != after["labels"]:
            out.add(("counts", ""))

        def archive(snap):
            role = {ref: v[1] for ref, v in snap["labels"].items()}
            return {ref: row(t) for ref, t in snap["threads"].items()
                    if not any(role.get(lab) in HIDDEN for lab in t[11])}
        if archive(before) != archive(after):
            out.add(("archive", ""))
        return out

    def random_change(self, rnd):
        pid = f"m{rnd.randrange(24)}"
        labels = ["INBOX", "SENT", "TRASH", "SPAM", "IMPORTANT", "Label_1", "Label_2", "UNREAD",
                  "STARRED"]
        kind = rnd.choices(["upsert_message", "set_flags", "set_labels", "delete_message",
                            "upsert_body", "upsert_label", "delete_label"],
                           [10, 4, 4, 2, 1, 1, 0.3])[0]
        if kind == "upsert_message":
            # A message keeps its thread, as at the providers; m20+ wander.
            thread = f"t{rnd.randrange(8)}" if pid >= "m20" else f"t{int(pid[1:]) % 8}"
            return self.msg(pid, thread, T0 + 1000 * rnd.randrange(12),
                            rnd.sample(labels, rnd.randrange(4)),
                            subject=rnd.choice(["a", "b", None]),
                            from_name=rnd.choice(["Ann", "", None]),
                            from_addr=rnd.choice(["ann@x", "me@x"]),
                            is_sent=rnd.random() < 0.2, has_attachments=rnd.random() < 0.2,
                            unread=rnd.choice([True, False, None]))
        if kind == "set_flags":
            op = {"op": kind, "id": pid}
            for flag in ("unread", "starred"):
                if rnd.random() < 0.6:
                    op[flag] = rnd.random() < 0.5
            return op
        if kind == "set_labels":
            return {"op": kind, "id": pid, "add": rnd.sample(labels, rnd.randrange(3)),
                    "remove": rnd.sample(labels, rnd.randrange(3))}
        if kind == "upsert_body":
            return {"op": kind, "id": pid, "html": "<p>x</p>",
                    "attachments": [{"id": "a", "filename": "f"}] * rnd.randrange(3)}
        if kind == "upsert_label":
            return {"op": kind, "id": rnd.choice(["Label_1", "Label_2", "Label_3"]),
                    "name": rnd.choice(["Work", "Home"])}
        if kind == "delete_label":
            return {"op": kind, "id": rnd.choice(["Label_1", "Label_2", "IMPORTANT", "STARRED"])}
        return {"op": kind, "id": pid}

    def test_random_batches_stay_exact(self):
        """Random batches on two accounts of one user: after each, every
        derived value equals its recomputation and the reported changes
        equal the difference of snapshots."""
        rnd = random.Random(20240611)
        for n in range(70):
            account = rnd.choice([self.ga, self.oa])
            changes = [self.random_change(rnd) for _ in range(rnd.randrange(1, 16))]
            # One round trip: before, the batch, after, the recomputation.
            rows = self.rows(
                self.snapshot_sql(account)
                + f"select coalesce(jsonb_agg(jsonb_build_array(kind, ref)), '[]') "
                  f"from ain_mail_apply({self.a}, {account}, {jlit(changes)});"
                + self.snapshot_sql(account) + self.consistency_sql())
            before, got, after, bad = (json.loads(r[0]) for r in rows)
            with self.subTest(batch=n, changes=changes):
                self.assertEqual({tuple(k) for k in got}, self.expected_changes(before, after))
                self.assertEqual(bad, [], "derived data differs from the messages")
        # The run must have done something worth checking.
        self.assertGreater(int(self.value("select count(*) from threads")), 4)
        self.assertGreater(int(self.value("select count(*) from thread_labels")), 4)

    def test_a_batch_of_four_hundred(self):
        changes = [self.msg(f"m{i}", f"t{i // 4}", T0 + i * 1000,
                            ["INBOX", "UNREAD"] if i % 3 else ["Label_1"]) for i in range(400)]
        start = time.monotonic()
        got = self.apply(self.a, self.ga, changes)
        first = time.monotonic() - start
        self.assertEqual(len([1 for k, _ in got if k == "thread"]), 100)
        changes = [{"op": "set_flags", "id": f"m{i}", "unread": False} for i in range(0, 400, 2)]
        changes += [{"op": "set_labels", "id": f"m{i}", "add": ["TRASH"], "remove": ["INBOX"]}
                    for i in range(1, 400, 4)]
        changes += [{"op": "delete_message", "id": f"m{i}"} for i in range(3, 400, 8)]
        start = time.monotonic()
        self.apply(self.a, self.ga, changes)
        second = time.monotonic() - start
        print(f"\n  400 upserts (100 new threads): {first * 1000:.0f} ms through psql; "
              f"{len(changes)} mixed changes: {second * 1000:.0f} ms")
        self.assert_consistent()


class TestQueries(MailStoreCase):
    """Two users whose Gmail accounts use the same provider ids."""

    def setUp(self):
        super().setUp()
        self.a = self.user("a@x")
        self.b = self.user("b@x")
        self.ga = self.account(self.a, "gmail", "a@gmail.com")
        self.oa = self.account(self.a, "outlook", "a@outlook.com")
        self.gb = self.account(self.b, "gmail", "b@gmail.com")
        for user, account in ((self.a, self.ga), (self.b, self.gb)):
            changes = []
            for i in range(60):
                # Three threads share each timestamp: the keyset needs its tie-break.
                labels = (["INBOX"] if i < 40 else ["Label_1"] if i < 50
                          else ["TRASH"] if i < 55 else ["SPAM"])
                if i % 7 == 0:
                    labels = labels + ["UNREAD"]
                changes.append(self.msg(f"m{i}", f"t{i}", T0 + (i // 3) * 1000, labels))
                changes.append(self.msg(f"r{i}", f"t{i}", T0 + (i // 3) * 1000 - 500, ["SENT"],
                                        is_sent=True, from_name="Me"))
            changes.append({"op": "upsert_body", "id": "m1", "html": "<b>one</b>",
                            "attachments": [{"id": "x1", "filename": "one.txt"}]})
            self.apply(user, account, changes)
        changes = [{"op": "upsert_label", "id": "olk-inbox", "name": "Inbox", "role": "inbox"},
                   {"op": "upsert_label", "id": "olk-archive", "name": "Archive",
                    "role": "archive"}]
        changes += [self.msg(f"o{i}", f"c{i}", T0 + i * 1500 + 1,
                             ["olk-inbox"] if i < 15 else ["olk-archive"]) for i in range(20)]
        self.apply(self.a, self.oa, changes)
        self.assert_consistent()
        self.b_threads = {r[0] for r in self.rows(
            f"select id from threads where user_id = {self.b}")}
        self.b_messages = {r[0] for r in self.rows(
            f"select id from messages where user_id = {self.b}")}

    def expected(self, user, account, pred):
        """Thread ids, newest first, of the user's threads whose label roles
        and ids satisfy pred(roles, pids), from plain SQL over messages."""
        rows = self.rows(f"""
            select t.id, max(m.sent_at),
                   coalesce(string_agg(distinct l.role, ','), ''),
                   coalesce(string_agg(distinct l.provider_id, ','), '')
              from threads t join messages m on m.thread_id = t.id
              left join lateral unnest(m.label_ids) p on true
              left join labels l on l.account_id = m.account_id and l.provider_id = p
             where t.user_id = {user} {'' if account is None else f'and t.account_id = {account}'}
             group by t.id""")
        keep = [(r[1], int(r[0])) for r in rows
                if pred(set(filter(None, r[2].split(","))), set(filter(None, r[3].split(","))))]
        return [tid for _ts, tid in sorted(keep, reverse=True)]

    def walk(self, name, head, page=7):
        """Every page of a keyset-paginated query; returns the thread ids."""
        seen, cursor = [], (None, None)
        while True:
            rows = self.query(name, *head, *cursor, page)
            self.assertLessEqual(len(rows), page)
            seen += [int(r[0]) for r in rows]
            keys = [(int(r[9]), int(r[0])) for r in rows]
            self.assertEqual(keys, sorted(keys, reverse=True), "not newest first")
            if len(rows) < page:
                return seen
            cursor = keys[-1]
            self.assertLess(len(seen), 1000, "pagination does not end")

    def test_label_pages_walk_every_thread_once(self):
        cases = [
            ((self.a, self.ga, "INBOX", None), lambda roles, pids: "INBOX" in pids, 40),
            ((self.a, None, None, "inbox"), lambda roles, pids: "inbox" in roles, 55),
            ((self.a, self.oa, None, "inbox"), lambda roles, pids: "inbox" in roles, 15),
            ((self.a, None, "SENT", None), lambda roles, pids: "SENT" in pids, 60),
            ((self.a, None, None, "archive"), lambda roles, pids: "archive" in roles, 5),
        ]
        for head, pred, count in cases:
            with self.subTest(head=head):
                got = self.walk("AIN_Q_LIST_LABEL", head)
                self.assertEqual(len(got), len(set(got)), "a thread came twice")
                want = self.expected(self.a, head[1], pred)
                self.assertEqual(len(want), count)
                self.assertEqual(got, want)
                total, _unread = self.query("AIN_Q_COUNT_LABEL", *head)[0]
                self.assertEqual(int(total), count)
        # The unified view holds both accounts' threads.
        accounts = {int(r[2]) for r in self.query("AIN_Q_LIST_LABEL", self.a, None, None,
                                                  "inbox", None, None, 100)}
        self.assertEqual(accounts, {self.ga, self.oa})
        # Unread counts: every 7th of the 40 INBOX threads.
        self.assertEqual(self.query("AIN_Q_COUNT_LABEL", self.a, self.ga, "INBOX", None),
                         [("40", "6")])
        row = self.query("AIN_Q_LIST_LABEL", self.a, self.ga, "INBOX", None, None, None, 1)[0]
        # id, pid, account, latest message, ..., ms, count, unread, ..., labels
        self.assertEqual(row[1:4], ("t39", str(self.ga), "m39"))
        self.assertEqual((row[10], row[11], row[15]), ("2", "0", "{INBOX,SENT}"))

    def test_archive_excludes_inbox_trash_spam(self):
        for account in (self.ga, None):
            got = self.walk("AIN_Q_LIST_ARCHIVE", (self.a, account))
            want = self.expected(self.a, account,
                                 lambda roles, pids: not roles & set(HIDDEN))
            self.assertEqual(got, want)
        # Gmail: the 10 Label_1 threads; Outlook: the 5 in its Archive folder.
        self.assertEqual(len(self.walk("AIN_Q_LIST_ARCHIVE", (self.a, self.ga))), 10)
        self.assertEqual(len(self.walk("AIN_Q_LIST_ARCHIVE", (self.a, None))), 15)

    def test_no_query_crosses_users(self):
        a_thread = self.rows(f"select id from threads where account_id = {self.ga} "
                             f"and provider_id = 't1'")[0][0]
        b_thread = self.rows(f"select id from threads where account_id = {self.gb} "
                             f"and provider_id = 't1'")[0][0]
        b_message = self.rows(f"select id from messages where account_id = {self.gb} "
                              f"and provider_id = 'm1'")[0][0]
        self.assertEqual(self.query("AIN_Q_THREAD_ATTACHMENTS", self.b, b_thread)[0][1], "x1")
        runs = []
        for account in (None, self.ga, self.gb):
            runs += [
                ("AIN_Q_LIST_LABEL", (self.a, account, "INBOX", None, None, None, 500)),
                ("AIN_Q_LIST_LABEL", (self.a, account, None, "inbox", None, None, 500)),
                ("AIN_Q_LIST_ARCHIVE", (self.a, account, None, None, 500)),
                ("AIN_Q_THREAD", (self.a, account, "t1")),
                ("AIN_Q_MESSAGE", (self.a, account, "m1")),
                ("AIN_Q_COUNTS", (self.a, account)),
            ]
        for tid in (a_thread, b_thread):
            runs += [("AIN_Q_THREAD_MESSAGES", (self.a, tid)),
                     ("AIN_Q_THREAD_ATTACHMENTS", (self.a, tid))]
        runs += [("AIN_Q_MESSAGE_ATTACHMENTS", (self.a, b_message))]
        for name, args in runs:
            with self.subTest(query=name, args=args):
                rows = self.query(name, *args)
                if self.gb in args:
                    self.assertEqual(rows, [], "B's account, asked as A")
                if name in ("AIN_Q_LIST_LABEL", "AIN_Q_LIST_ARCHIVE", "AIN_Q_THREAD"):
                    self.assertFalse({r[0] for r in rows} & self.b_threads)
                    self.assertTrue(all(int(r[2]) != self.gb for r in rows))
                if name in ("AIN_Q_MESSAGE", "AIN_Q_THREAD_MESSAGES"):
                    self.assertFalse({r[0] for r in rows} & self.b_messages)
                    self.assertFalse({r[3] for r in rows} & self.b_threads)
                if name in ("AIN_Q_THREAD_ATTACHMENTS", "AIN_Q_MESSAGE_ATTACHMENTS"):
                    self.assertFalse({r[0] for r in rows} & self.b_messages)
                if name == "AIN_Q_COUNTS":
                    self.assertTrue(all(int(r[0]) in (self.ga, self.oa) for r in rows))
        self.assertEqual(self.query("AIN_Q_THREAD_MESSAGES", self.a, b_thread), [])
        self.assertEqual(self.query("AIN_Q_COUNT_LABEL", self.a, self.gb, "INBOX", None),
                         [("0", "0")])
        # As A, the overlapping ids find A's own rows, bodies included.
        msgs = self.query("AIN_Q_THREAD_MESSAGES", self.a, a_thread)
        self.assertEqual([(r[1], r[4], r[23], r[24]) for r in msgs],
                         [("r1", "t1", "f", None), ("m1", "t1", "t", "<b>one</b>")])
        self.assertEqual(self.query("AIN_Q_MESSAGE", self.a, None, "m1")[0][0], msgs[1][0])
        self.assertEqual(self.query("AIN_Q_MESSAGE_ATTACHMENTS", self.a, msgs[1][0])[0][1], "x1")
        self.assertEqual(self.query("AIN_Q_THREAD", self.a, None, "t1")[0][0], a_thread)
        counts = self.query("AIN_Q_COUNTS", self.a, None)
        self.assertIn((str(self.ga), "INBOX", "INBOX", "inbox", "40", "6"), counts)
        self.assertIn((str(self.oa), "olk-inbox", "Inbox", "inbox", "15", "0"), counts)
        applied = self.rows(f"prepare q as {self.q['AIN_Q_APPLY']};\n"
                            f"execute q({self.a}, {self.ga}, "
                            f"'[{{\"op\":\"set_flags\",\"id\":\"m2\",\"unread\":true}}]', null, false);")
        self.assertEqual(len(applied), 1)
        changed, outbox, events, replayed, n_events = applied[0]
        self.assertEqual([tuple(c) for c in json.loads(changed)],
                         [("counts", ""), ("label", "INBOX"), ("label", "SENT"),
                          ("message", "m2"), ("role", "inbox"), ("role", "sent"),
                          ("thread", "t2")])
        self.assertEqual((replayed, n_events), ("f", "2"))
        self.assertEqual([e["type"] for e in json.loads(events)],
                         ["email_updated", "unread_count_updated"])
        # The same transaction left its outbox row, naming the same changes
        # and events for the same user, until the writer deletes it.
        row = self.rows(f"select user_id, changed::text, events::text from mail_outbox "
                        f"where id = {outbox};")
        self.assertEqual(row[0][0], str(self.a))
        self.assertIn('["thread", "t2"]', row[0][1])
        self.assertEqual(json.loads(row[0][2]), json.loads(events))


class TestPlans(MailStoreCase):
    """A folder page at 20,000 threads comes from the thread_labels index."""

    def seed(self, user, account, n, batch=500):
        """n threads through ain_mail_apply, one message each, but every
        tenth thread gets a reply; returns seconds per batch."""
        sql = f"""
            select count(*) from ain_mail_apply({user}, {account}, (
              select jsonb_agg(x) from (
                select jsonb_build_object('op', 'upsert_message', 'id', 'm' || g,
                  'thread_id', 't' || (case when g >= {n} then (g - {n}) * 10 + 5 else g end),
                  'sent_at_ms', {T0} + g * 1000,
                  'subject', 'subject ' || g, 'from_name', 'Sender ' || g % 97,
                  'from_addr', 's' || g % 97 || '@x', 'to', 'me@x', 'snippet', 'words ' || g,
                  'labels', case when g % 10 = 0 then '["Label_1"]'::jsonb
                                 when g % 10 = 1 then '["TRASH"]'::jsonb
                                 when g % 3 = 0 then '["INBOX", "UNREAD"]'::jsonb
                                 else '["INBOX", "IMPORTANT"]'::jsonb end) as x
                  from generate_series(:lo, :hi) g) s));"""
        times = []
        for lo in range(0, n + n // 10, batch):
            start = time.monotonic()
            self.rows(sql.replace(":lo", str(lo)).replace(":hi", str(lo + batch - 1)))
            times.append(time.monotonic() - start)
        return times

    def explain(self, name, args, analyze=False, settings=""):
        rows = self.rows(f"{settings}prepare q as {self.q[name]};\n"
                         f"explain (format json{', analyze' if analyze else ''}) "
                         f"execute q({', '.join(lit(a) for a in args)});")
        return json.loads("".join(r[0] for r in rows))[0]

    def scans(self, plan):
        return [(n["Node Type"], n.get("Relation Name"), n.get("Index Name"))
                for n in plan_nodes(plan["Plan"])]

    def test_folder_page_uses_the_index(self):
        a, b = self.user("a@x"), self.user("b@x")
        ga, gb = self.account(a, "gmail", "a@gmail.com"), self.account(b, "gmail", "b@gmail.com")
        ob = self.account(b, "outlook", "b@outlook.com")
        times = self.seed(a, ga, 20000)
        self.seed(b, gb, 2000)
        self.seed(b, ob, 2000)
        self.rows("analyze")
        print(f"\n  seeding 20,000 threads: {len(times)} batches of 500 upserts, "
              f"median {sorted(times)[len(times) // 2] * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms per batch (through psql)")
        self.assertEqual(self.value(f"select count(*) from threads where user_id = {a}"), "20000")
        inbox = int(self.value(f"select total from labels where account_id = {ga} "
                               f"and provider_id = 'INBOX'"))
        self.assertGreater(inbox, 10000)
        deep = self.rows(f"select floor(extract(epoch from last_message_at) * 1000)::bigint, "
                         f"thread_id from thread_labels where user_id = {a} "
                         f"order by last_message_at desc, thread_id desc offset 9000 limit 1")[0]
        pages = [
            ("first page", (a, ga, "INBOX", None, None, None, 50)),
            ("deep page", (a, ga, "INBOX", None, int(deep[0]), int(deep[1]), 50)),
            ("unified by role", (a, None, None, "inbox", None, None, 50)),
        ]
        for what, args in pages:
            for mode in ("", "set plan_cache_mode = force_generic_plan;\n"):
                with self.subTest(page=what, generic=bool(mode)):
                    scans = self.scans(self.explain("AIN_Q_LIST_LABEL", args, settings=mode))
                    self.assertFalse([s for s in scans if s[0] == "Seq Scan"
                                      and s[1] in ("threads", "thread_labels")], scans)
                    self.assertIn("thread_labels_list_idx", [s[2] for s in scans], scans)
        for what, args in pages:
            plan = self.explain("AIN_Q_LIST_LABEL", args, analyze=True)
            print(f"  AIN_Q_LIST_LABEL {what}, 50 rows of {inbox}: "
                  f"execution {plan['Execution Time']:.3f} ms, planning "
                  f"{plan['Planning Time']:.3f} ms")
        plan = self.explain("AIN_Q_LIST_ARCHIVE", (a, None, None, None, 50), analyze=True)
        print(f"  AIN_Q_LIST_ARCHIVE first page: execution {plan['Execution Time']:.3f} ms")

        # Every query has an index path for every table it reads: with
        # sequential scans priced out, none remains, so no query has to read
        # other users' rows.
        tid = self.value(f"select id from threads where user_id = {a} limit 1")
        mid = self.value(f"select id from messages where user_id = {a} limit 1")
        every = [
            ("AIN_Q_LIST_LABEL", (a, ga, "INBOX", None, None, None, 50)),
            ("AIN_Q_LIST_LABEL", (a, None, None, "inbox", int(deep[0]), int(deep[1]), 50)),
            ("AIN_Q_LIST_ARCHIVE", (a, None, None, None, 50)),
            ("AIN_Q_LIST_ARCHIVE", (a, ga, int(deep[0]), int(deep[1]), 50)),
            ("AIN_Q_COUNT_LABEL", (a, None, None, "inbox")),
            ("AIN_Q_THREAD", (a, None, "t77")),
            ("AIN_Q_THREAD", (a, ga, "t77")),
            ("AIN_Q_THREAD_MESSAGES", (a, int(tid))),
            ("AIN_Q_THREAD_ATTACHMENTS", (a, int(tid))),
            ("AIN_Q_MESSAGE", (a, None, "m77")),
            ("AIN_Q_MESSAGE_ATTACHMENTS", (a, int(mid))),
            ("AIN_Q_COUNTS", (a, None)),
        ]
        for name, args in every:
            with self.subTest(query=name, args=args):
                scans = self.scans(self.explain(name, args, settings="set enable_seqscan = off;\n"))
                self.assertFalse([s for s in scans if s[0] == "Seq Scan"], scans)


if __name__ == "__main__":
    unittest.main()
