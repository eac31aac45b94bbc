/* session.h: the session actor (service "session"): the one owner of the users and sessions
 * tables.
 *
 * SESSION_OPEN upserts a user by email and opens a session (the development sign-in route now,
 * the OAuth callbacks later); SESSION_REFRESH rotates a session's refresh token and refuses a
 * stale one as a reuse, revoking the session; SESSION_REVOKE ends a session (logout);
 * SESSION_GET is the user's profile, terms state and linked providers; TERMS_ACCEPT records the
 * terms version the user accepted. It mints the access and refresh tokens (runtime/jwt.h). See
 * actors/session/README.md.
 */
#ifndef AIN_ACTORS_SESSION_H
#define AIN_ACTORS_SESSION_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_session_actor;

#endif
