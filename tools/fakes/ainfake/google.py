"""Google's OAuth 2.0 web-server flow and OpenID Connect userinfo, as the real endpoints answer.

Paths (under the fake's one origin):
  GET  /o/oauth2/v2/auth   accounts.google.com's authorization endpoint
  POST /token              oauth2.googleapis.com's token endpoint
  GET  /v1/userinfo        openidconnect.googleapis.com's userinfo endpoint

Refresh tokens are issued only with access_type=offline, and do not rotate: a refresh answers
no refresh_token (docs/provider-apis.md §1.8). Errors are {"error", "error_description"}:
invalid_grant 400, invalid_client 401, redirect_uri_mismatch 400, invalid_request 400,
unsupported_grant_type 400.
"""

from ainfake.common import Answer, json_answer, redirect, injected
from ainfake.oauth import AuthServer, OAuthError

NAME = "google"


class Errors:
    @staticmethod
    def unknown_client():
        return OAuthError(401, "invalid_client", "The OAuth client was not found.")

    @staticmethod
    def bad_secret():
        return OAuthError(401, "invalid_client", "Unauthorized")

    @staticmethod
    def bad_code():
        return OAuthError(400, "invalid_grant", "Malformed auth code.")

    @staticmethod
    def code_used():
        return OAuthError(400, "invalid_grant", "Bad Request")

    @staticmethod
    def redirect_mismatch():
        return OAuthError(400, "redirect_uri_mismatch", "Bad Request")

    @staticmethod
    def missing_verifier():
        return OAuthError(400, "invalid_grant", "Missing code verifier.")

    @staticmethod
    def bad_verifier():
        return OAuthError(400, "invalid_grant", "Invalid code verifier.")

    @staticmethod
    def bad_refresh():
        return OAuthError(400, "invalid_grant", "Token has been expired or revoked.")


def _error(e):
    return json_answer(e.status, {"error": e.error, "error_description": e.description})


def _server_error(status):
    return {"error": "internal_failure", "error_description": "Backend Error"} \
        if status < 503 else {"error": "temporarily_unavailable",
                              "error_description": "The service is currently unavailable."}


class Google:
    name = NAME

    def __init__(self, access_ttl_s=3599):
        self.auth = AuthServer(NAME, rotate_refresh=False, access_ttl_s=access_ttl_s)
        self.routes = {("GET", "/o/oauth2/v2/auth"): self.authorize,
                       ("POST", "/token"): self.token,
                       ("GET", "/v1/userinfo"): self.userinfo}

    def authorize(self, req):
        q = req.query
        bad = self.auth.check_client_redirect(q.get("client_id"), q.get("redirect_uri"))
        if bad:  # Google shows "Error 400: redirect_uri_mismatch" and does not redirect
            return Answer(400 if bad == "redirect_uri_mismatch" else 401,
                          f"<html><body>Error: {bad}</body></html>", "text/html; charset=utf-8")
        redirect_uri, state = q["redirect_uri"], q.get("state")
        back = {"state": state} if state is not None else {}
        if q.get("response_type") != "code":
            return redirect(redirect_uri, {"error": "unsupported_response_type", **back})
        if not q.get("scope"):
            return redirect(redirect_uri, {"error": "invalid_request",
                                           "error_description": "Missing required parameter: "
                                           "scope", **back})
        method = q.get("code_challenge_method", "plain" if q.get("code_challenge") else None)
        if method not in (None, "S256", "plain"):
            return redirect(redirect_uri, {"error": "invalid_request", **back})
        who = self.auth.pick_login(q.get("login_hint"))
        if who == "deny":
            return redirect(redirect_uri, {"error": "access_denied", **back})
        # A refresh token only for access_type=offline (§1.8).
        code = self.auth.new_code(q["client_id"], redirect_uri, q["scope"], who,
                                  q.get("code_challenge"), method,
                                  offline=q.get("access_type") == "offline")
        return redirect(redirect_uri, {**back, "code": code, "scope": q["scope"],
                                       "authuser": "0", "prompt": "consent"})

    def token(self, req):
        return self.auth.serve_token(req.form(), self._token, Errors, _error, _server_error)

    def _token(self, form):
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type: ")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        self.auth.authenticate_client(form.get("client_id"), form.get("client_secret"), Errors)
        if grant_type == "authorization_code":
            if not form.get("code"):
                raise OAuthError(400, "invalid_request", "Missing required parameter: code")
            entry = self.auth.redeem_code(form, Errors)
            return json_answer(200, self.auth.token_answer(
                form["client_id"], entry["identity"], entry["scope"],
                refresh_token=entry["offline"]))
        if not form.get("refresh_token"):
            raise OAuthError(400, "invalid_request", "Missing required parameter: refresh_token")
        grant = self.auth.use_refresh(form["client_id"], form["refresh_token"], Errors)
        # Google's refresh tokens do not rotate: the answer carries none.
        return json_answer(200, self.auth.token_answer(grant.client_id, grant.identity,
                                                       grant.scope, refresh_token=False))

    def userinfo(self, req):
        failure = self.auth.take_failure("userinfo")
        if failure:
            answer = injected(failure, _server_error)
            if answer:
                return answer
        who = self.auth.identity_for(req.bearer() or "")
        if not who:
            return json_answer(401, {"error": "invalid_request",
                                     "error_description": "Invalid Credentials"},
                               **{"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/'
                                  '", error="invalid_token"'})
        body = {"sub": who.sub, "name": who.name, "given_name": who.name.split(" ")[0],
                "email": who.email, "email_verified": True}
        if who.picture:
            body["picture"] = who.picture
        return json_answer(200, body)
