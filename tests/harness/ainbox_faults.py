"""ainbox_faults: store faults, the two topologies, and a checked load.

Used by tests/e2e/test_store_faults.py and tools/bench/fault-run.py.

Faults (each an object with begin() and end(); every wait bounded; end()
safe to call twice and after a failed begin(), so a cleanup can always call
it and nothing is left stopped or frozen):

  PgStopped    pg_ctl stop -m fast, later pg_ctl start (same port, same data)
  PgLocked     a psql session holding ACCESS EXCLUSIVE on a table until end()
  PgFrozen     SIGSTOP of the postmaster and every backend, SIGCONT at end()
  PgSlowed     PgFrozen in turns (stopped `stop_s`, running `run_s`) until end()
  RedisStopped redis-server stopped (SIGTERM), restarted on its port at end()
  RedisFrozen  SIGSTOP of redis-server, SIGCONT at end()

Stack starts Ainbox in the bundle (`ainbox run`) or one process per role
(broker, edge, each actor), signs users in through the edge and gives each a
seeded thread. Load runs signed-in HTTP reads (which also take the edge's
API grants from the ratelimit actor), EVENT_PUBLISH, RATE_CHECK and
MAIL_APPLY writes from a few threads, and records what was acknowledged and
what each read saw, so that lost writes and stale reads can be counted:

  acknowledged write  a MAIL_APPLY answered OK (a failure answer may or may
                      not have been applied: MAIL_APPLY is not idempotent)
  lost                acknowledged, and missing from a read made after
                      recovery
  stale               a read of the thread answered 200 without a message
                      whose write was acknowledged before the read was sent
"""

import http.client
import json
import os
import signal
import subprocess
import threading
import time

import ainbox_proto as proto
from ainbox_harness import base_env, free_ports, wait_until

ACTORS = ("monitor", "events", "session", "cache", "ratelimit")
SECRETS = {"JWT_ACCESS_SECRET": "a" * 16 + "-access-secret-for-tests-only",
           "JWT_REFRESH_SECRET": "r" * 16 + "-refresh-secret-for-tests-only"}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOT = "hot"  # each user's thread that the load writes to and reads
CALL_MS = 2000  # as the edge's call deadline (edge/edge.c): shorter than AINBOX_PG_TIMEOUT_MS
ANSWER_WAIT_S = 20  # how long a request's answer is waited for, deadline or not


# ------------------------------------------------------------------ faults

