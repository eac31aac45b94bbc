"""The durable job queue (actors/jobs) with real PostgreSQL and real processes.

Jobs run on a job service written here as a raw MDP worker (jobs_worker.py, on the clean-room
MDP peer of tests/mdp_cleanroom) that answers JOB_RUN as each job's payload says and logs every
run's start and end, so the tests can prove what ran, in what order, and that no job ever ran
twice at once. The jobs actor runs in the bundle, or as its own processes (`ainbox actor jobs`)
to be killed with SIGKILL.
"""

import json
import os
import sys
import time
import unittest

import ainbox_faults as faults
import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "jobs_worker.py")


class JobsCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.pg = self.start_migrated_postgres()
        self.port, = free_ports(1)
        self.runlog = os.path.join(self.scratch, "runs.jsonl")
        self.client = None

    def tearDown(self):
        if self.client:
            self.client.close()

    # ------------------------------------------------------------- set-up

    def env(self, **extra):
        # Heartbeats of 1 s (liveness 3): the Python worker cannot beat while a job sleeps, and
        # its jobs sleep less than the 3 s after which the broker would count it dead.
        settings = dict(AINBOX_ACTORS="jobs", DATABASE_URL=self.pg.url, AINBOX_HEARTBEAT_MS="1000",
                        AINBOX_JOBS_BACKOFF_MS="50", AINBOX_JOBS_BACKOFF_MAX_MS="200",
                        AINBOX_HEALTH_SERVICES="jobs")
        settings.update(extra)
        return self.base_env(self.port, **settings)

    def start_bundle(self, **extra):
        self.e = self.env(**extra)
        self.spawn("bundle", ["run"], self.e)
        self.wait_services(self.e, ["jobs"])
        self.client = proto.Client(self.e["AINBOX_BROKER"])

    def start_worker(self, name="worker"):
        p = self.spawn_worker(name)
        wait_until(lambda: "ready" in p.log(), 15, f"{name} to start")
        return p

    def spawn_worker(self, name):
        from ainbox_harness import Proc
        p = Proc(name, [sys.executable, WORKER, self.e["AINBOX_BROKER"], "sync", self.runlog,
                        self.e["AINBOX_HEARTBEAT_MS"]], self.e, self.scratch)
        self.procs.append(p)
        return p

    # ------------------------------------------------------------- helpers

    def enqueue(self, job=None, jobs=None, user=0, status="OK"):
        body = {"jobs": jobs} if jobs is not None else job
        reply = self.client.call("jobs", "JOB_ENQUEUE", proto.pack(body), user=user)
        self.assertIsNotNone(reply, "JOB_ENQUEUE unanswered")
        self.assertEqual(reply["status"], status, proto.body_map(reply))
        return proto.body_map(reply)

    def runs(self):
        if not os.path.exists(self.runlog):
            return []
        with open(self.runlog) as f:
            return [json.loads(line) for line in f if line.strip()]

    def ended(self, job_id):
        return [r for r in self.runs() if r["id"] == job_id and r["ev"] == "end"]

    def wait_ended(self, ids, timeout=30):
        wait_until(lambda: all(self.ended(i) for i in ids), timeout, f"jobs {ids} to run")

    def stats(self):
        return self.admin(self.e, "--json", "jobs")

    def wait_empty(self, timeout=60):
        def empty():
            s = self.stats()
            return sum(s["pending"].values()) + s["running"] + s["delayed"] == 0
        wait_until(empty, timeout, "the queue to empty", interval=0.3)

    def assert_never_twice_at_once(self, killed=()):
        """No two runs of one job overlap. A run whose worker was killed (pid, kill time) ends
        when it was killed."""
        kill_at = dict(killed)
        open_runs, spans = {}, {}
        for r in self.runs():
            key = (r["id"], r["pid"], r["attempt"])
            if r["ev"] == "start":
                open_runs[key] = r["t"]
            elif key in open_runs:
                spans.setdefault(r["id"], []).append((open_runs.pop(key), r["t"]))
        for (job, pid, _), start in open_runs.items():
            self.assertIn(pid, kill_at, f"job {job}: a run without an end in a live worker")
            spans.setdefault(job, []).append((start, kill_at[pid]))
        for job, s in spans.items():
            s.sort()
            for (a0, a1), (b0, b1) in zip(s, s[1:]):
                self.assertLessEqual(a1, b0, f"job {job} ran twice at once: {s}")
        return spans


