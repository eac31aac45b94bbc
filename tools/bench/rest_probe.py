#!/usr/bin/env python3
"""rest_probe.py: REST latency at a steady, modest rate (tools/bench/edge-bench.sh).

wrk measures throughput: it keeps every connection busy, so during the SSE
phase it would take the cores the edge and the load tools need and measure
its own saturation. This probe sends RATE requests per second in all,
evenly spaced, over CONNS keep-alive connections (one thread each, RATE/CONNS
per second, offset so that the requests interleave), for SECONDS, and prints
one line of key=value: requests, ok (2xx), non2xx, errors, p50_ms, p99_ms,
max_ms. A request's latency runs from its scheduled time: a slow answer
delays the next ones on its connection, and that wait counts (no coordinated
omission). Only 127.0.0.1.

  rest_probe.py PORT PATH RATE SECONDS [HEADER: VALUE ...]     (CONNS: env PROBE_CONNS, 8)
"""

import http.client
import os
import sys
import threading
import time


def worker(port, path, headers, rate, seconds, start, out):
    conn = None
    lat, ok, non2xx, errors = [], 0, 0, 0
    for k in range(int(rate * seconds)):
        due = start + k / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if time.monotonic() > start + seconds + 5:  # bounded: far behind, stop
            break
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers=headers)
            res = conn.getresponse()
            res.read()
            if 200 <= res.status < 300:
                ok += 1
            else:
                non2xx += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            if conn:
                conn.close()
            conn = None
            continue
        lat.append((time.monotonic() - due) * 1000)
    out.append((lat, ok, non2xx, errors))


def main():
    if len(sys.argv) < 5:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    port, path, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    headers = dict(h.split(": ", 1) for h in sys.argv[5:])
    conns = max(1, int(os.environ.get("PROBE_CONNS", "8")))
    out, threads = [], []
    start = time.monotonic() + 0.1
    for i in range(conns):
        t = threading.Thread(target=worker, args=(port, path, headers, rate / conns, seconds,
                                                  start + i / rate, out))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(seconds + 30)
    lat = sorted(x for r in out for x in r[0])
    ok, non2xx, errors = (sum(r[i] for r in out) for i in (1, 2, 3))

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")
    print(f"tool=rest_probe conns={conns} requests={len(lat) + errors} ok={ok} non2xx={non2xx} "
          f"errors={errors} p50_ms={pct(0.5):.2f} p99_ms={pct(0.99):.2f} "
          f"max_ms={lat[-1] if lat else float('nan'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
