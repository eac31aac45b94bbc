/* policy.h: the jobs actor's decisions, without sockets or a database.
 *
 * What a run's answer does to its job (done, dead, again after a delay,
 * with its attempt counted or not), the retry back-off with jitter, the
 * per-priority pool sizes, and the JSON payloads stored in PostgreSQL
 * packed back into msgpack for JOB_RUN. Everything here is pure and has a
 * selftest (ain_jobs_policy_test).
 */
#ifndef AIN_ACTORS_JOBS_POLICY_H
#define AIN_ACTORS_JOBS_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "proto/status.h"

#define AIN_JOBS_PRIOS     3 /* high, medium, low */
#define AIN_JOBS_POOL_MAX  1000
#define AIN_JOBS_DELAY_MAX (30LL * 24 * 3600 * 1000) /* delay_ms accepted: 30 days */

/* "high" -> 0, "medium" -> 1, "low" -> 2; -1 for anything else. */
int ain_jobs_prio(const char *name, size_t len);
/* 0 -> "high", ... (borrowed; "?" out of range). */
const char *ain_jobs_prio_name(int prio);

/* Parses AINBOX_JOBS_WORKERS ("3/5/2") into out[3]: each 0..AIN_JOBS_POOL_MAX, at least one
 * above 0. Returns 0, or -1 (out unchanged). */
int ain_jobs_pools_parse(const char *text, int out[AIN_JOBS_PRIOS]);

/* The delay before retry number `attempt` (1 = the first run failed): base * 2^(attempt-1),
 * at most max_ms, then jittered to [d/2, d] by `unit` in [0, 1) (a random draw; taken as an
 * argument so the selftest can pin it). "Equal jitter": retries of many jobs that failed
 * together spread out, and none comes sooner than half its step. */
int64_t ain_jobs_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double unit);

typedef enum { AIN_JOBS_DONE, AIN_JOBS_DEAD, AIN_JOBS_AGAIN } ain_jobs_op_t;
typedef enum { AIN_JOBS_KEEP, AIN_JOBS_UNCOUNT, AIN_JOBS_RESET } ain_jobs_count_t;

/* What the worker answered, read from JOB_RUN's reply. */
typedef enum {
    AIN_JOBS_R_DONE,
    AIN_JOBS_R_RETRY,
    AIN_JOBS_R_DELAY,
    AIN_JOBS_R_CONTINUE,
    AIN_JOBS_R_FAIL,
    AIN_JOBS_R_LOST, /* no usable answer: a non-OK status or a malformed body (a retry) */
} ain_jobs_result_t;

/* A run's answer parsed: `status` of the reply and its body (NULL or a msgpack map).
 * Sets *result, *delay_ms (delay; -1 when absent), *payload (continue: the new payload map,
 * borrowed from `body`, or NULL) and error (a short text, always set: the worker's `error`
 * or why the answer was not usable). */
void ain_jobs_read_reply(ain_status_t status, const msgpack_object *body, ain_jobs_result_t *result,
                         int64_t *delay_ms, const msgpack_object **payload, char *error,
                         size_t error_size);

/* The decision for a run. */
typedef struct {
    ain_jobs_op_t op;
    ain_jobs_count_t count;
    int64_t delay_ms;
} ain_jobs_decision_t;

/* Decides what `result` does to a job on its attempt `attempt` (1-based: claims since the last
 * success) of `max_attempts`. backoff_* and `unit` as ain_jobs_backoff_ms; `delay_ms` is the
 * worker's delay for R_DELAY (-1: none given: base_ms). */
ain_jobs_decision_t ain_jobs_decide(ain_jobs_result_t result, int attempt, int max_attempts,
                                    int64_t delay_ms, int64_t base_ms, int64_t max_ms, double unit);

int ain_jobs_policy_test(bool verbose);

#endif
