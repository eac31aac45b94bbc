/* jwt.c: signing and strictly verifying HS256 tokens; the format and the refusals are in jwt.h.
 *
 * Verification order is chosen so that outside input reaches as little code as possible before
 * the signature is known good: length bound, split, the small header (to pick the key), the
 * signature in constant time, and only then the payload.
 */
#include "runtime/jwt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "runtime/alloc.h"
#include "runtime/crypto.h"

#define S_KID_LABEL  "ainbox/jwt-kid/v1"
#define S_KID_BYTES  6
#define S_KID_LEN    8
#define S_HEADER_MAX 256 /* decoded bytes; ours is 47 */
#define S_SIG_LEN    43  /* base64url of 32 bytes */
#define S_TTL_MAX    (400 * 86400)
#define S_LEEWAY_MAX 300
#define S_PAYLOAD_FORMAT                                                                           \
    "{\"sub\":\"%" PRIu64 "\",\"sid\":\"%" PRIu64                                                  \
    "\",\"role\":\"%s\",\"typ\":\"%s\",\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"jti\":\"%s\"}"

typedef struct {
    uint8_t *secret; /* NULL = empty slot */
    size_t len;
    char kid[S_KID_LEN + 1];
} s_key_t;

struct _ain_jwt_t {
    int64_t leeway;
    s_key_t keys[3][2]; /* [typ][0 = current, 1 = previous] */
};

static const char *s_typ_names[] = {NULL, "access", "refresh"};
static const char *s_role_names[] = {NULL, "user", "admin"};

/* ------------------------------------------------------------------ keys */

ain_jwt_t *ain_jwt_new(int64_t leeway_s)
{
    ain_jwt_t *self = AIN_NEW(ain_jwt_t);
    self->leeway = leeway_s < 0 ? 0 : leeway_s > S_LEEWAY_MAX ? S_LEEWAY_MAX : leeway_s;
    return self;
}

static bool s_typ_valid(int typ)
{
    return typ == AIN_JWT_ACCESS || typ == AIN_JWT_REFRESH;
}

int ain_jwt_add_key(ain_jwt_t *self, ain_jwt_typ_t typ, const void *secret, size_t len,
                    bool current)
{
    if (!s_typ_valid((int)typ) || len < AIN_JWT_SECRET_MIN || len > AIN_JWT_SECRET_MAX)
        return -1;
    s_key_t *slot = &self->keys[typ][current ? 0 : 1];
    if (slot->secret)
        return -1;
    uint8_t mac[AIN_CRYPTO_SHA256_LEN];
    char kid[S_KID_LEN + 1];
    if (ain_crypto_hmac_sha256(secret, len, S_KID_LABEL, strlen(S_KID_LABEL), mac) < 0 ||
        ain_crypto_b64url_encode(mac, S_KID_BYTES, kid, sizeof kid) < 0)
        return -1;
    for (int t = 1; t <= 2; t++) /* one secret, one use: a kid names exactly one key */
        for (int i = 0; i < 2; i++)
            if (self->keys[t][i].secret && strcmp(self->keys[t][i].kid, kid) == 0)
                return -1;
    slot->secret = ain_malloc(len);
    memcpy(slot->secret, secret, len);
    slot->len = len;
    memcpy(slot->kid, kid, sizeof kid);
    return 0;
}

/* Adds the secret in setting `id` if set; `required` makes unset an error. */
static int s_add_setting(ain_jwt_t *self, const ain_config_t *cfg, ain_cfg_id_t id,
                         ain_jwt_typ_t typ, bool current, char **error)
{
    const char *secret = ain_config_str(cfg, id);
    if (!secret || !secret[0]) {
        if (current)
            *error = ain_sprintf("%s is not set; it is required to sign and verify sign-in tokens",
                                 ain_config_name(id));
        return current ? -1 : 0;
    }
    if (ain_jwt_add_key(self, typ, secret, strlen(secret), current) == 0)
        return 0;
    *error =
        ain_sprintf("%s must be %d to %d bytes long (it is %zu), and used for nothing else",
                    ain_config_name(id), AIN_JWT_SECRET_MIN, AIN_JWT_SECRET_MAX, strlen(secret));
    return -1;
}

