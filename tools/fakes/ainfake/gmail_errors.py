"""Google's error bodies for the Gmail API (provider-apis.md §1.5), in one place.

{"error": {"code", "message", "errors": [{"message", "domain", "reason", ...}], "status"}}: the
401s of a missing or bad token, the quota refusals in their 429 and 403 forms, 5xx.
"""

import datetime
import time

from ainfake.common import Answer


class GmailError(Exception):
    def __init__(self, status, reason, message, status_text=None, domain="global", top=None,
                 **extra):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.status_text, self.domain, self.extra = status_text, domain, extra
        self.top = top or message  # error.message, when it differs from errors[0].message
        self.headers = None


STATUS_TEXT = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
               500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}


def error_answer(e, headers=None):
    err = {"message": e.message, "domain": e.domain, "reason": e.reason, **e.extra}
    body = {"error": {"code": e.status, "message": e.top, "errors": [err]}}
    text = e.status_text if e.status_text is not None else STATUS_TEXT.get(e.status)
    if text:
        body["error"]["status"] = text
    return Answer(e.status, body, headers=headers)


def bad(message):
    return GmailError(400, "invalidArgument", message)


def not_found():
    return GmailError(404, "notFound", "Requested entity was not found.")


def rfc3339(t):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def quota_error(kind, style, wait_s):
    """Google's refusal for an exhausted limit: `kind` user|project|concurrent, `style` 429
    (rateLimitExceeded, RESOURCE_EXHAUSTED) or 403 (userRateLimitExceeded/rateLimitExceeded,
    the older bodies)."""
    if kind == "concurrent":
        return GmailError(429, "rateLimitExceeded", "Too many concurrent requests for user",
                          domain="usageLimits")
    if style == "403":
        if kind == "user":
            return GmailError(403, "userRateLimitExceeded", "User Rate Limit Exceeded",
                              domain="usageLimits")
        return GmailError(403, "rateLimitExceeded",
                          "Quota exceeded for quota metric 'Queries' and limit 'Queries per "
                          "minute' of service 'gmail.googleapis.com' for consumer "
                          "'project_number:000000000000'.", domain="usageLimits")
    if kind == "user":
        return GmailError(429, "rateLimitExceeded", "User-rate limit exceeded.  Retry after "
                          + rfc3339(time.time() + wait_s), domain="usageLimits")
    return GmailError(429, "rateLimitExceeded", "Resource has been exhausted (e.g. check "
                      "quota).", domain="usageLimits")


def unauthenticated(had_token):
    """Google's 401: a missing token is "required", a bad or expired one "authError"."""
    top = ("Request had invalid authentication credentials." if had_token else
           "Request is missing required authentication credential.") + \
        " Expected OAuth 2 access token, login cookie or other valid authentication " \
        "credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    e = GmailError(401, "authError" if had_token else "required",
                   "Invalid Credentials" if had_token else "Login Required.", top=top,
                   location="Authorization", locationType="header")
    e.headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"' +
                 (', error="invalid_token"' if had_token else "")}
    return e


def server_error(status):
    if status == 500:
        return GmailError(500, "backendError", "Backend Error")
    return GmailError(status, "backendError", "The service is currently unavailable.")
