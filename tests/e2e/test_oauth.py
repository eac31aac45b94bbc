"""Sign-in with Google and Microsoft: the edge, the accounts and session actors, a private
PostgreSQL, and the fake providers of tools/fakes (the one thing faked).

The whole browser flow with a plain HTTP client that follows no redirect: the login redirect
carries state and an S256 challenge of the verifier kept in its cookie; the callback sets the
session cookies and the session works, with providers.google/microsoft set; the refresh token
is stored sealed (not the plaintext) and opens only in its own row; a state from another
browser, a replayed code, a provider that fails or does not answer, a user who declines, each
get an honest status and no session; Microsoft's rotated refresh token replaces the stored one,
Google's stays; a revoked grant marks the account for a new sign-in; a second sign-in updates
the account; one user never reaches another's account; a provider without a client id answers
503.
"""

import base64
import hashlib
import http.client
import json
import os
import unittest
import urllib.parse

import ainbox_proto as proto
from ainbox_harness import AinboxTestCase, Proc, free_ports, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "tools", "fakes", "fake_providers.py")
ACCESS = "a" * 16 + "-access-secret-for-tests-only"
REFRESH = "r" * 16 + "-refresh-secret-for-tests-only"
TOKEN_KEY = "6b1f" * 8 + "0123456789abcdef" * 2
FRONT = "http://front.test"
COOKIE = {"google": "oauth_google", "microsoft": "oauth_microsoft"}
LOGIN = {"google": "/google", "microsoft": "/auth/outlook"}
CALLBACK = {"google": "/google/callback", "microsoft": "/auth/outlook/callback"}


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