ain_jwt_t *ain_jwt_from_config(const ain_config_t *cfg, char **error)
{
    ain_jwt_t *self = ain_jwt_new(ain_config_int(cfg, AIN_CFG_AINBOX_JWT_LEEWAY_S));
    if (s_add_setting(self, cfg, AIN_CFG_JWT_ACCESS_SECRET, AIN_JWT_ACCESS, true, error) < 0 ||
        s_add_setting(self, cfg, AIN_CFG_JWT_REFRESH_SECRET, AIN_JWT_REFRESH, true, error) < 0 ||
        s_add_setting(self, cfg, AIN_CFG_AINBOX_JWT_ACCESS_SECRET_OLD, AIN_JWT_ACCESS, false,
                      error) < 0 ||
        s_add_setting(self, cfg, AIN_CFG_AINBOX_JWT_REFRESH_SECRET_OLD, AIN_JWT_REFRESH, false,
                      error) < 0)
        ain_jwt_destroy(&self);
    return self;
}

void ain_jwt_destroy(ain_jwt_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_jwt_t *self = *self_p;
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 2; i++) {
            ain_crypto_wipe(self->keys[t][i].secret, self->keys[t][i].len);
            free(self->keys[t][i].secret);
        }
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------- claims */

static bool s_jti_valid(const char *jti)
{
    size_t n = strlen(jti);
    return n >= 1 && n <= AIN_JWT_JTI_MAX &&
           strspn(jti, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static bool s_claims_valid(const ain_jwt_claims_t *c)
{
    return s_typ_valid((int)c->typ) &&
           (c->role == AIN_JWT_ROLE_USER || c->role == AIN_JWT_ROLE_ADMIN) && c->user &&
           c->session && c->iat >= 0 && c->exp > c->iat && s_jti_valid(c->jti);
}

int ain_jwt_claims_init(ain_jwt_claims_t *claims, ain_jwt_typ_t typ, uint64_t user,
                        uint64_t session, ain_jwt_role_t role, int64_t now_s, int64_t ttl_s)
{
    ain_jwt_claims_t c = {.typ = typ, .user = user, .session = session, .role = role};
    if (ttl_s < 1 || ttl_s > S_TTL_MAX || now_s < 0 || now_s > INT64_MAX - S_TTL_MAX)
        return -1;
    c.iat = now_s;
    c.exp = now_s + ttl_s;
    if (ain_crypto_token_new(c.jti) < 0 || !s_claims_valid(&c))
        return -1;
    *claims = c;
    return 0;
}

/* ------------------------------------------------------------------ signing */

/* Appends base64url of `len` bytes at out + *at; returns -1 if it does not fit. */
static int s_append_b64(const void *data, size_t len, char *out, size_t size, size_t *at)
{
    if (*at >= size || ain_crypto_b64url_encode(data, len, out + *at, size - *at) < 0)
        return -1;
    *at += AIN_CRYPTO_B64URL_LEN(len);
    return 0;
}

int ain_jwt_sign(const ain_jwt_t *self, const ain_jwt_claims_t *claims, char *out, size_t size)
{
    if (!s_claims_valid(claims))
        return -1;
    const s_key_t *key = &self->keys[claims->typ][0];
    if (!key->secret)
        return -1;
    char header[64], payload[320];
    int hn = snprintf(header, sizeof header, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
                      key->kid);
    int pn = snprintf(payload, sizeof payload, S_PAYLOAD_FORMAT, claims->user, claims->session,
                      s_role_names[claims->role], s_typ_names[claims->typ], claims->iat,
                      claims->exp, claims->jti);
    if (hn < 0 || (size_t)hn >= sizeof header || pn < 0 || (size_t)pn >= sizeof payload)
        return -1;
    size_t at = 0;
    uint8_t mac[AIN_CRYPTO_SHA256_LEN];
    if (s_append_b64(header, (size_t)hn, out, size, &at) < 0 || at + 1 >= size)
        return -1;
    out[at++] = '.';
    if (s_append_b64(payload, (size_t)pn, out, size, &at) < 0 || at + 1 >= size ||
        ain_crypto_hmac_sha256(key->secret, key->len, out, at, mac) < 0)
        return -1;
    out[at++] = '.';
    return s_append_b64(mac, sizeof mac, out, size, &at);
}

/* ------------------------------------------------------------- verification */

typedef struct {
    const char *header, *payload, *sig; /* the three parts, within the token */
    size_t header_len, payload_len, sig_len, signed_len;
} s_parts_t;

static int s_split(const char *token, size_t len, s_parts_t *p)
{
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return -1;
    p->header = token;
    p->header_len = (size_t)(dot1 - token);
    p->payload = dot1 + 1;
    p->payload_len = (size_t)(dot2 - p->payload);
    p->sig = dot2 + 1;
    p->sig_len = len - (size_t)(p->sig - token);
    p->signed_len = (size_t)(dot2 - token);
    return p->header_len && p->payload_len && p->sig_len ? 0 : -1;
}

/* Decodes a base64url part into `buf` and parses it as one JSON object, duplicates refused. */
static json_t *s_part_json(const char *text, size_t len, char *buf, size_t size, bool *bad_b64)
{
    size_t n = 0;
    *bad_b64 = ain_crypto_b64url_decode(text, len, buf, size, &n) < 0;
    if (*bad_b64)
        return NULL;
    json_t *json = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
    if (json && !json_is_object(json)) {
        json_decref(json);
        return NULL;
    }
    return json;
}

/* A string member equal to exactly `want` (no NUL, no case games). */
static bool s_str_is(json_t *obj, const char *name, const char *want)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) && json_string_length(v) == strlen(want) &&
           strcmp(json_string_value(v), want) == 0;
}

