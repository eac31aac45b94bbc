"""The OAuth 2.0 authorization server both fake providers share.

A provider module (google.py, microsoft.py) gives the dialect: its paths, which parameters it
wants, the exact bodies of its answers and errors, whether refresh tokens rotate. Everything
stateful is here, under one lock: registered clients, identities, authorization codes (single
use, 10 minutes, bound to client, redirect_uri and the PKCE challenge), refresh tokens, access
tokens (with a TTL), failures queued by tests, and a log of what the token endpoint received.
"""

import base64
import hashlib
import secrets
import threading
import time

from ainfake.common import injected

CODE_TTL_S = 600


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier):
    return b64url(hashlib.sha256(verifier.encode()).digest())


class OAuthError(Exception):
    """A refusal in the provider's words: `error` is the OAuth error code."""

    def __init__(self, status, error, description, **extra):
        super().__init__(error)
        self.status, self.error, self.description, self.extra = status, error, description, extra


class Identity:
    def __init__(self, email, name=None, picture=None, sub=None):
        self.email = email
        self.name = name or email.split("@")[0].title()
        self.picture = picture
        # Stable per address, like a real account id.
        self.sub = sub or str(int(hashlib.sha256(email.lower().encode()).hexdigest()[:15], 16))


class Grant:
    """A refresh token and what it stands for."""

    def __init__(self, client_id, identity, scope):
        self.client_id, self.identity, self.scope = client_id, identity, scope
        self.revoked = False


