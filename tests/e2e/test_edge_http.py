"""The edge's HTTP front: CORS, and hostile requests.

CORS: only the configured origins, with credentials.

The original frontend calls the API from its own origin with credentials
and `Content-Type: application/json` even on GET, so every call is
preflighted. Allowed origins (AINBOX_CORS_ORIGINS and FRONTEND_BASE_URL's
origin) get the Access-Control headers and a 204 preflight; any other
origin gets none, and its preflight is refused; a malformed origin list
stops the edge at start with the variable's name.

Hostile requests (garbage request lines, oversized headers, an unknown
HTTP version) get JSON errors from civetweb's own error path, are counted,
and the edge goes on serving.
"""

import base64
import hashlib
import hmac
import json
import socket
import time
import subprocess
import unittest

from ainbox_harness import AinboxTestCase, free_ports, wait_until

APP = "https://app.example.com"


class CorsCase(AinboxTestCase):

    def setUp(self):
        super().setUp()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events", AINBOX_DEV_TOKEN="dev",
                                 AINBOX_HEALTH_SERVICES="monitor",
                                 AINBOX_CORS_ORIGINS=f"{APP}, http://localhost:5173",
                                 FRONTEND_BASE_URL="https://mail.example.org/app/")
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)

    def preflight(self, origin, path="/api/v1/limits", method="GET"):
        return self.http(self.env, path, method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type, last-event-id"})

    def test_preflight_from_allowed_origins(self):
        for origin in (APP, "http://localhost:5173", "https://mail.example.org"):
            status, headers, body = self.preflight(origin)
            self.assertEqual(status, 204, body)
            self.assertEqual(headers["Access-Control-Allow-Origin"], origin)
            self.assertEqual(headers["Access-Control-Allow-Credentials"], "true")
            self.assertEqual(headers["Access-Control-Allow-Methods"], "GET")
            allowed = headers["Access-Control-Allow-Headers"].lower()
            for h in ("content-type", "last-event-id", "authorization"):
                self.assertIn(h, allowed)
            self.assertIn("Origin", headers["Vary"])
        # The stream route too: EventSource with credentials preflights
        # nothing, but a fetch-based client does.
        status, headers, _ = self.preflight(APP, path="/api/v1/emails/stream")
        self.assertEqual(status, 204)

    def test_other_origins_get_nothing(self):
        for origin in ("https://evil.example", "null", "https://app.example.com.evil.example",
                       "https://app.example.com/x", "https://app.example.com\r\nX: y"):
            try:
                status, headers, _ = self.preflight(origin)
            except ValueError:
                continue  # the client refuses to send a header with CR/LF itself
            self.assertEqual(status, 403, origin)
            self.assertNotIn("Access-Control-Allow-Origin", headers)
        status, headers, _ = self.http(self.env, "/health", headers={"Origin": "https://evil.example"})
        self.assertEqual(status, 200)
        self.assertNotIn("Access-Control-Allow-Origin", headers)
        self.assertEqual(headers["Vary"], "Origin")

    def test_answers_carry_cors_for_allowed_origins(self):
        status, headers, _ = self.http(self.env, "/health", headers={"Origin": APP})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], APP)
        self.assertEqual(headers["Access-Control-Allow-Credentials"], "true")
        self.assertIn("RateLimit", headers["Access-Control-Expose-Headers"])
        # The event stream too (a cross-origin EventSource with credentials).
        sock = socket.create_connection(("127.0.0.1", int(self.env["HTTP_PORT"])), timeout=5)
        sock.sendall(f"GET /api/v1/emails/stream?token=dev&user=5 HTTP/1.1\r\nHost: x\r\n"
                     f"Origin: {APP}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            self.assertTrue(chunk)
            head += chunk
        sock.close()
        self.assertIn(f"Access-Control-Allow-Origin: {APP}\r\n".encode(), head)
        self.assertIn(b"text/event-stream", head)
        # Errors too, so the frontend can read them.
        status, headers, _ = self.http(self.env, "/nope", headers={"Origin": APP})
        self.assertEqual(status, 404)
        self.assertEqual(headers["Access-Control-Allow-Origin"], APP)
        # A preflight for a route that does not take the method: 405.
        status, headers, _ = self.preflight(APP, method="DELETE")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET")

    def raw(self, data):
        """Sends raw bytes; returns (status, headers text, body) of the answer."""
        sock = socket.create_connection(("127.0.0.1", int(self.env["HTTP_PORT"])), timeout=5)
        sock.sendall(data)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
            head, _, body = got.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
        sock.close()
        head, _, body = got.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), head.decode(), body

    def test_hostile_requests_get_json_errors(self):
        cases = [
            b"GARBAGE\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
            b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
            b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        ]
        for data in cases:
            status, head, body = self.raw(data)
            self.assertGreaterEqual(status, 400, data[:40])
            self.assertLess(status, 600)
            self.assertIn("application/json", head)
            self.assertIn("code", json.loads(body)["error"])
        # Still serving, and every refusal counted.
        self.assertEqual(self.http(self.env, "/health")[0], 200)

        def counted():
            _, stats = self.http_json(self.env, "/stats")
            return sum(v for p in stats["processes"] for k, v in p["report"]["metrics"].items()
                       if k.endswith("http.malformed"))
        wait_until(lambda: counted() >= len(cases), 10, "the refusals to be counted")

    def test_malformed_origin_list_stops_the_edge(self):
        for bad in ("ftp://x.example", "https://x.example/path", "x.example"):
            port, = free_ports(1)
            env = self.base_env(port, AINBOX_ACTORS="monitor", AINBOX_CORS_ORIGINS=bad)
            out = subprocess.run([self.bin, "run"], env=env, capture_output=True, text=True,
                                 timeout=30)
            self.assertNotEqual(out.returncode, 0, bad)
            self.assertIn("AINBOX_CORS_ORIGINS", out.stderr + out.stdout)


