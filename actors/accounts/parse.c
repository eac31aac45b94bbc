/* parse.c: provider answers read without I/O (see parse.h). */
#include "actors/accounts/parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "runtime/alloc.h"
#include "runtime/crypto.h"

const char *ain_accounts_outcome_name(ain_accounts_outcome_t outcome)
{
    static const char *const names[] = {"ok",      "invalid_grant", "client_refused",
                                        "refused", "unauthorized",  "unavailable",
                                        "timeout", "bad_answer"};
    return (unsigned)outcome < sizeof names / sizeof names[0] ? names[outcome] : "unknown";
}

/* A token-like string: printable ASCII, 1..AIN_ACCOUNTS_TOKEN_MAX bytes. */
static char *s_token(json_t *root, const char *key)
{
    const char *v = json_string_value(json_object_get(root, key));
    if (!v)
        return NULL;
    size_t n = strlen(v);
    if (n == 0 || n > AIN_ACCOUNTS_TOKEN_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7e)
            return NULL;
    return ain_strndup(v, n);
}

static ain_accounts_outcome_t s_status_outcome(long http)
{
    if (http >= 500 || http == 429 || http == 408)
        return AIN_ACCOUNTS_P_UNAVAILABLE;
    return AIN_ACCOUNTS_P_REFUSED;
}

/* A refusal body {error, error_description?}: classified, and described in `why`. */
static ain_accounts_outcome_t s_refusal(long http, json_t *root, char *why, size_t size)
{
    const char *error = json_string_value(json_object_get(root, "error"));
    const char *desc = json_string_value(json_object_get(root, "error_description"));
    snprintf(why, size, "HTTP %ld %.40s%s%.120s", http, error ? error : "(no error code)",
             desc ? ": " : "", desc ? desc : "");
    for (char *p = why; *p; p++) /* one log line, printable */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (!error || s_status_outcome(http) == AIN_ACCOUNTS_P_UNAVAILABLE)
        return s_status_outcome(http);
    if (strcmp(error, "invalid_grant") == 0)
        return AIN_ACCOUNTS_P_INVALID_GRANT;
    if (strcmp(error, "invalid_client") == 0 || strcmp(error, "unauthorized_client") == 0)
        return AIN_ACCOUNTS_P_CLIENT;
    if (strcmp(error, "temporarily_unavailable") == 0 || strcmp(error, "server_error") == 0)
        return AIN_ACCOUNTS_P_UNAVAILABLE;
    return AIN_ACCOUNTS_P_REFUSED;
}

ain_accounts_outcome_t ain_accounts_tokens_parse(long http, const char *body, size_t len,
                                                 ain_accounts_tokens_t *out, char *why, size_t size)
{
    memset(out, 0, sizeof *out);
    snprintf(why, size, "HTTP %ld", http);
    json_t *root = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    ain_accounts_outcome_t rc;
    if (http < 200 || http > 299) {
        rc = json_is_object(root) ? s_refusal(http, root, why, size) : s_status_outcome(http);
    } else if (!json_is_object(root)) {
        snprintf(why, size, "HTTP %ld with a body that is not a JSON object", http);
        rc = AIN_ACCOUNTS_P_BAD_ANSWER;
    } else {
        const char *type = json_string_value(json_object_get(root, "token_type"));
        out->access_token = s_token(root, "access_token");
        out->refresh_token = s_token(root, "refresh_token");
        const char *scope = json_string_value(json_object_get(root, "scope"));
        out->scope = scope && strlen(scope) < AIN_ACCOUNTS_TEXT_MAX ? ain_strdup(scope) : NULL;
        json_t *exp = json_object_get(root, "expires_in");
        out->expires_in = json_is_integer(exp) && json_integer_value(exp) > 0
                              ? (int64_t)json_integer_value(exp)
                              : 0;
        if (!out->access_token || !type || strcasecmp(type, "Bearer") != 0) {
            snprintf(why, size, "HTTP %ld without a bearer access_token", http);
            ain_accounts_tokens_clear(out);
            rc = AIN_ACCOUNTS_P_BAD_ANSWER;
        } else {
            rc = AIN_ACCOUNTS_P_OK;
        }
    }
    json_decref(root);
    return rc;
}

void ain_accounts_tokens_clear(ain_accounts_tokens_t *t)
{
    ain_crypto_free_secret(&t->access_token);
    ain_crypto_free_secret(&t->refresh_token);
    free(t->scope);
    t->scope = NULL;
    t->expires_in = 0;
}

