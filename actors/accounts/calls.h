/* calls.h: the accounts actor's calls that block (HTTPS to a provider with libcurl, SESSION_OPEN
 * through the broker), run on a few threads of their own so the actor's loop never waits.
 *
 * The actor fills a job and submits it; a pool thread runs it and hands it back through an
 * eventfd the actor watches, and `done` runs on the actor's thread. The queue is bounded (a
 * full one refuses the job: the actor answers BUSY). Each call's timeout is the smaller of
 * AINBOX_OAUTH_HTTP_TIMEOUT_MS and what is left before the job's deadline, so a job always comes
 * back before its request's deadline. Every string a job holds is the job's; tokens are wiped
 * when it is freed. Nothing here logs a token, a code or a secret.
 */
#ifndef AIN_ACTORS_ACCOUNTS_CALLS_H
#define AIN_ACTORS_ACCOUNTS_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/accounts/parse.h"
#include "proto/status.h"
#include "runtime/actor.h"
#include "runtime/provider.h"

typedef enum {
    AIN__JOB_EXCHANGE = 1, /* code -> tokens -> identity -> SESSION_OPEN */
    AIN__JOB_REFRESH = 2,  /* refresh token -> tokens */
} ain__job_kind_t;

typedef struct ain__job {
    ain__job_kind_t kind;
    const ain_provider_t *provider; /* borrowed from the actor's state */
    int64_t deadline_ms;            /* wall clock: the request's deadline, less a margin */
    /* In. */
    char *code, *verifier, *redirect_uri, *refresh, *user_agent, *ip;
    /* Out: outcome OK, or where it stopped and why (`why` never holds a token). */
    ain_accounts_outcome_t outcome;
    ain_status_t session_status; /* EXCHANGE with outcome OK: SESSION_OPEN's status */
    char why[256];
    ain_accounts_tokens_t tokens;
    ain_accounts_identity_t identity;
    uint8_t *session; /* EXCHANGE: SESSION_OPEN's answer body (msgpack), or its refusal */
    size_t session_len;
    /* The actor's: the request and what it learns on the way. */
    ain_request_t *req;
    void *state;
    uint64_t user, account;
    bool token_stored, terms_required;
    struct ain__job *next;
} ain__job_t;

typedef struct ain__pool ain__pool_t;
typedef void(ain__job_done_fn)(ain__job_t *job, void *arg);

/* A new job of `kind` (zeroed, caller owns until submitted). */
ain__job_t *ain__job_new(ain__job_kind_t kind);
/* Wipes the tokens and frees everything; nulls *job_p; safe twice. */
void ain__job_destroy(ain__job_t **job_p);

/* Starts `threads` threads with room for `queue_max` waiting jobs; `done(job, arg)` runs on the
 * actor's thread for every submitted job. `http_timeout_ms` caps each HTTP call. Returns NULL if
 * the threads or the eventfd cannot be made. */
ain__pool_t *ain__pool_new(ain_actor_t *actor, int threads, size_t queue_max,
                           int64_t http_timeout_ms, ain__job_done_fn *done, void *arg);
/* Takes `job`: 0, or -1 if the queue is full (the job stays the caller's). */
int ain__pool_submit(ain__pool_t *self, ain__job_t *job);
/* Jobs waiting or running. */
size_t ain__pool_pending(const ain__pool_t *self);
/* Stops the threads (a running call ends at its timeout), joins them, and hands every job not
 * yet handed back to `done` (those never run come back UNAVAILABLE). Safe twice. */
void ain__pool_destroy(ain__pool_t **self_p);

#endif