ACCESS = "a" * 16 + "-access-secret-for-tests-only"
REFRESH = "r" * 16 + "-refresh-secret-for-tests-only"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret=ACCESS, typ="access", sub="42", exp_in=600, alg="HS256", header_extra=None,
          role="user"):
    """An HS256 token as our issuer writes it (runtime/jwt.h), minted here
    independently of the C code."""
    kid = b64(hmac.new(secret.encode(), b"ainbox/jwt-kid/v1", hashlib.sha256).digest()[:6])
    header = {"alg": alg, "typ": "JWT", "kid": kid, **(header_extra or {})}
    now = int(time.time())
    payload = {"sub": sub, "sid": "7", "role": role, "typ": typ,
               "iat": min(now - 5, now + exp_in - 600),
               "exp": now + exp_in, "jti": b64(b"j" * 32)}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())
    return f"{signing}.{sig}"


class AccessTokenCase(AinboxTestCase):
    """Access tokens at the edge: Bearer or the access_token cookie, each
    refusal a 401 naming its reason; the development token still works in
    development."""

    def setUp(self):
        super().setUp()
        port, = free_ports(1)
        self.env = self.base_env(port, AINBOX_ACTORS="monitor,events", AINBOX_DEV_TOKEN="dev",
                                 AINBOX_HEALTH_SERVICES="monitor", JWT_ACCESS_SECRET=ACCESS,
                                 JWT_REFRESH_SECRET=REFRESH)
        self.spawn("bundle", ["run"], self.env)
        self.wait_health(self.env)

    def stream_head(self, headers, query=""):
        """Status line and head of GET /api/v1/emails/stream; the first
        frame too if it is a stream."""
        sock = socket.create_connection(("127.0.0.1", int(self.env["HTTP_PORT"])), timeout=5)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET /api/v1/emails/stream{query} HTTP/1.1\r\nHost: x\r\n{lines}\r\n"
                     .encode())
        got = b""
        while b"\n\n" not in got.partition(b"\r\n\r\n")[2] and len(got) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        sock.close()
        return got.decode(errors="replace")

    def test_bearer_and_cookie(self):
        for headers in ({"Authorization": f"Bearer {token()}"},
                        {"Cookie": f"theme=dark; access_token={token()}"}):
            got = self.stream_head(headers)
            self.assertTrue(got.startswith("HTTP/1.1 200"), got[:200])
            self.assertIn('"type":"connected"', got)

    def test_refusals_name_their_reason(self):
        cases = {
            "expired": token(exp_in=-120),
            "bad_signature": token()[:-2] + ("AA" if not token().endswith("AA") else "BB"),
            "wrong_typ": token(typ="refresh"),
            "unknown_key": token(secret="x" * 40),
            # A refresh token (its own secret) is no access token.
            "unknown_key ": token(secret=REFRESH, typ="refresh"),
            "bad_alg": token(alg="none"),
            "bad_header": token(header_extra={"crit": ["exp"]}),
            "malformed": "a.b.c",
        }
        for reason, tok in cases.items():
            status, _, body = self.http(self.env, "/api/v1/limits",
                                        headers={"Authorization": f"Bearer {tok}"})
            self.assertEqual(status, 401, reason)
            err = json.loads(body)["error"]
            self.assertIn(reason.strip(), err["message"], reason)
            self.assertEqual(err["code"], "TOKEN_EXPIRED" if reason == "expired"
                             else "INVALID_TOKEN")
        # A present but invalid token never falls back to the development one.
        status, _, _ = self.http(self.env, "/api/v1/limits?token=dev&user=1",
                                 headers={"Cookie": "access_token=" + cases["expired"]})
        self.assertEqual(status, 401)
        # Without any credentials.
        self.assertEqual(self.http(self.env, "/api/v1/limits")[0], 401)
        # The development token still signs in, in development.
        got = self.stream_head({}, "?token=dev&user=3")
        self.assertTrue(got.startswith("HTTP/1.1 200"), got[:200])

    def test_no_access_token_in_the_url(self):
        # A valid token in the query string is refused: URLs end up in logs, proxies, history
        # and Referer headers. The same token as a Bearer header or cookie opens the stream.
        tok = token()
        for path in ("/api/v1/emails/stream", "/api/v1/limits"):
            status, _, body = self.http(self.env, f"{path}?token={tok}")
            self.assertEqual(status, 401, path)
            self.assertEqual(json.loads(body)["error"]["code"], "TOKEN_IN_URL")
        self.assertTrue(self.stream_head({"Authorization": f"Bearer {tok}"})
                        .startswith("HTTP/1.1 200"))

    def test_production_needs_the_secrets(self):
        port, = free_ports(1)
        env = self.base_env(port, AINBOX_ACTORS="monitor", NODE_ENV="production")
        out = subprocess.run([self.bin, "run"], env=env, capture_output=True, text=True,
                             timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("JWT_ACCESS_SECRET", out.stderr + out.stdout)

    def test_operational_routes_need_an_admin_in_production(self):
        port, = free_ports(1)
        env = self.base_env(port, AINBOX_ACTORS="monitor", AINBOX_HEALTH_SERVICES="monitor",
                            NODE_ENV="production", JWT_ACCESS_SECRET=ACCESS,
                            JWT_REFRESH_SECRET=REFRESH)
        self.spawn("bundle-production", ["run"], env)
        self.wait_health(env)
        status, body = self.http_json(env, "/stats")
        self.assertEqual(status, 401, body)
        status, body = self.http_json(env, "/stats",
                                      headers={"Authorization": f"Bearer {token()}"})
        self.assertEqual((status, body["error"]["code"]), (403, "FORBIDDEN"))
        status, body = self.http_json(env, "/stats",
                                      headers={"Authorization": f"Bearer {token(role='admin')}"})
        self.assertEqual(status, 200, body)
        self.assertIn("uptime", json.dumps(body))
        # Outside production (this case's own bundle) the route is open, as the original's.
        status, _ = self.http_json(self.env, "/stats")
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