/* Copies a string member of printable text (no control characters) shorter than `size`. */
static bool s_text(json_t *root, const char *key, char *out, size_t size)
{
    const char *v = json_string_value(json_object_get(root, key));
    out[0] = '\0';
    if (!v)
        return false;
    size_t n = strlen(v);
    if (n == 0 || n >= size)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return false;
    memcpy(out, v, n + 1);
    return true;
}

/* local@domain with a dot in the domain, printable, no spaces; lowered in place. */
static bool s_email(char *email)
{
    char *at = strchr(email, '@');
    if (!at || at == email || strchr(at + 1, '@') || !strchr(at + 1, '.') || at[1] == '.')
        return false;
    for (char *p = email; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
        *p = (char)tolower((unsigned char)*p);
    }
    return true;
}

ain_accounts_outcome_t ain_accounts_identity_parse(ain_oauth_provider_t provider, long http,
                                                   const char *body, size_t len,
                                                   ain_accounts_identity_t *out, char *why,
                                                   size_t size)
{
    memset(out, 0, sizeof *out);
    snprintf(why, size, "identity: HTTP %ld", http);
    if (http == 401)
        return AIN_ACCOUNTS_P_UNAUTHORIZED;
    if (http < 200 || http > 299)
        return s_status_outcome(http);
    json_t *root = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    ain_accounts_outcome_t rc = AIN_ACCOUNTS_P_BAD_ANSWER;
    if (!json_is_object(root)) {
        snprintf(why, size, "identity: not a JSON object");
    } else if (provider == AIN_OAUTH_GOOGLE) {
        if (!s_text(root, "email", out->email, sizeof out->email) || !s_email(out->email))
            snprintf(why, size, "identity: no usable email");
        else if (!json_is_true(json_object_get(root, "email_verified")))
            snprintf(why, size, "identity: the email is not verified");
        else
            rc = AIN_ACCOUNTS_P_OK;
        s_text(root, "name", out->name, sizeof out->name);
        s_text(root, "picture", out->picture, sizeof out->picture);
    } else {
        /* Work and school accounts may have no mail; their sign-in name is an address. */
        if ((!s_text(root, "mail", out->email, sizeof out->email) || !s_email(out->email)) &&
            (!s_text(root, "userPrincipalName", out->email, sizeof out->email) ||
             !s_email(out->email)))
            snprintf(why, size, "identity: neither mail nor userPrincipalName is an address");
        else
            rc = AIN_ACCOUNTS_P_OK;
        s_text(root, "displayName", out->name, sizeof out->name);
    }
    if (rc != AIN_ACCOUNTS_P_OK)
        out->email[0] = '\0';
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- selftest */

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "accounts_parse: %s:%d: check failed: %s\n", __FILE__, __LINE__,       \
                    #cond);                                                                        \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static ain_accounts_outcome_t s_tok(long http, const char *body, ain_accounts_tokens_t *t,
                                    char *why)
{
    return ain_accounts_tokens_parse(http, body, body ? strlen(body) : 0, t, why, 200);
}

