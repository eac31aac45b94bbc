"""The /_fake/gmail/... control API: what tests and benchmarks set and read (never Google's).

  POST /_fake/gmail/mailbox      {email, messages?: N, seed?, days?, history_keep?,
                                  history_keep_s?}: a new mailbox (replacing one) with N
                                  synthetic messages; {email, messagesTotal, threadsTotal,
                                  historyId}
  GET  /_fake/gmail/mailbox/<email>   the same summary plus historyFloor and drafts
  POST /_fake/gmail/deliver      {email, subject?, from?: [name, addr] or "Name <addr>",
                                  labels?, count?}: new
                                  mail now; {delivered: [{id, threadId, historyId, sentMs}]}
  POST /_fake/gmail/generate     {users: [...], every_ms, count?}: deliver to each user every
                                  every_ms (count per user in all, 0: until stopped); {id}
  POST /_fake/gmail/generate/stop  {id?}: stop one generator or all; GET /_fake/gmail/generate
  POST /_fake/gmail/fault        {kind: status|rate|latency|empty_page|drop_push|dup_push|
                                  push_delay, count?, status?, ms?, reason?: user|project|
                                  concurrent, style?: 429|403}: the next `count` API calls
                                  (list pages, notifications) fail so
  POST /_fake/gmail/quota        {mode?: new|old, user_per_min?, project_per_min?,
                                  concurrency?, style?: 429|403, retry_after?, send_limit?,
                                  batch_parallel?}
  GET  /_fake/gmail/quota        the limits and the cost table in force
  GET  /_fake/gmail/counters     requests per method, statuses, sent_429, quota_refusals,
                                  units per user, injected, peak_concurrency; POST .../reset
  POST /_fake/gmail/push         {url?, token?, bearer?, subscription?, excess?:
                                  coalesce|drop, publish_denied?}: where and how
                                  notifications go; publish_denied makes watch a 403
  GET  /_fake/gmail/pushes       {counts, log: [{email, historyId, status, messageId, t}]}
  POST /_fake/gmail/expire_history  {email}: every startHistoryId before now answers 404
  POST /_fake/gmail/history      {email, keep?, keep_s?}: the retention of that mailbox
  POST /_fake/gmail/watch_expire {email}: the user's watch has expired (no more pushes)
"""

import email.utils

from ainfake.common import Answer

FAULT_KINDS = ("status", "rate", "latency", "empty_page", "drop_push", "dup_push",
               "push_delay")
COUNT_MAX = 100000


def _summary(box):
    return {"email": box.email, "messagesTotal": len(box.messages),
            "threadsTotal": len(box.threads), "historyId": str(box.history_id),
            "historyFloor": str(box.floor), "historyRecords": len(box.history),
            "drafts": len(box.drafts)}


