"""The rate-limit actor against a real Redis.

Three processes hammering one Gmail account through three brokers (as on
three hosts) admit exactly the quota, over repeated runs; with refill, no
window of the policy's length ever holds more than its limit (checked on
Redis's own clock, which every answer carries); Outlook's concurrency
leases are honoured and a killed holder's slot comes back when its lease
expires; Redis killed and restarted under traffic (provider quotas fail
closed, the API limit falls back to a per-process share, recovery without
a restart); the API limit is per user; usage and reset (operators only);
malformed requests answered INVALID. The edge takes the API limit in local
grants charged up front: one edge or two never admit more than the quota,
grants expire, and a grant of at most one unit is one round trip a request.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def hammer(endpoint, body, user, count, seconds, inflight):
    """Sends RATE_CHECK `body` as `user` until `count` answers or `seconds`
    passed, keeping `inflight` requests out; returns [(allowed, now_us)]."""
    client = proto.Client(endpoint)
    packed = proto.pack(body)
    out, pending = [], set()
    deadline = time.monotonic() + seconds
    sent = 0
    while (sent < count and time.monotonic() < deadline) or pending:
        while sent < count and len(pending) < inflight and time.monotonic() < deadline:
            pending.add(client.send("ratelimit", "RATE_CHECK", packed, user=user))
            sent += 1
        reply = client.recv(max(1, int((deadline + 5 - time.monotonic()) * 1000)))
        if reply is None:
            break
        if reply["corr"] in pending:
            pending.discard(reply["corr"])
            data = proto.body_map(reply)
            out.append((reply["status"], data.get("allowed"), data.get("now_us")))
    client.close()
    return out


class RateLimitCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()
        self.clients = {}

    def start_limiter(self, name="ratelimit", broker=None, **extra):
        """A broker (unless `broker` names one's environment) and one
        rate-limit actor process on it; returns that broker's environment."""
        if broker is None:
            port, = free_ports(1)
            env = self.base_env(port, REDIS_URL=self.redis.url, **extra)
            self.spawn(f"broker-{port}", ["broker"], env)
        else:
            env = dict(broker)
        proc = self.spawn(name, ["actor", "ratelimit"], env)
        self.wait_services(env, ["ratelimit"])
        wait_until(lambda: self.metric(env, "ratelimit.redis.connected") == 1, 15,
                   "the limiter to reach Redis")
        return env, proc

    def client(self, env):
        ep = env["AINBOX_BROKER"]
        if ep not in self.clients:
            self.clients[ep] = proto.Client(ep)
            self.addCleanup(self.clients[ep].close)
        return self.clients[ep]

    def call(self, env, msg, body, user=1):
        reply = self.client(env).call("ratelimit", msg, proto.pack(body), user=user)
        self.assertIsNotNone(reply, f"no reply to {msg} {body}")
        return reply["status"], proto.body_map(reply)

    def check(self, env, body, user=1):
        status, data = self.call(env, "RATE_CHECK", body, user)
        self.assertEqual(status, "OK", data)
        return data

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.redis.socket, "--raw"] + list(args),
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def metric(self, env, name):
        reply = self.client(env).call("ratelimit", "STATS", b"", timeout_ms=2000)
        return proto.body_map(reply)["metrics"].get(name) if reply else None

    def hammer_procs(self, envs, body, user, count, seconds, inflight=16):
        """One hammering process per broker environment, all at once."""
        procs = [subprocess.Popen(
            [sys.executable, os.path.join(HERE, "test_ratelimit.py"), "hammer",
             env["AINBOX_BROKER"], json.dumps(body), str(user), str(count), str(seconds),
             str(inflight)], stdout=subprocess.PIPE, env=dict(os.environ))
            for env in envs]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=seconds + 60)
            self.assertEqual(p.returncode, 0)
            results.append(json.loads(out))
        return results

    # ------------------------------------------------------------- exactness

    def test_three_processes_admit_exactly_the_quota(self):
        """600 units/hour with a 500-unit burst: the next unit is due after
        36 s, so while the test runs exactly 500 units (100 messages.get at
        the old projects' 5 units) can be admitted, however the three
        processes interleave."""
        limits = "gmail.user=600/1h/500"
        envs = [self.start_limiter(f"rl{i}", AINBOX_RATELIMITS=limits, AINBOX_GMAIL_QUOTA="old")[0]
                for i in range(3)]
        for run in range(4):
            body = {"quota": "gmail", "account": f"run{run}@example.com",
                    "method": "messages.get"}
            results = self.hammer_procs(envs, body, user=7, count=150, seconds=20)
            answers = [a for r in results for a in r]
            self.assertEqual(len(answers), 450)
            self.assertTrue(all(status == "OK" for status, _, _ in answers))
            admitted = sum(1 for _, allowed, _ in answers if allowed)
            self.assertEqual(admitted, 100,
                             f"run {run}: {[sum(1 for a in r if a[1]) for r in results]}")

    def test_no_window_over_its_limit_with_refill(self):
        """100 units per 2 s, burst 50 (one unit every 40 ms after it):
        hammered for 5 s by three processes, no 2 s window (on Redis's
        clock) holds more than 100 admissions, and the admissions are the
        burst plus one per emission interval (nothing lost, nothing extra)."""
        limits = "gmail.user=100/2s/50"
        envs = [self.start_limiter(f"rl{i}", AINBOX_RATELIMITS=limits)[0] for i in range(3)]
        body = {"quota": "gmail", "account": "refill@example.com", "units": 1}
        results = self.hammer_procs(envs, body, user=7, count=20000, seconds=5, inflight=8)
        times = sorted(t for r in results for _, allowed, t in r if allowed)
        self.assertGreater(len(times), 100)
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - 2_000_000:
                j += 1
            self.assertLessEqual(i - j + 1, 100, f"window ending at {t}")
        t_emission = 2_000_000 // 50
        expected = 50 + (times[-1] - times[0]) // t_emission
        self.assertLessEqual(len(times), expected + 1)
        self.assertGreaterEqual(len(times), expected - 1)

    def test_cost_weighted_units_and_project_bucket(self):
        env, _ = self.start_limiter(AINBOX_RATELIMITS="gmail.user=1000/1h/500,"
                                    "gmail.project=1000/1h/300")
        # messages.send costs 100 units: three fit the account's 500...
        for _ in range(3):
            d = self.check(env, {"quota": "gmail", "account": "a@x", "method": "messages.send"})
            self.assertTrue(d["allowed"], d)
        # ...but the project's 300 are spent: refused by gmail.project.
        d = self.check(env, {"quota": "gmail", "account": "b@x", "method": "messages.send"})
        self.assertFalse(d["allowed"])
        self.assertEqual(d["policy"], "gmail.project")
        self.assertGreater(d["retry_after_ms"], 0)
        # All or nothing: b@x's own bucket was not charged by the refusal.
        st, usage = self.call(env, "RATE_USAGE", {"user": 1}, user=0)
        self.assertEqual(st, "OK")
        b = [u for u in usage["usage"] if u["subject"] == "b@x"]
        self.assertEqual(b, [], "a refused decision charges nothing")
        a = [u for u in usage["usage"] if u["subject"] == "a@x"][0]
        self.assertEqual((a["policy"], a["used"]), ("gmail.user", 300))
        # The guide's requests policy counts calls, not units (a fresh
        # Redis: these limiters' project bucket differs).
        self.redis_cli("FLUSHALL")
        env2, _ = self.start_limiter("rl-req", AINBOX_RATELIMIT_GMAIL_USER="requests",
                                     AINBOX_RATELIMITS="gmail.user.requests=10/1h/3")
        for i in range(4):
            d = self.check(env2, {"quota": "gmail", "account": "c@x", "method": "messages.send"})
            self.assertEqual(d["allowed"], i < 3)
            self.assertEqual(d["buckets"][0]["policy"], "gmail.user.requests")

    def test_gmail_quota_generations(self):
        # New Cloud projects (the default): messages.get 20 units, threads.get 40, of 6,000
        # a minute; AINBOX_GMAIL_QUOTA=old: 5 and 10, of 15,000.
        # Costs are read under a policy that refills one unit in 2.4 hours, so `used` cannot
        # move while the test reads it; the limits, under the defaults.
        slow = "gmail.user=1000/1d/990"
        for name, extra, get, thread, limit in (("rl-new", {}, 20, 40, 6000),
                                                ("rl-old", {"AINBOX_GMAIL_QUOTA": "old"}, 5, 10,
                                                 15000)):
            for rates, want in ((slow, (get + thread, 1000)), ("", (None, limit))):
                self.redis_cli("FLUSHALL")
                env, proc = self.start_limiter(name, AINBOX_RATELIMITS=rates, **extra)
                for method in ("messages.get", "threads.get"):
                    d = self.check(env, {"quota": "gmail", "account": "g@x", "method": method})
                    self.assertTrue(d["allowed"], d)
                st, usage = self.call(env, "RATE_USAGE", {"user": 1}, user=0)
                self.assertEqual(st, "OK")
                g = [u for u in usage["usage"] if u["subject"] == "g@x" and
                     u["policy"] == "gmail.user"][0]
                got = (g["used"] if want[0] is not None else None, g["limit"])
                self.assertEqual(got, want, (name, rates, g))
                proc.stop()

    # ------------------------------------------------------------- leases

    def test_outlook_leases_and_a_killed_holder(self):
        env, _ = self.start_limiter(AINBOX_RATELIMITS="outlook.concurrent=4/5s")
        want = {"quota": "outlook", "account": "box@example.com", "lease": True}
        leases = []
        for _ in range(4):
            d = self.check(env, want)
            self.assertTrue(d["allowed"], d)
            leases.append(d["lease"])
        d = self.check(env, want)
        self.assertFalse(d["allowed"])
        self.assertEqual(d["policy"], "outlook.concurrent")
        self.assertLessEqual(d["retry_after_ms"], 100)
        self.assertNotIn("lease", d)
        # Releasing gives the slot back at once; twice is harmless.
        self.assertEqual(self.call(env, "RATE_RELEASE", {"lease": leases[0]})[1],
                         {"released": True})
        self.assertEqual(self.call(env, "RATE_RELEASE", {"lease": leases[0]})[1],
                         {"released": False})
        again = self.check(env, want)
        self.assertTrue(again["allowed"])
        for lease in leases[1:]:
            self.call(env, "RATE_RELEASE", {"lease": lease})
        self.assertEqual(self.metric(env, "ratelimit.leases.released"), 4)
        # A holder killed with two leases: they stay held until they expire.
        script = ("import sys, ainbox_proto as p\n"
                  "c = p.Client(sys.argv[1])\n"
                  "for _ in range(2):\n"
                  "    r = c.call('ratelimit', 'RATE_CHECK', p.pack({'quota': 'outlook', "
                  "'account': 'box@example.com', 'lease': True}), user=1)\n"
                  "    assert p.body_map(r)['allowed']\n"
                  "print('held', flush=True)\n"
                  "sys.stdin.read()\n")
        holder = subprocess.Popen([sys.executable, "-c", script, env["AINBOX_BROKER"]],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=dict(os.environ))
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), b"held")
        holder.kill()
        holder.wait(5)
        # 1 of ours + 2 of the dead holder's: one more fits, then refused.
        d = self.check(env, want)
        self.assertTrue(d["allowed"], d)
        self.assertFalse(self.check(env, want)["allowed"])
        # Ours released, the dead holder's two still count.
        self.call(env, "RATE_RELEASE", {"lease": d["lease"]})
        self.call(env, "RATE_RELEASE", {"lease": again["lease"]})
        ours = [self.check(env, want) for _ in range(3)]
        self.assertEqual([o["allowed"] for o in ours], [True, True, False])
        for o in ours[:2]:
            self.call(env, "RATE_RELEASE", {"lease": o["lease"]})

        def held():
            usage = self.call(env, "RATE_USAGE", {}, user=1)[1]["usage"]
            return sum(u["used"] for u in usage if u["policy"] == "outlook.concurrent")
        self.assertEqual(held(), 2)
        # Once their leases expire (5 s), every slot is free again.
        wait_until(lambda: held() == 0, 10, "the dead holder's leases to expire")
        self.assertEqual([self.check(env, want)["allowed"] for _ in range(5)],
                         [True] * 4 + [False])

    # ------------------------------------------------------------- Redis down

    def test_redis_killed_and_restarted(self):
        limits = "api.user=100/1h/50"
        env_a, _ = self.start_limiter("rl-a", AINBOX_RATELIMITS=limits, AINBOX_RATELIMIT_SHARES=2,
                                      AINBOX_RATELIMIT_RETRY_MS=1500, AINBOX_REDIS_TIMEOUT_MS=300)
        env_b, _ = self.start_limiter("rl-b", AINBOX_RATELIMITS=limits, AINBOX_RATELIMIT_SHARES=2,
                                      AINBOX_RATELIMIT_RETRY_MS=1500, AINBOX_REDIS_TIMEOUT_MS=300)
        gmail = {"quota": "gmail", "account": "down@example.com", "method": "messages.get"}
        self.assertTrue(self.check(env_a, gmail)["allowed"])
        self.assertTrue(self.check(env_a, {"quota": "api"}, user=3)["allowed"])
        self.redis.proc.kill9()
        wait_until(lambda: self.metric(env_a, "ratelimit.redis.connected") == 0 and
                   self.metric(env_b, "ratelimit.redis.connected") == 0, 15,
                   "both limiters to notice Redis is gone")
        # Provider quotas fail closed, with a time to retry.
        d = self.check(env_a, gmail)
        self.assertFalse(d["allowed"])
        self.assertTrue(d["degraded"])
        self.assertEqual(d["retry_after_ms"], 1500)
        # The API limit: each process admits its share (50 / 2 shares = 25
        # burst), and only that.
        for env in (env_a, env_b):
            answers = [self.check(env, {"quota": "api"}, user=4) for _ in range(30)]
            self.assertTrue(all(a["degraded"] for a in answers))
            self.assertEqual(sum(1 for a in answers if a["allowed"]), 25)
            self.assertEqual(answers[0]["limit"], 50)
        self.assertGreater(self.metric(env_a, "ratelimit.refused.redis_down"), 0)
        self.assertGreaterEqual(self.metric(env_a, "ratelimit.api.local_share"), 30)
        # Usage says it does not know rather than guess.
        self.assertTrue(self.call(env_a, "RATE_USAGE", {}, user=4)[1]["degraded"])
        # Redis back on the same port: both recover without a restart.
        self.redis.start()
        for env in (env_a, env_b):
            wait_until(lambda env=env: self.metric(env, "ratelimit.redis.connected") == 1, 20,
                       "the limiter to reconnect")
            d = self.check(env, gmail)
            self.assertTrue(d["allowed"], d)
            self.assertNotIn("degraded", d)
        # A script cache emptied under a running limiter (SCRIPT FLUSH, or a
        # restart the connection did not notice): NOSCRIPT, the batch is
        # sent again with the script's text, and decided.
        reloads = self.metric(env_a, "ratelimit.redis.script_reloads")
        self.redis_cli("SCRIPT", "FLUSH")
        d = self.check(env_a, gmail)
        self.assertTrue(d["allowed"], d)
        self.assertNotIn("degraded", d)
        self.assertEqual(self.metric(env_a, "ratelimit.redis.script_reloads"), reloads + 1)

    # ------------------------------------------------------------- API limit

    def test_api_limit_is_per_user(self):
        env, _ = self.start_limiter(AINBOX_RATELIMITS="api.user=10/1h/5")
        for user in (11, 12):
            answers = [self.check(env, {"quota": "api"}, user=user) for _ in range(7)]
            self.assertEqual([a["allowed"] for a in answers], [True] * 5 + [False] * 2)
            self.assertEqual([a["remaining"] for a in answers[:5]], [4, 3, 2, 1, 0])
            refused = answers[-1]
            self.assertEqual((refused["policy"], refused["limit"], refused["window_s"]),
                             ("api.user", 10, 3600))
            # One unit every 3600 s / (10 - 5) = 720 s.
            self.assertGreater(refused["retry_after_ms"], 700_000)
            self.assertLessEqual(refused["retry_after_ms"], 720_000)
        # Repeats are refused from the deny cache, without Redis.
        before = self.metric(env, "ratelimit.redis.calls")
        for _ in range(5):
            self.assertFalse(self.check(env, {"quota": "api"}, user=11)["allowed"])
        self.assertEqual(self.metric(env, "ratelimit.redis.calls"), before)
        self.assertGreaterEqual(self.metric(env, "ratelimit.refused.cached"), 5)
        # The envelope user is the subject: nobody can name another one.
        status, data = self.call(env, "RATE_CHECK", {"quota": "api", "account": "12"}, user=11)
        self.assertEqual(status, "INVALID")

    # ------------------------------------------------------------- the edge

    def start_bundle(self, actors, **extra):
        port, = free_ports(1)
        env = self.base_env(port, REDIS_URL=self.redis.url, AINBOX_DEV_TOKEN="dev",
                            AINBOX_ACTORS=actors, AINBOX_HEALTH_SERVICES="monitor", **extra)
        self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        return env

    def test_edge_answers_429_with_ratelimit_headers(self):
        # Grants on (the default), lasting longer than the test: r counts what the user can
        # still spend (the bucket's remaining plus units the edge holds), t the units charged
        # up front (grants of 1, 2, then 2: capped by what the bucket had left).
        env = self.start_bundle("monitor,events,ratelimit", AINBOX_RATELIMITS="api.user=10/1h/5",
                                AINBOX_EDGE_API_GRANT_MS=60000)
        wait_until(lambda: self.metric(env, "ratelimit.redis.connected") == 1, 15, "Redis")
        field = re.compile(r'^"api\.user";r=(\d+);t=(\d+)$')
        for user in (31, 32):
            path = f"/api/v1/limits?token=dev&user={user}"
            for i in range(5):
                status, headers, body = self.http(env, path)
                self.assertEqual(status, 200, body)
                self.assertEqual(headers["RateLimit-Policy"], '"api.user";q=10;w=3600')
                r, t = map(int, field.match(headers["RateLimit"]).groups())
                self.assertEqual(r, 4 - i)
                # One request every 3600 s / (10 - 5) = 720 s refills.
                self.assertEqual(t, 720 * [1, 3, 3, 5, 5][i])
            data = json.loads(body)
            self.assertEqual(data["user"], user)
            self.assertEqual(data["usage"][0]["used"], 5)
            status, headers, body = self.http(env, path)
            self.assertEqual(status, 429)
            err = json.loads(body)["error"]
            self.assertEqual((err["code"], err["policy"]), ("RATE_LIMITED", "api.user"))
            r, t = map(int, field.match(headers["RateLimit"]).groups())
            self.assertEqual(r, 0)
            self.assertGreaterEqual(int(headers["Retry-After"]), t)
            self.assertEqual(err["retry_after"], int(headers["Retry-After"]))
            self.assertGreater(t, 700)
        # Unauthenticated requests are refused before any limit is spent.
        status, _, _ = self.http(env, "/api/v1/limits?token=wrong&user=33")
        self.assertEqual(status, 401)
        self.assertEqual(self.check(env, {"quota": "api"}, user=33)["remaining"], 4)

    # ------------------------------------------------------------- the edge's grants

    # 20 at once, then one more unit a day: exactly 20 fit while a test runs.
    GRANT_POLICY = "api.user=21/1d/20"

    def edge_metric(self, env, name):
        status, stats = self.http_json(env, "/stats")
        for p in stats.get("processes", []) if status == 200 else []:
            if p["report"]["service"] == "edge":
                return p["report"]["metrics"].get(name)
        return None

    def wait_edge_metric(self, env, name, want):
        """The edge's metric once its report shows `want` (reports are periodic)."""
        wait_until(lambda: self.edge_metric(env, name) == want, 10,
                   f"edge metric {name} to be {want} (is {self.edge_metric(env, name)})")

    def used(self, env, user):
        """The user's api.user units charged in the shared bucket (RATE_USAGE, as operators)."""
        status, usage = self.call(env, "RATE_USAGE", {"user": user}, user=0)
        self.assertEqual(status, "OK", usage)
        return sum(u["used"] for u in usage["usage"] if u["policy"] == "api.user")

    def burst(self, env, user, requests, threads=1):
        """Statuses of `requests` signed-in requests of `user`, from `threads` threads."""
        path = f"/api/v1/limits?token=dev&user={user}"
        if threads == 1:
            return [self.http(env, path)[0] for _ in range(requests)]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda _: self.http(env, path)[0], range(requests)))

    def test_edge_grants_admit_exactly_the_quota(self):
        env = self.start_bundle("monitor,events,ratelimit", AINBOX_RATELIMITS=self.GRANT_POLICY,
                                AINBOX_EDGE_API_GRANT_MS=60000)
        wait_until(lambda: self.metric(env, "ratelimit.redis.connected") == 1, 15, "Redis")
        # Sequential: 20 admitted then refused; r counts down one by one although most
        # requests are admitted from grants of 1, 2, 4, 8 and 5 (what was left) units.
        field = re.compile(r'^"api\.user";r=(\d+);t=(\d+)$')
        rs = []
        for _ in range(25):
            status, headers, _ = self.http(env, "/api/v1/limits?token=dev&user=41")
            rs.append((status, int(field.match(headers["RateLimit"]).group(1))))
        self.assertEqual(rs, [(200, 19 - i) for i in range(20)] + [(429, 0)] * 5)
        self.assertEqual(self.used(env, 41), 20)
        self.wait_edge_metric(env, "ratelimit.local", 15)
        self.assertEqual(self.edge_metric(env, "ratelimit.grants"), 5 + 5)
        self.assertEqual(self.edge_metric(env, "ratelimit.grant_units"), 20)
        # From eight threads at once: grants race, are refused whole and asked again for one
        # unit, and add up in the user's slot; every unit charged is spent by the user's
        # later requests, and none beyond: exactly 20.
        statuses = self.burst(env, 42, 64, threads=8) + self.burst(env, 42, 25)
        self.assertEqual(statuses.count(200), 20, statuses)
        self.assertEqual(statuses.count(429), 64 + 25 - 20)
        self.assertEqual(statuses[-5:], [429] * 5)
        self.assertEqual(self.used(env, 42), 20)
        self.assertEqual(self.edge_metric(env, "ratelimit.grant_lost"), 0)

    def test_two_edges_never_admit_more_than_the_quota(self):
        env, _ = self.start_limiter(AINBOX_RATELIMITS=self.GRANT_POLICY, AINBOX_DEV_TOKEN="dev",
                                    AINBOX_HEALTH_SERVICES="ratelimit",
                                    AINBOX_EDGE_API_GRANT_MS=60000)
        edges = []
        for i in range(2):
            edge_env = dict(env, HTTP_PORT=str(free_ports(1)[0]))
            self.spawn(f"edge{i}", ["edge"], edge_env)
            self.wait_health(edge_env)
            edges.append(edge_env)
        for user in (51, 52):
            # Both edges at once, four threads each (the first user's burst races each edge's
            # first probe for a limiter: none may pass unchecked); then each edge's tail spends
            # what it still holds. Every grant was charged to the one shared bucket.
            with ThreadPoolExecutor(2) as pool:
                bursts = list(pool.map(lambda e: self.burst(e, user, 40, threads=4), edges))
            tails = [self.burst(e, user, 25) for e in edges]
            admitted = sum(s.count(200) for s in bursts + tails)
            self.assertEqual(admitted, 20, (bursts, tails))
            self.assertTrue(all(t[-1] == 429 for t in tails))
            self.assertEqual(self.used(env, user), 20)

    def test_edge_grants_expire(self):
        # A grant may be spent for 400 ms; a quota large enough that grants grow.
        env = self.start_bundle("monitor,events,ratelimit", AINBOX_RATELIMITS="api.user=201/1d/200",
                                AINBOX_EDGE_API_GRANT_MS=400, AINBOX_EDGE_API_GRANT_MAX=16)
        wait_until(lambda: self.metric(env, "ratelimit.redis.connected") == 1, 15, "Redis")
        # Rapid requests until the edge holds units it charged but has not spent.
        admitted = 0
        for _ in range(60):
            self.assertEqual(self.burst(env, 61, 1), [200])
            admitted += 1
            held = self.used(env, 61) - admitted
            if held > 0:
                break
        self.assertGreater(held, 0, "no grant above one unit was taken")
        # Well past the grant's lifetime: the held units are never spent. The next request
        # asks the limiter (a new charge, not a local admission) and the units are counted
        # as lost.
        time.sleep(2)
        used, local = self.used(env, 61), self.edge_metric(env, "ratelimit.local")
        grants = self.edge_metric(env, "ratelimit.grants")
        self.assertEqual(self.burst(env, 61, 1), [200])
        self.assertGreater(self.used(env, 61), used)
        self.wait_edge_metric(env, "ratelimit.grants", grants + 1)
        self.wait_edge_metric(env, "ratelimit.grant_lost", held)
        self.assertEqual(self.edge_metric(env, "ratelimit.local"), local)

    def test_edge_grant_max_1_is_one_round_trip_a_request(self):
        env = self.start_bundle("monitor,events,ratelimit", AINBOX_RATELIMITS=self.GRANT_POLICY,
                                AINBOX_EDGE_API_GRANT_MAX=1)
        wait_until(lambda: self.metric(env, "ratelimit.redis.connected") == 1, 15, "Redis")
        field = re.compile(r'^"api\.user";r=(\d+);t=(\d+)$')
        for i in range(12):
            status, headers, _ = self.http(env, "/api/v1/limits?token=dev&user=71")
            self.assertEqual(status, 200)
            r, t = map(int, field.match(headers["RateLimit"]).groups())
            # One unit charged a request: t is one day per unit charged.
            self.assertEqual(r, 19 - i)
            self.assertIn(86400 * (i + 1) - t, (0, 1))
            self.assertEqual(self.used(env, 71), i + 1)
        self.assertEqual(self.burst(env, 71, 10, threads=4).count(200), 8)
        self.assertEqual(self.burst(env, 71, 2), [429, 429])
        self.wait_edge_metric(env, "ratelimit.grants", 24)
        self.assertEqual(self.edge_metric(env, "ratelimit.local"), 0)
        self.assertEqual(self.edge_metric(env, "ratelimit.grant_slots"), 0)

    def test_edge_passes_at_once_while_the_limiter_is_away(self):
        # The limiter's process frozen (its host cut off, in effect): the requests in flight
        # wait AINBOX_EDGE_LIMIT_TIMEOUT_MS once, then the limiter counts as away and requests
        # pass without asking it, one probe per back-off; once it answers, it is asked again.
        # Slow heartbeats: the broker keeps the frozen worker registered all along, as it does
        # until it notices a host is gone.
        env, limiter = self.start_limiter(AINBOX_DEV_TOKEN="dev", AINBOX_HEALTH_SERVICES="monitor",
                                          AINBOX_EDGE_API_GRANT_MAX=1, AINBOX_HEARTBEAT_MS=10000)
        for name in ("monitor", "cache"):
            self.spawn(name, ["actor", name], env)
        self.wait_services(env, ["monitor", "cache"])
        edge = dict(env, HTTP_PORT=str(free_ports(1)[0]))
        self.spawn("edge", ["edge"], edge)
        self.wait_health(edge)
        path = "/api/v1/labels?token=dev&user=81"

        def edge_at_least(name, want):
            wait_until(lambda: (self.edge_metric(edge, name) or 0) >= want, 15,
                       f"edge metric {name} >= {want}")
            return self.edge_metric(edge, name)

        self.assertNotEqual(self.http(edge, path)[0], 429)
        grants = edge_at_least("ratelimit.grants", 1)
        unchecked = self.edge_metric(edge, "ratelimit.unchecked") or 0
        limiter.signal(signal.SIGSTOP)
        try:
            statuses = [self.http(edge, path)[0] for _ in range(30)]
        finally:
            limiter.signal(signal.SIGCONT)
        self.assertNotIn(429, statuses)
        edge_at_least("ratelimit.unchecked", unchecked + 30)
        self.assertGreaterEqual(self.edge_metric(edge, "ratelimit.limiter_away"), 1)
        # Without the away period every request would have asked (30 round trips).
        asked = self.edge_metric(edge, "ratelimit.grants") - grants
        self.assertLessEqual(asked, 8, f"{asked} of 30 requests asked the frozen limiter")
        # Back: the next probe finds it, and requests are checked and charged again.
        wait_until(lambda: self.http(edge, path) and self.used(env, 81) > 1, 20,
                   "the limiter to be asked again")

    def test_edge_without_a_limiter_serves(self):
        env = self.start_bundle("monitor,events")
        status, headers, _ = self.http(env, "/api/v1/limits?token=dev&user=1", timeout=30)
        # No limiter deployed: the route itself has nobody to ask (504
        # after the edge's call deadline, AINBOX_REQUEST_TIMEOUT_MS; this once crashed the edge, reading
        # an unanswered reply), but the API limit neither held the request
        # up nor refused it.
        self.assertEqual(status, 504)
        self.assertNotIn("RateLimit", headers)

    # ------------------------------------------------------------- operations

    def test_usage_and_reset_are_guarded(self):
        limits = "api.user=10/1h/5,gmail.user=1000/1h/500"
        env_a, _ = self.start_limiter("rl-a", AINBOX_RATELIMITS=limits)
        env_b, _ = self.start_limiter("rl-b", AINBOX_RATELIMITS=limits)
        for _ in range(6):
            self.check(env_a, {"quota": "api"}, user=21)
        self.check(env_a, {"quota": "gmail", "account": "u21@x", "method": "messages.send"},
                   user=21)
        # Both processes have the refusal cached.
        self.assertFalse(self.check(env_b, {"quota": "api"}, user=21)["allowed"])
        self.assertFalse(self.check(env_b, {"quota": "api"}, user=21)["allowed"])
        # A user sees their own usage, not another's.
        status, own = self.call(env_a, "RATE_USAGE", {}, user=21)
        self.assertEqual(status, "OK")
        policies = {(u["policy"], u["subject"]): u for u in own["usage"]}
        self.assertEqual(policies[("api.user", "21")]["used"], 5)
        self.assertEqual(policies[("gmail.user", "u21@x")]["used"], 100)
        self.assertEqual(self.call(env_a, "RATE_USAGE", {"user": 22}, user=21)[0], "DENIED")
        # Reset: refused for any user, even for themselves.
        for user in (21, 22):
            status, data = self.call(env_a, "RATE_RESET", {"user": 21}, user=user)
            self.assertEqual(status, "DENIED", data)
        self.assertFalse(self.check(env_a, {"quota": "api"}, user=21)["allowed"])
        # Operators (ainbox-admin, envelope user 0) reset it, everywhere.
        out = self.admin(env_a, "limits-reset", "21")
        self.assertIn("reset user 21", out.stdout)
        for env in (env_a, env_b):
            wait_until(lambda env=env: self.check(env, {"quota": "api"}, user=21)["allowed"], 10,
                       "the reset to reach every limiter")
        table = self.admin(env_a, "limits", "21").stdout
        self.assertIn("api.user", table)
        data = self.admin(env_a, "--json", "limits", "21")
        self.assertEqual([u["policy"] for u in data["usage"]], ["api.user"])
        pol = self.admin(env_a, "--json", "limits-policies")
        names = {p["name"]: p for p in pol["policies"]}
        self.assertEqual(names["api.user"]["limit"], 10)
        self.assertEqual(names["outlook.concurrent"]["kind"], "lease")
        self.assertTrue(names["gmail.user"]["active"])
        self.assertFalse(names["gmail.user.requests"]["active"])
        self.assertEqual(self.admin(env_a, "limits", "x", check=False).returncode, 2)

    def test_malformed_requests(self):
        env, proc = self.start_limiter()
        bad = [
            b"\xc1",
            proto.pack([1, 2]),
            proto.pack({}),
            proto.pack({"quota": "yahoo"}),
            proto.pack({"quota": "gmail"}),
            proto.pack({"quota": "gmail", "account": "a b", "method": "messages.get"}),
            proto.pack({"quota": "gmail", "account": "a@x", "method": "messages.nope"}),
            proto.pack({"quota": "gmail", "account": "a@x", "units": 0}),
            proto.pack({"quota": "gmail", "account": "a@x", "units": 10**12}),
            proto.pack({"quota": "gmail", "account": "a@x", "method": "messages.get",
                        "count": 101}),
            proto.pack({"quota": "gmail", "account": "a@x", "method": "watch", "count": 100}),
            proto.pack({"quota": "outlook", "account": "a@x", "method": "x"}),
            proto.pack({"quota": "api", "extra": 1}),
            proto.pack({"quota": "api", "lease": "yes"}),
            proto.pack({"decisions": []}),
            proto.pack({"decisions": [{"quota": "api"}] * 65}),
            proto.pack({"decisions": [{"quota": "api"}], "quota": "api"}),
            proto.pack({"decisions": [{"quota": "api"}, {"quota": 5}]}),
            proto.pack({"quota": "a" * 100000}),
        ]
        for body in bad:
            reply = self.client(env).call("ratelimit", "RATE_CHECK", body, user=1)
            self.assertIsNotNone(reply)
            self.assertEqual(reply["status"], "INVALID", body[:60])
        # The api quota needs a user (the edge always sends one).
        self.assertEqual(self.call(env, "RATE_CHECK", {"quota": "api"}, user=0)[0], "INVALID")
        for body in ({"lease": "nope"}, {"lease": "api.user/1/ab.1"},
                     {"lease": "outlook.concurrent/a b/ab.1"}, {}, {"lease": 5}):
            self.assertEqual(self.call(env, "RATE_RELEASE", body)[0], "INVALID", body)
        for body in ({"user": "x"}, {"user": 1, "more": 2}, [1]):
            self.assertEqual(self.call(env, "RATE_USAGE", body, user=0)[0], "INVALID", body)
        self.assertEqual(self.call(env, "RATE_RESET", {}, user=0)[0], "INVALID")
        # Still serving; every refusal counted.
        self.assertTrue(self.check(env, {"quota": "api"}, user=1)["allowed"])
        many = self.check(env, {"decisions": [{"quota": "api"}, {"quota": "gmail",
                                 "account": "a@x", "method": "labels.list", "lease": True}]})
        self.assertEqual(len(many["results"]), 2)
        self.assertTrue(all(r["allowed"] for r in many["results"]))
        self.assertIn("lease", many["results"][1])
        self.assertGreaterEqual(self.metric(env, "ratelimit.invalid"), len(bad) + 10)
        self.assertTrue(proc.alive())


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "hammer":
    _, _, endpoint, body, user, count, seconds, inflight = sys.argv
    print(json.dumps(hammer(endpoint, json.loads(body), int(user), int(count), float(seconds),
                            int(inflight))))