static int s_check_header(const ain_jwt_t *self, ain_jwt_typ_t typ, const s_parts_t *p,
                          const s_key_t **key)
{
    char buf[S_HEADER_MAX];
    bool bad_b64;
    json_t *h = s_part_json(p->header, p->header_len, buf, sizeof buf, &bad_b64);
    if (!h)
        return bad_b64 ? AIN_JWT_E_MALFORMED : AIN_JWT_E_HEADER;
    /* alg, typ and kid, nothing else (crit, jku, jwk, x5u, b64... are not ours to honour) */
    size_t known = (json_object_get(h, "alg") != NULL) + (json_object_get(h, "typ") != NULL) +
                   (json_object_get(h, "kid") != NULL);
    int rc = json_object_size(h) == known ? AIN_JWT_OK : AIN_JWT_E_HEADER;
    if (rc == AIN_JWT_OK && !s_str_is(h, "alg", "HS256"))
        rc = AIN_JWT_E_ALG;
    if (rc == AIN_JWT_OK && !s_str_is(h, "typ", "JWT"))
        rc = AIN_JWT_E_HEADER;
    *key = NULL;
    for (int i = 0; rc == AIN_JWT_OK && i < 2; i++) {
        const s_key_t *k = &self->keys[typ][i];
        if (k->secret && s_str_is(h, "kid", k->kid))
            *key = k;
    }
    if (rc == AIN_JWT_OK && !*key)
        rc = AIN_JWT_E_KEY;
    json_decref(h);
    return rc;
}

static int s_check_signature(const s_key_t *key, const char *token, const s_parts_t *p)
{
    uint8_t sig[AIN_CRYPTO_SHA256_LEN], mac[AIN_CRYPTO_SHA256_LEN];
    size_t n = 0;
    if (p->sig_len != S_SIG_LEN ||
        ain_crypto_b64url_decode(p->sig, p->sig_len, sig, sizeof sig, &n) < 0)
        return AIN_JWT_E_MALFORMED;
    if (ain_crypto_hmac_sha256(key->secret, key->len, token, p->signed_len, mac) < 0 ||
        !ain_crypto_equal(sig, mac, sizeof mac))
        return AIN_JWT_E_SIGNATURE;
    return AIN_JWT_OK;
}

/* A decimal string of a non-zero uint64, canonical (no sign, no leading zero, no overflow). */
static bool s_get_id(json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    if (!json_is_string(v) || n == 0 || n > 20 || n != json_string_length(v) || s[0] == '0')
        return false;
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || value > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        value = value * 10 + (uint64_t)(s[i] - '0');
    }
    *out = value;
    return true;
}

