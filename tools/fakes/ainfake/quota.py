"""Gmail's usage limits: per-method unit costs, per-user and per-project buckets, concurrency.

Two generations of limits are real (provider-apis.md §1.7): projects that used the Gmail API
before May 2026 keep 15,000 units per user per minute and the old costs ("old"); projects
created after 2026-05-01 get 6,000 units per user per minute with messages.get at 20 and
threads.get at 40 ("new", the default). Both have 1,200,000 units per project per minute.

A bucket per user and one for the project (capacity = the per-minute limit, refilled
continuously, so short bursts pass as at Google); units are charged on arrival, a refused
request costs nothing. Concurrency is capped per user (Google's "Too many concurrent requests
for user"; the figure is empirical, 10 by default).
"""

import threading
import time

COSTS_OLD = {
    "getProfile": 1, "labels.get": 1, "labels.list": 1, "labels.create": 5,
    "labels.update": 5, "labels.patch": 5, "labels.delete": 5, "history.list": 2,
    "messages.list": 5, "messages.get": 5, "messages.attachments.get": 5,
    "messages.modify": 5, "messages.trash": 5, "messages.untrash": 5, "messages.delete": 10,
    "messages.batchModify": 50, "messages.batchDelete": 50, "messages.import": 25,
    "messages.insert": 25, "messages.send": 100, "drafts.get": 5, "drafts.list": 5,
    "drafts.create": 10, "drafts.update": 15, "drafts.delete": 10, "drafts.send": 100,
    "threads.get": 10, "threads.list": 10, "threads.modify": 10, "threads.trash": 10,
    "threads.untrash": 10, "threads.delete": 20, "watch": 100, "stop": 50,
}
COSTS_NEW = dict(COSTS_OLD, **{"messages.get": 20, "threads.get": 40})
MODES = {"old": {"user": 15000, "project": 1200000, "costs": COSTS_OLD},
         "new": {"user": 6000, "project": 1200000, "costs": COSTS_NEW}}
USERS_MAX = 100000  # buckets kept; the idlest are dropped beyond (a full bucket is no state)


class Bucket:
    def __init__(self, per_min, now):
        self.capacity = float(per_min)
        self.level = float(per_min)
        self.rate = per_min / 60.0  # units per second
        self.t = now

    def refill(self, now):
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def take(self, units, now):
        self.refill(now)
        if self.level >= units:
            self.level -= units
            return True
        return False

    def wait_s(self, units):
        """Seconds until `units` would pass (for Retry-After)."""
        missing = max(0.0, min(units, self.capacity) - self.level)
        return missing / self.rate if self.rate > 0 else 60.0


class Quota:
    """Limits and their buckets; `mode` new|old picks the limits and the cost table, each
    limit can be overridden (0 disables it)."""

    def __init__(self, mode="new"):
        self.lock = threading.Lock()
        self.style = "429"      # 429 rateLimitExceeded, or "403": userRateLimitExceeded
        self.retry_after = True  # send Retry-After with quota refusals
        self.concurrency = 10
        # Google runs a batch's parts at once: part k meets k others against the cap. Off,
        # a batch counts as one call in flight.
        self.batch_parallel = True
        self.set_mode(mode)

    def set_mode(self, mode, user=None, project=None):
        if mode not in MODES:
            raise ValueError(f"quota mode {mode!r}: new or old")
        with self.lock:
            self.mode = mode
            self.costs = MODES[mode]["costs"]
            self.user_limit = MODES[mode]["user"] if user is None else int(user)
            self.project_limit = MODES[mode]["project"] if project is None else int(project)
            self.users, self.project = {}, None

    def set_limits(self, user=None, project=None):
        with self.lock:
            if user is not None:
                self.user_limit = int(user)
            if project is not None:
                self.project_limit = int(project)
            self.users, self.project = {}, None

    def cost(self, method):
        return self.costs.get(method, 1)

    def charge(self, user, method):
        """(units, None) when the call may run, else (units, ("user"|"project", wait_s))."""
        units = self.cost(method)
        now = time.monotonic()
        with self.lock:
            ub = None
            if self.user_limit > 0:
                ub = self.users.get(user)
                if ub is None:
                    if len(self.users) >= USERS_MAX:
                        self.users.pop(next(iter(self.users)))
                    ub = self.users[user] = Bucket(self.user_limit, now)
                ub.refill(now)
                if ub.level < units:
                    return units, ("user", ub.wait_s(units))
            if self.project_limit > 0:
                if self.project is None:
                    self.project = Bucket(self.project_limit, now)
                if not self.project.take(units, now):
                    return units, ("project", self.project.wait_s(units))
            if ub is not None:
                ub.take(units, now)
            return units, None

    def describe(self):
        with self.lock:
            return {"mode": self.mode, "user_per_min": self.user_limit,
                    "project_per_min": self.project_limit, "concurrency": self.concurrency,
                    "style": self.style, "retry_after": self.retry_after,
                    "batch_parallel": self.batch_parallel,
                    "costs": dict(self.costs)}
