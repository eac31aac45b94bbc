/* input.h: what the session actor accepts from a request body, checked without I/O.
 *
 * Pure functions, so they carry a selftest: an email address normalised (lowered) or refused,
 * and a bounded text field copied out of a msgpack map or refused.
 */
#ifndef AIN_ACTORS_SESSION_INPUT_H
#define AIN_ACTORS_SESSION_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include <msgpack.h>

/* True if `email` (NUL-terminated, modified in place) is local@domain.tld in printable ASCII
 * without spaces, one '@', a non-empty local part and a dot in the domain; it is then lowered
 * (the users table keys on it). */
bool ain_session_email_norm(char *email);

/* Copies the string under `key` in `map` into out (`size` bytes, NUL-terminated). Returns 0
 * (absent or nil: out = ""), 1 (copied), or -1 (not a string, `size` or longer, or holding a
 * control character or NUL). */
int ain_session_field(const msgpack_object *map, const char *key, char *out, size_t size);

int ain_session_input_test(bool verbose);

#endif
