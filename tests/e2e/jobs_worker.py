"""jobs_worker: a job service for tests, as a raw MDP worker (tests/mdp_cleanroom).

It answers JOB_RUN as the job's payload tells it, so a test can script every outcome:

    {"act": "done" | "retry" | "delay" | "continue" | "fail", "sleep_ms": N, "delay_ms": N,
     "left": N (continue: answers continue with left - 1 until 0, then done),
     "fail_first": N (retry on attempts 1..N, then done),
     "delay_times": N (delay the first N runs this process sees, then done)}

Each run is appended to the log file as one line of JSON, before and after its work:
{"ev": "start" | "end", "id", "attempt", "pid", "t" (epoch seconds), "result"}, so a test can
prove that no job ran twice at once (a killed worker leaves a start without an end).

    python3 jobs_worker.py BROKER SERVICE LOGFILE [HEARTBEAT_MS]
"""

import json
import os
import sys
import threading
import time

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mdp_cleanroom"))
import mdp  # noqa: E402


_delayed = {}  # job id -> delays answered by this process


def _answer(body, attempt):
    p = body.get("payload") or {}
    act = p.get("act", "done")
    if p.get("delay_times") is not None:
        n = _delayed.get(body.get("id"), 0)
        act = "delay" if n < p["delay_times"] else "done"
        _delayed[body.get("id")] = n + 1
    if p.get("fail_first") is not None:
        act = "retry" if attempt <= p["fail_first"] else "done"
    if act == "continue":
        left = int(p.get("left", 0))
        if left <= 0:
            return {"result": "done"}
        return {"result": "continue", "payload": dict(p, left=left - 1)}
    out = {"result": act}
    if act in ("delay", "retry") and "delay_ms" in p:
        out["delay_ms"] = p["delay_ms"]
    if act in ("retry", "fail"):
        out["error"] = f"told to {act}"
    return out


def make_handler(log):
    def handler(frames):
        env = msgpack.unpackb(frames[0], raw=False)
        version, type_id, corr, user, deadline, trace, status, body = env
        body = msgpack.unpackb(body, raw=False) if body else {}
        p = body.get("payload") or {}
        rec = {"id": body.get("id"), "attempt": body.get("attempt"), "pid": os.getpid(),
               "user": user, "kind": body.get("kind")}
        log.write(json.dumps(dict(rec, ev="start", t=time.time())) + "\n")
        log.flush()
        if p.get("sleep_ms"):
            time.sleep(p["sleep_ms"] / 1000)
        reply = _answer(body, body.get("attempt", 1))
        log.write(json.dumps(dict(rec, ev="end", t=time.time(), result=reply["result"])) + "\n")
        log.flush()
        out = [version, type_id, corr, user, deadline, trace, 0, msgpack.packb(reply)]
        return [msgpack.packb(out, use_bin_type=True)]
    return handler


def main():
    broker, service, path = sys.argv[1], sys.argv[2], sys.argv[3]
    heartbeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    with open(path, "a") as log:
        worker = mdp.MdpWorker(broker, service.encode(), heartbeat_ms=heartbeat)
        print("ready", flush=True)
        worker.serve(make_handler(log), threading.Event())


if __name__ == "__main__":
    main()