def get(port, path, cookies=None, method="GET", body=None):
    """(status, headers message, {cookie: (value, attrs)}, parsed body or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {"User-Agent": "oauth-test"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    set_cookies = {}
    for line in res.msg.get_all("Set-Cookie") or []:
        first, _, attrs = line.partition(";")
        name, _, value = first.partition("=")
        set_cookies[name] = (value, [a.strip() for a in attrs.split(";")])
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return res.status, res.msg, set_cookies, parsed


class OAuthCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        self.pg = self.start_migrated_postgres()
        broker, self.edge_port, self.fport = free_ports(3)
        self.fake_url = f"http://127.0.0.1:{self.fport}"
        edge = f"http://127.0.0.1:{self.edge_port}"
        self.fake_proc = Proc("fakes", ["/usr/bin/python3", FAKE, "--port", str(self.fport),
                                   "--client", f"google:g-id:g-secret:{edge}/google/callback",
                                   "--client",
                                   f"microsoft:m-id:m-secret:{edge}/auth/outlook/callback"],
                         dict(os.environ), self.scratch)
        self.procs.append(self.fake_proc)
        self.wait_fake()
        self.env = self.base_env(
            broker, self.edge_port, AINBOX_ACTORS="monitor,events,session,accounts",
            AINBOX_HEALTH_SERVICES="monitor,session,accounts", AINBOX_API_RATELIMIT="false",
            DATABASE_URL=self.pg.url, JWT_ACCESS_SECRET=ACCESS, JWT_REFRESH_SECRET=REFRESH,
            AINBOX_TOKEN_KEY=TOKEN_KEY, FRONTEND_BASE_URL=FRONT,
            GOOGLE_CLIENT_ID="g-id", GOOGLE_CLIENT_SECRET="g-secret",
            GOOGLE_CALLBACK_URL=f"{edge}/google/callback",
            MICROSOFT_CLIENT_ID="m-id", MICROSOFT_CLIENT_SECRET="m-secret",
            MICROSOFT_REDIRECT_URI=f"{edge}/auth/outlook/callback",
            AINBOX_GOOGLE_AUTH_URL=f"{self.fake_url}/o/oauth2/v2/auth",
            AINBOX_GOOGLE_TOKEN_URL=f"{self.fake_url}/token",
            AINBOX_GOOGLE_USERINFO_URL=f"{self.fake_url}/v1/userinfo",
            AINBOX_MS_AUTH_URL=f"{self.fake_url}/consumers/oauth2/v2.0/authorize",
            AINBOX_MS_TOKEN_URL=f"{self.fake_url}/consumers/oauth2/v2.0/token",
            AINBOX_MS_GRAPH_URL=self.fake_url, AINBOX_OAUTH_HTTP_TIMEOUT_MS="1500")
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)

    # ------------------------------------------------------------- helpers

    def wait_fake(self):
        # fake_providers.py prints "ready <port>" once it listens.
        wait_until(lambda: f"ready {self.fport}" in self.fake_proc.log(), 10,
                   "the fake providers")

    def fake(self, method, path, body=None):
        status, _, _, data = get(self.fport, path, method=method, body=body)
        self.assertEqual(status, 200, data)
        return data

    def start_login(self, provider, email):
        """The login route: (its state and verifier cookie, the provider URL it sent us to)."""
        status, msg, cookies, _ = get(self.edge_port, LOGIN[provider] + "?login_hint=" +
                                      urllib.parse.quote(email))
        self.assertEqual(status, 302)
        location = msg["Location"]
        value, attrs = cookies[COOKIE[provider]]
        for a in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"):
            self.assertIn(a, attrs)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        self.assertEqual(q["code_challenge"], s256(value))
        self.assertEqual(q["code_challenge_method"], "S256")
        self.assertEqual(len(q["state"]), 56)
        self.assertEqual(q["response_type"], "code")
        if provider == "google":
            self.assertEqual(q["scope"], "openid email profile https://mail.google.com/")
            self.assertEqual((q["access_type"], q["prompt"]), ("offline", "consent"))
            self.assertTrue(location.startswith(f"{self.fake_url}/o/oauth2/v2/auth?"))
        else:
            self.assertEqual(q["scope"], "offline_access openid email profile Mail.ReadWrite "
                             "Mail.Send User.Read")
        return value, location

    def authorize(self, location):
        """The provider's consent page (auto-approved): the callback path and query."""
        status, msg, _, _ = get(self.fport, location[len(self.fake_url):])
        self.assertEqual(status, 302)
        back = urllib.parse.urlsplit(msg["Location"])
        return back.path + "?" + back.query

    def login(self, provider, email):
        """A whole sign-in; returns the session cookies and where the browser lands."""
        verifier, location = self.start_login(provider, email)
        callback = self.authorize(location)
        status, msg, cookies, body = get(self.edge_port, callback, {COOKIE[provider]: verifier})
        self.assertEqual(status, 302, body)
        self.assertEqual(cookies[COOKIE[provider]][0], "")
        self.assertIn("Max-Age=0", cookies[COOKIE[provider]][1])
        for name in ("access_token", "refresh_token"):
            self.assertEqual(cookies[name][0].count("."), 2)
            self.assertIn("HttpOnly", cookies[name][1])
        return {k: v[0] for k, v in cookies.items() if k in ("access_token", "refresh_token")}, \
            msg["Location"]

    def session(self, cookies):
        status, _, _, body = get(self.edge_port, "/api/v1/session",
                                 {"access_token": cookies["access_token"]})
        self.assertEqual(status, 200, body)
        return body["data"]

    def account_token(self, user, account):
        client = proto.Client(self.env["AINBOX_BROKER"])
        try:
            reply = client.call("accounts", "ACCOUNT_TOKEN", proto.pack({"account": account}),
                                user=user, timeout_ms=8000)
        finally:
            client.close()
        self.assertIsNotNone(reply)
        return reply["status"], proto.body_map(reply)

    def stored(self, account):
        row = self.pg.psql(f"select encode(token_ciphertext, 'hex'), token_key_version, "
                           f"sync_state from accounts where id = {account}")[0]
        return bytes.fromhex(row[0]) if row[0] else None, row[1], row[2]

    def account_of(self, user, provider):
        rows = self.pg.psql(f"select id, address from accounts where user_id = {user} "
                            f"and provider = '{provider}'")
        self.assertEqual(len(rows), 1, rows)
        return int(rows[0][0]), rows[0][1]

    # ------------------------------------------------------------- tests

    def test_google_sign_in(self):
        cookies, landing = self.login("google", "Ann@Example.com")
        self.assertEqual(landing, FRONT + "/terms")  # a new user accepts the terms first
        data = self.session(cookies)
        self.assertEqual(data["user"]["email"], "ann@example.com")
        self.assertEqual(data["providers"], {"google": True, "microsoft": False})
        uid = data["user"]["id"]
        account, address = self.account_of(uid, "gmail")
        self.assertEqual(address, "ann@example.com")
        # The fake saw PKCE and our redirect URI; the refresh token is stored sealed.
        req = self.fake("GET", "/_fake/google/requests")["token"][-1]
        self.assertEqual(req["grant_type"], "authorization_code")
        self.assertEqual(len(req["form"]["code_verifier"]), 43)
        refresh = self.fake("GET", "/_fake/google/issued")["refresh_tokens"][-1]
        sealed, kid, state = self.stored(account)
        self.assertEqual((kid, state), ("1", "new"))
        self.assertEqual(sealed[0:2], b"\x01\x01")  # version 1, key id 1
        self.assertNotIn(refresh.encode(), sealed)
        self.assertNotIn(refresh[8:24].encode(), sealed)
        self.assertEqual(len(sealed), len(refresh) + 30)
        # The session cookies work like the development sign-in's: refresh rotates.
        status, _, _, body = get(self.edge_port, "/api/v1/session/refresh", cookies, method="POST")
        self.assertEqual((status, body), (200, {"ok": True}))
        # It opens, for its owner: a fresh access token; Google does not rotate.
        status, got = self.account_token(uid, account)
        self.assertEqual(status, "OK", got)
        self.assertEqual((got["account"], got["provider"], got["address"]),
                         (account, "gmail", "ann@example.com"))
        self.assertTrue(got["access_token"].startswith("ya29."))
        self.assertEqual(got["expires_in"], 3599)
        self.assertEqual(self.stored(account)[0], sealed)
        req = self.fake("GET", "/_fake/google/requests")["token"][-1]
        self.assertEqual((req["grant_type"], req["form"]["refresh_token"]),
                         ("refresh_token", refresh))
        # Terms accepted: the next sign-in lands on the dashboard.
        status, _, _, _ = get(self.edge_port, "/api/v1/terms/accept", cookies, method="POST",
                              body={"version": "v1"})
        self.assertEqual(status, 200)
        self.assertEqual(self.login("google", "ann@example.com")[1], FRONT + "/dashboard")

    def test_second_sign_in_updates_the_account(self):
        cookies, _ = self.login("google", "bo@example.com")
        uid = self.session(cookies)["user"]["id"]
        account, _ = self.account_of(uid, "gmail")
        first = self.stored(account)[0]
        again, _ = self.login("google", "bo@example.com")
        self.assertEqual(self.session(again)["user"]["id"], uid)
        self.assertEqual(self.account_of(uid, "gmail")[0], account)  # one row, updated
        self.assertNotEqual(first, self.stored(account)[0])
        # A re-seal of the same token would differ too (a fresh nonce): what matters is that
        # the token now stored is the second sign-in's, the one a refresh presents.
        issued = self.fake("GET", "/_fake/google/issued")["refresh_tokens"]
        self.assertEqual(len(issued), 2)
        self.assertEqual(self.account_token(uid, account)[0], "OK")
        req = self.fake("GET", "/_fake/google/requests")["token"][-1]
        self.assertEqual((req["grant_type"], req["form"]["refresh_token"]),
                         ("refresh_token", issued[1]))
        self.assertEqual(self.pg.psql("select count(*) from accounts"), [["1"]])
        self.assertEqual(self.pg.psql(f"select count(*) from sessions where user_id = {uid}"),
                         [["2"]])

    def test_token_opens_only_in_its_row(self):
        a, _ = self.login("google", "cy@example.com")
        b, _ = self.login("google", "di@example.com")
        ua, ub = self.session(a)["user"]["id"], self.session(b)["user"]["id"]
        acc_a, _ = self.account_of(ua, "gmail")
        acc_b, _ = self.account_of(ub, "gmail")
        self.assertEqual(self.account_token(ub, acc_b)[0], "OK")
        # A's ciphertext moved into B's row does not open there.
        self.pg.psql(f"update accounts set token_ciphertext = (select token_ciphertext from "
                     f"accounts where id = {acc_a}) where id = {acc_b}")
        status, got = self.account_token(ub, acc_b)
        self.assertEqual((status, got["code"]), ("ERROR", "TOKEN_UNREADABLE"))
        # A's own still opens.
        self.assertEqual(self.account_token(ua, acc_a)[0], "OK")

    def test_users_never_reach_each_other(self):
        a, _ = self.login("google", "ed@example.com")
        b, _ = self.login("microsoft", "flo@example.com")
        da, db = self.session(a), self.session(b)
        self.assertEqual(da["user"]["email"], "ed@example.com")
        self.assertEqual(db["user"]["email"], "flo@example.com")
        self.assertEqual(da["providers"], {"google": True, "microsoft": False})
        self.assertEqual(db["providers"], {"google": False, "microsoft": True})
        acc_b, _ = self.account_of(db["user"]["id"], "outlook")
        status, got = self.account_token(da["user"]["id"], acc_b)
        self.assertEqual((status, got["code"]), ("NOT_FOUND", "ACCOUNT_NOT_FOUND"))
        # Completing a sign-in is the edge's alone; ACCOUNT_TOKEN needs a user.
        client = proto.Client(self.env["AINBOX_BROKER"])
        try:
            reply = client.call("accounts", "ACCOUNT_OAUTH_COMPLETE", proto.pack(
                {"provider": "google", "code": "x", "code_verifier": "v" * 43,
                 "redirect_uri": "http://x/"}), user=da["user"]["id"])
            self.assertEqual(reply["status"], "DENIED")
            reply = client.call("accounts", "ACCOUNT_TOKEN", proto.pack({"account": acc_b}))
            self.assertEqual(reply["status"], "INVALID")
        finally:
            client.close()

    def test_state_bound_to_the_browser(self):
        verifier_a, location_a = self.start_login("google", "gil@example.com")
        verifier_b, _ = self.start_login("google", "gil@example.com")
        callback = self.authorize(location_a)
        # Browser B presents A's callback (login CSRF): refused, nothing exchanged.
        before = len(self.fake("GET", "/_fake/google/requests")["token"])
        for cookies in ({COOKIE["google"]: verifier_b}, {}, {COOKIE["google"]: "x"}):
            status, _, set_cookies, body = get(self.edge_port, callback, cookies)
            self.assertEqual((status, body["error"]["code"]), (400, "INVALID_STATE"), cookies)
            self.assertNotIn("access_token", set_cookies)
        # A Google state at the Microsoft callback: another provider's.
        path = CALLBACK["microsoft"] + callback[len(CALLBACK["google"]):]
        status, _, _, body = get(self.edge_port, path, {COOKIE["microsoft"]: verifier_a})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_STATE"))
        self.assertEqual(len(self.fake("GET", "/_fake/google/requests")["token"]), before)
        # Browser A still signs in with it.
        status, _, set_cookies, _ = get(self.edge_port, callback, {COOKIE["google"]: verifier_a})
        self.assertEqual(status, 302)
        self.assertIn("access_token", set_cookies)
        self.assertEqual(self.pg.psql("select count(*) from users"), [["1"]])

    def test_replayed_code(self):
        verifier, location = self.start_login("microsoft", "hal@example.com")
        callback = self.authorize(location)
        cookie = {COOKIE["microsoft"]: verifier}
        self.assertEqual(get(self.edge_port, callback, cookie)[0], 302)
        status, _, set_cookies, body = get(self.edge_port, callback, cookie)
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_GRANT"))
        self.assertIn("AADSTS54005", body["error"]["message"])
        self.assertNotIn("access_token", set_cookies)
        self.assertEqual(self.pg.psql("select count(*) from sessions"), [["1"]])

    def test_provider_failures_are_honest(self):
        cases = [({"endpoint": "token", "kind": "status", "status": 503}, 502,
                  "PROVIDER_UNAVAILABLE"),
                 ({"endpoint": "token", "kind": "status", "status": 500}, 502,
                  "PROVIDER_UNAVAILABLE"),
                 ({"endpoint": "token", "kind": "garbage"}, 502, "PROVIDER_BAD_ANSWER"),
                 ({"endpoint": "userinfo", "kind": "status", "status": 502}, 502,
                  "PROVIDER_UNAVAILABLE"),
                 ({"endpoint": "token", "kind": "timeout", "seconds": 3}, 504,
                  "PROVIDER_TIMEOUT")]
        for failure, http_status, code in cases:
            verifier, location = self.start_login("google", "ivy@example.com")
            callback = self.authorize(location)
            self.fake("POST", "/_fake/google/fail", failure)
            status, _, set_cookies, body = get(self.edge_port, callback, {COOKIE["google"]: verifier})
            self.assertEqual((status, body["error"]["code"]), (http_status, code), failure)
            self.assertNotIn("access_token", set_cookies)
            self.assertEqual(set_cookies[COOKIE["google"]][0], "")
        # The user declines at the provider.
        self.fake("POST", "/_fake/microsoft/login", {"deny": True})
        verifier, location = self.start_login("microsoft", "ivy@example.com")
        callback = self.authorize(location)
        status, _, set_cookies, body = get(self.edge_port, callback, {COOKIE["microsoft"]: verifier})
        self.assertEqual((status, body["error"]["code"]), (403, "ACCESS_DENIED"))
        self.assertEqual(self.pg.psql("select count(*) from accounts"), [["0"]])
        # And after all that, a sign-in works.
        self.assertEqual(self.login("google", "ivy@example.com")[1], FRONT + "/terms")

    def test_microsoft_rotation_and_revocation(self):
        cookies, _ = self.login("microsoft", "jo@example.com")
        uid = self.session(cookies)["user"]["id"]
        account, _ = self.account_of(uid, "outlook")
        issued = self.fake("GET", "/_fake/microsoft/issued")["refresh_tokens"]
        self.assertEqual(len(issued), 1)
        first = self.stored(account)[0]
        status, got = self.account_token(uid, account)
        self.assertEqual(status, "OK", got)
        self.assertEqual(got["provider"], "outlook")
        issued = self.fake("GET", "/_fake/microsoft/issued")["refresh_tokens"]
        self.assertEqual(len(issued), 2)  # rotated
        second = self.stored(account)[0]
        self.assertNotEqual(first, second)
        self.assertNotIn(issued[1].encode(), second)
        # The next refresh presents the rotated token, with the scopes, space-separated.
        self.assertEqual(self.account_token(uid, account)[0], "OK")
        req = self.fake("GET", "/_fake/microsoft/requests")["token"][-1]
        self.assertEqual(req["form"]["refresh_token"], issued[1])
        self.assertEqual(req["form"]["scope"], "offline_access openid email profile "
                         "Mail.ReadWrite Mail.Send User.Read")
        # The user revokes the app: reauth required, and said so until they sign in again.
        self.fake("POST", "/_fake/microsoft/revoke", {"email": "jo@example.com"})
        status, got = self.account_token(uid, account)
        self.assertEqual((status, got["code"]), ("CONFLICT", "REAUTH_REQUIRED"))
        self.assertEqual(self.stored(account)[2], "revoked")
        self.assertEqual(self.account_token(uid, account)[1]["code"], "REAUTH_REQUIRED")
        self.login("microsoft", "jo@example.com")
        self.assertEqual(self.stored(account)[2], "new")
        self.assertEqual(self.account_token(uid, account)[0], "OK")

    def test_malformed_callbacks(self):
        verifier, _ = self.start_login("google", "kim@example.com")
        for query, code in (("", "INVALID_REQUEST"), ("?code=abc", "INVALID_REQUEST"),
                            ("?state=abc", "INVALID_REQUEST"), ("?error=server_error",
                                                                "OAUTH_ERROR")):
            status, _, _, body = get(self.edge_port, CALLBACK["google"] + query,
                                     {COOKIE["google"]: verifier})
            self.assertEqual((status, body["error"]["code"]), (400, code), query)
        self.assertEqual(self.pg.psql("select count(*) from users"), [["0"]])


class NotConfiguredTest(AinboxTestCase):

    def test_provider_without_client_id(self):
        broker, port = free_ports(2)
        env = self.base_env(broker, port, AINBOX_ACTORS="monitor",
                            AINBOX_HEALTH_SERVICES="monitor", GOOGLE_CLIENT_ID="g-id",
                            AINBOX_TOKEN_KEY=TOKEN_KEY)
        self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        for path in ("/auth/outlook", "/auth/outlook/callback?code=a&state=b"):
            status, _, cookies, body = get(port, path)
            self.assertEqual((status, body["error"]["code"]), (503, "PROVIDER_NOT_CONFIGURED"))
            self.assertEqual(cookies, {})
        # Google is configured (its default endpoints): the login redirect goes to Google.
        status, msg, _, _ = get(port, "/google")
        self.assertEqual(status, 302)
        self.assertTrue(msg["Location"].startswith(
            "https://accounts.google.com/o/oauth2/v2/auth?client_id=g-id&redirect_uri="
            f"http%3A%2F%2Flocalhost%3A{port}%2Fgoogle%2Fcallback"))


if __name__ == "__main__":
    unittest.main()