/* A non-negative integer (a JSON real such as 1.7e9 is not one). */
static bool s_get_time(json_t *obj, const char *name, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* Index of the string member `name` in `names` (entries 1..count-1), or 0. */
static int s_get_enum(json_t *obj, const char *name, const char *const *names, int count)
{
    for (int i = 1; i < count; i++)
        if (s_str_is(obj, name, names[i]))
            return i;
    return 0;
}

static int s_check_claims(const ain_jwt_t *self, json_t *pl, ain_jwt_typ_t typ, int64_t now,
                          ain_jwt_claims_t *c)
{
    json_t *jti = json_object_get(pl, "jti"), *nbf = json_object_get(pl, "nbf");
    int64_t not_before = 0;
    c->typ = (ain_jwt_typ_t)s_get_enum(pl, "typ", s_typ_names, 3);
    c->role = (ain_jwt_role_t)s_get_enum(pl, "role", s_role_names, 3);
    if (!c->typ || !c->role || !s_get_id(pl, "sub", &c->user) ||
        !s_get_id(pl, "sid", &c->session) || !s_get_time(pl, "iat", &c->iat) ||
        !s_get_time(pl, "exp", &c->exp) || c->exp <= c->iat || !json_is_string(jti) ||
        json_string_length(jti) > AIN_JWT_JTI_MAX || (nbf && !s_get_time(pl, "nbf", &not_before)))
        return AIN_JWT_E_CLAIMS;
    memcpy(c->jti, json_string_value(jti), json_string_length(jti) + 1);
    if (!s_jti_valid(c->jti))
        return AIN_JWT_E_CLAIMS;
    if (c->typ != typ)
        return AIN_JWT_E_TYP;
    if (now - self->leeway >= c->exp)
        return AIN_JWT_E_EXPIRED;
    if (c->iat > now + self->leeway || not_before > now + self->leeway)
        return AIN_JWT_E_NOT_YET;
    return AIN_JWT_OK;
}

int ain_jwt_verify(const ain_jwt_t *self, const char *token, size_t len, ain_jwt_typ_t typ,
                   int64_t now_s, ain_jwt_claims_t *claims)
{
    if (len > AIN_JWT_MAX_LEN)
        return AIN_JWT_E_TOO_LONG;
    s_parts_t p;
    const s_key_t *key = NULL;
    if (!token || !s_typ_valid((int)typ) || s_split(token, len, &p) < 0)
        return AIN_JWT_E_MALFORMED; /* no token at all (a missing cookie) is malformed too */
    int rc = s_check_header(self, typ, &p, &key);
    if (rc == AIN_JWT_OK)
        rc = s_check_signature(key, token, &p);
    if (rc != AIN_JWT_OK)
        return rc;
    char buf[AIN_JWT_MAX_LEN / 4 * 3];
    bool bad_b64;
    json_t *pl = s_part_json(p.payload, p.payload_len, buf, sizeof buf, &bad_b64);
    if (!pl)
        return bad_b64 ? AIN_JWT_E_MALFORMED : AIN_JWT_E_CLAIMS;
    ain_jwt_claims_t c;
    rc = s_check_claims(self, pl, typ, now_s, &c);
    json_decref(pl);
    if (rc == AIN_JWT_OK)
        *claims = c;
    return rc;
}

const char *ain_jwt_strerror(int err)
{
    static const char *names[AIN_JWT_ERR_COUNT] = {
        "ok",        "too_long",    "malformed",     "bad_header",
        "bad_alg",   "unknown_key", "bad_signature", "bad_claims",
        "wrong_typ", "expired",     "not_yet_valid"};
    return err <= 0 && err > -AIN_JWT_ERR_COUNT ? names[-err] : "unknown";
}

/* ---------------------------------------------------------------- selftest */

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "jwt: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

#define S_ACCESS  "ainbox-selftest-access-secret-0123456789"
#define S_REFRESH "ainbox-selftest-refresh-secret-0123456789"
#define S_NOW     1700000100
#define S_JTI     "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
/* Computed independently (Python's hmac, hashlib and base64) from the claims of s_test_kat. */
#define S_KAT_TOKEN                                                                                \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImtTZUVzdnMwIn0."                                 \
    "eyJzdWIiOiI0MiIsInNpZCI6IjciLCJyb2xlIjoidXNlciIsInR5cCI6ImFjY2VzcyIsImlhdCI6MTcwMDAwMDAwMCwi" \
    "ZXhwIjoxNzAwMDAwOTAwLCJqdGkiOiJkQmpmdEplWjRDVlAtbUI5MksyN3VoYlVKVTFwMXJfd1cxZ0ZXRk9FalhrIn0." \
    "T4YbYIED5tf6VJf44ghj3bDgJVSv34Fy8Sb-ecDJzjA"

/* A correctly signed token over any header and payload text: what an attacker who had the key,
 * or a buggy issuer, could produce; it lets the tests reach every check after the signature. */
static int s_forge(const char *secret, const char *header, const char *payload, char *out,
                   size_t size)
{
    size_t at = 0;
    uint8_t mac[AIN_CRYPTO_SHA256_LEN];
    if (s_append_b64(header, strlen(header), out, size, &at) < 0 || at + 1 >= size)
        return -1;
    out[at++] = '.';
    if (s_append_b64(payload, strlen(payload), out, size, &at) < 0 || at + 1 >= size ||
        ain_crypto_hmac_sha256(secret, strlen(secret), out, at, mac) < 0)
        return -1;
    out[at++] = '.';
    return s_append_b64(mac, sizeof mac, out, size, &at);
}

static ain_jwt_t *s_issuer(void)
{
    ain_jwt_t *jwt = ain_jwt_new(30);
    if (ain_jwt_add_key(jwt, AIN_JWT_ACCESS, S_ACCESS, strlen(S_ACCESS), true) < 0 ||
        ain_jwt_add_key(jwt, AIN_JWT_REFRESH, S_REFRESH, strlen(S_REFRESH), true) < 0)
        ain_jwt_destroy(&jwt);
    return jwt;
}

static int s_verify(const ain_jwt_t *jwt, const char *token, ain_jwt_claims_t *c)
{
    return ain_jwt_verify(jwt, token, strlen(token), AIN_JWT_ACCESS, S_NOW, c);
}

/* Our own known answer, and RFC 7515 appendix A.1's HS256 example through our signature check. */
static int s_test_kat(const ain_jwt_t *jwt)
{
    ain_jwt_claims_t c = {AIN_JWT_ACCESS, 42, 7, AIN_JWT_ROLE_USER, 1700000000, 1700000900, S_JTI};
    ain_jwt_claims_t got;
    char token[AIN_JWT_MAX_LEN];
    S_CHECK(ain_jwt_sign(jwt, &c, token, sizeof token) == 0);
    S_CHECK(strcmp(token, S_KAT_TOKEN) == 0);
    S_CHECK(s_verify(jwt, token, &got) == AIN_JWT_OK);
    S_CHECK(got.user == 42 && got.session == 7 && got.role == AIN_JWT_ROLE_USER &&
            got.typ == AIN_JWT_ACCESS && got.iat == c.iat && got.exp == c.exp &&
            strcmp(got.jti, S_JTI) == 0);
    S_CHECK(ain_jwt_sign(jwt, &c, token, strlen(S_KAT_TOKEN)) < 0); /* no room for the NUL */

    static const char *rfc =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
        "LmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const char *rfc_k =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4h"
        "cgUuTwjAzZr1Z9CAow";
    uint8_t key[64];
    size_t key_len = 0;
    S_CHECK(ain_crypto_b64url_decode(rfc_k, strlen(rfc_k), key, sizeof key, &key_len) == 0);
    s_key_t k = {key, key_len, ""};
    s_parts_t p;
    S_CHECK(s_split(rfc, strlen(rfc), &p) == 0 && s_check_signature(&k, rfc, &p) == AIN_JWT_OK);
    key[0] ^= 1;
    S_CHECK(s_check_signature(&k, rfc, &p) == AIN_JWT_E_SIGNATURE);
    key[0] ^= 1;
    /* Correctly signed, but not ours: no kid, no claims of ours. */
    ain_jwt_t *foreign = ain_jwt_new(0);
    S_CHECK(ain_jwt_add_key(foreign, AIN_JWT_ACCESS, key, key_len, true) == 0);
    int rc = ain_jwt_verify(foreign, rfc, strlen(rfc), AIN_JWT_ACCESS, 1300819000, &got);
    ain_jwt_destroy(&foreign);
    S_CHECK(rc == AIN_JWT_E_KEY);
    return 0;
}

#define S_KID   "\"kid\":\"kSeEsvs0\"" /* S_ACCESS's, as the known answer shows */
#define S_CLAIM "\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\",\"jti\":\"abc\""
#define S_TIMES "\"iat\":1700000000,\"exp\":1700000900"

static int s_expect(const ain_jwt_t *jwt, const char *secret, const char *header,
                    const char *payload, int want)
{
    char token[AIN_JWT_MAX_LEN + 1];
    ain_jwt_claims_t c;
    if (s_forge(secret, header, payload, token, sizeof token) < 0)
        return -1;
    int got = s_verify(jwt, token, &c);
    if (got != want)
        fprintf(stderr, "jwt: header %s payload %s: got %s, expected %s\n", header, payload,
                ain_jwt_strerror(got), ain_jwt_strerror(want));
    return got == want ? 0 : -1;
}

static int s_test_headers(const ain_jwt_t *jwt)
{
    static const struct {
        const char *header;
        int want;
    } cases[] = {
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_OK},
        {"{\"kid\":\"kSeEsvs0\",\"typ\":\"JWT\",\"alg\":\"HS256\"} ", AIN_JWT_OK},
        {"{\"alg\":\"none\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"None\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"hs256\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"HS256 \",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"HS384\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"RS256\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":null,\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":[\"HS256\"],\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_ALG},
        {"{\"alg\":\"HS256\\u0000\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"none\",\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID "}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID ",\"crit\":[\"exp\"]}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID ",\"jku\":\"https://x/\"}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID ",\"jwk\":{}}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID ",\"b64\":false}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID ",\"ALG\":\"HS256\"}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"," S_KID "}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"jwt\"," S_KID "}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\"," S_KID "}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"AAAAAAAA\"}", AIN_JWT_E_KEY},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":5}", AIN_JWT_E_KEY},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", AIN_JWT_E_KEY},
        {"[\"HS256\"]", AIN_JWT_E_HEADER},
        {"null", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID "}x", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID "}{}", AIN_JWT_E_HEADER},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID, AIN_JWT_E_HEADER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        S_CHECK(s_expect(jwt, S_ACCESS, cases[i].header, "{" S_CLAIM "," S_TIMES "}",
                         cases[i].want) == 0);
    return 0;
}