class OutcomesTest(JobsCase):

    def test_outcomes_retry_dead_letter_and_dlq_commands(self):
        self.start_bundle()
        self.start_worker()
        done = self.enqueue({"kind": "t", "user": 7, "payload": {"act": "done"}})
        self.assertTrue(done["created"])
        cont = self.enqueue({"kind": "t", "user": 7, "payload": {"act": "continue", "left": 2}})
        sent = time.time()
        delayed = self.enqueue({"kind": "t", "user": 7, "delay_ms": 400, "payload": {}})
        delay = self.enqueue({"kind": "t", "user": 7,
                              "payload": {"delay_times": 2, "delay_ms": 300}, "max_attempts": 1})
        flaky = self.enqueue({"kind": "t", "user": 8, "max_attempts": 5,
                              "payload": {"fail_first": 2}})
        retry = self.enqueue({"kind": "t", "user": 8, "max_attempts": 3,
                              "payload": {"act": "retry"}})
        fail = self.enqueue({"kind": "t", "user": 8, "payload": {"act": "fail"}})
        self.wait_ended([done["id"], cont["id"], delayed["id"], delay["id"], flaky["id"]])
        self.wait_empty()
        # continue: three runs, the payload carried on, attempts reset each time.
        self.assertEqual([r["result"] for r in self.ended(cont["id"])],
                         ["continue", "continue", "done"])
        # a delayed job does not start before its time.
        started = [r for r in self.runs() if r["id"] == delayed["id"]][0]["t"]
        self.assertGreaterEqual(started, sent + 0.4)
        self.assertEqual(len(self.ended(delayed["id"])), 1)
        # delay: not counted as an attempt (max_attempts 1, yet three runs, the last done).
        runs = self.ended(delay["id"])
        self.assertEqual([r["result"] for r in runs], ["delay", "delay", "done"])
        self.assertEqual({r["attempt"] for r in runs}, {1})
        starts = [r["t"] for r in self.runs() if r["id"] == delay["id"] and r["ev"] == "start"]
        self.assertGreaterEqual(starts[1] - starts[0], 0.3, "the worker's delay_ms is kept")
        # retry: attempts count up with back-off, then done.
        self.assertEqual([r["attempt"] for r in self.ended(flaky["id"])], [1, 2, 3])
        # retry past max_attempts, and fail at once: dead letters.
        self.assertEqual([r["attempt"] for r in self.ended(retry["id"])], [1, 2, 3])
        self.assertEqual(len(self.ended(fail["id"])), 1)
        dlq = self.admin(self.e, "--json", "dlq", "list")
        self.assertEqual(dlq["total"], 2)
        dead = {j["id"]: j for j in dlq["jobs"]}
        self.assertEqual(set(dead), {retry["id"], fail["id"]})
        self.assertEqual(dead[retry["id"]]["attempts"], 3)
        self.assertEqual(dead[retry["id"]]["error"], "told to retry")
        self.assertEqual(dead[retry["id"]]["payload"], {"act": "retry"})
        self.assertEqual(dead[fail["id"]]["attempts"], 1)
        stats = self.stats()
        self.assertEqual(stats["dead"], 2)
        for name in ("processed", "failed", "retried", "dead", "delayed", "continued"):
            self.assertGreater(stats["counters"][name], 0, name)
        # The table view works too.
        text = self.admin(self.e, "dlq", "list").stdout
        self.assertIn("told to retry", text)
        self.assertIn("PRIORITY", self.admin(self.e, "jobs").stdout)
        # dlq retry ID: back in the queue with fresh attempts; it fails three times again.
        self.assertEqual(self.admin(self.e, "--json", "dlq", "retry", str(retry["id"])),
                         {"retried": 1, "merged": 0})
        wait_until(lambda: len(self.ended(retry["id"])) == 6, 30, "the retried job's runs")
        self.wait_empty()
        self.assertEqual([r["attempt"] for r in self.ended(retry["id"])], [1, 2, 3, 1, 2, 3])
        # dlq purge all: gone for good.
        self.assertEqual(self.admin(self.e, "--json", "dlq", "purge", "all"), {"purged": 2})
        self.assertEqual(self.admin(self.e, "--json", "dlq", "list")["total"], 0)
        self.assertEqual(self.admin(self.e, "--json", "dlq", "retry", "all"),
                         {"retried": 0, "merged": 0})
        self.assertNotEqual(self.admin(self.e, "dlq", "retry", check=False).returncode, 0)
        self.assert_never_twice_at_once()

    def test_enqueue_checks_its_input(self):
        self.start_bundle()
        bad = [{"user": 1}, {"kind": "t"}, {"kind": "t", "user": 1, "priority": "urgent"},
               {"kind": "t", "user": 1, "payload": [1]}, {"kind": "t", "user": 1, "delay_ms": -1},
               {"kind": "t", "user": 1, "max_attempts": 0},
               {"kind": "t", "user": 1, "service": "nobody"}, {"jobs": []},
               {"jobs": [{"kind": "t", "user": 1}] * 1001}]
        for body in bad:
            reply = self.client.call("jobs", "JOB_ENQUEUE", proto.pack(body))
            self.assertEqual(reply["status"], "INVALID", body)
        # A user may enqueue only their own jobs; a trusted service (user 0) anyone's.
        self.enqueue({"kind": "t", "user": 5}, user=6, status="INVALID")
        self.assertTrue(self.enqueue({"kind": "t", "user": 5}, user=5)["created"])
        # Operators only.
        reply = self.client.call("jobs", "JOBS_STATS", b"", user=5)
        self.assertEqual(reply["status"], "DENIED")
        reply = self.client.call("jobs", "DLQ_PURGE", proto.pack({"id": 1, "all": True}))
        self.assertEqual(reply["status"], "INVALID")


