/* parse.h: what the providers answer, read without I/O: token endpoint answers (success and the
 * RFC 6749 §5.2 error body) and the identity (Google's OpenID userinfo, Graph's /v1.0/me).
 *
 * Pure functions over (HTTP status, body), so every provider reply the fakes can produce, and a
 * few they cannot, are in the selftest (unit.accounts_parse). Nothing here logs; error texts
 * never contain a token (only the provider's `error` and a bounded `error_description`).
 */
#ifndef AIN_ACTORS_ACCOUNTS_PARSE_H
#define AIN_ACTORS_ACCOUNTS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/oauth.h"

#define AIN_ACCOUNTS_EMAIL_MAX 254
#define AIN_ACCOUNTS_TEXT_MAX  1024
#define AIN_ACCOUNTS_TOKEN_MAX 8192 /* a provider token; Microsoft's run to a few KiB */

/* How a call to a provider ended. */
typedef enum {
    AIN_ACCOUNTS_P_OK = 0,
    AIN_ACCOUNTS_P_INVALID_GRANT, /* the code or refresh token is refused (400 invalid_grant) */
    AIN_ACCOUNTS_P_CLIENT,        /* our client credentials are refused (invalid_client...) */
    AIN_ACCOUNTS_P_REFUSED,       /* another 4xx refusal (invalid_request, redirect mismatch) */
    AIN_ACCOUNTS_P_UNAUTHORIZED,  /* the identity endpoint refused the access token (401) */
    AIN_ACCOUNTS_P_UNAVAILABLE,   /* 5xx, 429, or no connection */
    AIN_ACCOUNTS_P_TIMEOUT,       /* no answer in time */
    AIN_ACCOUNTS_P_BAD_ANSWER,    /* a 2xx that is not what the API promises, or too large */
} ain_accounts_outcome_t;

/* A token endpoint's success. Strings are the caller's (ain_accounts_tokens_clear wipes and
 * frees them); refresh_token and scope are NULL when absent (Google's refresh answers carry no
 * refresh token). */
typedef struct {
    char *access_token, *refresh_token, *scope;
    int64_t expires_in; /* seconds; 0 if the provider did not say */
} ain_accounts_tokens_t;

typedef struct {
    char email[AIN_ACCOUNTS_EMAIL_MAX + 1]; /* lowered */
    char name[AIN_ACCOUNTS_TEXT_MAX];       /* "" if none */
    char picture[AIN_ACCOUNTS_TEXT_MAX];    /* "" if none */
} ain_accounts_identity_t;

/* Reads a token endpoint's answer (`http` status, `len` bytes of `body`) into *out (zeroed
 * first). On a refusal, `why` (`size` bytes) gets "<error>: <description>" bounded, never a
 * token. Returns the outcome. */
ain_accounts_outcome_t ain_accounts_tokens_parse(long http, const char *body, size_t len,
                                                 ain_accounts_tokens_t *out, char *why,
                                                 size_t size);

/* Wipes and frees the strings of *t; safe twice. */
void ain_accounts_tokens_clear(ain_accounts_tokens_t *t);

/* Reads an identity answer of `provider` into *out: Google's {email, email_verified: true,
 * name?, picture?} (an unverified address is refused: it would become the user's key), Graph's
 * {mail or userPrincipalName, displayName?}. Returns OK, UNAUTHORIZED (401), UNAVAILABLE
 * (5xx/429), REFUSED (another 4xx) or BAD_ANSWER (no usable address), with a reason in `why`. */
ain_accounts_outcome_t ain_accounts_identity_parse(ain_oauth_provider_t provider, long http,
                                                   const char *body, size_t len,
                                                   ain_accounts_identity_t *out, char *why,
                                                   size_t size);

/* A stable name for an outcome ("ok", "invalid_grant", ...), for logs and codes. Static. */
const char *ain_accounts_outcome_name(ain_accounts_outcome_t outcome);

int ain_accounts_parse_test(bool verbose);

#endif
