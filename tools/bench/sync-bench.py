#!/usr/bin/python3
"""sync-bench.py: Gmail synchronisation at scale, against the fake Gmail (issue 14). Not a test.

On a fresh private Redis and PostgreSQL, with the fake providers enforcing Gmail's quotas
(--quota new: 6,000 units per user per minute, messages.get 20 units), it:

  1. creates N mailboxes of M synthetic messages in the fake and signs N users in through the
     real OAuth flow (the edge, the fake's consent, the accounts actor);
  2. waits until every account's mailbox is in the store (PostgreSQL: messages per account =
     M), and prints the backfill time, messages/s into the store, jobs/s, and the 429s the
     fake answered (any one is a quota we broke);
  3. opens one SSE stream per user, delivers K new messages to random users through the fake
     (whose users.watch pushes reach the edge's webhook), and prints the delivery-to-SSE
     latency p50/p99/max (from the moment the fake took the message to its new_email on the
     stream);
  4. prints the RSS of every Ainbox process (and the fake's, apart: it is not ours).

It asserts nothing and exits 0 whatever it measured (2 on bad usage).

  tools/bench/sync-bench.py [--accounts N] [--messages M] [--quota new|old] [--samples K]
                            [--rate R/s] [--bin build/deploy/ainbox] [--timeout S] [--keep]
"""

import argparse
import http.client
import json
import os
import random
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import ainbox_proto as proto  # noqa: E402
from ainbox_harness import (MIGRATIONS, Postgres, Proc, Redis, base_env, free_ports,  # noqa: E402
                            wait_until)  # noqa: E402

FAKE = os.path.join(ROOT, "tools", "fakes", "fake_providers.py")
PUSH_TOKEN = "bench-push-token-0123456789abcdef"