class UniqueTest(JobsCase):

    def test_one_pending_job_per_unique_key(self):
        self.start_bundle()
        a = self.enqueue({"kind": "sync", "user": 3, "unique": "acct-9", "delay_ms": 60000})
        b = self.enqueue({"kind": "sync", "user": 3, "unique": "acct-9"})
        self.assertEqual((b["id"], b["created"]), (a["id"], False))
        batch = self.enqueue(jobs=[{"kind": "sync", "user": 3, "unique": "acct-10"},
                                   {"kind": "sync", "user": 3, "unique": "acct-10"},
                                   {"kind": "sync", "user": 3, "unique": "acct-9"}])["results"]
        self.assertTrue(batch[0]["created"])
        self.assertEqual(batch[1], {"id": batch[0]["id"], "created": False})
        self.assertEqual(batch[2], {"id": a["id"], "created": False})
        # While one runs, another may wait beside it.
        self.start_worker()
        c = self.enqueue({"kind": "sync", "user": 3, "unique": "acct-11",
                          "payload": {"sleep_ms": 1500}})
        wait_until(lambda: any(r["id"] == c["id"] for r in self.runs()), 15, "the job to start")
        d = self.enqueue({"kind": "sync", "user": 3, "unique": "acct-11"})
        self.assertTrue(d["created"])
        self.assertNotEqual(d["id"], c["id"])
        self.wait_ended([c["id"], d["id"], batch[0]["id"]])

    def test_a_continuation_merged_into_a_pending_job_keeps_its_start_and_payload(self):
        # A high-priority job running with its unique key, and a low one of the same key
        # pending for a minute (the sync actor's poll, beside a running backfill): the running
        # one's `continue` merges into the pending one, which must run now, with the payload
        # the continuation gave, not in a minute at low priority.
        self.start_bundle()
        self.start_worker()
        c = self.enqueue({"kind": "sync", "user": 4, "unique": "acct-12", "priority": "high",
                          "payload": {"act": "continue", "left": 2, "sleep_ms": 1500}})
        wait_until(lambda: any(r["id"] == c["id"] for r in self.runs()), 15, "the job to start")
        d = self.enqueue({"kind": "sync", "user": 4, "unique": "acct-12", "priority": "low",
                          "delay_ms": 60000, "payload": {"act": "done"}})
        self.assertTrue(d["created"])
        # c's continuation (left 1) is d's payload now: d answers continue once, then done.
        wait_until(lambda: [r["result"] for r in self.ended(d["id"])] == ["continue", "done"],
                   20, "the merged job to run now with the continuation's payload")
        self.assertFalse(self.ended(c["id"]) and
                         [r["result"] for r in self.ended(c["id"])] != ["continue"])
        self.wait_empty()


