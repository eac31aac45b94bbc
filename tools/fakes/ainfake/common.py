"""What the provider modules share: the request and answer shapes, and failure injection."""

import json
import time
import urllib.parse


class Request:
    def __init__(self, method, path, query, headers, body, multi=None):
        self.method, self.path, self.query, self.headers, self.body = \
            method, path, query, headers, body
        # Every value of a repeated parameter (Gmail's labelIds, metadataHeaders, ...).
        self.multi = multi or {}

    def form(self):
        """The body as application/x-www-form-urlencoded (last value of each name)."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None


class Answer:
    def __init__(self, status, body=b"", content_type="application/json; charset=utf-8",
                 headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = dict(headers or {})


def json_answer(status, body, **headers):
    # Token endpoints answer with these (RFC 6749 §5.1); harmless elsewhere.
    h = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    h.update(headers)
    return Answer(status, body, headers=h)


def redirect(url, params):
    sep = "&" if "?" in url else "?"
    return Answer(302, b"", "text/html; charset=utf-8",
                  {"Location": url + sep + urllib.parse.urlencode(params)})


def injected(failure, server_error_body):
    """An Answer for a queued failure that is not a protocol refusal ("status" 5xx, "timeout"),
    or None if the failure is one the provider module turns into its own error body."""
    kind = failure.get("kind")
    if kind == "timeout":
        time.sleep(float(failure.get("seconds", 30)))
        return Answer(504, b"")
    if kind == "status":
        status = int(failure.get("status", 503))
        return json_answer(status, server_error_body(status))
    if kind == "garbage":
        return Answer(200, b"<html>not json</html>", "text/html")
    return None