#define S_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"," S_KID "}"
#define S_IDS    "\"role\":\"user\",\"typ\":\"access\",\"jti\":\"abc\"," S_TIMES

static int s_test_claims(const ain_jwt_t *jwt)
{
    static const struct {
        const char *payload;
        int want;
    } cases[] = {
        {"{" S_CLAIM "," S_TIMES ",\"email\":\"a@b\",\"aud\":5}", AIN_JWT_OK},
        {"{" S_CLAIM "," S_TIMES ",\"sub\":\"42\"}", AIN_JWT_E_CLAIMS},
        {"{\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":42,\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"042\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"0\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"-1\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"+1\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"1 \",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"18446744073709551615\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_OK},
        {"{\"sub\":\"18446744073709551616\",\"sid\":\"7\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"0\"," S_IDS "}", AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"root\",\"typ\":\"access\",\"jti\":\"a\"," S_TIMES
         "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"User\",\"typ\":\"access\",\"jti\":\"a\"," S_TIMES
         "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"admin\",\"typ\":\"refresh\",\"jti\":"
         "\"a\"," S_TIMES "}",
         AIN_JWT_E_TYP},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"admin\",\"typ\":\"Access\",\"jti\":"
         "\"a\"," S_TIMES "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\"," S_TIMES "}",
         AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":1700000000}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"exp\":1700000900}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":1700000000,\"exp\":1.7000009e9}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":1700000000,\"exp\":\"1700000900\"}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":-1,\"exp\":1700000900}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":1700000900,\"exp\":1700000900}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM ",\"iat\":1700000000,\"exp\":99999999999999999999999}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM "," S_TIMES ",\"nbf\":\"now\"}", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM "," S_TIMES ",\"nbf\":1700000131}", AIN_JWT_E_NOT_YET},
        {"{" S_CLAIM "," S_TIMES ",\"nbf\":1700000130}", AIN_JWT_OK},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\",\"jti\":\"\"," S_TIMES
         "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\",\"jti\":\"a/"
         "b\"," S_TIMES "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\",\"jti\":5," S_TIMES
         "}",
         AIN_JWT_E_CLAIMS},
        {"{\"sub\":\"42\",\"sid\":\"7\",\"role\":\"user\",\"typ\":\"access\",\"jti\":\"" S_JTI S_JTI
         "\"," S_TIMES "}",
         AIN_JWT_E_CLAIMS},
        /* exp at the edge of the leeway (now 1700000100, leeway 30), iat in the future */
        {"{" S_CLAIM ",\"iat\":1700000000,\"exp\":1700000071}", AIN_JWT_OK},
        {"{" S_CLAIM ",\"iat\":1700000000,\"exp\":1700000070}", AIN_JWT_E_EXPIRED},
        {"{" S_CLAIM ",\"iat\":1700000130,\"exp\":1700000900}", AIN_JWT_OK},
        {"{" S_CLAIM ",\"iat\":1700000131,\"exp\":1700000900}", AIN_JWT_E_NOT_YET},
        {"[1]", AIN_JWT_E_CLAIMS},
        {"{" S_CLAIM, AIN_JWT_E_CLAIMS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        S_CHECK(s_expect(jwt, S_ACCESS, S_HEADER, cases[i].payload, cases[i].want) == 0);
    return 0;
}