class SchedulingTest(JobsCase):

    def test_low_priority_is_not_starved(self):
        # One slot per priority and three workers: high's backlog cannot hold low back.
        self.start_bundle(AINBOX_JOBS_WORKERS="1/1/1")
        for i in range(3):
            self.start_worker(f"worker{i}")
        high = self.enqueue(jobs=[{"kind": "h", "user": i + 1, "priority": "high",
                                   "payload": {"sleep_ms": 60}} for i in range(20)])["results"]
        low = self.enqueue(jobs=[{"kind": "l", "user": i + 1, "priority": "low",
                                  "payload": {"sleep_ms": 60}} for i in range(4)])["results"]
        ids = [r["id"] for r in high + low]
        self.wait_ended(ids, timeout=60)
        ends = {r["id"]: r["t"] for r in self.runs() if r["ev"] == "end"}
        last_high = max(ends[r["id"]] for r in high)
        self.assertTrue(all(ends[r["id"]] < last_high for r in low),
                        "every low job ran before the high backlog was done")
        # Never more than one job of a priority at once (its pool).
        running, peak = {}, {}
        for r in sorted(self.runs(), key=lambda r: r["t"]):
            k = r["kind"]
            running[k] = running.get(k, 0) + (1 if r["ev"] == "start" else -1)
            peak[k] = max(peak.get(k, 0), running[k])
        self.assertEqual(peak, {"h": 1, "l": 1})
        self.assert_never_twice_at_once()

    def test_no_busy_polling(self):
        # High's one slot busy for 2.5 s with more high jobs ready, medium idle: the actor must
        # wait for the slot, not claim over and over (nor poll while the queue is empty).
        self.start_bundle(AINBOX_JOBS_WORKERS="1/1/0")
        self.start_worker()
        self.enqueue({"kind": "h", "user": 1, "priority": "high", "payload": {"sleep_ms": 2500}})
        wait_until(lambda: self.runs(), 15, "the long job to start")
        # More arrive while the slot is taken (the enqueue's NOTIFY wakes the actor).
        self.enqueue(jobs=[{"kind": "h", "user": 1, "priority": "high"} for _ in range(3)])

        def claims():
            return self.admin(self.e, "--json", "stats", "jobs")["metrics"]["jobs.claims"]
        before = claims()
        time.sleep(1.5)
        self.assertLessEqual(claims() - before, 6, "claims while waiting for a slot")
        self.wait_empty()
        before = claims()
        time.sleep(1.5)
        self.assertLessEqual(claims() - before, 2, "claims while the queue is empty")

    def test_one_users_backlog_does_not_starve_another(self):
        self.start_bundle(AINBOX_JOBS_WORKERS="0/1/0")
        hog = self.enqueue(jobs=[{"kind": "hog", "user": 1, "payload": {"sleep_ms": 20}}
                                 for _ in range(40)])["results"]
        other = self.enqueue(jobs=[{"kind": "other", "user": 2} for _ in range(3)])["results"]
        self.start_worker()
        self.wait_ended([r["id"] for r in hog + other], timeout=60)
        order = [r["user"] for r in self.runs() if r["ev"] == "start"]
        # Fair order interleaves the users: user 2's jobs all ran among the first few.
        self.assertEqual(order.count(2), 3)
        self.assertLess(max(i for i, u in enumerate(order) if u == 2), 8, order)


