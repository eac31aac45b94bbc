/* crypto.h: the cryptographic primitives Ainbox uses, all computed by OpenSSL's libcrypto.
 *
 * Random bytes, strict base64url, SHA-256, HMAC-SHA256, HKDF-SHA256, constant-time comparison,
 * opaque random tokens with the hash a database stores, and sealing small secrets at rest
 * (provider refresh tokens) with AES-256-GCM under a keyring that allows key rotation. This file
 * chooses algorithms, sizes and formats and checks its inputs; libcrypto does the arithmetic.
 *
 * Not here: JSON Web Tokens (runtime/jwt.h), OAuth state and PKCE (runtime/oauth.h). Nothing here
 * logs or blocks (except that the first random bytes of a process may wait for the kernel's
 * entropy pool); a failure comes back as -1 (and a static reason where several are possible) for
 * the caller to log once. No error text ever contains a key, a secret or a token.
 *
 * Sealed format, version 1 (self-describing, so keys can be rotated and the algorithm changed):
 *
 *   version (1 byte, = 1) | key id (1 byte, 1..255) | nonce (12 random bytes) | ciphertext | tag
 * (16)
 *
 * AES-256-GCM; the additional authenticated data is the two header bytes followed by the caller's
 * AAD, so neither the key id nor the binding (ain_crypto_account_aad) can be changed unnoticed. The
 * AES key is HKDF-SHA256(master key, info "ainbox/seal/v1"), never the master key itself.
 */
#ifndef AIN_RUNTIME_CRYPTO_H
#define AIN_RUNTIME_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"

#define AIN_CRYPTO_SHA256_LEN 32
#define AIN_CRYPTO_KEY_LEN    32 /* master keys (AINBOX_TOKEN_KEY) and derived keys */

/* ------------------------------------------------------------------ random */

/* Fills `buf` with `len` (at most 1 MiB) cryptographically secure random bytes. Returns 0, or -1
 * if the generator failed (the buffer is then zeroed and must not be used). */
int ain_crypto_random(void *buf, size_t len);

/* --------------------------------------------------------------- base64url */

/* Base64url (RFC 4648 §5) without padding, as JWT, PKCE and our tokens use it. Inputs are bounded:
 * at most AIN_CRYPTO_B64URL_MAX bytes of data. */
#define AIN_CRYPTO_B64URL_MAX    65536
#define AIN_CRYPTO_B64URL_LEN(n) (((size_t)(n)*4 + 2) / 3) /* characters, without the NUL */

/* Encodes `len` bytes into `out` (`size` bytes, at least AIN_CRYPTO_B64URL_LEN(len) + 1) as
 * NUL-terminated text. Returns 0, or -1 if `out` is too small or `len` too large. */
int ain_crypto_b64url_encode(const void *data, size_t len, char *out, size_t size);

/* Decodes `len` characters of `text` into `out` (`size` bytes); the byte count goes to *out_len.
 * Strict: only A-Z a-z 0-9 - _, no padding, no whitespace, no length of the form 4k+1, and the
 * unused low bits of the last character must be zero, so each byte string has exactly one
 * accepted text. Returns 0, or -1 for invalid text or when the result would not fit in `size`
 * (checked before anything is written). */
int ain_crypto_b64url_decode(const char *text, size_t len, void *out, size_t size, size_t *out_len);

/* --------------------------------------------------------------------- hex */

/* Writes `len` bytes as 2 * len lowercase hexadecimal digits and a NUL into `out` (`size` bytes),
 * the text PostgreSQL's decode(..., 'hex') reads (bytea passed as a text parameter). Returns 0,
 * or -1 if `out` is smaller than 2 * len + 1. */
int ain_crypto_hex_encode(const void *data, size_t len, char *out, size_t size);

/* Decodes `len` hexadecimal digits (either case) of `text` into `out` (`size` bytes); the byte
 * count goes to *out_len. Returns 0, or -1 for an odd length, a character that is not a digit,
 * or a result that would not fit (checked before anything is written). */
