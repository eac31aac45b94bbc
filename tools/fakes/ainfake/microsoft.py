"""The Microsoft identity platform (v2.0 authorization code flow) and Graph's /v1.0/me.

Paths (under the fake's one origin; {tenant} is any of common, organizations, consumers or an id):
  GET  /{tenant}/oauth2/v2.0/authorize
  POST /{tenant}/oauth2/v2.0/token
  GET  /v1.0/me                          graph.microsoft.com

A refresh token is issued when the scope has offline_access, and rotates on every refresh: the
answer carries a new one; the old one keeps working, as at Microsoft (docs/provider-apis.md
§2.6), unless the fake runs with rotation that revokes. Errors carry the AADSTS code in
error_description and error_codes, with timestamp, trace_id, correlation_id and error_uri; Graph
errors are {"error": {"code", "message", "innerError"}}.
"""

import datetime
import re
import uuid

from ainfake.common import Answer, json_answer, redirect, injected
from ainfake.oauth import AuthServer, OAuthError

NAME = "microsoft"
TENANT = re.compile(r"^/([A-Za-z0-9.-]+)/oauth2/v2\.0/(authorize|token)$")


def _aad(status, error, code, text):
    return OAuthError(status, error, f"AADSTS{code}: {text}", code=code)


class Errors:
    @staticmethod
    def unknown_client():
        return _aad(400, "unauthorized_client", 700016,
                    "Application with identifier was not found in the directory.")

    @staticmethod
    def bad_secret():
        return _aad(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the "
                    "secret being sent in the request is the client secret value, not the client "
                    "secret ID.")

    @staticmethod
    def bad_code():
        return _aad(400, "invalid_grant", 70000, "The provided value for the 'code' parameter "
                    "is not valid.")

    @staticmethod
    def code_used():
        return _aad(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed,"
                    " please retry with a new valid code or use an existing refresh token.")

    @staticmethod
    def redirect_mismatch():
        return _aad(400, "invalid_grant", 70000, "The provided value for the 'redirect_uri' is "
                    "not valid. The value must exactly match the redirect URI used to obtain the "
                    "authorization code.")

    @staticmethod
    def missing_verifier():
        return _aad(400, "invalid_grant", 50148, "The code_verifier does not match the "
                    "code_challenge supplied in the authorization request for PKCE.")

    bad_verifier = missing_verifier

    @staticmethod
    def bad_refresh():
        return _aad(400, "invalid_grant", 700082, "The refresh token has expired due to "
                    "inactivity. The token was issued on 2026-01-01T00:00:00.0000000Z and was "
                    "inactive for 90.00:00:00.")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _error(e):
    body = {"error": e.error, "error_description": e.description,
            "error_codes": [e.extra.get("code", 0)], "timestamp": _now(),
            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
            "error_uri": "https://login.microsoftonline.com/error?code="
            f"{e.extra.get('code', 0)}"}
    return json_answer(e.status, body)


def _server_error(status):
    return {"error": "temporarily_unavailable",
            "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
            "error_codes": [90033], "timestamp": _now(), "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4())}


def _graph_error(status, code, message, **headers):
    return json_answer(status, {"error": {"code": code, "message": message, "innerError": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}, **headers)


class Microsoft:
    name = NAME

    def __init__(self, access_ttl_s=3599, revoke_rotated=False):
        self.auth = AuthServer(NAME, rotate_refresh=True, access_ttl_s=access_ttl_s)
        self.revoke_rotated = revoke_rotated
        self.routes = {("GET", "/v1.0/me"): self.me}

    def match(self, method, path):
        """The handler for a tenant path, or None."""
        m = TENANT.match(path)
        if not m:
            return self.routes.get((method, path))
        if m.group(2) == "authorize" and method == "GET":
            return self.authorize
        if m.group(2) == "token" and method == "POST":
            return self.token
        return None

    def authorize(self, req):
        q = req.query
        bad = self.auth.check_client_redirect(q.get("client_id"), q.get("redirect_uri"))
        if bad:  # AADSTS700016 / AADSTS50011 are shown on Microsoft's page, no redirect
            return Answer(400, f"<html><body>{bad}</body></html>", "text/html; charset=utf-8")
        redirect_uri, state = q["redirect_uri"], q.get("state")
        back = {"state": state} if state is not None else {}
        if q.get("response_type") != "code" or not q.get("scope"):
            return redirect(redirect_uri, {"error": "invalid_request", "error_description":
                                           "AADSTS900144: The request body must contain the "
                                           "following parameter: 'scope'.", **back})
        method = q.get("code_challenge_method", "plain" if q.get("code_challenge") else None)
        who = self.auth.pick_login(q.get("login_hint"))
        if who == "deny":
            return redirect(redirect_uri, {"error": "access_denied", "error_description":
                                           "AADSTS65004: User declined to consent to access "
                                           "the app.", **back})
        offline = "offline_access" in q["scope"].split()
        code = self.auth.new_code(q["client_id"], redirect_uri, q["scope"], who,
                                  q.get("code_challenge"), method, offline=offline)
        return redirect(redirect_uri, {"code": code, **back})

    def token(self, req):
        return self.auth.serve_token(req.form(), self._token, Errors, _error, _server_error)

    def _token(self, form):
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise _aad(400, "unsupported_grant_type", 70003,
                       "The app requested an unsupported grant type.")
        self.auth.authenticate_client(form.get("client_id"), form.get("client_secret"), Errors)
        scope = form.get("scope")
        if grant_type == "authorization_code":
            if not form.get("code"):
                raise _aad(400, "invalid_request", 900144, "The request body must contain the "
                           "following parameter: 'code'.")
            entry = self.auth.redeem_code(form, Errors)
            return json_answer(200, self.auth.token_answer(
                form["client_id"], entry["identity"], entry["scope"],
                refresh_token=entry["offline"], ext_expires_in=self.auth.access_ttl_s))
        if not form.get("refresh_token"):
            raise _aad(400, "invalid_request", 900144, "The request body must contain the "
                       "following parameter: 'refresh_token'.")
        grant = self.auth.use_refresh(form["client_id"], form["refresh_token"], Errors)
        if self.revoke_rotated:
            grant.revoked = True
        # Microsoft rotates: every refresh answers a new refresh token.
        return json_answer(200, self.auth.token_answer(grant.client_id, grant.identity,
                                                       scope or grant.scope,
                                                       ext_expires_in=self.auth.access_ttl_s))

    def me(self, req):
        failure = self.auth.take_failure("userinfo")
        if failure:
            answer = injected(failure, lambda status: {"error": {
                "code": "ServiceUnavailable", "message": "Service Unavailable"}})
            if answer:
                return answer
        who = self.auth.identity_for(req.bearer() or "")
        if not who:
            return _graph_error(401, "InvalidAuthenticationToken",
                                "Access token has expired or is not yet valid.",
                                **{"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        return json_answer(200, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "businessPhones": [], "displayName": who.name, "givenName": who.name.split(" ")[0],
            "jobTitle": None, "mail": who.email, "mobilePhone": None, "officeLocation": None,
            "preferredLanguage": None, "surname": None, "userPrincipalName": who.email,
            "id": who.sub[:16]})