class KillTest(JobsCase):

    def test_worker_killed_mid_job_the_job_runs_again(self):
        self.start_bundle()
        first = self.start_worker("worker1")
        job = self.enqueue({"kind": "t", "user": 1, "payload": {"sleep_ms": 1500}})
        wait_until(lambda: any(r["id"] == job["id"] for r in self.runs()), 15, "the run")
        first.kill9()
        killed_at = time.time()
        self.start_worker("worker2")
        self.wait_ended([job["id"]], timeout=60)
        self.wait_empty()
        ends = self.ended(job["id"])
        self.assertEqual(len(ends), 1)
        self.assertNotEqual(ends[0]["pid"], first.pid)
        self.assert_never_twice_at_once(killed=[(first.pid, killed_at)])
        self.assertEqual(self.stats()["dead"], 0)

    def test_jobs_actor_killed_its_jobs_run_elsewhere(self):
        # A broker, two jobs actors and two workers, each its own process; short leases.
        self.e = self.env(AINBOX_JOBS_LEASE_MS="3000")
        self.spawn("broker", ["broker"], self.e)
        actors = [self.spawn(f"jobs{i}", ["actor", "jobs"], self.e) for i in range(2)]
        self.wait_services(self.e, ["jobs"])
        wait_until(lambda: all("jobs: workers" in a.log() for a in actors), 15, "both actors")
        self.client = proto.Client(self.e["AINBOX_BROKER"])
        for i in range(2):
            self.start_worker(f"worker{i}")
        ids = [r["id"] for r in self.enqueue(jobs=[
            {"kind": "t", "user": i % 7 + 1, "payload": {"sleep_ms": 100}}
            for i in range(60)])["results"]]
        # Kill the first actor while it holds leases (its owner names its pid).
        def holding():
            rows = self.pg.psql("select count(*) from jobs where state = 'running' and "
                                f"lease_owner like '%/{actors[0].pid}/%'")
            return int(rows[0][0]) > 0
        wait_until(holding, 30, "the first actor to hold jobs", interval=0.01)
        actors[0].kill9()
        self.wait_ended(ids, timeout=90)
        self.wait_empty(timeout=90)
        self.assertEqual(self.admin(self.e, "--json", "dlq", "list")["total"], 0)
        self.assert_never_twice_at_once()
        self.assertEqual({r["id"] for r in self.runs() if r["ev"] == "end"}, set(ids))
        # What the dead actor held ran again, under the other one's lease.
        ends = [r["id"] for r in self.runs() if r["ev"] == "end"]
        self.assertGreater(len(ends), len(set(ends)), "a job of the killed actor ran again")


class StoreFaultTest(JobsCase):
    """PostgreSQL stopped, then SIGSTOPped, under a stream of jobs: the actor neither crashes nor
    loses a job; they wait and run once the store is back."""

    def enqueue_ok(self):
        reply = self.client.call("jobs", "JOB_ENQUEUE", proto.pack({"kind": "t", "user": 1}),
                                 timeout_ms=2000)
        return reply is not None and reply["status"] == "OK"

    def test_a_stalled_store_delays_jobs_never_loses_them(self):
        self.start_bundle(AINBOX_PG_TIMEOUT_MS="1000", AINBOX_JOBS_LEASE_MS="4000")
        bundle = self.procs[-1]
        self.start_worker()
        ids = [r["id"] for r in self.enqueue(jobs=[
            {"kind": "t", "user": i % 5 + 1, "payload": {"sleep_ms": 50}} for i in range(30)])[
                "results"]]
        wait_until(lambda: any(r["ev"] == "end" for r in self.runs()), 15, "a first run")
        for fault in (faults.PgStopped(self.pg), faults.PgFrozen(self.pg)):
            with fault:
                # Enqueues fail while the store is away (answered, not hung, not crashed)...
                reply = self.client.call("jobs", "JOB_ENQUEUE",
                                         proto.pack({"kind": "t", "user": 1}), timeout_ms=2000)
                self.assertTrue(reply is None or reply["status"] != "OK", reply)
                time.sleep(2.5)  # outcomes and claims fail meanwhile
                self.assertTrue(bundle.alive())
            # ...and work again once it is back.
            wait_until(lambda: self.enqueue_ok(), 30, "enqueue after the fault")
        self.wait_ended(ids, timeout=90)
        self.wait_empty(timeout=90)
        self.assertEqual(self.admin(self.e, "--json", "dlq", "list")["total"], 0)
        self.assert_never_twice_at_once()
        self.assertTrue(bundle.alive())


if __name__ == "__main__":
    unittest.main()
