"""The batch endpoint's wire format (provider-apis.md §1.6): multipart/mixed of application/http.

A request part is `Content-Type: application/http`, an optional `Content-ID`, then an inner
request line with a path only, its headers and body; the outer Authorization applies unless the
part has its own. A response part is `application/http` with `Content-ID: <response-N>` and an
inner `HTTP/1.1` status line, headers and body.
"""

import urllib.parse

from ainfake.common import Request


def split_multipart(body, boundary):
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.strip(b"\r\n") + b"\r\n")
    return parts


def inner_request(part, outer):
    """(Request, Content-ID) of one batch part; (None, cid) if it is malformed."""
    head, _, rest = part.partition(b"\r\n\r\n")
    cid = None
    for line in head.decode("latin-1").split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-id":
            cid = v.strip().strip("<>")
    lines, _, body = rest.partition(b"\r\n\r\n")
    lines = lines.decode("latin-1").split("\r\n")
    req_line = lines[0].split()
    if len(req_line) < 2:
        return None, cid
    headers = {"Authorization": outer.headers.get("Authorization", "")}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            headers[k.strip()] = v.strip()
    url = urllib.parse.urlsplit(req_line[1])
    pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    multi = {}
    for k, v in pairs:
        multi.setdefault(k, []).append(v)
    return Request(req_line[0].upper(), url.path, dict(pairs), headers, body.rstrip(b"\r\n"),
                   multi), cid


def http_part(answer, cid):
    reason = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
              403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
              500: "Internal Server Error", 503: "Service Unavailable"}.get(answer.status, "")
    head = "Content-Type: application/http\r\n"
    if cid:
        head += f"Content-ID: <response-{cid}>\r\n"
    inner = f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
    for k, v in answer.headers.items():
        inner += f"{k}: {v}\r\n"
    inner += f"Content-Length: {len(answer.body)}\r\n\r\n"
    return (head + "\r\n" + inner).encode() + answer.body + b"\r\n"
