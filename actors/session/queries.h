/* queries.h: the SQL the session actor runs (deploy/migrations 0001 and 0002).
 *
 * Every query but OPEN takes the user ($1 or $2 as named) and filters on it, so a session id
 * or a token from one user can never reach another user's rows. Parameters are sent as text and
 * cast in the SQL; hashes travel as lowercase hex, times as epoch milliseconds. Static strings,
 * borrowed; nothing to free.
 */
#ifndef AIN_ACTORS_SESSION_QUERIES_H
#define AIN_ACTORS_SESSION_QUERIES_H

/* $1 email, $2 name, $3 picture, $4 refresh hash, $5 user agent, $6 ip, $7 ttl seconds
 *   -> user_id, session_id, role */
extern const char *const AIN_Q_SESSION_OPEN;
/* $1 session, $2 user -> refresh hash, revoked bool, expired bool, role */
extern const char *const AIN_Q_SESSION_FIND;
/* $1 session, $2 user, $3 new hash, $4 ttl seconds, $5 the hash it must still have -> id */
extern const char *const AIN_Q_SESSION_ROTATE;
/* $1 session, $2 user -> id (no row: no such live session) */
extern const char *const AIN_Q_SESSION_REVOKE;
/* $1 user, $2 session (0 = none to check) -> id, email, name, picture, terms_version,
 *   terms_accepted_ms, google, microsoft, session_live */
extern const char *const AIN_Q_SESSION_GET;
/* $1 user, $2 version -> accepted_ms */
extern const char *const AIN_Q_TERMS_ACCEPT;

#endif