def http_call(port, path, method="GET", body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    cookies = {}
    for line in res.msg.get_all("Set-Cookie") or []:
        name, _, value = line.partition(";")[0].partition("=")
        cookies[name] = value
    return res.status, res.msg, cookies, data


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Streams:
    """One SSE stream per user on one selector thread; records new_email arrivals by Gmail id."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.arrived = {}  # Gmail message id -> monotonic arrival
        self.lock = threading.Lock()
        self.open = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def add(self, access_cookie):
        s = socket.create_connection(("127.0.0.1", self.port))
        req = (f"GET /api/v1/emails/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Accept: text/event-stream\r\nCookie: access_token={access_cookie}\r\n\r\n")
        s.sendall(req.encode())
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, [b""])
        self.open += 1

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                    self.open -= 1
                    continue
                now = time.monotonic()
                buf = key.data[0] + data
                *lines, rest = buf.split(b"\n")
                key.data[0] = rest
                for line in lines:
                    if line.startswith(b"data: {") and b'"new_email"' in line:
                        try:
                            ev = json.loads(line[6:])
                        except ValueError:
                            continue
                        mid = ev.get("email", {}).get("id", "")
                        with self.lock:
                            self.arrived.setdefault(mid, now)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--quota", choices=("new", "old"), default="new")
    ap.add_argument("--samples", type=int, default=200, help="new messages for the latency")
    ap.add_argument("--rate", type=float, default=20.0, help="new messages per second")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "deploy", "ainbox"))
    ap.add_argument("--timeout", type=float, default=1800, help="backfill limit (s)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the bundle")
    ap.add_argument("--settle", type=float, default=60,
                    help="at most this long after the backfill, until every account is watched")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0 or args.accounts < 1 or args.messages < 1:
        print("sync-bench.py: run as root, with --accounts and --messages >= 1", file=sys.stderr)
        return 2

    scratch = tempfile.mkdtemp(prefix="ainbox-sync-bench-")
    procs = []
    redis = Redis(scratch, procs)
    redis.start()
    pg = Postgres(scratch)
    env0 = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
    subprocess.run([args.bin, "migrate"], env=dict(env0, DATABASE_URL=pg.url,
                                                   AINBOX_MIGRATIONS_DIR=MIGRATIONS),
                   check=True, capture_output=True, timeout=120)
    broker, edge_port, fport = free_ports(3)
    fake_url = f"http://127.0.0.1:{fport}"
    edge = f"http://127.0.0.1:{edge_port}"
    fake = Proc("fakes", ["/usr/bin/python3", FAKE, "--port", str(fport),
                          "--client", f"google:g-id:g-secret:{edge}/google/callback",
                          "--quota", args.quota, "--gmail-autocreate", "0",
                          "--access-ttl", "3599",
                          "--push-url", f"{edge}/webhooks/gmail/notifications",
                          "--push-token", PUSH_TOKEN], dict(os.environ), scratch)
    procs.append(fake)
    wait_until(lambda: f"ready {fport}" in fake.log(), 20, "the fakes")
    env = base_env(broker, edge_port)
    env.update(LOG_LEVEL="warn", NODE_ENV="development", AINBOX_HEARTBEAT_MS="1000",
               AINBOX_METRICS_INTERVAL_MS="1000", AINBOX_API_RATELIMIT="false",
               DATABASE_URL=pg.url, REDIS_URL=redis.url,
               JWT_ACCESS_SECRET=os.urandom(32).hex(), JWT_REFRESH_SECRET=os.urandom(32).hex(),
               AINBOX_TOKEN_KEY=os.urandom(32).hex(), FRONTEND_BASE_URL="http://front.test",
               GOOGLE_CLIENT_ID="g-id", GOOGLE_CLIENT_SECRET="g-secret",
               GOOGLE_CALLBACK_URL=f"{edge}/google/callback",
               AINBOX_GOOGLE_AUTH_URL=f"{fake_url}/o/oauth2/v2/auth",
               AINBOX_GOOGLE_TOKEN_URL=f"{fake_url}/token",
               AINBOX_GOOGLE_USERINFO_URL=f"{fake_url}/v1/userinfo",
               AINBOX_GMAIL_API_URL=fake_url, AINBOX_GMAIL_QUOTA=args.quota,
               AINBOX_GMAIL_PUSH_TOKEN=PUSH_TOKEN,
               AINBOX_GMAIL_PUSH_TOPIC="projects/ainbox-bench/topics/gmail",
               AINBOX_EDGE_CONNECTIONS=str(max(256, args.accounts + 64)))
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    bundle = Proc("bundle", [args.bin, "run"], env, scratch)
    procs.append(bundle)
    try:
        wait_until(lambda: http_call(edge_port, "/health")[0] == 200, 60, "the bundle")
        users = [f"user{i:05d}@gmail.test" for i in range(args.accounts)]
        t0 = time.monotonic()
        for i, u in enumerate(users):
            http_call(fport, "/_fake/gmail/mailbox", "POST",
                      {"email": u, "messages": args.messages, "seed": i + 1})
        t_boxes = time.monotonic() - t0
        cookies = {}
        t0 = time.monotonic()
        for u in users:
            cookies[u] = sign_in(edge_port, fport, fake_url, u)
        t_signin = time.monotonic() - t0
        print(f"setup: {args.accounts} mailboxes x {args.messages} messages in {t_boxes:.1f} s, "
              f"{args.accounts} sign-ins in {t_signin:.1f} s", flush=True)

        # Backfill: from the last sign-in until the store holds every message.
        client = proto.Client(env["AINBOX_BROKER"])
        start = time.monotonic()
        jobs0 = stat(client, "jobs", "jobs.processed")
        runs0 = stat(client, "sync", "sync.runs")
        want = args.accounts * args.messages
        last_print = 0
        peak = {}
        while True:
            n = int(pg.psql("select count(*) from messages")[0][0])
            nb = int(pg.psql("select count(*) from bodies")[0][0])
            now = time.monotonic()
            for p in (bundle,):
                peak[p.name] = max(peak.get(p.name, 0), rss_kib(p.pid))
            if now - last_print >= 10:
                print(f"  {now - start:6.0f} s: {n} of {want} messages stored, {nb} bodies",
                      flush=True)
                last_print = now
            # Metadata comes first, bodies after: the backfill ends with the last body.
            if (n >= want and nb >= want) or now - start > args.timeout:
                break
            time.sleep(1)
        elapsed = time.monotonic() - start
        jobs = stat(client, "jobs", "jobs.processed") - jobs0
        runs = stat(client, "sync", "sync.runs") - runs0
        counters = json.loads(http_call(fport, "/_fake/gmail/counters")[3])
        print(f"backfill: {n} of {want} messages ({nb} bodies) in {elapsed:.1f} s: {n / elapsed:.0f} "
              f"messages/s into the store, {runs / elapsed:.1f} job runs/s ({runs} runs, {jobs} "
              f"jobs done); "
              f"fake answered 429 x {counters.get('sent_429', 0)}, "
              f"quota refusals {counters.get('quota_refusals', {})}, "
              f"requests {sum(counters.get('requests', {}).values())}, "
              f"units {counters.get('units_total', 0)}", flush=True)

        # Latency in the steady state: wait (at most --settle) until every account is watched,
        # the end of its first sync (new mail of an unwatched account waits for the poll).
        settle_end = time.monotonic() + args.settle
        while time.monotonic() < settle_end:
            watched = int(pg.psql("select count(*) from accounts "
                                  "where sync_watch_until is not null")[0][0])
            if watched >= args.accounts:
                break
            time.sleep(1)
        print(f"settled {args.settle - max(0, settle_end - time.monotonic()):.0f} s: "
              f"{watched} of {args.accounts} accounts watched (Gmail pushes their new mail)",
              flush=True)
        streams = Streams(edge_port)
        for u in users:
            streams.add(cookies[u])
        streams.thread.start()
        time.sleep(2)
        sent = {}
        rng = random.Random(1)
        for i in range(args.samples):
            u = rng.choice(users)
            subject = f"bench {i} {rng.getrandbits(32):08x}"  # a reply's is "Re: ..."
            t = time.monotonic()
            got = json.loads(http_call(fport, "/_fake/gmail/deliver", "POST",
                                       {"email": u, "subject": subject})[3])
            sent[got["delivered"][0]["id"]] = t
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - t)))
        wait_until(lambda: len(streams.arrived) >= len(sent), 60, "the new mail on SSE",
                   interval=0.2) if sent else None
    except Exception as e:  # noqa: BLE001 - a figure run reports what it got
        print(f"stopped early: {e}\n--- the bundle's log, last lines:\n"
              + "\n".join(bundle.log().splitlines()[-15:]), flush=True)
        sent, streams = locals().get("sent", {}), locals().get("streams")
    finally:
        lat = []
        if streams is not None:
            streams.stop = True
            with streams.lock:
                lat = [(streams.arrived[s] - t) * 1000 for s, t in sent.items()
                       if s in streams.arrived]
        try:
            sync_m = metrics(client, "sync")
            jobs_m = metrics(client, "jobs")
            pushes = json.loads(http_call(fport, "/_fake/gmail/pushes")[3]).get("counts")
            print("sync: " + ", ".join(f"{k[5:]} {v}" for k, v in sorted(sync_m.items())
                                       if v and k.startswith("sync.")))
            print("jobs: " + ", ".join(f"{k[5:]} {v}" for k, v in sorted(jobs_m.items())
                                       if v and k.startswith("jobs.")))
            print(f"fake pushes: {pushes}")
        except Exception as e:  # noqa: BLE001
            print(f"(no metrics: {e})")
        if sent:
            try:
                ids = ",".join(f"'{m}'" for m in sent)
                stored = int(pg.psql(f"select count(*) from messages "
                                     f"where provider_id in ({ids})")[0][0])
                missing = sorted(set(sent) - set(streams.arrived if streams else ()))[:5]
                print(f"new mail in the store: {stored} of {len(sent)}; not on SSE e.g. "
                      f"{missing}")
            except Exception as e:  # noqa: BLE001
                print(f"(no store count: {e})")
            print(f"new mail to SSE: {len(lat)} of {len(sent)} arrived on "
                  f"{streams.open if streams else 0} open streams; p50 {pct(lat, 50):.0f} ms, "
                  f"p99 {pct(lat, 99):.0f} ms, max {max(lat) if lat else float('nan'):.0f} ms")
        print(f"RSS: ainbox bundle {rss_kib(bundle.pid) / 1024:.1f} MiB now, peak seen "
              f"{peak.get('bundle', 0) / 1024 if 'peak' in locals() else 0:.1f} MiB; "
              f"redis {rss_kib(redis.proc.pid) / 1024:.1f} MiB; "
              f"fake (not ours) {rss_kib(fake.pid) / 1024:.1f} MiB")
        for p in reversed(procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001
                pass
        pg.stop()
        if args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def metrics(client, service):
    reply = client.call(service, "STATS", b"", timeout_ms=5000)
    return proto.body_map(reply)["metrics"] if reply else {}


def stat(client, service, name):
    reply = client.call(service, "STATS", b"", timeout_ms=5000)
    return proto.body_map(reply)["metrics"].get(name, 0) if reply else 0


def sign_in(edge_port, fport, fake_url, address):
    """The OAuth flow as a browser runs it; returns the access cookie."""
    status, msg, cookies, _ = http_call(edge_port, "/google?login_hint=" +
                                        urllib.parse.quote(address))
    if status != 302:
        raise RuntimeError(f"sign-in of {address}: /google answered {status}")
    verifier = cookies["oauth_google"]
    status, msg, _, _ = http_call(fport, msg["Location"][len(fake_url):])
    back = urllib.parse.urlsplit(msg["Location"])
    status, msg, cookies, body = http_call(edge_port, back.path + "?" + back.query,
                                           headers={"Cookie": f"oauth_google={verifier}"})
    if status != 302 or "access_token" not in cookies:
        raise RuntimeError(f"sign-in of {address}: callback answered {status} {body[:200]}")
    return cookies["access_token"]


if __name__ == "__main__":
    sys.exit(main())