class AuthServer:
    """State of one provider's authorization server."""

    def __init__(self, name, rotate_refresh, access_ttl_s=3599):
        self.name = name
        self.rotate_refresh = rotate_refresh
        self.access_ttl_s = access_ttl_s
        self.lock = threading.Lock()
        self.clients = {}      # client_id -> (secret, set of redirect URIs)
        self.codes = {}        # code -> dict
        self.refresh = {}      # refresh token -> Grant
        self.access = {}       # access token -> (Grant, expires_at)
        self.next_logins = []  # identities (or "deny") for the next authorize calls
        self.failures = {}     # endpoint -> [failure dicts], consumed in order
        self.log = []          # token endpoint requests: {grant_type, form, status, error}
        self.issued = []       # refresh tokens issued, in order

    # ------------------------------------------------------------- set-up

    def add_client(self, client_id, secret, redirect_uris):
        with self.lock:
            self.clients[client_id] = (secret, set(redirect_uris))

    def queue_login(self, identity_or_deny):
        with self.lock:
            self.next_logins.append(identity_or_deny)

    def queue_failure(self, endpoint, failure, count=1):
        with self.lock:
            self.failures.setdefault(endpoint, []).extend([failure] * count)

    def take_failure(self, endpoint):
        with self.lock:
            queue = self.failures.get(endpoint)
            return queue.pop(0) if queue else None

    def revoke_user(self, email):
        with self.lock:
            n = 0
            for grant in self.refresh.values():
                if grant.identity.email.lower() == email.lower() and not grant.revoked:
                    grant.revoked = True
                    n += 1
            return n

    def reset(self):
        with self.lock:
            self.codes.clear()
            self.refresh.clear()
            self.access.clear()
            self.next_logins.clear()
            self.failures.clear()
            self.log.clear()
            self.issued.clear()

    # ------------------------------------------------------------- authorize

    def check_client_redirect(self, client_id, redirect_uri):
        """None if the client exists and registered redirect_uri, else why not (no redirect is
        then allowed: the providers show an error page)."""
        with self.lock:
            client = self.clients.get(client_id)
        if not client:
            return "invalid_client"
        if redirect_uri not in client[1]:
            return "redirect_uri_mismatch"
        return None

    def pick_login(self, login_hint):
        """The identity that "signs in": a queued one first, else login_hint, else a default.
        Returns an Identity or the string "deny"."""
        with self.lock:
            if self.next_logins:
                return self.next_logins.pop(0)
        if login_hint and "@" in login_hint:
            return Identity(login_hint)
        return Identity(f"user@{self.name}.test")

    def new_code(self, client_id, redirect_uri, scope, identity, challenge, method, offline=True):
        code = "4/" + b64url(secrets.token_bytes(24)) if self.name == "google" else \
            "M." + b64url(secrets.token_bytes(32))
        with self.lock:
            self.codes[code] = {"client_id": client_id, "redirect_uri": redirect_uri,
                                "scope": scope, "identity": identity, "challenge": challenge,
                                "method": method, "offline": offline,
                                "expires": time.time() + CODE_TTL_S,
                                "used": False}
        return code

    # ------------------------------------------------------------- token

    def authenticate_client(self, client_id, secret, errors):
        with self.lock:
            client = self.clients.get(client_id)
        if not client:
            raise errors.unknown_client()
        if not secrets.compare_digest(client[0], secret or ""):
            raise errors.bad_secret()

    def redeem_code(self, form, errors):
        """The grant a code stands for, checked like the provider checks it (single use)."""
        code = form.get("code", "")
        with self.lock:
            entry = self.codes.get(code)
            if entry and not entry["used"]:
                entry["used"] = True  # single use, even when the checks below fail
                fresh = True
            else:
                fresh = False
        if not entry:
            raise errors.bad_code()
        if not fresh:
            raise errors.code_used()
        if entry["expires"] < time.time():
            raise errors.bad_code()
        if entry["client_id"] != form.get("client_id"):
            raise errors.bad_code()
        if entry["redirect_uri"] != form.get("redirect_uri"):
            raise errors.redirect_mismatch()
        verifier = form.get("code_verifier")
        if entry["challenge"]:
            if not verifier:
                raise errors.missing_verifier()
            expected = s256(verifier) if entry["method"] == "S256" else verifier
            if not secrets.compare_digest(expected, entry["challenge"]):
                raise errors.bad_verifier()
        return entry

    def issue(self, client_id, identity, scope, refresh_token=True):
        """New access token (and refresh token) for identity; returns (access, refresh|None)."""
        access = "ya29." + b64url(secrets.token_bytes(32)) if self.name == "google" else \
            "EwB" + b64url(secrets.token_bytes(48))
        grant = Grant(client_id, identity, scope)
        refresh = None
        with self.lock:
            if refresh_token:
                refresh = ("1//" if self.name == "google" else "M.C5") + \
                    b64url(secrets.token_bytes(40))
                self.refresh[refresh] = grant
                self.issued.append(refresh)
            self.access[access] = (grant, time.time() + self.access_ttl_s)
        return access, refresh

    def token_answer(self, client_id, identity, scope, refresh_token=True, **extra):
        """A token endpoint's success body (RFC 6749 §5.1) for new tokens: `extra` members are
        the provider's own (Microsoft's ext_expires_in); refresh_token only when one is issued."""
        access, refresh = self.issue(client_id, identity, scope, refresh_token)
        body = {"token_type": "Bearer", "scope": scope, "expires_in": self.access_ttl_s,
                **extra, "access_token": access}
        if refresh:
            body["refresh_token"] = refresh
        return body

    def use_refresh(self, client_id, token, errors):
        with self.lock:
            grant = self.refresh.get(token)
        if not grant or grant.revoked or grant.client_id != client_id:
            raise errors.bad_refresh()
        return grant

    def grant_for(self, access_token):
        """The grant (identity, scope) behind a live access token, or None (unknown or
        expired)."""
        with self.lock:
            entry = self.access.get(access_token)
        if not entry or entry[1] < time.time():
            return None
        return entry[0]

    def identity_for(self, access_token):
        """The identity behind a live access token, or None (unknown or expired)."""
        grant = self.grant_for(access_token)
        return grant.identity if grant else None

    def expire_access(self, email):
        """Every access token of that user expires now (a token expiring mid-run)."""
        with self.lock:
            n = 0
            for token, (grant, _) in list(self.access.items()):
                if grant.identity.email.lower() == email.lower():
                    self.access[token] = (grant, 0)
                    n += 1
            return n

    def record(self, form, status, error=None):
        shown = dict(form)
        with self.lock:
            self.log.append({"grant_type": form.get("grant_type"), "form": shown,
                             "status": status, "error": error})

    def serve_token(self, form, exchange, errors, error_answer, server_error):
        """The token endpoint's frame, the same for both providers: an injected failure first
        (recorded), else exchange(form); every call is recorded with its outcome. `errors`,
        `error_answer` and `server_error` give the provider's own error bodies."""
        failure = self.take_failure("token")
        if failure:
            self.record(form, 0, "injected:" + failure.get("kind", ""))
            answer = injected(failure, server_error)
            if answer:
                return answer
            if failure.get("kind") == "invalid_grant":
                return error_answer(errors.bad_refresh())
            if failure.get("kind") == "invalid_client":
                return error_answer(errors.bad_secret())
        try:
            answer = exchange(form)
            self.record(form, 200)
            return answer
        except OAuthError as e:
            self.record(form, e.status, e.error)
            return error_answer(e)
