/* policy.h: the rate-limit policies, declared once as data.
 *
 * A policy is either a rate (GCRA: LIMIT units per WINDOW, of which BURST
 * may be spent at once) or a lease limit (at most LIMIT holders at once,
 * each lease expiring after WINDOW unless released). A rate's emission
 * interval T = ceil(WINDOW / (LIMIT - BURST)) makes BURST + WINDOW / T
 * never exceed LIMIT, so no window of length WINDOW ever admits more than
 * LIMIT units, wherever it starts (../shared/docs/ratelimit-cache-
 * reliability.md section 1.1). Every number is an integer (microseconds,
 * units); values stay below 2^53 so Redis's Lua doubles hold them exactly.
 *
 * The defaults are the providers' published quotas; AINBOX_RATELIMITS
 * overrides any of them ("gmail.user=6000/1m/1200,outlook.concurrent=4/30s").
 */
#ifndef AIN_ACTORS_RATELIMIT_POLICY_H
#define AIN_ACTORS_RATELIMIT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AIN_RL_GMAIL_USER,          /* quota units per Gmail account per minute */
    AIN_RL_GMAIL_USER_REQUESTS, /* the guide's 250 requests per 100 s */
    AIN_RL_GMAIL_PROJECT,       /* units per minute for the whole project */
    AIN_RL_GMAIL_CONCURRENT,    /* requests in flight per Gmail account */
    AIN_RL_OUTLOOK_MAILBOX,     /* Graph requests per mailbox per 10 minutes */
    AIN_RL_OUTLOOK_APP,         /* Graph requests per 10 s for the whole app */
    AIN_RL_OUTLOOK_CONCURRENT,  /* Graph requests in flight per mailbox */
    AIN_RL_API_USER,            /* our own API, per signed-in user per hour */
    AIN_RL_POLICY_COUNT
} ain_rl_policy_id_t;

typedef enum { AIN_RL_RATE, AIN_RL_LEASE } ain_rl_kind_t;

typedef struct {
    const char *name; /* "gmail.user": in keys, metrics and headers */
    ain_rl_kind_t kind;
    const char *unit;     /* "units", "requests", "concurrent-requests" */
    bool per_subject;     /* one bucket per account or user; else one for all */
    int64_t limit;        /* units per window, or leases held at once */
    int64_t window_ms;    /* the window, or a lease's lifetime */
    int64_t burst;        /* units spendable at once (rates only) */
    int64_t emission_us;  /* T: microseconds per unit (rates only) */
    int64_t tolerance_us; /* burst * T (rates only) */
} ain_rl_policy_t;

/* A set of policies: the defaults with the overrides applied. */
typedef struct {
    ain_rl_policy_t p[AIN_RL_POLICY_COUNT];
} ain_rl_policies_t;

/* Gmail's two generations of quotas (provider-apis.md section 1.7): Cloud
 * projects created from 2026-05-01 on get 6,000 units per user per minute
 * and dearer reads (messages.get 20, threads.get 40); older projects keep
 * 15,000 and the old costs. AINBOX_GMAIL_QUOTA chooses; new by default. */
typedef enum { AIN_RL_GMAIL_NEW, AIN_RL_GMAIL_OLD } ain_rl_gmail_gen_t;

/* Fills `out` with the defaults for Gmail generation `gen`, then applies
 * `overrides` (the AINBOX_RATELIMITS syntax; NULL or "" = none). Returns 0,
 * or -1 with a message naming the problem in `why` (a buffer of
 * `why_size`). */
int ain_rl_policies_load(ain_rl_policies_t *out, ain_rl_gmail_gen_t gen, const char *overrides,
                         char *why, size_t why_size);

/* The policy named `name`, or -1. */
int ain_rl_policy_find(const ain_rl_policies_t *set, const char *name, size_t len);

/* Gmail's quota units for API method `method` ("messages.get") in
 * generation `gen`, or -1 if the method is unknown (provider-apis.md
 * section 1.7). */
int ain_rl_gmail_cost(ain_rl_gmail_gen_t gen, const char *method, size_t len);

/* A subject (account address or id) is 1..128 bytes of letters, digits
 * and "@._+-=": safe in a Redis key and in a lease token. */
bool ain_rl_subject_ok(const char *s, size_t len);

int ain_rl_policy_test(bool verbose);

#endif
