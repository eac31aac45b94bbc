/* jwt.h: HS256 JSON Web Tokens (RFC 7519 over RFC 7515) for Ainbox's access and refresh tokens.
 *
 * One mechanism for both kinds of token, each kind with its own secret (JWT_ACCESS_SECRET,
 * JWT_REFRESH_SECRET), so neither can pass for the other. The edge verifies access tokens on
 * every request with no hop; whoever owns the sessions mints both kinds. It lives in runtime/
 * because that owner may be an actor, and tools (benchmarks, the fakes) mint tokens too.
 *
 * What we issue, and all we accept:
 *   header   {"alg":"HS256","typ":"JWT","kid":"<8 chars>"}; exactly these members. The kid names
 *            the secret (base64url of 6 bytes of HMAC(secret, "ainbox/jwt-kid/v1")), so a
 *            verifier holding the current and the previous secret picks one without guessing.
 *   payload  {"sub":"<user id>","sid":"<session id>","role":"user"|"admin",
 *            "typ":"access"|"refresh","iat":<s>,"exp":<s>,"jti":"<base64url>"}; ids are decimal
 *            strings (RFC 7519 StringOrURI) of non-zero 64-bit numbers; other claims are ignored
 *            (so a newer issuer may add one during a rolling upgrade); "nbf", if present, is
 *            honoured.
 * Refused, each with its own code (ain_jwt_strerror): longer than AIN_JWT_MAX_LEN (checked before
 * any decoding); not three non-empty strict base64url parts; a header that is not a JSON object,
 * has duplicate or unknown members (crit, jku, jwk, x5u, b64...) or typ other than "JWT"; alg other
 * than exactly "HS256" (none, hs256, RS256...); an unknown or missing kid; a signature that is not
 * the HMAC (compared in constant time, before the payload is parsed); a payload that is not a JSON
 * object, has duplicate members, or lacks, mistypes or misspells a claim; the wrong typ; expired
 * (now >= exp + leeway); not yet valid (iat or nbf > now + leeway).
 *
 * A refresh token's jti is an opaque token (ain_crypto_token_new: 32 random bytes); the session
 * row stores only ain_crypto_token_hash(jti), and rotation gives the session a new jti. So a
 * refresh token must be both correctly signed and the one the session currently expects.
 *
 * An ain_jwt_t is immutable once built: share it between threads freely. Verification allocates
 * only inside jansson and never blocks.
 */
#ifndef AIN_RUNTIME_JWT_H
#define AIN_RUNTIME_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"

#define AIN_JWT_MAX_LEN    2048 /* bytes of a whole token; a cookie holds 4096 */
#define AIN_JWT_SECRET_MIN 32   /* bytes: RFC 7518 §3.2, an HS256 key of at least 256 bits */
#define AIN_JWT_SECRET_MAX 4096
#define AIN_JWT_JTI_MAX    64

typedef enum { AIN_JWT_ACCESS = 1, AIN_JWT_REFRESH = 2 } ain_jwt_typ_t;
typedef enum { AIN_JWT_ROLE_USER = 1, AIN_JWT_ROLE_ADMIN = 2 } ain_jwt_role_t;

typedef struct {
    ain_jwt_typ_t typ;
    uint64_t user;    /* sub */
    uint64_t session; /* sid */
    ain_jwt_role_t role;
    int64_t iat, exp; /* Unix seconds */
    char jti[AIN_JWT_JTI_MAX + 1];
} ain_jwt_claims_t;

/* Verification results; the names (ain_jwt_strerror) are stable, for logs and metric names. */
typedef enum {
    AIN_JWT_OK = 0,
    AIN_JWT_E_TOO_LONG = -1,
    AIN_JWT_E_MALFORMED = -2,
    AIN_JWT_E_HEADER = -3,
    AIN_JWT_E_ALG = -4,
    AIN_JWT_E_KEY = -5,
    AIN_JWT_E_SIGNATURE = -6,
    AIN_JWT_E_CLAIMS = -7,
    AIN_JWT_E_TYP = -8,
    AIN_JWT_E_EXPIRED = -9,
    AIN_JWT_E_NOT_YET = -10,
} ain_jwt_err_t;

#define AIN_JWT_ERR_COUNT 11

typedef struct _ain_jwt_t ain_jwt_t;

/* An issuer/verifier with no keys, allowing `leeway_s` (0..300) seconds of clock skew. */
ain_jwt_t *ain_jwt_new(int64_t leeway_s);

/* Adds a secret (copied) for tokens of `typ`: the current one signs and verifies, a previous one
 * (current = false) only verifies. Returns 0, or -1 if the secret is shorter than
 * AIN_JWT_SECRET_MIN or longer than AIN_JWT_SECRET_MAX, or that slot is taken, or the secret is
 * already present. */
int ain_jwt_add_key(ain_jwt_t *self, ain_jwt_typ_t typ, const void *secret, size_t len,
                    bool current);

/* From JWT_ACCESS_SECRET, JWT_REFRESH_SECRET (both required), AINBOX_JWT_ACCESS_SECRET_OLD,
 * AINBOX_JWT_REFRESH_SECRET_OLD (optional) and AINBOX_JWT_LEEWAY_S. Returns what the caller owns,
 * or NULL with a message naming the variable in *error (caller frees). */
ain_jwt_t *ain_jwt_from_config(const ain_config_t *cfg, char **error);

/* Wipes the secrets and frees; nulls *self_p; safe twice. */
void ain_jwt_destroy(ain_jwt_t **self_p);

/* Fills `claims` for a token of `typ` issued at `now_s` for `ttl_s` seconds, with a fresh jti
 * (an opaque token). Returns 0, or -1 for a zero user or session, an invalid typ or role, a ttl
 * outside 1 s..400 days, or a failed random generator. */
int ain_jwt_claims_init(ain_jwt_claims_t *claims, ain_jwt_typ_t typ, uint64_t user,
                        uint64_t session, ain_jwt_role_t role, int64_t now_s, int64_t ttl_s);

/* Signs `claims` with the current secret of claims->typ into `out` (`size` bytes), as
 * NUL-terminated text. Returns 0, or -1 if there is no current secret, the claims are invalid (as
 * verification would find them) or `out` is too small. */
int ain_jwt_sign(const ain_jwt_t *self, const ain_jwt_claims_t *claims, char *out, size_t size);

/* Verifies `len` bytes of `token` (NULL is refused as malformed) as a token of `typ` at `now_s`.
 * Returns AIN_JWT_OK with the claims in *claims, or a negative ain_jwt_err_t (and *claims
 * untouched). */
int ain_jwt_verify(const ain_jwt_t *self, const char *token, size_t len, ain_jwt_typ_t typ,
                   int64_t now_s, ain_jwt_claims_t *claims);

/* "ok", "too_long", "malformed", "bad_header", "bad_alg", "unknown_key", "bad_signature",
 * "bad_claims", "wrong_typ", "expired", "not_yet_valid"; "unknown" otherwise. Static. */
const char *ain_jwt_strerror(int err);

int ain_jwt_test(bool verbose);

#endif
