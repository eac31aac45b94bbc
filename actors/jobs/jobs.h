/* jobs.h: the jobs actor (service "jobs"): the one owner of the job queue (PostgreSQL jobs,
 * jobs_fair, jobs_dead; deploy/migrations/0004_jobs.sql).
 *
 * JOB_ENQUEUE queues jobs (one or a batch; unique keys, delays, priorities); the actor claims
 * ready jobs in fair order with leases, runs each on its service as JOB_RUN, and records the
 * answer: done, retry (back-off with jitter, then the dead-letter queue), delay, continue, fail.
 * Operators: JOBS_STATS, DLQ_LIST, DLQ_RETRY, DLQ_PURGE. Any number of jobs actors on any hosts
 * share one queue. See actors/jobs/README.md.
 */
#ifndef AIN_ACTORS_JOBS_H
#define AIN_ACTORS_JOBS_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_jobs_actor;

#endif
