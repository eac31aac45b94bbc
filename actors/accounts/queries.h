/* queries.h: the SQL the accounts actor runs (deploy/migrations 0002: accounts).
 *
 * Every query takes the user and filters on it ($1 or $2 as named), so an account id of another
 * user reaches nothing. Sealed tokens travel as lowercase hex (the whole sealed value, nonce and
 * key id included: token_nonce stays NULL, token_key_version repeats the key id for "re-seal what
 * is not under the current key"). Static strings, borrowed.
 */
#ifndef AIN_ACTORS_ACCOUNTS_QUERIES_H
#define AIN_ACTORS_ACCOUNTS_QUERIES_H

/* $1 user, $2 provider (gmail|outlook), $3 address, $4 scopes (NULL keeps them)
 *   -> account id, has a token (bool), the user's terms_version (NULL if none accepted) */
extern const char *const AIN_Q_ACCOUNT_UPSERT;
/* $1 account, $2 user, $3 sealed token (hex), $4 key id -> id */
extern const char *const AIN_Q_ACCOUNT_TOKEN_SET;
/* $1 account, $2 user -> provider, address, sealed token (hex, NULL if none), sync_state */
extern const char *const AIN_Q_ACCOUNT_GET;
/* $1 account, $2 user -> id: the provider refused the refresh token (sync_state 'revoked') */
extern const char *const AIN_Q_ACCOUNT_REVOKED;

#endif
