/* curve.h: CurveZMQ keys, and the client side of CURVE on our sockets.
 *
 * Keys are CZMQ certificate files (zcert, ZPL text): `ainbox keygen`
 * writes NAME.cert (the public key and metadata: what the key may do, for
 * the broker's directory of allowed keys) and NAME.cert_secret (both keys;
 * it stays on the host that uses it). CURVE applies to endpoints that leave
 * the process (tcp://, ipc://); inproc:// never goes through a security
 * handshake, so the single-node bundle's own roles need no keys. The
 * broker's side (ZAP handler, roles) is broker/auth.c.
 *
 * Nothing here logs or returns key material in an error text.
 */
#ifndef AIN_RUNTIME_CURVE_H
#define AIN_RUNTIME_CURVE_H

#include <stdbool.h>

#include "runtime/config.h"

/* A Z85 key: 40 characters and a terminating NUL. */
#define AIN_CURVE_KEY_TXT 41

/* True if `endpoint` leaves the process (tcp://, ipc://). */
bool ain_curve_applies(const char *endpoint);

/* Loads the key pair of the certificate at `path` (NAME.cert_secret, or
 * NAME.cert when NAME.cert_secret sits beside it). Returns 0, or -1 if the
 * file cannot be read or holds no valid secret key. */
int ain_curve_load_secret(const char *path, char public_txt[AIN_CURVE_KEY_TXT],
                          char secret_txt[AIN_CURVE_KEY_TXT]);

/* Reads a public key given as 40 Z85 characters or as the path of a
 * certificate file (public or secret). Returns 0, or -1 if neither. */
int ain_curve_public_key(const char *text, char public_txt[AIN_CURVE_KEY_TXT]);

/* Connects `socket` to `endpoint`, as a CURVE client when CURVE applies to
 * the endpoint and AINBOX_CURVE_SECRET is set (`cfg` may be NULL: no
 * CURVE): this process's key pair from AINBOX_CURVE_SECRET, the broker's
 * public key from AINBOX_CURVE_BROKER_KEY. Returns 0, or -1 with errno set
 * (EINVAL: the keys cannot be read, or the broker's key is not set). May
 * read two small files; does not block otherwise. */
int ain_curve_connect(void *socket, const char *endpoint, const ain_config_t *cfg);

/* Makes `socket` a CURVE server with the key pair at `secret_path`, asking
 * the ZAP handler with `domain`. Call before binding: libzmq copies the
 * options into each endpoint when it is bound. Returns 0 or -1. */
int ain_curve_server(void *socket, const char *secret_path, const char *domain);

/* Writes a new key pair as `dir`/`name`.cert (public, with `meta`: NULL or
 * a NULL-terminated array of name, value pairs) and `dir`/`name`.cert_secret
 * (owner-only permissions). Refuses to overwrite either. Returns 0, or -1
 * with a message in *error (caller frees). */
int ain_curve_keygen(const char *dir, const char *name, const char *const *meta,
                     char public_txt[AIN_CURVE_KEY_TXT], char **error);

int ain_curve_test(bool verbose);

#endif
