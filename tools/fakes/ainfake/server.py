"""One HTTP server for every fake provider, and the /_fake control API tests use.

Control API (JSON in, JSON out; for tests only, never part of a provider):
  GET  /_fake/health                      {"ok": true}
  POST /_fake/reset                       forgets codes, tokens, queued logins and failures
  POST /_fake/<provider>/client           {client_id, client_secret, redirect_uris: [...]}
  POST /_fake/<provider>/login            {email, name?, picture?} or {deny: true}: who "signs
                                          in" at the next authorize (queued, in order)
  POST /_fake/<provider>/fail             {endpoint: token|userinfo, kind: invalid_grant|
                                          invalid_client|status|timeout|garbage, status?,
                                          seconds?, count?}: the next calls fail so
  POST /_fake/<provider>/revoke           {email}: every refresh token of that user is revoked
  GET  /_fake/<provider>/requests         {token: [{grant_type, form, status, error}]}
  GET  /_fake/<provider>/issued           {refresh_tokens: [...]} in the order issued
  POST /_fake/<provider>/expire           {email}: every access token of that user expires now
<provider> is google or microsoft. The Gmail API's own controls are /_fake/gmail/... (see
gmail_control.py).
"""

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ainfake.common import Answer, Request
from ainfake.gmail import Gmail
from ainfake.gmail_control import control as gmail_control
from ainfake.google import Google
from ainfake.microsoft import Microsoft
from ainfake.oauth import Identity

BODY_MAX = 40 << 20  # Gmail takes messages up to 35 MB (media upload)
CONTROL_MAX = 1 << 20
GMAIL_PREFIXES = ("/gmail/v1/", "/upload/gmail/v1/", "/batch/gmail/v1")


class Fakes:
    def __init__(self, access_ttl_s=3599, ms_revoke_rotated=False, **gmail):
        self.providers = {"google": Google(access_ttl_s),
                          "microsoft": Microsoft(access_ttl_s, ms_revoke_rotated)}
        # The Gmail API trusts Google's access tokens, as the real one does.
        self.gmail = Gmail(self.providers["google"].auth, **gmail)

    def route(self, method, path):
        if path.startswith(GMAIL_PREFIXES) or path == "/batch":
            return self.gmail.serve
        google = self.providers["google"]
        handler = google.routes.get((method, path))
        return handler or self.providers["microsoft"].match(method, path)

    def control(self, method, path, body):
        parts = path.split("/")[2:]  # /_fake/<a>/<b>
        if parts == ["health"]:
            return Answer(200, {"ok": True})
        if parts == ["reset"] and method == "POST":
            for p in self.providers.values():
                p.auth.reset()
            self.gmail.reset()
            return Answer(200, {"ok": True})
        if parts and parts[0] == "gmail":
            return gmail_control(self.gmail, method, [urllib.parse.unquote(p) for p in
                                                      parts[1:]], body)
        if len(parts) != 2 or parts[0] not in self.providers:
            return Answer(404, {"error": "unknown control path"})
        auth, what = self.providers[parts[0]].auth, parts[1]
        if method == "GET" and what == "requests":
            with auth.lock:
                return Answer(200, {"token": list(auth.log)})
        if method == "GET" and what == "issued":
            with auth.lock:
                return Answer(200, {"refresh_tokens": list(auth.issued)})
        if method != "POST":
            return Answer(405, {"error": "method"})
        if what == "client":
            auth.add_client(body["client_id"], body["client_secret"], body["redirect_uris"])
        elif what == "login":
            auth.queue_login("deny" if body.get("deny") else
                             Identity(body["email"], body.get("name"), body.get("picture")))
        elif what == "fail":
            auth.queue_failure(body.get("endpoint", "token"), body, int(body.get("count", 1)))
        elif what == "revoke":
            return Answer(200, {"revoked": auth.revoke_user(body["email"])})
        elif what == "expire":
            return Answer(200, {"expired": auth.expire_access(body["email"])})
        else:
            return Answer(404, {"error": "unknown control path"})
        return Answer(200, {"ok": True})


def make_handler(fakes, quiet):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ainfake/1"

        def log_message(self, fmt, *args):
            if not quiet:
                sys.stderr.write("fake: " + (fmt % args) + "\n")

        def _serve(self, method):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > (CONTROL_MAX if url.path.startswith("/_fake/") else BODY_MAX):
                self.close_connection = True  # the unread body must not become a request
                return self._send(Answer(413, {"error": "too large"}))
            body = self.rfile.read(length) if length else b""
            if url.path.startswith("/_fake/"):
                try:
                    data = json.loads(body) if body else {}
                    return self._send(fakes.control(method, url.path, data))
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    return self._send(Answer(400, {"error": f"bad control request: {e}"}))
            handler = fakes.route(method, url.path)
            if not handler:
                return self._send(Answer(404, {"error": {"code": 404, "message":
                                                         "Not Found", "status": "NOT_FOUND"}}))
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            multi = {}
            for k, v in pairs:
                multi.setdefault(k, []).append(v)
            req = Request(method, url.path, dict(pairs), self.headers, body, multi)
            try:
                answer = handler(req)
            except Exception as e:  # noqa: BLE001 - a fake's bug is a 500, not a dead thread
                sys.stderr.write(f"fake: {method} {url.path}: {e!r}\n")
                answer = Answer(500, {"error": {"code": 500, "message": "fake: " + repr(e),
                                                "status": "INTERNAL"}})
            return self._send(answer)

        def _send(self, answer):
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to tell it

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_PUT(self):
            self._serve("PUT")

        def do_DELETE(self):
            self._serve("DELETE")

    return Handler


def serve(host, port, fakes, quiet=True):
    """A started server (in a daemon thread); .server_address has the port."""
    server = ThreadingHTTPServer((host, port), make_handler(fakes, quiet))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
