/* auth.c: who is asking. Every route that needs a user goes through
 * ain__auth_user.
 *
 * A signed-in user presents an HS256 access token (runtime/jwt.h) as a
 * Bearer header or in the httpOnly `access_token` cookie; the edge verifies
 * it with no hop (signature, header, claims, expiry) and takes the user,
 * session and role from it. A present but invalid token is 401 with the
 * reason's stable name (`expired`, `bad_signature`, ...), never a silent
 * fallback to anything else.
 *
 * Development only: AINBOX_DEV_TOKEN (a Bearer header, or the `token` query
 * parameter for an EventSource) with the user in `user`, refused in
 * production by the configuration. Tokens are told apart by their shape: a
 * JWT has two dots, the development token has none. A JWT in the `token`
 * query parameter is refused everywhere (401 TOKEN_IN_URL): URLs are logged.
 *
 * JWT_ACCESS_SECRET and JWT_REFRESH_SECRET are required in production; in
 * development without them, tokens are refused and the development token
 * is the only way in (said once at start).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge/internal.h"
#include "runtime/jwt.h"

int ain__auth_init(ain_edge_t *edge, const ain_config_t *cfg)
{
    char *error = NULL;
    edge->jwt = ain_jwt_from_config(cfg, &error);
    if (edge->jwt)
        return 0;
    bool production = strcmp(ain_config_str(cfg, AIN_CFG_NODE_ENV), "production") == 0;
    if (production)
        ain_error(edge->log, "sign-in tokens: %s", error ? error : "not configured");
    else
        ain_warn(edge->log, "sign-in tokens disabled (%s); only AINBOX_DEV_TOKEN signs in",
                 error ? error : "not configured");
    free(error);
    return production ? -1 : 0;
}

static bool s_same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

static int s_refuse(ain__http_t *http, const char *code, const char *message)
{
    ain_metric_inc(http->edge->m.auth_refused);
    ain__http_error(http, 401, code, message);
    return -1;
}

/* The development token, with the user in `user`. */
static int s_dev(ain__http_t *http, const char *given)
{
    const char *token = ain_config_str(ain_proc_config(http->edge->proc), AIN_CFG_AINBOX_DEV_TOKEN);
    if (!token)
        return s_refuse(http, "UNAUTHENTICATED", "missing or invalid token");
    if (!given[0] || !s_same_secret(given, token))
        return s_refuse(http, "UNAUTHENTICATED", "missing or invalid token");
    char user[32];
    long long id = ain__http_query(http, "user", user, sizeof user) > 0 ? ain__http_uint(user) : 0;
    if (id <= 0) {
        ain__http_fail(http, AIN_STATUS_INVALID, "query parameter user must be a positive integer");
        return -1;
    }
    http->user = (uint64_t)id;
    return 0;
}

static int s_jwt(ain__http_t *http, const char *token)
{
    if (!http->edge->jwt)
        return s_refuse(http, "UNAUTHENTICATED", "sign-in tokens are not configured here");
    ain_jwt_claims_t claims;
    int rc = ain_jwt_verify(http->edge->jwt, token, strlen(token), AIN_JWT_ACCESS,
                            (int64_t)time(NULL), &claims);
    if (rc != AIN_JWT_OK) {
        char message[64];
        snprintf(message, sizeof message, "access token refused: %s", ain_jwt_strerror(rc));
        return s_refuse(http, rc == AIN_JWT_E_EXPIRED ? "TOKEN_EXPIRED" : "INVALID_TOKEN", message);
    }
    http->user = claims.user;
    http->session = claims.session;
    http->admin = claims.role == AIN_JWT_ROLE_ADMIN;
    return 0;
}

int ain__auth_user(ain__http_t *http)
{
    char given[AIN_JWT_MAX_LEN + 1] = "";
    const char *header = mg_get_header(http->conn, "Authorization");
    const char *cookies = mg_get_header(http->conn, "Cookie");
    int n;
    if (header && strncmp(header, "Bearer ", 7) == 0) {
        if (strlen(header + 7) > AIN_JWT_MAX_LEN)
            return s_refuse(http, "INVALID_TOKEN", "access token refused: too_long");
        snprintf(given, sizeof given, "%s", header + 7);
    } else if (cookies && (n = mg_get_cookie(cookies, "access_token", given, sizeof given)) != -1) {
        if (n <= 0)
            return s_refuse(http, "INVALID_TOKEN", "access token refused: too_long");
        return s_jwt(http, given);
    } else {
        ain__http_query(http, "token", given, sizeof given);
        /* Never a sign-in token in the URL: URLs end up in access logs, proxies, browser
         * history and Referer headers, and an access token there signs in whoever reads them.
         * The frontend has no need for it (EventSource sends the access_token cookie). */
        if (strchr(given, '.'))
            return s_refuse(http, "TOKEN_IN_URL",
                            "an access token in the URL is refused: send it as a Bearer header "
                            "or the access_token cookie");
        return s_dev(http, given);
    }
    if (strchr(given, '.'))
        return s_jwt(http, given);
    return s_dev(http, given);
}

int ain__auth_peek(ain__http_t *http)
{
    char given[AIN_JWT_MAX_LEN + 1] = "";
    const char *header = mg_get_header(http->conn, "Authorization");
    const char *cookies = mg_get_header(http->conn, "Cookie");
    if (header && strncmp(header, "Bearer ", 7) == 0 && strlen(header + 7) <= AIN_JWT_MAX_LEN)
        snprintf(given, sizeof given, "%s", header + 7);
    else if (!cookies || mg_get_cookie(cookies, "access_token", given, sizeof given) <= 0)
        return -1;
    ain_jwt_claims_t claims;
    if (!http->edge->jwt || ain_jwt_verify(http->edge->jwt, given, strlen(given), AIN_JWT_ACCESS,
                                           (int64_t)time(NULL), &claims) != AIN_JWT_OK)
        return -1;
    http->user = claims.user;
    http->session = claims.session;
    return 0;
}
