#!/usr/bin/python3
"""fault-run.py: figures for store faults under load (issue 11). Not a test.

For each scenario (PostgreSQL stopped 10 s, locked 8 s, SIGSTOPped 2/4/5/10
s; Redis stopped 10 s, SIGSTOPped 2/4/5/10 s) and each topology (the bundle,
and one process per role), on a fresh private Redis and PostgreSQL: start
Ainbox, sign two users in, run the load of tests/harness/ainbox_faults.py
(signed-in reads through the edge, EVENT_PUBLISH, RATE_CHECK, MAIL_APPLY
writes), inject the fault, repair it, wait for recovery, and print one line:

  crashes     processes that died (name:status), during or after the fault,
              or that did not exit 0 on SIGTERM at the end
  acked       MAIL_APPLY writes answered OK during the run
  lost        of those, how many the store (PostgreSQL) does not have
  stale       reads of a thread that missed a write acknowledged before the
              read was sent: during the fault / after recovery
  recover_s   from the fault's repair to the first correct answer (a new
              write acknowledged, then a read answering 200 with every
              acknowledged write); "never" after --recover-timeout
  failed      requests answered with something else than success, and the
              sanitizer reports in the logs

More scenarios by name with --only: {pg,redis}-sigstop-{1,15}s,
redis-stopped-{1,15}s, {pg,redis}-slowed-10s (frozen 0.4 s of every 0.5 s).

It asserts nothing and exits 0 whatever it measured (2 on bad usage).
Runs as root (PostgreSQL through runuser -u postgres, as the tests do).

  tools/bench/fault-run.py [--bin build/deploy/ainbox] [--topology bundle|processes|both]
                           [--only NAME,...] [--keep] [--recover-timeout S]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import ainbox_faults as faults  # noqa: E402
from ainbox_harness import MIGRATIONS, SANITIZER_MARKS, Postgres, Proc, Redis  # noqa: E402

# (name, fault from (redis, pg), seconds): the acceptance scenarios of issue 11.
SCENARIOS = [
    ("pg-stopped-10s", lambda r, p: faults.PgStopped(p), 10),
    ("pg-locked-8s", lambda r, p: faults.PgLocked(p, "threads"), 8),
    ("redis-stopped-10s", lambda r, p: faults.RedisStopped(r), 10),
] + [(f"pg-sigstop-{s}s", lambda r, p: faults.PgFrozen(p), s) for s in (2, 4, 5, 10)] \
  + [(f"redis-sigstop-{s}s", lambda r, p: faults.RedisFrozen(r), s) for s in (2, 4, 5, 10)]
# More, run with --only: the range of 1 to 15 s, and slowed stores.
EXTRA = [(f"{store}-sigstop-{s}s", make, s)
         for store, make in (("pg", lambda r, p: faults.PgFrozen(p)),
                             ("redis", lambda r, p: faults.RedisFrozen(r)))
         for s in (1, 15)] + [
    ("redis-stopped-1s", lambda r, p: faults.RedisStopped(r), 1),
    ("redis-stopped-15s", lambda r, p: faults.RedisStopped(r), 15),
    ("pg-slowed-10s", lambda r, p: faults.PgSlowed(p), 10),
    ("redis-slowed-10s", lambda r, p: faults.RedisSlowed(r), 10),
]


def migrate(binary, pg):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
    env.update({"DATABASE_URL": pg.url, "AINBOX_MIGRATIONS_DIR": MIGRATIONS})
    subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True, timeout=60)


def sanitizer_reports(procs):
    n = 0
    for p in procs:
        n += sum(1 for line in p.log().splitlines() if any(m in line for m in SANITIZER_MARKS))
    return n


def describe_stale(load, stale, began, end):
    """The first few stale reads: when each was sent, and when each write it
    lacked was sent and acknowledged, in seconds from the fault's repair."""
    sent_at = {(w[2], w[3]): (w[0], w[1]) for w in load.writes}
    out = []
    for t, user, missing in stale[:3]:
        ws = ", ".join(f"{m} sent {sent_at[(user, m)][0] - end:+.2f} acked "
                       f"{sent_at[(user, m)][1] - end:+.2f}" for m in missing[:3])
        out.append(f"user {user} read sent {t - end:+.2f}s lacked {ws}")
    return f"fault {began - end:+.1f}..0s; " + "; ".join(out)