def control(g, method, parts, body):
    what = "/".join(parts)
    if method == "GET":
        return _get(g, what, parts)
    if method != "POST":
        return Answer(405, {"error": "method"})
    if what == "mailbox":
        n = int(body.get("messages", 0))
        if not 0 <= n <= 1000000:
            return Answer(400, {"error": "messages: 0..1000000"})
        box = g.new_mailbox(body["email"], n, int(body.get("seed", 0)),
                            int(body.get("days", 365)), body.get("history_keep"),
                            body.get("history_keep_s"))
        with g.store.lock:
            return Answer(200, _summary(box))
    if what == "deliver":
        count = min(int(body.get("count", 1)), COUNT_MAX)
        sender = body.get("from")
        if isinstance(sender, str):  # "Name <addr>" as well as [name, addr]
            sender = email.utils.parseaddr(sender)
        if sender is not None and (len(sender) != 2 or "@" not in str(sender[1])):
            return Answer(400, {"error": "from: [name, addr] or \"Name <addr>\""})
        return Answer(200, {"delivered": [g.deliver(body["email"], body.get("subject"), sender,
                                                    body.get("labels"))
                                          for _ in range(count)]})
    if what == "generate":
        every = int(body["every_ms"])
        if every < 1 or not body.get("users"):
            return Answer(400, {"error": "users and every_ms >= 1 needed"})
        return Answer(200, {"id": g.start_generator(body["users"], every,
                                                    int(body.get("count", 0)))})
    if what == "generate/stop":
        return Answer(200, {"stopped": g.stop_generators(body.get("id"))})
    if what == "fault":
        return _fault(g, body)
    if what == "quota":
        return _quota(g, body)
    if what == "counters/reset":
        g.counters.reset()
        return Answer(200, {"ok": True})
    if what == "push":
        p = g.pusher
        with p.lock:
            for key in ("url", "token", "bearer", "subscription"):
                if key in body:
                    setattr(p, key, body[key])
            if body.get("excess") in ("coalesce", "drop"):
                p.excess = body["excess"]
        if "publish_denied" in body:
            g.publish_denied = bool(body["publish_denied"])
        return Answer(200, {"ok": True})
    if what in ("expire_history", "history", "watch_expire"):
        box = g.mailbox(body["email"], create=False)
        if not box:
            return Answer(404, {"error": "no such mailbox"})
        with g.store.lock:
            if what == "expire_history":
                box.expire_history()
            elif what == "history":
                box.history_keep = int(body.get("keep", box.history_keep))
                box.history_keep_s = float(body.get("keep_s", box.history_keep_s))
                box.trim()
            else:
                with g.pusher.lock:
                    w = g.pusher.watches.get(box.email)
                    if w:
                        w.expiration_ms = 0
            return Answer(200, _summary(box))
    return Answer(404, {"error": "unknown control path"})


def _get(g, what, parts):
    if what == "counters":
        return Answer(200, g.counters.snapshot())
    if what == "quota":
        return Answer(200, g.quota.describe())
    if what == "pushes":
        with g.pusher.lock:
            return Answer(200, {"counts": dict(g.pusher.counts), "log": list(g.pusher.log)})
    if what == "generate":
        return Answer(200, {k: {"users": s["users"], "every_ms": s["every_ms"],
                                "delivered": s["delivered"], "error": s.get("error")}
                            for k, s in list(g.generators.items())})
    if len(parts) == 2 and parts[0] == "mailbox":
        box = g.mailbox(parts[1], create=False)
        if not box:
            return Answer(404, {"error": "no such mailbox"})
        with g.store.lock:
            return Answer(200, _summary(box))
    return Answer(404, {"error": "unknown control path"})


def _fault(g, body):
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        return Answer(400, {"error": f"kind: one of {', '.join(FAULT_KINDS)}"})
    count = int(body.get("count", 1))
    if not 0 <= count <= COUNT_MAX:
        return Answer(400, {"error": "count"})
    p = g.pusher
    if kind == "drop_push":
        with p.lock:
            p.drop_next += count
    elif kind == "dup_push":
        with p.lock:
            p.dup_next += count
    elif kind == "push_delay":
        with p.lock:
            p.delay_ms = max(0, int(body.get("ms", 0)))
    elif kind == "empty_page":
        with g.fault_lock:
            g.empty_pages += count
    else:
        if kind == "status" and not 500 <= int(body.get("status", 503)) <= 599:
            return Answer(400, {"error": "status: a 5xx"})
        with g.fault_lock:
            if len(g.faults) + count > COUNT_MAX:
                return Answer(400, {"error": "too many queued faults"})
            g.faults.extend([dict(body)] * count)
    return Answer(200, {"ok": True})


def _quota(g, body):
    q = g.quota
    if "mode" in body:
        q.set_mode(body["mode"])
    if "user_per_min" in body or "project_per_min" in body:
        q.set_limits(body.get("user_per_min"), body.get("project_per_min"))
    if "concurrency" in body:
        q.concurrency = max(0, int(body["concurrency"]))
    if "style" in body:
        if str(body["style"]) not in ("429", "403"):
            return Answer(400, {"error": "style: 429 or 403"})
        q.style = str(body["style"])
    if "retry_after" in body:
        q.retry_after = bool(body["retry_after"])
    if "batch_parallel" in body:
        q.batch_parallel = bool(body["batch_parallel"])
    if "send_limit" in body:
        g.send_limit = max(0, int(body["send_limit"]))
    return Answer(200, q.describe())
