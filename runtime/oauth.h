/* oauth.h: the OAuth 2.0 login helpers that need cryptography: PKCE (RFC 7636) and a signed state.
 *
 * The authorization-code login (Google, Microsoft) sends the browser to the provider with a
 * `state` and a PKCE `code_challenge`, and gets it back at the callback with `code` and `state`.
 * Here: making and checking those values, with no server-side storage, so any edge can take the
 * callback. Not here: URLs, HTTP, cookies, the token exchange (the routes' work).
 *
 * Intended use (a sketch for the routes):
 *   login:    v = ain_oauth_verifier_new(); set an httpOnly, Secure, SameSite=Lax cookie holding v
 *             (lifetime = the state's); state = ain_oauth_state_new(key, provider, v, now + 600);
 *             redirect with state and code_challenge = ain_oauth_challenge(v), method S256.
 *   callback: v = the cookie; ain_oauth_state_check(key, state, provider, v, now) must pass
 *             before `code` is used; then exchange `code` with code_verifier = v; clear the cookie.
 * The state's MAC covers the cookie's value without revealing it, so a state is good only in the
 * browser that started the login (login CSRF), only for its provider (mix-up), and only until it
 * expires. The state key is a purpose key: ain_crypto_keyring_derive(ring, AIN_OAUTH_STATE_LABEL).
 *
 * Nothing here logs, allocates or blocks.
 */
#ifndef AIN_RUNTIME_OAUTH_H
#define AIN_RUNTIME_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/crypto.h"

#define AIN_OAUTH_STATE_LABEL   "ainbox/oauth-state/v1"
#define AIN_OAUTH_VERIFIER_LEN  43 /* what we make: 32 random bytes in base64url */
#define AIN_OAUTH_VERIFIER_MIN  43 /* what RFC 7636 §4.1 allows */
#define AIN_OAUTH_VERIFIER_MAX  128
#define AIN_OAUTH_CHALLENGE_LEN 43 /* base64url of a SHA-256 */
#define AIN_OAUTH_STATE_LEN     56 /* base64url of 42 bytes */
#define AIN_OAUTH_BINDING_MIN   16
#define AIN_OAUTH_BINDING_MAX   256

typedef enum { AIN_OAUTH_GOOGLE = 1, AIN_OAUTH_MICROSOFT = 2 } ain_oauth_provider_t;

/* A fresh code_verifier: 43 characters from 32 random bytes (base64url is within RFC 7636's
 * unreserved set). Returns 0, or -1 if the random generator failed. */
int ain_oauth_verifier_new(char out[AIN_OAUTH_VERIFIER_LEN + 1]);

/* True if `text` is a code_verifier RFC 7636 allows: 43..128 of A-Z a-z 0-9 - . _ ~ */
bool ain_oauth_verifier_valid(const char *text, size_t len);

/* The S256 code_challenge of a verifier: base64url(SHA-256(verifier)), NUL-terminated. Returns 0,
 * or -1 if the verifier is not valid. */
int ain_oauth_challenge(const char *verifier, size_t len, char out[AIN_OAUTH_CHALLENGE_LEN + 1]);

/* A state for `provider`, good until `expires_s` (Unix seconds), bound to `binding` (the value of
 * the login cookie, AIN_OAUTH_BINDING_MIN..MAX bytes), MACed with `key`. Format: base64url of
 * version (1) | provider (1) | expiry (8, big-endian) | HMAC-SHA256 (32) over a label, those ten
 * bytes and the binding. Returns 0, or -1 for an invalid provider or binding. */
int ain_oauth_state_new(const uint8_t key[AIN_CRYPTO_KEY_LEN], ain_oauth_provider_t provider,
                        const char *binding, size_t binding_len, int64_t expires_s,
                        char out[AIN_OAUTH_STATE_LEN + 1]);

/* Checks a state from a callback: its MAC (constant time) with `key` and `binding`, that it was
 * made for `provider`, and that `now_s` is before its expiry. Returns 0, or -1 with a static reason
 * in *why ("malformed", "forged or not this browser's", "another provider's", "expired"). */
int ain_oauth_state_check(const uint8_t key[AIN_CRYPTO_KEY_LEN], const char *state, size_t len,
                          ain_oauth_provider_t provider, const char *binding, size_t binding_len,
                          int64_t now_s, const char **why);

int ain_oauth_test(bool verbose);

#endif
