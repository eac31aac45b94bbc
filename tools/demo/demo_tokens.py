#!/usr/bin/python3
"""demo_tokens.py: the demo's live sessions, for scripts (run by deploy/run-bundle.sh).

Signs each demo identity in as a person would, and keeps var/demo-tokens current while the
bundle runs, one line per identity:

    gmail alice@gmail.test <access token>
    gmail bob@gmail.test <access token>
    admin admin@ainbox.test <access token>

- A Gmail user goes through the real OAuth flow against the fake Google: GET /auth/google on the
  edge (login cookie, state, PKCE), the fake's consent page (which signs in the login_hint), the
  edge's /google/callback (the accounts actor exchanges the code, links the account, opens the
  session). Nothing is shortcut: the edge and the accounts actor do exactly what they do for
  Google. The current terms are then accepted, as the page would.
- The operator signs in with the development route (POST /api/v1/dev/session: there is no
  provider for an operator) after its users row is given the admin role with psql
  (DATABASE_URL), the way edge/README.md says an operator is made.

Each session is renewed (POST /api/v1/session/refresh with its refresh cookie) when a third of
its access token's life is left, and signed in again from scratch if the refresh is refused;
the file is rewritten atomically (mode 0600) after every change, so a reader never sees half a
file. While the edge is away (a restart) it retries every 2 s. Stops on SIGTERM/SIGINT.
Python 3 standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

RETRY_S = 2.0
stop = threading.Event()


def log(msg):
    print(f"demo-tokens: {msg}", file=sys.stderr, flush=True)


class Refused(Exception):
    """The edge answered, and said no: worth saying once, then retrying."""


def request(url, method="GET", body=None, cookies=None, headers=None):
    """One HTTP request, no redirect followed: (status, headers, body bytes)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        h = dict(headers or {})
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        path = u.path + ("?" + u.query if u.query else "")
        conn.request(method, path or "/", body=data, headers=h)
        res = conn.getresponse()
        return res.status, res.headers, res.read()
    finally:
        conn.close()