def _ppid(pid):
    """The parent pid of `pid` from /proc (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: fields follow the last ')'.
    return int(stat[stat.rindex(")") + 2:].split()[1])


def _children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _ppid(int(name)) == pid:
            out.append(int(name))
    return out


def _kill(pid, signo):
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass


class Fault:
    """begin() injects, end() repairs; `with fault:` does both."""

    name = "fault"

    def begin(self):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError

    def __enter__(self):
        try:
            self.begin()
        except BaseException:
            self.end()
            raise
        return self

    def __exit__(self, *exc):
        self.end()
        return False


class PgStopped(Fault):
    """PostgreSQL shut down ("fast": sessions ended at once), started again at end()."""

    name = "pg-stopped"

    def __init__(self, pg):
        self.pg = pg
        self.stopped = False

    def begin(self):
        self.stopped = True
        self.pg.server_stop("fast")

    def end(self):
        if self.stopped:
            self.stopped = False
            if self.pg.postmaster_pid() is None:
                self.pg.server_start()


class PgLocked(Fault):
    """A separate psql session holding an ACCESS EXCLUSIVE lock on `table`
    until end() ends that session (at most `limit_s`, a safety bound)."""

    name = "pg-locked"
    APP = "ainbox-fault-lock"

    def __init__(self, pg, table="threads", limit_s=300):
        self.pg, self.table, self.limit_s = pg, table, limit_s
        self.proc = None

    def begin(self):
        sql = (f"begin; lock table {self.table} in access exclusive mode; "
               f"select pg_sleep({self.limit_s}); commit;")
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             f"host=127.0.0.1 port={self.pg.port} user=postgres dbname={self.pg.dbname} "
             f"application_name={self.APP}", "-c", sql],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.pg.psql(
            f"select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
            f"where c.relname = '{self.table}' and l.mode = 'AccessExclusiveLock' "
            f"and l.granted")[0][0] == "1", 20, f"the lock on {self.table}", interval=0.05)

    def end(self):
        if self.proc is None:
            return
        try:
            self.pg.psql("select pg_terminate_backend(pid) from pg_stat_activity "
                         f"where application_name = '{self.APP}'")
        except (AssertionError, subprocess.SubprocessError):
            pass  # the server is gone: so is the lock
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class PgFrozen(Fault):
    """The postmaster and every process it forked SIGSTOPped: connections
    stay open and nothing answers, as on a host that hangs."""

    name = "pg-sigstop"

    def __init__(self, pg):
        self.pg = pg
        self.pids = set()

    def freeze(self):
        master = self.pg.postmaster_pid()
        if master is None:
            raise AssertionError("PostgreSQL is not running")
        self.pids.add(master)
        _kill(master, signal.SIGSTOP)  # first, so it forks nothing while we look
        for _ in range(3):  # a fork under way when it stopped shows up late
            new = set(_children(master)) - self.pids
            for pid in new:
                _kill(pid, signal.SIGSTOP)
            self.pids |= new

    def thaw(self):
        master = self.pg.postmaster_pid()
        pids = self.pids | (set(_children(master)) if master else set())
        for pid in pids:
            _kill(pid, signal.SIGCONT)
        self.pids = set()

    def begin(self):
        self.freeze()

    def end(self):
        self.thaw()


class _Turns(Fault):
    """Alternates a freeze and a thaw on a thread until end()."""

    def __init__(self, frozen, stop_s, run_s):
        self.frozen, self.stop_s, self.run_s = frozen, stop_s, run_s
        self.done = threading.Event()
        self.thread = None

    def _run(self):
        while not self.done.is_set():
            self.frozen.begin()
            self.done.wait(self.stop_s)
            self.frozen.end()
            self.done.wait(self.run_s)

    def begin(self):
        self.done.clear()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def end(self):
        self.done.set()
        if self.thread:
            self.thread.join(10)
            self.thread = None
        self.frozen.end()


class PgSlowed(_Turns):
    """PostgreSQL slowed: frozen `stop_s`, running `run_s`, in turns."""

    name = "pg-slowed"

    def __init__(self, pg, stop_s=0.4, run_s=0.1):
        super().__init__(PgFrozen(pg), stop_s, run_s)


class RedisStopped(Fault):
    """redis-server stopped (SIGTERM; it keeps no data here), then a new one
    on the same port and socket at end(), empty, as after a restart."""

    name = "redis-stopped"

    def __init__(self, redis):
        self.redis = redis
        self.stopped = False

    def begin(self):
        self.stopped = True
        self.redis.stop()

    def end(self):
        if self.stopped:
            self.stopped = False
            if not self.redis.proc.alive():
                self.redis.start()


class RedisFrozen(Fault):
    """redis-server SIGSTOPped: its connections stay open and silent."""

    name = "redis-sigstop"

    def __init__(self, redis):
        self.redis = redis
        self.frozen = False

    def begin(self):
        self.frozen = True
        self.redis.proc.signal(signal.SIGSTOP)

    def end(self):
        if self.frozen:
            self.frozen = False
            self.redis.proc.signal(signal.SIGCONT)


class RedisSlowed(_Turns):
    name = "redis-slowed"

    def __init__(self, redis, stop_s=0.4, run_s=0.1):
        super().__init__(RedisFrozen(redis), stop_s, run_s)


def hold(fault, seconds):
    """Injects `fault`, keeps it `seconds`, repairs it; returns
    time.monotonic() at the end of the repair."""
    with fault:
        time.sleep(seconds)
    return time.monotonic()


# ------------------------------------------------------------------ HTTP

def http_call(port, method, path, token=None, body=None, timeout=15):
    """(status, headers, parsed JSON body or None); (0, {}, reason) when
    the connection failed or timed out."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return res.status, res.msg, parsed
    except (OSError, http.client.HTTPException) as exc:
        return 0, {}, str(exc)
    finally:
        conn.close()


