/* queries.c: the jobs actor's SQL (see queries.h). */
#include "actors/jobs/queries.h"

const char *const AIN_Q_JOBS_ENQUEUE =
    "select n, id, created from ain_jobs_enqueue($1::jsonb, $2::int)";

const char *const AIN_Q_JOBS_CLAIM =
    "select * from ain_jobs_claim($1, $2::int, $3::int, $4::int, $5::int)";

const char *const AIN_Q_JOBS_FINISH = "select id, outcome from ain_jobs_finish($1::jsonb, $2::int)";

const char *const AIN_Q_JOBS_NEXT = "select ain_jobs_next($1::smallint[])";

const char *const AIN_Q_JOBS_STATS =
    "select count(*) filter (where state = 'pending' and priority = 0 and run_at <= now()),"
    " count(*) filter (where state = 'pending' and priority = 1 and run_at <= now()),"
    " count(*) filter (where state = 'pending' and priority = 2 and run_at <= now()),"
    " count(*) filter (where state = 'running'),"
    " count(*) filter (where state = 'pending' and run_at > now()),"
    " coalesce((extract(epoch from now() - min(run_at) filter (where state = 'pending'"
    "   and run_at <= now())) * 1000)::bigint, 0),"
    " (select count(*) from jobs_dead)"
    " from jobs";

const char *const AIN_Q_JOBS_DLQ_LIST =
    "select (select count(*) from jobs_dead), id, kind, service, user_id, account_id, priority,"
    " unique_key, payload::text, attempts, max_attempts, last_error,"
    " (extract(epoch from created_at) * 1000)::bigint, (extract(epoch from failed_at) * "
    "1000)::bigint"
    " from jobs_dead order by failed_at desc, id desc limit $1::int";

const char *const AIN_Q_JOBS_DLQ_RETRY =
    "select retried, merged from ain_jobs_dlq_retry($1::bigint)";

const char *const AIN_Q_JOBS_DLQ_PURGE =
    "with d as (delete from jobs_dead where $1::bigint is null or id = $1::bigint returning 1)"
    " select count(*) from d";