/* Shapes, sizes, and every change to a good token. */
static int s_test_structure(const ain_jwt_t *jwt)
{
    static const char *bad[] = {"",
                                ".",
                                "..",
                                "a.b",
                                "a.b.c.d",
                                "a..c",
                                S_KAT_TOKEN "=",
                                S_KAT_TOKEN ".",
                                " " S_KAT_TOKEN,
                                S_KAT_TOKEN "A"};
    ain_jwt_claims_t c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        S_CHECK(s_verify(jwt, bad[i], &c) == AIN_JWT_E_MALFORMED);
    /* alg none, unsigned: an empty third part is malformed before anything else. */
    char token[AIN_JWT_MAX_LEN + 2];
    S_CHECK(s_forge(S_ACCESS, "{\"alg\":\"none\"}", "{" S_CLAIM "," S_TIMES "}", token,
                    sizeof token) == 0);
    *strrchr(token, '.') = '\0';
    strcat(token, ".");
    S_CHECK(s_verify(jwt, token, &c) == AIN_JWT_E_MALFORMED);
    S_CHECK(ain_jwt_verify(jwt, NULL, 0, AIN_JWT_ACCESS, S_NOW, &c) == AIN_JWT_E_MALFORMED);
    memset(token, 'a', sizeof token);
    token[AIN_JWT_MAX_LEN + 1] = '\0';
    S_CHECK(s_verify(jwt, token, &c) == AIN_JWT_E_TOO_LONG);
    token[AIN_JWT_MAX_LEN] = '\0';
    S_CHECK(s_verify(jwt, token, &c) == AIN_JWT_E_MALFORMED);

    char copy[sizeof S_KAT_TOKEN];
    size_t len = strlen(S_KAT_TOKEN);
    S_CHECK(s_verify(jwt, S_KAT_TOKEN, &c) == AIN_JWT_OK);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, S_KAT_TOKEN, sizeof copy);
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        S_CHECK(s_verify(jwt, copy, &c) != AIN_JWT_OK);
        S_CHECK(ain_jwt_verify(jwt, S_KAT_TOKEN, i, AIN_JWT_ACCESS, S_NOW, &c) != AIN_JWT_OK);
    }
    return 0;
}