# ------------------------------------------------------------------ the stack

def message(mid, thread, ms):
    return {"op": "upsert_message", "id": mid, "thread_id": thread, "sent_at_ms": ms,
            "labels": ["INBOX"], "unread": True, "subject": f"subject {mid}",
            "from_name": "Ann", "from_addr": "ann@example.com", "to": "me@example.com",
            "snippet": f"snippet {mid}"}


def apply(client, who, changes, timeout_ms=CALL_MS, wait_s=ANSWER_WAIT_S):
    """One MAIL_APPLY of `changes` for `who` with a deadline of timeout_ms;
    its status, or None when no answer came within wait_s (an answer may
    come after the deadline: the wait is for the answer, not the deadline)."""
    corr = client.send("cache", "MAIL_APPLY",
                       proto.pack({"account": who["account"], "changes": changes}),
                       user=who["user"], timeout_ms=timeout_ms)
    reply = client.collect([corr], wait_s).get(corr)
    return reply["status"] if reply else None


class Stack:
    """Ainbox on `redis` and `pg` (the harness's Redis and Postgres), as one
    bundle (kind "bundle") or one process per role (kind "processes"),
    started with `spawn(name, args, env)` (AinboxTestCase.spawn, or the
    fault-run tool's); `extra` settings override the defaults."""

    def __init__(self, spawn, kind, redis, pg, **extra):
        self.kind, self.redis, self.pg = kind, redis, pg
        broker_port, = free_ports(1)
        env = base_env(broker_port, **{
            "AINBOX_ACTORS": ",".join(ACTORS),
            "AINBOX_HEALTH_SERVICES": ",".join(ACTORS),
            # The API limit stays on (the edge asks the ratelimit actor for
            # grants), high enough that the load is never refused, in small
            # grants so that it asks often.
            "AINBOX_RATELIMITS": "api.user=100000000/1h",
            "AINBOX_EDGE_API_GRANT_MAX": 4,
            "DATABASE_URL": pg.url, "REDIS_URL": redis.url, **SECRETS, **extra})
        self.env = env
        self.port = int(env["HTTP_PORT"])
        if kind == "bundle":
            self.procs = [spawn("bundle", ["run"], env)]
        elif kind == "processes":
            self.procs = [spawn("broker", ["broker"], env)]
            self.procs += [spawn(name, ["actor", name], env) for name in ACTORS]
            self.procs.append(spawn("edge", ["edge"], env))
        else:
            raise ValueError(kind)
        self.users = []

    def wait_ready(self, timeout=60):
        wait_until(lambda: http_call(self.port, "GET", "/health", timeout=2)[0] == 200,
                   timeout, "GET /health to answer 200")

    def dead(self):
        """[(name, exit status)] of the processes that are no longer running."""
        return [(p.name, p.popen.returncode) for p in self.procs if not p.alive()]

    def sign_in(self, email):
        """A user signed in through the edge, with a Gmail account and a
        seeded thread HOT holding one message."""
        status, headers, body = http_call(self.port, "POST", "/api/v1/dev/session",
                                          body={"email": email})
        if status != 200:
            raise AssertionError(f"sign-in failed: {status} {body}")
        token = None
        for line in headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            if name == "access_token":
                token = rest.split(";")[0]
        user = int(body["data"]["user"]["id"])
        rows = self.pg.psql(f"insert into accounts (user_id, provider, address) values "
                            f"({user}, 'gmail', '{email}') returning id")
        who = {"user": user, "token": token, "email": email, "account": int(rows[0][0])}
        client = proto.Client(self.env["AINBOX_BROKER"])
        try:
            status = apply(client, who, [message("seed", HOT, T0)], timeout_ms=10000)
        finally:
            client.close()
        if status != "OK":
            raise AssertionError(f"seeding failed: {status}")
        self.users.append(who)
        return who

    def stop(self, timeout=15):
        """SIGTERM to every process, last started first; [(name, status)]."""
        return [(p.name, p.stop(timeout)) for p in reversed(self.procs)]


