/* provider.h: the sign-in providers' settings (Google, Microsoft), read once from the
 * configuration, for the two places that need them: the edge's login routes (authorization URL,
 * client id, redirect URI, scopes) and the accounts actor (token and identity URLs, secret).
 *
 * In runtime/ because the edge and an actor both need the same answer and may not include each
 * other. Pure: no I/O, no allocation (everything lives in the struct), no logging.
 */
#ifndef AIN_RUNTIME_PROVIDER_H
#define AIN_RUNTIME_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/config.h"
#include "runtime/oauth.h"

#define AIN_PROVIDER_URL_MAX 512

typedef struct {
    ain_oauth_provider_t id;
    const char *name;      /* "google", "microsoft": in routes, messages, logs */
    const char *account;   /* "gmail", "outlook": accounts.provider */
    const char *client_id; /* NULL: this provider is not configured (sign-in off) */
    const char *secret;    /* borrowed from the configuration; NULL if unset */
    const char *scopes;    /* space-separated, as sent at authorize */
    bool scope_on_token;   /* Microsoft wants `scope` on token requests too */
    char redirect_uri[AIN_PROVIDER_URL_MAX];
    char auth_url[AIN_PROVIDER_URL_MAX];
    char token_url[AIN_PROVIDER_URL_MAX];
    char identity_url[AIN_PROVIDER_URL_MAX]; /* Google userinfo, Graph /v1.0/me */
} ain_provider_t;

/* Scopes asked for: Google's openid email profile and full Gmail access (offline, with
 * consent); Microsoft's offline_access (for a refresh token), the profile and Graph mail. */
#define AIN_PROVIDER_GOOGLE_SCOPES "openid email profile https://mail.google.com/"
#define AIN_PROVIDER_MS_SCOPES                                                                     \
    "offline_access openid email profile Mail.ReadWrite Mail.Send User.Read"

/* Fills *out for `id` from `cfg` (borrowed: strings in *out point into it). Redirect URIs
 * default to http://localhost:HTTP_PORT/google/callback and .../auth/outlook/callback, the
 * Microsoft endpoints to login.microsoftonline.com/<MICROSOFT_TENANT_ID>/oauth2/v2.0/...
 * Returns 0, or -1 with a static reason in *why if a URL is not http(s):// or too long, or
 * the tenant is not a plain name. An unset client id is not an error (out->client_id NULL). */
int ain_provider_load(const ain_config_t *cfg, ain_oauth_provider_t id, ain_provider_t *out,
                      const char **why);

/* The provider named "google" or "microsoft" (also "gmail", "outlook"), or 0. */
ain_oauth_provider_t ain_provider_by_name(const char *name);

/* Appends `text` percent-encoded as application/x-www-form-urlencoded (RFC 3986 unreserved
 * characters kept, space as %20) to `out` (`size` bytes, NUL-terminated, at *len). Returns 0,
 * or -1 if it does not fit (out is then unchanged). */
int ain_provider_escape(char *out, size_t size, size_t *len, const char *text);

/* Appends "name=value" with the value escaped, preceded by '&' unless *len is 0. 0 or -1. */
int ain_provider_param(char *out, size_t size, size_t *len, const char *name, const char *value);

int ain_provider_test(bool verbose);

#endif