int ain_crypto_hex_decode(const char *text, size_t len, void *out, size_t size, size_t *out_len);

/* ------------------------------------------------------- hashes and MACs */

/* SHA-256 of `len` bytes into `out`. Returns 0 or -1 (libcrypto failed). */
int ain_crypto_sha256(const void *data, size_t len, uint8_t out[AIN_CRYPTO_SHA256_LEN]);

/* HMAC-SHA256 (RFC 2104) of `len` bytes under a key of `key_len` bytes. Returns 0 or -1. */
int ain_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                           uint8_t out[AIN_CRYPTO_SHA256_LEN]);

/* HKDF-SHA256 (RFC 5869): `out_len` (at most 255 * 32) bytes from input key material, an optional
 * salt (NULL, 0 for none) and `info` (the purpose; NULL, 0 for none). Returns 0 or -1. */
int ain_crypto_hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                    const void *info, size_t info_len, uint8_t *out, size_t out_len);

/* True if the `len` bytes at `a` and `b` are equal; the time taken depends only on `len`. */
bool ain_crypto_equal(const void *a, const void *b, size_t len);

/* Overwrites `len` bytes with zeros in a way the compiler may not remove. */
void ain_crypto_wipe(void *p, size_t len);

/* Wipes the NUL-terminated secret *text_p (a code, a token) and frees it; nulls *text_p. Safe
 * on NULL and twice. */
void ain_crypto_free_secret(char **text_p);

/* ------------------------------------------------------- opaque tokens */

/* An opaque token: 32 random bytes as 43 base64url characters. Refresh tokens (runtime/jwt.h
 * puts one in the `jti` of a refresh JWT) and other bearer secrets; the database stores only
 * ain_crypto_token_hash() of it, so a database dump reveals no usable token. */
#define AIN_CRYPTO_TOKEN_BYTES 32
#define AIN_CRYPTO_TOKEN_LEN   43

/* A fresh token into `out`, NUL-terminated. Returns 0, or -1 if the generator failed. */
int ain_crypto_token_new(char out[AIN_CRYPTO_TOKEN_LEN + 1]);

/* The lookup hash of a token: SHA-256 of its 43 characters. Returns 0, or -1 if `token` is not
 * exactly a token's shape (43 canonical base64url characters), so garbage costs no lookup. */
int ain_crypto_token_hash(const char *token, size_t len, uint8_t hash[AIN_CRYPTO_SHA256_LEN]);

/* ---------------------------------------------------------------- keys */

/* Parses a 32-byte key written as 64 hexadecimal digits, or base64 (standard or url alphabet,
 * 43 characters, or 44 ending in '='). A key whose bytes are all equal (an all-zero
 * placeholder) is refused. Returns 0, or -1 with a static reason in *why. */
int ain_crypto_key_parse(const char *text, uint8_t key[AIN_CRYPTO_KEY_LEN], const char **why);

/* Parses "ID:KEY" (ID 1..255, KEY as above), the items of AINBOX_TOKEN_KEYS_OLD. */
int ain_crypto_key_item_parse(const char *text, unsigned *kid, uint8_t key[AIN_CRYPTO_KEY_LEN],
                              const char **why);

/* ---------------------------------------------------- sealing at rest */

#define AIN_CRYPTO_SEAL_VERSION   1
#define AIN_CRYPTO_SEAL_NONCE_LEN 12
#define AIN_CRYPTO_SEAL_TAG_LEN   16
#define AIN_CRYPTO_SEAL_OVERHEAD  (2 + AIN_CRYPTO_SEAL_NONCE_LEN + AIN_CRYPTO_SEAL_TAG_LEN)
#define AIN_CRYPTO_SEAL_MAX       16384 /* plaintext bytes; provider tokens are a few KiB */
#define AIN_CRYPTO_AAD_MAX        1024