def set_cookies(headers):
    """The Set-Cookie name=value pairs of an answer (attributes dropped)."""
    out = {}
    for line in headers.get_all("Set-Cookie") or []:
        pair = line.split(";", 1)[0]
        if "=" in pair:
            k, v = pair.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Identity:
    def __init__(self, kind, email):
        self.kind, self.email = kind, email
        self.access = self.refresh = None
        self.exp = self.iat = 0
        self.last_error = None

    def take(self, cookies):
        if not cookies.get("access_token") or not cookies.get("refresh_token"):
            raise Refused("no session cookies in the answer")
        self.access, self.refresh = cookies["access_token"], cookies["refresh_token"]
        claims = jwt_claims(self.access)
        self.iat, self.exp = int(claims["iat"]), int(claims["exp"])
        return claims

    def due(self):
        """When to renew: a third of the access token's life before it ends."""
        return self.exp - max(10, (self.exp - self.iat) // 3)


class Demo:
    def __init__(self, args):
        self.edge = args.edge.rstrip("/")
        self.out = args.out
        self.database_url = args.database_url
        self.ids = [Identity("gmail", e) for e in args.gmail if e]
        if args.admin:
            self.ids.append(Identity("admin", args.admin))

    # ------------------------------------------------------------ sign-in

    def sign_in_google(self, who):
        status, h, body = request(f"{self.edge}/auth/google?" +
                                  urllib.parse.urlencode({"login_hint": who.email}))
        if status != 302:
            raise Refused(f"GET /auth/google: {status} {body[:200]!r}")
        login = set_cookies(h)
        status, h2, body = request(h["Location"])  # the fake's consent page
        if status != 302:
            raise Refused(f"the provider's authorize: {status} {body[:200]!r}")
        callback = h2["Location"]
        if not callback.startswith(self.edge):
            # The registered redirect URI may name the edge by another host name.
            u = urllib.parse.urlsplit(callback)
            callback = self.edge + u.path + "?" + u.query
        status, h3, body = request(callback, cookies=login)
        if status != 302:
            raise Refused(f"GET /google/callback: {status} {body[:300]!r}")
        return who.take(set_cookies(h3))

    def make_admin(self, who):
        if not self.database_url:
            raise Refused("no DATABASE_URL: cannot give the operator the admin role")
        sql = ("insert into users (email, role) values (:'email', 'admin') "
               "on conflict (email) do update set role = 'admin'")
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v",
                              f"email={who.email}", self.database_url],
                             input=sql + ";\n", capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise Refused(f"psql: {out.stderr.strip()[:200]}")

    def sign_in_dev(self, who):
        self.make_admin(who)
        status, h, body = request(f"{self.edge}/api/v1/dev/session", "POST",
                                  {"email": who.email, "name": "Demo operator"})
        if status != 200:
            raise Refused(f"POST /api/v1/dev/session: {status} {body[:200]!r}")
        claims = who.take(set_cookies(h))
        if claims.get("role") != "admin":
            raise Refused("the operator's token has no admin role")
        return claims

    def accept_terms(self, who):
        status, _, body = request(f"{self.edge}/api/v1/terms")
        version = json.loads(body)["data"]["version"] if status == 200 else None
        if version:
            status, _, body = request(f"{self.edge}/api/v1/terms/accept", "POST",
                                      {"version": version},
                                      cookies={"access_token": who.access})
            if status != 200:
                raise Refused(f"POST /api/v1/terms/accept: {status} {body[:200]!r}")

    def sign_in(self, who):
        claims = self.sign_in_google(who) if who.kind == "gmail" else self.sign_in_dev(who)
        self.accept_terms(who)
        log(f"{who.kind} {who.email} signed in (user {claims['sub']}, session {claims['sid']})")

    def renew(self, who):
        status, h, body = request(f"{self.edge}/api/v1/session/refresh", "POST",
                                  cookies={"refresh_token": who.refresh})
        if status != 200:
            raise Refused(f"refresh: {status} {body[:200]!r}")
        who.take(set_cookies(h))

    # ------------------------------------------------------------ the file

    def write(self):
        lines = [f"{w.kind} {w.email} {w.access}\n" for w in self.ids if w.access]
        tmp = self.out + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(lines)
        os.replace(tmp, self.out)

    # ------------------------------------------------------------ the loop

    def step(self, who):
        """Signs in or renews `who` if due; True if its token changed."""
        now = time.time()
        if who.access and now < who.due():
            return False
        try:
            if who.access:
                try:
                    self.renew(who)
                except Refused as e:
                    log(f"{who.email}: {e}; signing in again")
                    who.access = None
                    self.sign_in(who)
            else:
                self.sign_in(who)
            who.last_error = None
            return True
        except (Refused, OSError, ValueError, KeyError, http.client.HTTPException) as e:
            msg = str(e) or type(e).__name__
            if msg != who.last_error:  # once per distinct reason, not every 2 s
                log(f"{who.kind} {who.email}: not signed in yet: {msg} (retrying)")
            who.last_error = msg
            return False

    def run(self):
        while not stop.is_set():
            changed = False
            for who in self.ids:
                changed |= self.step(who)
            if changed:
                self.write()
            pending = [w for w in self.ids if not w.access]
            wake = min([w.due() for w in self.ids if w.access] or [time.time() + RETRY_S])
            wait = RETRY_S if pending else max(0.5, min(wake - time.time(), 60))
            stop.wait(wait)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edge", required=True, help="the edge's base URL, http://127.0.0.1:3000")
    ap.add_argument("--out", required=True, help="the file to keep current (var/demo-tokens)")
    ap.add_argument("--gmail", default="", help="demo Gmail users, comma-separated")
    ap.add_argument("--admin", default="", help="the operator's address")
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = ap.parse_args()
    args.gmail = [e.strip() for e in args.gmail.split(",") if e.strip()]
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Demo(args).run()


if __name__ == "__main__":
    main()
