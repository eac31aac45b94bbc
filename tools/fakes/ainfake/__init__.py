"""ainfake: fakes of the provider APIs Ainbox talks to (stdlib only).

oauth.py      the authorization server both providers share: clients, codes with PKCE,
              refresh and access tokens, injected failures, the request log
google.py     Google's dialect: paths, parameters, token and error bodies, OpenID userinfo
microsoft.py  the Microsoft identity platform's dialect and Graph's /v1.0/me
server.py     one ThreadingHTTPServer routing to the providers, plus the /_fake control API

Later: the Gmail API and Graph mail as further modules beside these (see README.md).
"""
