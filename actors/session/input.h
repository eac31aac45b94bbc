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

/* Request fields are read with ain_mp_get_text (proto/body.h); the selftest covers it here. */

int ain_session_input_test(bool verbose);

#endif