/* Kinds kept apart; secrets rotated without a flag day. */
static int s_test_keys(const ain_jwt_t *jwt)
{
    ain_jwt_claims_t c, got;
    char token[AIN_JWT_MAX_LEN];
    S_CHECK(ain_jwt_claims_init(&c, AIN_JWT_REFRESH, 42, 7, AIN_JWT_ROLE_ADMIN, S_NOW, 86400) == 0);
    S_CHECK(strlen(c.jti) == AIN_CRYPTO_TOKEN_LEN && c.exp == S_NOW + 86400);
    S_CHECK(ain_jwt_sign(jwt, &c, token, sizeof token) == 0);
    S_CHECK(ain_jwt_verify(jwt, token, strlen(token), AIN_JWT_REFRESH, S_NOW, &got) == AIN_JWT_OK);
    S_CHECK(got.role == AIN_JWT_ROLE_ADMIN && strcmp(got.jti, c.jti) == 0);
    S_CHECK(s_verify(jwt, token, &got) == AIN_JWT_E_KEY); /* a refresh token is no access token */
    S_CHECK(s_expect(jwt, S_REFRESH, S_HEADER, "{" S_CLAIM "," S_TIMES "}", AIN_JWT_E_SIGNATURE) ==
            0);

    /* Rotation: the new secret signs, the old one still verifies; without it, refused. */
    ain_jwt_t *rotated = ain_jwt_new(30);
    const char *fresh = "ainbox-selftest-access-secret-rotated-42";
    S_CHECK(ain_jwt_add_key(rotated, AIN_JWT_ACCESS, fresh, strlen(fresh), true) == 0);
    S_CHECK(ain_jwt_add_key(rotated, AIN_JWT_ACCESS, S_ACCESS, strlen(S_ACCESS), false) == 0);
    int old_ok = s_verify(rotated, S_KAT_TOKEN, &got);
    S_CHECK(ain_jwt_claims_init(&c, AIN_JWT_ACCESS, 42, 7, AIN_JWT_ROLE_USER, S_NOW, 900) == 0);
    int signed_ok = ain_jwt_sign(rotated, &c, token, sizeof token);
    int new_ok = s_verify(rotated, token, &got), new_at_old = s_verify(jwt, token, &got);
    /* Refused: a short secret, a taken slot, one secret for two kinds. */
    int refused =
        ain_jwt_add_key(rotated, AIN_JWT_REFRESH, "short", 5, true) < 0 &&
        ain_jwt_add_key(rotated, AIN_JWT_ACCESS, S_REFRESH, strlen(S_REFRESH), true) < 0 &&
        ain_jwt_add_key(rotated, AIN_JWT_REFRESH, fresh, strlen(fresh), true) < 0;
    ain_jwt_destroy(&rotated);
    ain_jwt_destroy(&rotated);
    S_CHECK(old_ok == AIN_JWT_OK && signed_ok == 0 && new_ok == AIN_JWT_OK &&
            new_at_old == AIN_JWT_E_KEY && refused);

    S_CHECK(ain_jwt_claims_init(&c, AIN_JWT_ACCESS, 0, 7, AIN_JWT_ROLE_USER, S_NOW, 900) < 0);
    S_CHECK(ain_jwt_claims_init(&c, AIN_JWT_ACCESS, 1, 7, AIN_JWT_ROLE_USER, S_NOW, 0) < 0);
    S_CHECK(ain_jwt_claims_init(&c, (ain_jwt_typ_t)3, 1, 7, AIN_JWT_ROLE_USER, S_NOW, 9) < 0);
    S_CHECK(ain_jwt_claims_init(&c, AIN_JWT_ACCESS, 1, 7, (ain_jwt_role_t)0, S_NOW, 9) < 0);
    S_CHECK(strcmp(ain_jwt_strerror(AIN_JWT_E_NOT_YET), "not_yet_valid") == 0 &&
            strcmp(ain_jwt_strerror(1), "unknown") == 0 &&
            strcmp(ain_jwt_strerror(-11), "unknown") == 0);
    return 0;
}