def run_one(args, topology, name, make_fault, seconds):
    scratch = tempfile.mkdtemp(prefix="ainbox-faultrun-")
    os.chmod(scratch, 0o755)
    procs, pg, load, stack, fault = [], None, None, None, None
    row = {"topology": topology, "scenario": name}

    def spawn(pname, argv, env):
        p = Proc(pname, [args.bin] + argv, env, scratch)
        procs.append(p)
        return p

    try:
        redis = Redis(scratch, procs)
        pg = Postgres(scratch)
        migrate(args.bin, pg)
        stack = faults.Stack(spawn, topology, redis, pg)
        stack.wait_ready()
        stack.sign_in("ann@example.com")
        stack.sign_in("bob@example.com")
        load = faults.Load(stack).start()
        load.wait_warm()
        fault = make_fault(redis, pg)
        began = time.monotonic()
        end = faults.hold(fault, seconds)
        dead = stack.dead()
        try:
            recovered = load.wait_recovered(args.recover_timeout)
            row["recover_s"] = f"{recovered - end:.1f}"
        except AssertionError:
            recovered = None
            row["recover_s"] = "never"
        if recovered is not None:
            time.sleep(3)  # reads after recovery: the stale check
        load.stop()
        dead = sorted(set(dead) | set(stack.dead()))
        row["acked"] = sum(len(a) for a in load.acked.values())
        row["lost"] = len(load.lost_in_store())
        during = [s for s in load.stale if began <= s[0] < end]
        after = load.stale_after(recovered) if recovered is not None else []
        row["stale"] = f"{len(during)}/{len(after)}"
        if during or after:
            row["stale reads"] = describe_stale(load, during + after, began, end)
        bad = [(op, st) for (op, st), n in load.summary().items()
               for _ in range(n) if st not in ("OK", 200, 404 if op == "miss" else 200)]
        row["failed"] = len(bad)
        exits = stack.stop()
        stack = None
        crashed = {n: s for n, s in dead}
        crashed.update({n: s for n, s in exits if s != 0 and n not in crashed})
        row["crashes"] = " ".join(f"{n}:{s}" for n, s in sorted(crashed.items())) or "0"
        row["sanitizer"] = sanitizer_reports(procs)
    except Exception as exc:  # a figure that could not be made: say so, go on
        row.setdefault("crashes", "?")
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if load:
            load.stop()
        if fault:
            fault.end()
        if stack:
            stack.stop()
        for p in reversed(procs):
            p.stop()
        if pg:
            pg.stop()
        if args.keep or row.get("crashes", "0") != "0" or "error" in row:
            row["logs"] = scratch
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return row


# (name, width); crashes last, as it may be long.
COLUMNS = (("topology", 9), ("scenario", 17), ("acked", 5), ("lost", 4), ("stale", 5),
           ("recover_s", 9), ("failed", 6), ("sanitizer", 9), ("crashes", 0))


def line(values):
    return "  ".join(f"{str(v):<{w}}" for v, (_, w) in zip(values, COLUMNS)).rstrip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "deploy", "ainbox"))
    ap.add_argument("--topology", choices=("bundle", "processes", "both"), default="both")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--keep", action="store_true", help="keep every run's logs")
    ap.add_argument("--recover-timeout", type=float, default=90)
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        ap.error(f"no ainbox binary at {args.bin} (--bin)")
    names = [s[0] for s in SCENARIOS + EXTRA]
    only = args.only.split(",") if args.only else [s[0] for s in SCENARIOS]
    if set(only) - set(names):
        ap.error(f"unknown scenarios {sorted(set(only) - set(names))}; known: {names}")
    topologies = ("bundle", "processes") if args.topology == "both" else (args.topology,)
    print(f"# fault-run {time.strftime('%Y-%m-%d %H:%M:%S')} {args.bin}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print(line(c for c, _ in COLUMNS), flush=True)
    for topology in topologies:
        for name, make, seconds in SCENARIOS + EXTRA:
            if name not in only:
                continue
            row = run_one(args, topology, name, make, seconds)
            print(line(row.get(c, "-") for c, _ in COLUMNS), flush=True)
            for extra in ("error", "stale reads", "logs"):
                if extra in row:
                    print(f"    {extra}: {row[extra]}", flush=True)


if __name__ == "__main__":
    main()