# ------------------------------------------------------------------ the load

class Load:
    """Signed-in reads and writes from a few threads until stop().

    Readers go through the edge (each request takes the edge's API grant
    from the ratelimit actor): the user's HOT thread (checked for stale
    answers), a thread that is never there (a miss that reaches PostgreSQL
    every time), the session (session actor), the labels; a third thread
    sends EVENT_PUBLISH and RATE_CHECK over the broker; writers send
    MAIL_APPLY adding one message to HOT each, with the edge's deadline.
    """

    READS = ("thread", "miss", "session", "thread", "labels")

    def __init__(self, stack, readers=2, writers=1, pace_s=0.05, write_pace_s=0.2):
        self.stack = stack
        self.readers, self.writers = readers, writers
        self.pace_s, self.write_pace_s = pace_s, write_pace_s
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = []
        self.next_id = 0
        self.acked = {u["user"]: {} for u in stack.users}  # user -> {id: ack time}
        self.writes = []  # (t_sent, t_answered, user, id, status)
        self.reads = []  # (t_sent, t_answered, op, status)
        self.stale = []  # (t_sent, user, missing ids)
        self.errors = []  # unexpected answers: (t, op, status, detail)

    # ---------------------------------------------------------- bookkeeping

    def new_id(self, prefix="w"):
        with self.lock:
            self.next_id += 1
            return f"{prefix}{self.next_id}"

    def write(self, client, who, mid, timeout_ms=CALL_MS):
        """One MAIL_APPLY adding `mid` to HOT; returns its status (None: no answer)."""
        sent = time.monotonic()
        status = apply(client, who, [message(mid, HOT, T0 + 1000)], timeout_ms)
        now = time.monotonic()
        with self.lock:
            self.writes.append((sent, now, who["user"], mid, status))
            if status == "OK":
                self.acked[who["user"]][mid] = now
        return status

    def read_hot(self, who, timeout=15):
        """(status, ids) of one read of HOT, checked for staleness."""
        with self.lock:
            before = set(self.acked[who["user"]])
        sent = time.monotonic()
        status, _, body = http_call(self.stack.port, "GET", f"/api/v1/threads/{HOT}",
                                    who["token"], timeout=timeout)
        ids = None
        if status == 200:
            ids = {m["id"] for m in body["data"]["messages"]}
            missing = before - ids
            if missing:
                with self.lock:
                    self.stale.append((sent, who["user"], sorted(missing)))
        with self.lock:
            self.reads.append((sent, time.monotonic(), "thread", status))
        return status, ids

    # ---------------------------------------------------------- threads

    def _reader(self, n):
        i = n
        while not self.done.is_set():
            who = self.stack.users[i % len(self.stack.users)]
            op = self.READS[i % len(self.READS)]
            i += 1
            if op == "thread":
                self.read_hot(who)
            else:
                path = {"miss": f"/api/v1/threads/zz-miss-{i}", "session": "/api/v1/session",
                        "labels": "/api/v1/labels"}[op]
                sent = time.monotonic()
                status, _, body = http_call(self.stack.port, "GET", path, who["token"])
                with self.lock:
                    self.reads.append((sent, time.monotonic(), op, status))
                    if status == 200 and op == "miss":
                        self.errors.append((sent, op, status, body))
            self.done.wait(self.pace_s)

    def _writer(self, n):
        client = proto.Client(self.stack.env["AINBOX_BROKER"])
        try:
            i = n
            while not self.done.is_set():
                who = self.stack.users[i % len(self.stack.users)]
                i += 1
                self.write(client, who, self.new_id())
                self.done.wait(self.write_pace_s)
        finally:
            client.close()

    def _rpc(self):
        client = proto.Client(self.stack.env["AINBOX_BROKER"])
        try:
            i = 0
            while not self.done.is_set():
                who = self.stack.users[i % len(self.stack.users)]
                i += 1
                if i % 2:
                    op, service, msg = "event", "events", "EVENT_PUBLISH"
                    body = {"data": json.dumps({"type": "fault-load", "n": i})}
                else:
                    op, service, msg = "rate", "ratelimit", "RATE_CHECK"
                    body = {"quota": "gmail", "account": who["email"], "method": "messages.get"}
                sent = time.monotonic()
                corr = client.send(service, msg, proto.pack(body), user=who["user"],
                                   timeout_ms=CALL_MS)
                reply = client.collect([corr], ANSWER_WAIT_S).get(corr)
                with self.lock:
                    self.reads.append((sent, time.monotonic(), op,
                                       reply["status"] if reply else None))
                self.done.wait(self.pace_s)
        finally:
            client.close()

    def start(self):
        targets = [(self._reader, (n,)) for n in range(self.readers)]
        targets += [(self._writer, (n,)) for n in range(self.writers)]
        targets.append((self._rpc, ()))
        for fn, args in targets:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        """Stops the threads (each finishes its request: bounded by its timeout)."""
        self.done.set()
        for t in self.threads:
            t.join(30)
        self.threads = []

    # ---------------------------------------------------------- checks

    def wait_warm(self, timeout=60):
        """Until every user has an acknowledged write and a fresh read of HOT."""
        def warm():
            with self.lock:
                if not all(self.acked[u] for u in self.acked):
                    return False
                latest = max(t for a in self.acked.values() for t in a.values())
                return any(op == "thread" and st == 200 and sent > latest
                           for sent, _, op, st in self.reads)
        wait_until(warm, timeout, "the load to write and read", interval=0.1)

    def wait_recovered(self, timeout=90):
        """Until, for every user, a new write is acknowledged and a read then
        answers 200 with every acknowledged write; returns time.monotonic()
        then (time to recover = this minus the fault's end)."""
        client = proto.Client(self.stack.env["AINBOX_BROKER"])
        try:
            pending = list(self.stack.users)
            deadline = time.monotonic() + timeout
            while pending:
                if self.stack.dead():
                    raise AssertionError(f"processes died: {self.stack.dead()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"not recovered after {timeout}s: users "
                                         f"{[u['user'] for u in pending]} "
                                         f"(dead: {self.stack.dead()})")
                who = pending[0]
                mid = self.new_id("r")
                if self.write(client, who, mid, timeout_ms=5000) == "OK":
                    status, ids = self.read_hot(who)
                    if status == 200 and self.missing(who, ids) == []:
                        pending.pop(0)
                        continue
                time.sleep(0.2)
            return time.monotonic()
        finally:
            client.close()

    def missing(self, who, ids):
        """Acknowledged writes of `who` that `ids` lacks."""
        with self.lock:
            return sorted(set(self.acked[who["user"]]) - set(ids or ()))

    def lost(self):
        """Acknowledged writes missing from a read of each user's HOT now
        (None for a user whose read failed)."""
        out = {}
        for who in self.stack.users:
            status, ids = self.read_hot(who)
            out[who["user"]] = self.missing(who, ids) if status == 200 else None
        return out

    def lost_in_store(self):
        """Acknowledged writes PostgreSQL does not hold (asked directly)."""
        with self.lock:
            acked = {mid for a in self.acked.values() for mid in a}
        if not acked:
            return []
        listed = ",".join(f"'{mid}'" for mid in sorted(acked))
        rows = self.stack.pg.psql(
            f"select provider_id from messages where provider_id in ({listed})")
        return sorted(acked - {r[0] for r in rows})

    def stale_after(self, t):
        with self.lock:
            return [s for s in self.stale if s[0] >= t]

    def summary(self):
        """Counts of answers by (op, status)."""
        counts = {}
        with self.lock:
            for _, _, op, status in self.reads:
                counts[(op, status)] = counts.get((op, status), 0) + 1
            for _, _, _, _, status in self.writes:
                counts[("write", status)] = counts.get(("write", status), 0) + 1
        return counts
