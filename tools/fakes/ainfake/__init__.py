"""ainfake: fakes of the provider APIs Ainbox talks to (stdlib only).

oauth.py      the authorization server both providers share: clients, codes with PKCE,
              refresh and access tokens, injected failures, the request log
google.py     Google's dialect: paths, parameters, token and error bodies, OpenID userinfo
microsoft.py  the Microsoft identity platform's dialect and Graph's /v1.0/me
gmail.py      the Gmail API v1 over mailbox.py, with quota.py (limits, costs), push.py
              (users.watch, Pub/Sub push), gmail_errors.py (Google's error bodies) and
              batch.py (the batch wire format); gmail_control.py is its /_fake/gmail API
server.py     one ThreadingHTTPServer routing to the providers, plus the /_fake control API

Later: Graph mail as a further module beside these (see README.md).
"""
