/* accounts.h: the accounts actor (service "accounts"): the one owner of the accounts table.
 *
 * ACCOUNT_OAUTH_COMPLETE finishes a provider sign-in for the edge: it exchanges the
 * authorization code (with its PKCE verifier) at the provider's token endpoint, reads who signed
 * in, opens a session for them (SESSION_OPEN, through the broker), and links the provider account
 * with its refresh token sealed at rest (AES-256-GCM, bound to the row). ACCOUNT_TOKEN gives the
 * owner's services a fresh provider access token, storing a rotated refresh token. See
 * actors/accounts/README.md.
 */
#ifndef AIN_ACTORS_ACCOUNTS_H
#define AIN_ACTORS_ACCOUNTS_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_accounts_actor;

#endif
