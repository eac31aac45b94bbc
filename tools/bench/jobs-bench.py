#!/usr/bin/python3
"""jobs-bench.py: the job queue's throughput with zero loss, workers killed meanwhile. Not a test.

On a fresh private PostgreSQL (migrated), it starts a broker, --actors jobs actors (`ainbox actor
jobs`, each its own process) and --workers job services (ainbox-bench-jobs-worker: answers every
JOB_RUN "done" after appending the job's id to its log with one write(2)). A producer enqueues
--jobs jobs in batches of 1,000 (JOB_ENQUEUE {jobs: [...]}, --users users round robin) as fast
as the queue takes them, while every --kill-every seconds one worker is killed with SIGKILL and
a new one started. It waits until every enqueued id is in some worker's log (the
throughput's end) and then until the queue is empty, and prints:

  enqueue_jobs_s   jobs enqueued per second (the producer's phase alone)
  total_jobs_s     jobs enqueued and completed per second, first enqueue to last completion
  lost             ids enqueued but never run (must be 0)
  reruns           runs beyond the first (jobs whose worker died after running them, so
                   their completion was not recorded and their lease ran out)
  dead             dead letters at the end (must be 0)
  killed           workers killed during the run
  runs_lost        runs whose worker died holding them, answered UNAVAILABLE or TIMEOUT and
                   retried (the first jobs actor's counter, read through JOBS_STATS)

It asserts nothing (exit 0 with figures; 1 if the run could not finish in --timeout; 2 on bad
usage). Runs as root (PostgreSQL through runuser -u postgres, as the tests do).

  tools/bench/jobs-bench.py [--bin build/deploy/ainbox] [--jobs 100000] [--actors 1]
                            [--workers 2] [--pools 0/300/0] [--kill-every 2] [--users 100]
"""

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import ainbox_proto as proto  # noqa: E402
from ainbox_harness import MIGRATIONS, Postgres, Proc, base_env, free_ports  # noqa: E402


def seen_ids(scratch):
    ids, runs = set(), 0
    for path in glob.glob(os.path.join(scratch, "ids-*.log")):
        with open(path) as f:
            for line in f.read().split():
                ids.add(int(line))
                runs += 1
    return ids, runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "deploy", "ainbox"))
    ap.add_argument("--worker-bin",
                    default=os.path.join(ROOT, "build", "tools", "bench", "ainbox-bench-jobs-worker"))
    ap.add_argument("--jobs", type=int, default=100000)
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pools", default="0/300/0")
    ap.add_argument("--kill-every", type=float, default=2.0)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--lease-ms", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    scratch = tempfile.mkdtemp(prefix="ainbox-jobs-bench-")
    os.chmod(scratch, 0o755)
    procs, pg = [], None
    try:
        pg = Postgres(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
        env.update({"DATABASE_URL": pg.url, "AINBOX_MIGRATIONS_DIR": MIGRATIONS})
        subprocess.run([args.bin, "migrate"], env=env, check=True, capture_output=True)
        port, = free_ports(1)
        env = base_env(port, DATABASE_URL=pg.url, AINBOX_JOBS_WORKERS=args.pools,
                       AINBOX_JOBS_LEASE_MS=str(args.lease_ms), AINBOX_HEARTBEAT_MS="500",
                       LOG_LEVEL="warn", AINBOX_WORKER_CREDIT="256")
        procs.append(Proc("broker", [args.bin, "broker"], env, scratch))
        for i in range(args.actors):
            procs.append(Proc(f"jobs{i}", [args.bin, "actor", "jobs"], env, scratch))
        serial = [0]

        def start_worker():
            serial[0] += 1
            p = Proc(f"worker{serial[0]}",
                     [args.worker_bin, os.path.join(scratch, f"ids-{serial[0]}.log")], env, scratch)
            procs.append(p)
            return p

        workers = [start_worker() for _ in range(args.workers)]
        client = proto.Client(env["AINBOX_BROKER"])
        deadline = time.time() + 20
        while time.time() < deadline:
            r = client.call("jobs", "JOBS_STATS", b"", timeout_ms=1000)
            if r and r["status"] == "OK":
                break
        time.sleep(1)  # the workers register

        killed = [0]
        stop = threading.Event()

        def killer():
            while not stop.wait(args.kill_every):
                victim = workers.pop(0)
                victim.kill9()
                killed[0] += 1
                workers.append(start_worker())

        enqueued = []
        t0 = time.time()
        corrs = {}
        for b in range(0, args.jobs, 1000):
            jobs = [{"kind": "bench", "user": (b + i) % args.users + 1}
                    for i in range(min(1000, args.jobs - b))]
            corrs[client.send("jobs", "JOB_ENQUEUE", proto.pack({"jobs": jobs}),
                              timeout_ms=60000)] = len(jobs)
            if b == 0 and args.kill_every:
                threading.Thread(target=killer, daemon=True).start()
            while len(corrs) >= 8 or (b + 1000 >= args.jobs and corrs):  # 8 batches in flight
                reply = client.recv(60000)
                if reply is None:
                    print("an enqueue went unanswered", file=sys.stderr)
                    return 1
                if corrs.pop(reply["corr"], None) is None:
                    continue
                if reply["status"] != "OK":
                    print(f"enqueue answered {reply['status']}", file=sys.stderr)
                    return 1
                enqueued += [x["id"] for x in proto.body_map(reply)["results"]]
        t1 = time.time()
        want = set(enqueued)
        while time.time() < t0 + args.timeout:
            ids, runs = seen_ids(scratch)
            if want <= ids:
                break
            time.sleep(0.2)
        t2 = time.time()
        stop.set()
        # Then until the queue is empty: a job whose completion died with its worker runs again.
        while True:
            s = proto.body_map(client.call("jobs", "JOBS_STATS", b"", timeout_ms=5000))
            left = sum(s["pending"].values()) + s["running"] + s["delayed"]
            if left == 0 or time.time() > t0 + args.timeout:
                break
            time.sleep(0.5)
        ids, runs = seen_ids(scratch)
        lost = len(want - ids)
        print(f"jobs={len(want)} actors={args.actors} workers={args.workers} pools={args.pools} "
              f"enqueue_jobs_s={len(want) / (t1 - t0):.0f} total_jobs_s={len(want) / (t2 - t0):.0f} "
              f"lost={lost} reruns={runs - len(ids)} dead={s['dead']} left={left} "
              f"killed={killed[0]} runs_lost={s['counters']['lost']} "
              f"elapsed_s={t2 - t0:.1f} load={os.getloadavg()[0]:.1f}")
        return 0 if not lost and want <= ids else 1
    finally:
        for p in reversed(procs):
            p.stop()
        if pg:
            pg.stop()
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
