/* oauth.c: PKCE verifiers and challenges, and stateless signed OAuth states. */
#include "runtime/oauth.h"

#include <stdio.h>
#include <string.h>

#define S_STATE_VERSION 1
#define S_STATE_HEAD    10 /* version, provider, expiry */
#define S_STATE_BYTES   (S_STATE_HEAD + AIN_CRYPTO_SHA256_LEN)

int ain_oauth_verifier_new(char out[AIN_OAUTH_VERIFIER_LEN + 1])
{
    return ain_crypto_token_new(out); /* the same shape: 32 random bytes, 43 characters */
}

bool ain_oauth_verifier_valid(const char *text, size_t len)
{
    static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-._~";
    if (len < AIN_OAUTH_VERIFIER_MIN || len > AIN_OAUTH_VERIFIER_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\0' || !strchr(unreserved, text[i]))
            return false;
    return true;
}

int ain_oauth_challenge(const char *verifier, size_t len, char out[AIN_OAUTH_CHALLENGE_LEN + 1])
{
    uint8_t hash[AIN_CRYPTO_SHA256_LEN];
    if (!ain_oauth_verifier_valid(verifier, len) || ain_crypto_sha256(verifier, len, hash) < 0)
        return -1;
    return ain_crypto_b64url_encode(hash, sizeof hash, out, AIN_OAUTH_CHALLENGE_LEN + 1);
}

static bool s_provider_valid(int provider)
{
    return provider == AIN_OAUTH_GOOGLE || provider == AIN_OAUTH_MICROSOFT;
}

/* HMAC over label | 0 | head | binding: fixed-length parts first, so the split is unambiguous. */
static int s_state_mac(const uint8_t key[AIN_CRYPTO_KEY_LEN], const uint8_t head[S_STATE_HEAD],
                       const char *binding, size_t binding_len, uint8_t mac[AIN_CRYPTO_SHA256_LEN])
{
    uint8_t input[sizeof AIN_OAUTH_STATE_LABEL + S_STATE_HEAD + AIN_OAUTH_BINDING_MAX];
    size_t n = sizeof AIN_OAUTH_STATE_LABEL; /* with its NUL as the separator */
    memcpy(input, AIN_OAUTH_STATE_LABEL, n);
    memcpy(input + n, head, S_STATE_HEAD);
    memcpy(input + n + S_STATE_HEAD, binding, binding_len);
    n += S_STATE_HEAD + binding_len;
    int rc = ain_crypto_hmac_sha256(key, AIN_CRYPTO_KEY_LEN, input, n, mac);
    ain_crypto_wipe(input, n);
    return rc;
}

int ain_oauth_state_new(const uint8_t key[AIN_CRYPTO_KEY_LEN], ain_oauth_provider_t provider,
                        const char *binding, size_t binding_len, int64_t expires_s,
                        char out[AIN_OAUTH_STATE_LEN + 1])
{
    if (!s_provider_valid((int)provider) || binding_len < AIN_OAUTH_BINDING_MIN ||
        binding_len > AIN_OAUTH_BINDING_MAX || expires_s < 0)
        return -1;
    uint8_t state[S_STATE_BYTES];
    state[0] = S_STATE_VERSION;
    state[1] = (uint8_t)provider;
    for (int i = 0; i < 8; i++)
        state[2 + i] = (uint8_t)((uint64_t)expires_s >> (56 - 8 * i));
    if (s_state_mac(key, state, binding, binding_len, state + S_STATE_HEAD) < 0)
        return -1;
    return ain_crypto_b64url_encode(state, sizeof state, out, AIN_OAUTH_STATE_LEN + 1);
}

int ain_oauth_state_check(const uint8_t key[AIN_CRYPTO_KEY_LEN], const char *state, size_t len,
                          ain_oauth_provider_t provider, const char *binding, size_t binding_len,
                          int64_t now_s, const char **why)
{
    uint8_t bytes[S_STATE_BYTES], mac[AIN_CRYPTO_SHA256_LEN];
    size_t n = 0;
    *why = "malformed";
    if (len != AIN_OAUTH_STATE_LEN ||
        ain_crypto_b64url_decode(state, len, bytes, sizeof bytes, &n) < 0 || n != S_STATE_BYTES ||
        bytes[0] != S_STATE_VERSION)
        return -1;
    *why = "forged or not this browser's";
    if (binding_len < AIN_OAUTH_BINDING_MIN || binding_len > AIN_OAUTH_BINDING_MAX ||
        s_state_mac(key, bytes, binding, binding_len, mac) < 0 ||
        !ain_crypto_equal(mac, bytes + S_STATE_HEAD, sizeof mac))
        return -1;
    *why = "another provider's";
    if (bytes[1] != (uint8_t)provider || !s_provider_valid(bytes[1]))
        return -1;
    uint64_t expires = 0;
    for (int i = 0; i < 8; i++)
        expires = expires << 8 | bytes[2 + i];
    *why = "expired";
    if (expires > INT64_MAX || now_s >= (int64_t)expires)
        return -1;
    *why = NULL;
    return 0;
}

/* ---------------------------------------------------------------- selftest */

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "oauth: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* RFC 7636 appendix B: the octets, their base64url verifier and its S256 challenge. */
static int s_test_pkce(void)
{
    static const uint8_t octets[32] = {116, 24,  223, 180, 151, 153, 224, 37,  79,  250, 96,
                                       125, 216, 173, 187, 186, 22,  212, 37,  77,  105, 214,
                                       191, 240, 91,  88,  5,   88,  83,  132, 141, 121};
    char verifier[AIN_OAUTH_VERIFIER_LEN + 1], challenge[AIN_OAUTH_CHALLENGE_LEN + 1];
    S_CHECK(ain_crypto_b64url_encode(octets, sizeof octets, verifier, sizeof verifier) == 0);
    S_CHECK(strcmp(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == 0);
    S_CHECK(ain_oauth_challenge(verifier, strlen(verifier), challenge) == 0);
    S_CHECK(strcmp(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") == 0);

    char other[AIN_OAUTH_VERIFIER_LEN + 1];
    S_CHECK(ain_oauth_verifier_new(verifier) == 0 && ain_oauth_verifier_new(other) == 0);
    S_CHECK(strlen(verifier) == 43 && strcmp(verifier, other) != 0);
    S_CHECK(ain_oauth_verifier_valid(verifier, strlen(verifier)));
    char long_one[130];
    memset(long_one, '~', sizeof long_one);
    long_one[0] = '.';
    S_CHECK(ain_oauth_verifier_valid(long_one, 128) && !ain_oauth_verifier_valid(long_one, 129));
    S_CHECK(!ain_oauth_verifier_valid(long_one, 42));
    static const char bad[] = {'+', '/', '=', ' ', '%', '\0', '\n'};
    for (size_t i = 0; i < sizeof bad; i++) {
        long_one[5] = bad[i];
        S_CHECK(!ain_oauth_verifier_valid(long_one, 50));
        S_CHECK(ain_oauth_challenge(long_one, 50, challenge) < 0);
    }
    return 0;
}

static int s_test_state(void)
{
    uint8_t key[AIN_CRYPTO_KEY_LEN], other_key[AIN_CRYPTO_KEY_LEN];
    char verifier[AIN_OAUTH_VERIFIER_LEN + 1], other[AIN_OAUTH_VERIFIER_LEN + 1];
    char state[AIN_OAUTH_STATE_LEN + 1], copy[AIN_OAUTH_STATE_LEN + 1];
    const char *why = NULL;
    S_CHECK(ain_crypto_random(key, sizeof key) == 0 && ain_crypto_random(other_key, 32) == 0);
    S_CHECK(ain_oauth_verifier_new(verifier) == 0 && ain_oauth_verifier_new(other) == 0);
    const int64_t now = 1700000000, v = AIN_OAUTH_VERIFIER_LEN;
    S_CHECK(ain_oauth_state_new(key, AIN_OAUTH_GOOGLE, verifier, v, now + 600, state) == 0);
    S_CHECK(strlen(state) == AIN_OAUTH_STATE_LEN);
    S_CHECK(ain_oauth_state_check(key, state, strlen(state), AIN_OAUTH_GOOGLE, verifier, v,
                                  now + 599, &why) == 0);
    S_CHECK(ain_oauth_state_check(key, state, strlen(state), AIN_OAUTH_GOOGLE, verifier, v,
                                  now + 600, &why) < 0 &&
            strcmp(why, "expired") == 0);
    S_CHECK(ain_oauth_state_check(key, state, strlen(state), AIN_OAUTH_MICROSOFT, verifier, v, now,
                                  &why) < 0 &&
            strcmp(why, "another provider's") == 0);
    S_CHECK(ain_oauth_state_check(key, state, strlen(state), AIN_OAUTH_GOOGLE, other, v, now,
                                  &why) < 0 &&
            strcmp(why, "forged or not this browser's") == 0);
    S_CHECK(ain_oauth_state_check(other_key, state, strlen(state), AIN_OAUTH_GOOGLE, verifier, v,
                                  now, &why) < 0);
    S_CHECK(ain_oauth_state_check(key, state, strlen(state), AIN_OAUTH_GOOGLE, verifier, 0, now,
                                  &why) < 0);
    /* Any character changed, any length cut: refused. */
    for (size_t i = 0; i < AIN_OAUTH_STATE_LEN; i++) {
        memcpy(copy, state, sizeof copy);
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        S_CHECK(ain_oauth_state_check(key, copy, strlen(copy), AIN_OAUTH_GOOGLE, verifier, v, now,
                                      &why) < 0);
        S_CHECK(ain_oauth_state_check(key, state, i, AIN_OAUTH_GOOGLE, verifier, v, now, &why) < 0);
    }
    /* Refused at creation: no binding, a short one, an unknown provider. */
    S_CHECK(ain_oauth_state_new(key, AIN_OAUTH_GOOGLE, verifier, 0, now, state) < 0);
    S_CHECK(ain_oauth_state_new(key, AIN_OAUTH_GOOGLE, "short", 5, now, state) < 0);
    S_CHECK(ain_oauth_state_new(key, (ain_oauth_provider_t)3, verifier, v, now, state) < 0);
    return 0;
}

int ain_oauth_test(bool verbose)
{
    if (s_test_pkce() || s_test_state())
        return -1;
    if (verbose)
        printf("oauth: RFC 7636 appendix B, verifiers, signed state (binding, provider, expiry, "
               "tampering)\n");
    return 0;
}