/* Master keys by key id (1..255); one of them is current and seals, all of them open. */
typedef struct _ain_crypto_keyring_t ain_crypto_keyring_t;

/* An empty keyring the caller owns. */
ain_crypto_keyring_t *ain_crypto_keyring_new(void);

/* Adds the master key `key` (copied) under `kid`; `current` makes it the sealing key. Returns 0,
 * or -1 if `kid` is 0 or above 255, already present, or a current key is already set. */
int ain_crypto_keyring_add(ain_crypto_keyring_t *self, unsigned kid,
                           const uint8_t key[AIN_CRYPTO_KEY_LEN], bool current);

/* The keyring of AINBOX_TOKEN_KEY (current, id AINBOX_TOKEN_KEY_ID) and AINBOX_TOKEN_KEYS_OLD
 * (open only). Call it only where tokens are sealed or opened: it is where an unset
 * AINBOX_TOKEN_KEY becomes an error. Returns a keyring the caller owns, or NULL with a message
 * naming the variable in *error (caller frees). */
ain_crypto_keyring_t *ain_crypto_keyring_from_config(const ain_config_t *cfg, char **error);

/* Wipes the keys and frees the keyring; nulls *self_p; safe twice. */
void ain_crypto_keyring_destroy(ain_crypto_keyring_t **self_p);

/* The id of the current (sealing) key, or -1 if there is none. */
int ain_crypto_keyring_current(const ain_crypto_keyring_t *self);

/* A purpose key derived from the current master key: HKDF-SHA256(master, info `label`), e.g. the
 * OAuth state key ("ainbox/oauth-state/v1"). Returns 0, or -1 if there is no current key. */
int ain_crypto_keyring_derive(const ain_crypto_keyring_t *self, const char *label,
                              uint8_t out[AIN_CRYPTO_KEY_LEN]);

/* Seals `len` bytes (at most AIN_CRYPTO_SEAL_MAX) with the current key, a fresh random nonce and
 * `aad` (`aad_len` bytes, at most AIN_CRYPTO_AAD_MAX; NULL, 0 for none) into `out` (`size` bytes,
 * at least len + AIN_CRYPTO_SEAL_OVERHEAD); the sealed length goes to *out_len. Returns 0, or -1
 * if there is no current key, a size is out of bounds, or libcrypto failed. */
int ain_crypto_seal(const ain_crypto_keyring_t *self, const void *plain, size_t len,
                    const void *aad, size_t aad_len, uint8_t *out, size_t size, size_t *out_len);

/* Opens what ain_crypto_seal produced, with the key its key id names and the same `aad`, into
 * `out` (`size` bytes, at least len - AIN_CRYPTO_SEAL_OVERHEAD); the plaintext length goes to
 * *out_len. Returns 0, or -1 with a static reason in *why (truncated, unknown version, unknown key
 * id, too large, or "authentication failed" for a wrong key, wrong AAD or altered bytes); on
 * failure `out` is zeroed, so no unauthenticated plaintext is ever left behind. */
int ain_crypto_open(const ain_crypto_keyring_t *self, const uint8_t *sealed, size_t len,
                    const void *aad, size_t aad_len, uint8_t *out, size_t size, size_t *out_len,
                    const char **why);

/* The key id of a sealed value (for "re-seal everything not under the current key"), or -1 if it
 * is too short or of an unknown version. Does not authenticate anything. */
int ain_crypto_sealed_kid(const uint8_t *sealed, size_t len);

/* The AAD that binds a provider token to its row: "ainbox/account-token/v1:<user>:<provider>:
 * <account>" into `out` (`size` bytes), NUL-terminated. `provider` is a lower-case name
 * ("gmail", "outlook"). Returns the AAD's length, or -1 for an invalid provider or a short
 * buffer. */
int ain_crypto_account_aad(char *out, size_t size, uint64_t user, const char *provider,
                           uint64_t account);

int ain_crypto_test(bool verbose);

#endif
