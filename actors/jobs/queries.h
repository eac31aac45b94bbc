/* queries.h: the SQL the jobs actor runs (deploy/migrations/0004_jobs.sql).
 *
 * The queue's logic lives in the migration's functions, so every statement
 * here is one round trip however many jobs it carries; batches travel as one
 * JSON parameter. Static strings, borrowed.
 */
#ifndef AIN_ACTORS_JOBS_QUERIES_H
#define AIN_ACTORS_JOBS_QUERIES_H

/* $1 jobs (JSON array), $2 fair stride ms -> n, id (NULL: ask again), created */
extern const char *const AIN_Q_JOBS_ENQUEUE;
/* $1 owner, $2 lease ms, $3 $4 $5 how many high/medium/low -> id, kind, service, user_id,
 *   account_id, priority, payload (JSON text), attempts, max_attempts, lease_gen, last_error */
extern const char *const AIN_Q_JOBS_CLAIM;
/* $1 outcomes (JSON array), $2 fair stride ms -> id, outcome */
extern const char *const AIN_Q_JOBS_FINISH;
/* $1 priorities ("{0,2}") -> epoch ms of their next pending run_at or the next lease end
 * (NULL: none) */
extern const char *const AIN_Q_JOBS_NEXT;
/* -> high, medium, low (ready), running, delayed, oldest_ms, dead */
extern const char *const AIN_Q_JOBS_STATS;
/* $1 limit -> total, id, kind, service, user_id, account_id, priority, unique_key, payload,
 *   attempts, max_attempts, last_error, created_ms, failed_ms */
extern const char *const AIN_Q_JOBS_DLQ_LIST;
/* $1 id or NULL (all) -> retried, merged */
extern const char *const AIN_Q_JOBS_DLQ_RETRY;
/* $1 id or NULL (all) -> purged */
extern const char *const AIN_Q_JOBS_DLQ_PURGE;

#endif