static int s_test_tokens(void)
{
    ain_accounts_tokens_t t;
    char why[200];
    S_CHECK(s_tok(200,
                  "{\"access_token\":\"ya29.x\",\"expires_in\":3599,\"scope\":\"openid email\","
                  "\"token_type\":\"Bearer\",\"refresh_token\":\"1//r\"}",
                  &t, why) == AIN_ACCOUNTS_P_OK);
    S_CHECK(strcmp(t.access_token, "ya29.x") == 0 && strcmp(t.refresh_token, "1//r") == 0);
    S_CHECK(t.expires_in == 3599 && strcmp(t.scope, "openid email") == 0);
    ain_accounts_tokens_clear(&t);
    ain_accounts_tokens_clear(&t);
    S_CHECK(!t.access_token && !t.refresh_token && !t.scope);
    /* Google's refresh: no refresh token. */
    S_CHECK(s_tok(200, "{\"access_token\":\"a\",\"token_type\":\"bearer\"}", &t, why) ==
            AIN_ACCOUNTS_P_OK);
    S_CHECK(!t.refresh_token && t.expires_in == 0);
    ain_accounts_tokens_clear(&t);
    S_CHECK(s_tok(400,
                  "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS54005: OAuth2 "
                  "Authorization code was already redeemed\",\"error_codes\":[54005]}",
                  &t, why) == AIN_ACCOUNTS_P_INVALID_GRANT);
    S_CHECK(strstr(why, "invalid_grant: AADSTS54005") && !t.access_token);
    S_CHECK(s_tok(401, "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}", &t,
                  why) == AIN_ACCOUNTS_P_CLIENT);
    S_CHECK(s_tok(400, "{\"error\":\"redirect_uri_mismatch\"}", &t, why) == AIN_ACCOUNTS_P_REFUSED);
    S_CHECK(s_tok(503, "{\"error\":\"temporarily_unavailable\"}", &t, why) ==
            AIN_ACCOUNTS_P_UNAVAILABLE);
    S_CHECK(s_tok(502, "<html>bad gateway</html>", &t, why) == AIN_ACCOUNTS_P_UNAVAILABLE);
    S_CHECK(s_tok(429, NULL, &t, why) == AIN_ACCOUNTS_P_UNAVAILABLE);
    /* A 408 is a provider that timed out, with or without an error body. */
    S_CHECK(s_tok(408, NULL, &t, why) == AIN_ACCOUNTS_P_UNAVAILABLE);
    S_CHECK(s_tok(408, "{\"error\":\"request_timeout\"}", &t, why) == AIN_ACCOUNTS_P_UNAVAILABLE);
    S_CHECK(s_tok(200, "<html>", &t, why) == AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(s_tok(200, "{\"access_token\":\"a\"}", &t, why) == AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(s_tok(200, "{\"access_token\":\"a b\",\"token_type\":\"Bearer\"}", &t, why) ==
            AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(s_tok(200, "{\"access_token\":\"a\",\"access_token\":\"b\",\"token_type\":\"Bearer\"}",
                  &t, why) == AIN_ACCOUNTS_P_BAD_ANSWER);
    /* A description with a newline stays one line. */
    S_CHECK(s_tok(400, "{\"error\":\"invalid_request\",\"error_description\":\"a\\nb\"}", &t,
                  why) == AIN_ACCOUNTS_P_REFUSED);
    S_CHECK(!strchr(why, '\n'));
    return 0;
}

static ain_accounts_outcome_t s_id(ain_oauth_provider_t p, long http, const char *body,
                                   ain_accounts_identity_t *id)
{
    char why[200];
    return ain_accounts_identity_parse(p, http, body, strlen(body), id, why, sizeof why);
}

static int s_test_identity(void)
{
    ain_accounts_identity_t id;
    S_CHECK(s_id(AIN_OAUTH_GOOGLE, 200,
                 "{\"sub\":\"1\",\"email\":\"Ann@Example.com\",\"email_verified\":true,"
                 "\"name\":\"Ann\",\"picture\":\"https://p/x.png\"}",
                 &id) == AIN_ACCOUNTS_P_OK);
    S_CHECK(strcmp(id.email, "ann@example.com") == 0 && strcmp(id.name, "Ann") == 0);
    S_CHECK(strcmp(id.picture, "https://p/x.png") == 0);
    S_CHECK(s_id(AIN_OAUTH_GOOGLE, 200, "{\"email\":\"a@b.c\",\"email_verified\":false}", &id) ==
            AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(id.email[0] == '\0');
    S_CHECK(s_id(AIN_OAUTH_GOOGLE, 200, "{\"email\":\"not-an-address\",\"email_verified\":true}",
                 &id) == AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(s_id(AIN_OAUTH_GOOGLE, 401, "{\"error\":\"invalid_request\"}", &id) ==
            AIN_ACCOUNTS_P_UNAUTHORIZED);
    S_CHECK(s_id(AIN_OAUTH_GOOGLE, 503, "", &id) == AIN_ACCOUNTS_P_UNAVAILABLE);
    S_CHECK(s_id(AIN_OAUTH_MICROSOFT, 200,
                 "{\"id\":\"7\",\"displayName\":\"Bo\",\"mail\":null,"
                 "\"userPrincipalName\":\"Bo@Contoso.com\"}",
                 &id) == AIN_ACCOUNTS_P_OK);
    S_CHECK(strcmp(id.email, "bo@contoso.com") == 0 && strcmp(id.name, "Bo") == 0);
    S_CHECK(s_id(AIN_OAUTH_MICROSOFT, 200, "{\"mail\":\"c@d.e\",\"userPrincipalName\":\"x\"}",
                 &id) == AIN_ACCOUNTS_P_OK);
    S_CHECK(strcmp(id.email, "c@d.e") == 0);
    S_CHECK(s_id(AIN_OAUTH_MICROSOFT, 200, "{\"displayName\":\"x\"}", &id) ==
            AIN_ACCOUNTS_P_BAD_ANSWER);
    S_CHECK(strcmp(ain_accounts_outcome_name(AIN_ACCOUNTS_P_INVALID_GRANT), "invalid_grant") == 0);
    return 0;
}

int ain_accounts_parse_test(bool verbose)
{
    if (s_test_tokens() || s_test_identity())
        return -1;
    if (verbose)
        printf("accounts_parse: token answers and refusals of both providers, identities\n");
    return 0;
}
