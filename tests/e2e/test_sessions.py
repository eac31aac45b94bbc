"""Sign-in sessions: the session actor behind the edge, on a private PostgreSQL.

Signing in through the development route; GET /api/v1/session's exact
shape; refresh rotation (the new cookies work, the old refresh token is a
reuse that revokes the whole session); logout revoking; terms acceptance;
one user never reading or changing another's session or terms; malformed
bodies answered 400 with the problem named; production refusing to start
without the token secrets or the database, hiding the development route,
and marking cookies Secure.
"""

import http.client
import json
import subprocess
import unittest

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, free_ports

ACCESS = "a" * 16 + "-access-secret-for-tests-only"
REFRESH = "r" * 16 + "-refresh-secret-for-tests-only"
SECRETS = {"JWT_ACCESS_SECRET": ACCESS, "JWT_REFRESH_SECRET": REFRESH}


class SessionCase(AinboxTestCase):

    # Reuse is worth a warning, not an error; nothing here should log ERROR.

    def setUp(self):
        super().setUp()
        self.pg = self.start_migrated_postgres()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events,session",
                                 AINBOX_HEALTH_SERVICES="monitor,session",
                                 AINBOX_API_RATELIMIT="false", DATABASE_URL=self.pg.url,
                                 **SECRETS)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)

    # ------------------------------------------------------------- HTTP

    def request(self, method, path, body=None, cookies=None, headers=None):
        """(status, {cookie: (value, attributes)}, parsed JSON body)."""
        conn = http.client.HTTPConnection("127.0.0.1", int(self.env["HTTP_PORT"]), timeout=5)
        h = dict(headers or {})
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if body is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        data = res.read()
        set_cookies = {}
        for line in res.msg.get_all("Set-Cookie") or []:
            first, _, attrs = line.partition(";")
            name, _, value = first.partition("=")
            set_cookies[name] = (value, [a.strip() for a in attrs.split(";")])
        conn.close()
        return res.status, set_cookies, json.loads(data) if data else None

    def sign_in(self, email, **extra):
        status, cookies, body = self.request("POST", "/api/v1/dev/session",
                                             {"email": email, **extra})
        self.assertEqual(status, 200, body)
        return {k: v[0] for k, v in cookies.items()}, body["data"]

    def session(self, cookies):
        return self.request("GET", "/api/v1/session", cookies={"access_token":
                                                               cookies["access_token"]})

    def refresh(self, cookies, path="/api/v1/session/refresh"):
        return self.request("POST", path, cookies={"refresh_token": cookies["refresh_token"]})

    def call(self, msg, body, user):
        client = proto.Client(self.env["AINBOX_BROKER"])
        try:
            reply = client.call("session", msg, proto.pack(body), user=user, timeout_ms=5000)
        finally:
            client.close()
        self.assertIsNotNone(reply)
        return reply["status"], proto.body_map(reply)

    # ------------------------------------------------------------- tests

    def test_sign_in_and_session_shape(self):
        status, set_cookies, body = self.request(
            "POST", "/api/v1/dev/session", {"email": "Ann@Example.com", "name": "Ann"})
        self.assertEqual(status, 200, body)
        for name, max_age in (("access_token", 900), ("refresh_token", 2592000)):
            value, attrs = set_cookies[name]
            self.assertEqual(value.count("."), 2)
            self.assertIn(f"Max-Age={max_age}", attrs)
            for a in ("Path=/", "HttpOnly", "SameSite=Lax"):
                self.assertIn(a, attrs)
            self.assertNotIn("Secure", attrs)
        cookies = {k: v[0] for k, v in set_cookies.items()}
        status, _, got = self.session(cookies)
        self.assertEqual(status, 200, got)
        uid = got["data"]["user"]["id"]
        self.assertIsInstance(uid, int)
        self.assertEqual(got, {
            "data": {"user": {"id": uid, "email": "ann@example.com", "name": "Ann",
                              "picture": None},
                     "terms": {"required": True, "version": "v1", "acceptedAt": None},
                     "providers": {"google": False, "microsoft": False}},
            "error": None, "meta": None, "requestId": None})
        # A linked provider shows; a Bearer header works as the cookie does.
        self.pg.psql(f"insert into accounts (user_id, provider, address) values "
                     f"({uid}, 'outlook', 'ann@example.com')")
        status, _, got = self.request("GET", "/api/v1/session", headers={
            "Authorization": "Bearer " + cookies["access_token"]})
        self.assertEqual(got["data"]["providers"], {"google": False, "microsoft": True})
        # Signing in again is the same user (emails are case-insensitive), a new session.
        again, data = self.sign_in("ann@EXAMPLE.com")
        self.assertEqual(data["user"]["id"], uid)
        self.assertNotEqual(data["session"], self.sign_in("ann@example.com")[1]["session"])
        self.assertEqual(self.pg.psql(f"select count(*) from sessions where user_id = {uid}"),
                         [["3"]])
        # Without a token: 401.
        status, _, got = self.request("GET", "/api/v1/session")
        self.assertEqual(status, 401)

    def test_refresh_rotates_and_reuse_revokes(self):
        first, _ = self.sign_in("bob@example.com")
        status, set_cookies, body = self.refresh(first)
        self.assertEqual((status, body), (200, {"ok": True}))
        second = {k: v[0] for k, v in set_cookies.items()}
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        self.assertNotEqual(second["access_token"], first["access_token"])
        self.assertEqual(self.session(second)[0], 200)
        # The original's name works the same.
        status, set_cookies, body = self.refresh(second, "/auth/refresh")
        self.assertEqual((status, body), (200, {"ok": True}))
        third = {k: v[0] for k, v in set_cookies.items()}
        self.assertEqual(self.session(third)[0], 200)
        # The first token again: a reuse. Refused, cookies cleared, session revoked.
        status, set_cookies, body = self.refresh(first)
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "REFRESH_TOKEN_REUSED")
        self.assertEqual(set_cookies["refresh_token"][0], "")
        self.assertIn("Max-Age=0", set_cookies["refresh_token"][1])
        status, _, body = self.refresh(third)
        self.assertEqual((status, body["error"]["code"]), (401, "SESSION_REVOKED"))
        status, _, body = self.session(third)
        self.assertEqual((status, body["error"]["code"]), (401, "SESSION_REVOKED"))
        self.assertEqual(self.pg.psql("select count(*) from sessions where revoked_at is null"),
                         [["0"]])
        # No cookie, or garbage: 401 with its own code.
        status, _, body = self.request("POST", "/api/v1/session/refresh")
        self.assertEqual((status, body["error"]["code"]), (401, "NO_REFRESH_TOKEN"))
        status, _, body = self.refresh({"refresh_token": "a.b.c"})
        self.assertEqual((status, body["error"]["code"]), (401, "INVALID_REFRESH_TOKEN"))
        # An access token is no refresh token.
        status, _, body = self.refresh({"refresh_token": third["access_token"]})
        self.assertEqual((status, body["error"]["code"]), (401, "INVALID_REFRESH_TOKEN"))

    def test_logout_revokes(self):
        cookies, _ = self.sign_in("carl@example.com")
        other, _ = self.sign_in("carl@example.com")  # another device of the same user
        status, set_cookies, body = self.request("POST", "/auth/logout", cookies=cookies)
        self.assertEqual((status, body), (200, {"ok": True}))
        for name in ("access_token", "refresh_token"):
            self.assertEqual(set_cookies[name][0], "")
            self.assertIn("Max-Age=0", set_cookies[name][1])
        status, _, body = self.refresh(cookies)
        self.assertEqual((status, body["error"]["code"]), (401, "SESSION_REVOKED"))
        self.assertEqual(self.session(cookies)[0], 401)
        # The other device's session lives on.
        self.assertEqual(self.session(other)[0], 200)
        self.assertEqual(self.refresh(other)[0], 200)
        # Logging out by the access token alone works too; with nothing, it is still ok.
        third, _ = self.sign_in("carl@example.com")
        status, _, _ = self.request("POST", "/auth/logout",
                                    cookies={"access_token": third["access_token"]})
        self.assertEqual(status, 200)
        self.assertEqual(self.refresh(third)[0], 401)
        self.assertEqual(self.request("POST", "/auth/logout")[0], 200)

    def test_terms(self):
        status, _, body = self.request("GET", "/api/v1/terms")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"], {"version": "v1", "title": "Terms of Service",
                                        "htmlUrl": None, "mdUrl": None, "updatedAt": None})
        cookies, _ = self.sign_in("dora@example.com")
        access = {"access_token": cookies["access_token"]}
        status, _, body = self.request("POST", "/api/v1/terms/accept", {"version": "v0"},
                                       cookies=access)
        self.assertEqual((status, body["error"]["code"]), (409, "TERMS_VERSION_MISMATCH"))
        status, _, body = self.request("POST", "/api/v1/terms/accept", {"version": "v1"},
                                       cookies=access)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"], {"ok": True, "version": "v1"})
        terms = self.session(cookies)[2]["data"]["terms"]
        self.assertFalse(terms["required"])
        self.assertEqual(terms["version"], "v1")
        self.assertRegex(terms["acceptedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        # Without a token: 401.
        status, _, _ = self.request("POST", "/api/v1/terms/accept", {"version": "v1"})
        self.assertEqual(status, 401)

    def test_users_are_isolated(self):
        a, da = self.sign_in("eve@example.com")
        b, db = self.sign_in("fay@example.com")
        ua, ub = da["user"]["id"], db["user"]["id"]
        self.assertNotEqual(ua, ub)
        self.assertEqual(self.session(a)[2]["data"]["user"]["email"], "eve@example.com")
        self.assertEqual(self.session(b)[2]["data"]["user"]["email"], "fay@example.com")
        self.request("POST", "/api/v1/terms/accept", {"version": "v1"},
                     cookies={"access_token": a["access_token"]})
        self.assertFalse(self.session(a)[2]["data"]["terms"]["required"])
        self.assertTrue(self.session(b)[2]["data"]["terms"]["required"])
        # Through the actor itself: user A naming B's session reaches nothing.
        status, got = self.call("SESSION_REVOKE", {"session": db["session"]}, ua)
        self.assertEqual((status, got), ("OK", {"revoked": False}))
        status, got = self.call("SESSION_GET", {"session": db["session"]}, ua)
        self.assertEqual((status, got["code"]), ("UNAUTHENTICATED", "SESSION_REVOKED"))
        self.assertEqual(self.session(b)[0], 200)
        self.assertEqual(self.refresh(b)[0], 200)
        # Opening and refreshing are the edge's (envelope user 0) only.
        status, got = self.call("SESSION_OPEN", {"email": "eve@example.com"}, ub)
        self.assertEqual(status, "DENIED")
        status, got = self.call("SESSION_REFRESH", {"refresh": a["refresh_token"]}, ub)
        self.assertEqual(status, "DENIED")
        # The user's own calls need a user.
        status, got = self.call("SESSION_GET", {}, 0)
        self.assertEqual(status, "INVALID")

    def test_malformed_bodies(self):
        cookies, _ = self.sign_in("gus@example.com")
        access = {"access_token": cookies["access_token"]}
        cases = [
            ("", "INVALID_JSON"),
            ("not json", "INVALID_JSON"),
            ('{"version": "v1"', "INVALID_JSON"),
            ("[]", "INVALID_JSON"),
            ('{"version": "v1", "version": "v1"}', "INVALID_JSON"),
            ('{"version": 1}', "INVALID_REQUEST"),
            ('{"version": "v1", "extra": "x"}', "INVALID_REQUEST"),
            ("{}", "INVALID_REQUEST"),
        ]
        for raw, code in cases:
            status, _, body = self.request("POST", "/api/v1/terms/accept", raw, cookies=access)
            self.assertEqual((status, body["error"]["code"]), (400, code), raw)
            self.assertTrue(body["error"]["message"], raw)
        status, _, body = self.request("POST", "/api/v1/terms/accept",
                                       '{"version": "' + "v" * 5000 + '"}', cookies=access)
        self.assertEqual((status, body["error"]["code"]), (413, "PAYLOAD_TOO_LARGE"))
        for raw in ('{}', '{"email": "nobody"}', '{"email": "a@b.c", "role": "admin"}',
                    '{"email": "a b@c.d"}'):
            status, set_cookies, body = self.request("POST", "/api/v1/dev/session", raw)
            self.assertEqual(status, 400, raw)
            self.assertEqual(set_cookies, {})
        # Nothing was stored by the refusals.
        self.assertEqual(self.pg.psql("select count(*) from users"), [["1"]])


class ConfigurationTest(AinboxTestCase):

    def run_actor(self, **extra):
        port, = free_ports(1)
        env = self.base_env(port, NODE_ENV="production", **extra)
        return subprocess.run([self.bin, "actor", "session"], env=env, capture_output=True,
                              text=True, timeout=30)

    def test_production_needs_secrets_and_database(self):
        out = self.run_actor()
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("JWT_ACCESS_SECRET", out.stderr + out.stdout)
        out = self.run_actor(**SECRETS)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("DATABASE_URL", out.stderr + out.stdout)
        out = self.run_actor(JWT_ACCESS_SECRET="short", JWT_REFRESH_SECRET=REFRESH,
                             DATABASE_URL="postgresql://x@127.0.0.1:1/x")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("JWT_ACCESS_SECRET", out.stderr + out.stdout)

    def test_production_has_no_development_route(self):
        port, = free_ports(1)
        env = self.base_env(port, NODE_ENV="production", AINBOX_ACTORS="monitor",
                            AINBOX_HEALTH_SERVICES="monitor", **SECRETS)
        self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        conn = http.client.HTTPConnection("127.0.0.1", int(env["HTTP_PORT"]), timeout=5)
        conn.request("POST", "/api/v1/dev/session", body='{"email": "a@b.c"}')
        res = conn.getresponse()
        self.assertEqual(res.status, 404)
        self.assertIsNone(res.getheader("Set-Cookie"))
        res.read()
        # Cookies are Secure in production (AINBOX_COOKIE_SECURE=auto): logout clears them.
        conn.request("POST", "/auth/logout")
        res = conn.getresponse()
        self.assertEqual(res.status, 200)
        cleared = res.msg.get_all("Set-Cookie")
        self.assertEqual(len(cleared), 2)
        for line in cleared:
            self.assertIn("Max-Age=0", line)
            self.assertIn("; Secure", line)
        conn.close()


if __name__ == "__main__":
    unittest.main()
