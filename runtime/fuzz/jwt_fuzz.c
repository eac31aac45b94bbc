/* jwt_fuzz.c: libFuzzer target for what reads sign-in input: the JWT verifier, strict base64url,
 * the OAuth state check and opening sealed tokens.
 *
 * The first byte picks a mode (its value modulo 4), the rest is the input:
 *   0  a token, verified as an access and as a refresh token;
 *   1  "header\npayload": signed here with the verifier's own secret, then verified, so the
 *      fuzzer reaches the header and claims checks that a forged signature never would;
 *   2  text for base64url decoding, the OAuth state check and key parsing;
 *   3  bytes to open as a sealed value.
 * Invariants checked: no crash or sanitizer report; whatever verifies has valid claims and
 * re-signs to a token that verifies to the same claims; whatever base64url-decodes re-encodes to
 * the same text (one spelling per value); nothing forged opens or passes as a state.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/crypto.h"
#include "runtime/jwt.h"
#include "runtime/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_ACCESS  "ainbox-fuzz-access-secret-0123456789abcd"
#define S_REFRESH "ainbox-fuzz-refresh-secret-0123456789abc"
#define S_NOW     1700000100

static ain_jwt_t *s_jwt(void)
{
    static ain_jwt_t *jwt; /* built once, immutable, never freed: the harness's lifetime */
    if (!jwt) {
        jwt = ain_jwt_new(30);
        if (ain_jwt_add_key(jwt, AIN_JWT_ACCESS, S_ACCESS, strlen(S_ACCESS), true) < 0 ||
            ain_jwt_add_key(jwt, AIN_JWT_REFRESH, S_REFRESH, strlen(S_REFRESH), true) < 0)
            abort();
    }
    return jwt;
}

static void s_same_or_die(const ain_jwt_claims_t *a, const ain_jwt_claims_t *b)
{
    if (a->typ != b->typ || a->user != b->user || a->session != b->session || a->role != b->role ||
        a->iat != b->iat || a->exp != b->exp || strcmp(a->jti, b->jti))
        abort();
}

static void s_verify(const char *token, size_t len)
{
    for (int typ = AIN_JWT_ACCESS; typ <= AIN_JWT_REFRESH; typ++) {
        ain_jwt_claims_t c, again;
        char copy[AIN_JWT_MAX_LEN + 1];
        if (ain_jwt_verify(s_jwt(), token, len, (ain_jwt_typ_t)typ, S_NOW, &c) != AIN_JWT_OK)
            continue;
        if ((int)c.typ != typ || !c.user || !c.session || c.exp <= c.iat || !c.jti[0])
            abort();
        if (ain_jwt_sign(s_jwt(), &c, copy, sizeof copy) < 0 ||
            ain_jwt_verify(s_jwt(), copy, strlen(copy), (ain_jwt_typ_t)typ, S_NOW, &again) !=
                AIN_JWT_OK)
            abort();
        s_same_or_die(&c, &again);
    }
}

/* Signs "header\npayload" as the issuer would, then verifies it. */
static void s_forged(const char *text, size_t len)
{
    const char *nl = memchr(text, '\n', len), *payload = nl ? nl + 1 : text + len;
    size_t hl = nl ? (size_t)(nl - text) : len, pl = (size_t)(text + len - payload);
    char token[4 * AIN_JWT_MAX_LEN];
    uint8_t mac[AIN_CRYPTO_SHA256_LEN];
    if (hl > AIN_JWT_MAX_LEN || pl > AIN_JWT_MAX_LEN ||
        ain_crypto_b64url_encode(text, hl, token, sizeof token) < 0)
        return;
    size_t at = strlen(token);
    token[at++] = '.';
    if (ain_crypto_b64url_encode(payload, pl, token + at, sizeof token - at) < 0)
        return;
    at += strlen(token + at);
    if (ain_crypto_hmac_sha256(S_ACCESS, strlen(S_ACCESS), token, at, mac) < 0)
        abort();
    token[at++] = '.';
    if (ain_crypto_b64url_encode(mac, sizeof mac, token + at, sizeof token - at) < 0)
        abort();
    s_verify(token, strlen(token));
}

static void s_text(const char *text, size_t len)
{
    uint8_t out[AIN_CRYPTO_B64URL_MAX], key[AIN_CRYPTO_KEY_LEN] = {1, 2, 3};
    char again[AIN_CRYPTO_B64URL_LEN(AIN_CRYPTO_B64URL_MAX) + 1];
    size_t n = 0;
    if (ain_crypto_b64url_decode(text, len, out, sizeof out, &n) == 0) {
        if (ain_crypto_b64url_encode(out, n, again, sizeof again) < 0 || strlen(again) != len ||
            memcmp(again, text, len) != 0)
            abort();
    }
    const char *why = NULL;
    if (ain_oauth_state_check(key, text, len, AIN_OAUTH_GOOGLE, "fuzz-binding-0123456789", 23,
                              S_NOW, &why) == 0)
        abort(); /* a valid MAC without the key */
    char *z = ain_strndup(text, len < 200 ? len : 200);
    unsigned kid;
    (void)ain_crypto_key_parse(z, key, &why);
    (void)ain_crypto_key_item_parse(z, &kid, key, &why);
    free(z);
}

static void s_open(const uint8_t *data, size_t size)
{
    static ain_crypto_keyring_t *ring;
    if (!ring) {
        uint8_t key[AIN_CRYPTO_KEY_LEN] = {9, 8, 7};
        ring = ain_crypto_keyring_new();
        if (ain_crypto_keyring_add(ring, 1, key, true) < 0)
            abort();
    }
    uint8_t out[AIN_CRYPTO_SEAL_MAX];
    size_t n = 0;
    const char *why = NULL;
    if (ain_crypto_open(ring, data, size, "aad", 3, out, sizeof out, &n, &why) == 0)
        abort(); /* forged without the key */
    (void)ain_crypto_sealed_kid(data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    switch (data[0] % 4) {
    case 0:
        s_verify(text, size - 1);
        break;
    case 1:
        s_forged(text, size - 1);
        break;
    case 2:
        s_text(text, size - 1);
        break;
    default:
        s_open(data + 1, size - 1);
        break;
    }
    return 0;
}