static int s_test_config(void)
{
    char *err = NULL;
    ain_config_t *cfg = ain_config_defaults();
    ain_jwt_t *jwt = ain_jwt_from_config(cfg, &err);
    ain_config_destroy(&cfg);
    S_CHECK(!jwt && err && strstr(err, "JWT_ACCESS_SECRET"));
    free(err);
    err = NULL;
    char *const short_env[] = {"JWT_ACCESS_SECRET=" S_ACCESS, "JWT_REFRESH_SECRET=short", NULL};
    S_CHECK((cfg = ain_config_load(short_env, "", NULL, &err)) != NULL);
    jwt = ain_jwt_from_config(cfg, &err);
    ain_config_destroy(&cfg);
    S_CHECK(!jwt && err && strstr(err, "JWT_REFRESH_SECRET") && !strstr(err, "short"));
    free(err);
    err = NULL;
    char *const env[] = {"JWT_ACCESS_SECRET=ainbox-selftest-access-secret-rotated-42",
                         "AINBOX_JWT_ACCESS_SECRET_OLD=" S_ACCESS, "JWT_REFRESH_SECRET=" S_REFRESH,
                         "AINBOX_JWT_LEEWAY_S=0", NULL};
    S_CHECK((cfg = ain_config_load(env, "", NULL, &err)) != NULL);
    jwt = ain_jwt_from_config(cfg, &err);
    ain_config_destroy(&cfg);
    S_CHECK(jwt);
    ain_jwt_claims_t c;
    int ok = s_verify(jwt, S_KAT_TOKEN, &c);
    int late = ain_jwt_verify(jwt, S_KAT_TOKEN, strlen(S_KAT_TOKEN), AIN_JWT_ACCESS, 1700000900,
                              &c); /* no leeway */
    ain_jwt_destroy(&jwt);
    S_CHECK(ok == AIN_JWT_OK && late == AIN_JWT_E_EXPIRED);
    return 0;
}

int ain_jwt_test(bool verbose)
{
    ain_jwt_t *jwt = s_issuer();
    int rc = !jwt || s_test_kat(jwt) || s_test_headers(jwt) || s_test_claims(jwt) ||
             s_test_structure(jwt) || s_test_keys(jwt) || s_test_config();
    ain_jwt_destroy(&jwt);
    if (rc)
        return -1;
    if (verbose)
        printf("jwt: known answers (ours, RFC 7515 A.1), header, claim and shape refusals, "
               "every byte changed, typ separation, rotation, settings\n");
    return 0;
}
