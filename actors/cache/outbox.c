/* outbox.c: relays the invalidations of committed writes whose writer
 * never reported them done.
 *
 * Every MAIL_APPLY records what it changed in mail_outbox in its own
 * transaction, and deletes the row once the invalidation ran (apply.c).
 * A row older than AINBOX_CACHE_OUTBOX_AGE_MS means its writer died
 * between commit and invalidation, or Redis was away: every cache actor
 * looks for such rows every S_RELAY_MS, invalidates what they name (L1,
 * L2 and every L1 through the channel, exactly as the writer would have)
 * and deletes them. Two actors relaying one row invalidate twice, which is
 * harmless, so no row is locked. Nothing is relayed while Redis is away:
 * the row waits (the reads meanwhile bypass L2, and L1 runs degraded).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/cache/internal.h"
#include "actors/cache/keys.h"
#include "actors/cache/queries.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_RELAY_MS 2000

typedef struct {
    ain__state_t *st;
    char id[24];
} s_row_t;

static void s_on_deleted(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__state_t *st = arg;
    (void)pg;
    if (!out->result) {
        /* The row stays: a later pass invalidates once more, harmlessly. */
        ain_metric_inc(st->m.outbox_errors);
        ain_debug(st->log, "cache: outbox delete failed: %s", out->error ? out->error : "?");
    }
}

void ain__outbox_done(ain__state_t *st, const char *id)
{
    const char *params[] = {id};
    if (!st->pg_write ||
        ain_pg_query(st->pg_write, 0, AIN_Q_OUTBOX_DONE, 1, params, s_on_deleted, st) < 0)
        ain_metric_inc(st->m.outbox_errors); /* the next relay pass deletes it */
}

static void s_on_relayed(ain__state_t *st, bool ok, void *arg)
{
    s_row_t *row = arg;
    if (ok) {
        ain_metric_inc(st->m.outbox_relayed);
        ain__outbox_done(st, row->id);
    }
    free(row);
}

/* The key prefixes of a row's `changed` ([[kind, ref], ...]) into a new
 * array (*out, the caller's); returns how many, or -1 if unreadable. */
static long s_prefixes(const char *changed, char ***out)
{
    json_t *root = json_loads(changed, 0, NULL);
    if (!json_is_array(root)) {
        json_decref(root);
        return -1;
    }
    size_t n = 0, i;
    json_t *pair;
    char **prefixes = ain_malloc((json_array_size(root) + 1) * sizeof *prefixes);
    json_array_foreach(root, i, pair)
    {
        const char *kind = json_string_value(json_array_get(pair, 0));
        const char *ref = json_string_value(json_array_get(pair, 1));
        char buf[AIN_KEY_MAX];
        if (kind && ref && ain_key_prefix(buf, kind, ref) >= 0)
            prefixes[n++] = ain_strdup(buf);
    }
    json_decref(root);
    *out = prefixes;
    return (long)n;
}

static void s_relay_row(ain__state_t *st, const PGresult *r, int i)
{
    char **prefixes;
    uint64_t user = strtoull(PQgetvalue(r, i, 1), NULL, 10);
    long n = s_prefixes(PQgetvalue(r, i, 2), &prefixes);
    if (n < 0) {
        /* Not written by ain_mail_apply_outboxed: drop every key of the
         * user rather than guess, then the row. */
        ain_metric_inc(st->m.outbox_errors);
        ain_warn(st->log, "cache: outbox row %s is unreadable: all of user %llu's keys go",
                 PQgetvalue(r, i, 0), (unsigned long long)user);
        prefixes = ain_malloc(sizeof *prefixes);
        n = 0;
    }
    s_row_t *row = AIN_NEW(s_row_t);
    row->st = st;
    snprintf(row->id, sizeof row->id, "%s", PQgetvalue(r, i, 0));
    ain_info(st->log, "cache: relaying the invalidation of outbox row %s (user %llu)", row->id,
             (unsigned long long)user);
    ain__invalidate(st, user, prefixes, (size_t)n, s_on_relayed, row);
}

static void s_on_due(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__state_t *st = arg;
    (void)pg;
    st->outbox_busy = false;
    if (!out->result) {
        ain_metric_inc(st->m.outbox_errors);
        ain_debug(st->log, "cache: outbox scan failed: %s", out->error ? out->error : "?");
        return;
    }
    int rows = PQntuples(out->result);
    for (int i = 0; i < rows && ain__l2_up(st); i++)
        s_relay_row(st, out->result, i);
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    ain__state_t *st = arg;
    (void)actor;
    if (st->outbox_busy || !st->pg_write || !ain__l2_up(st))
        return;
    char age[24];
    snprintf(age, sizeof age, "%lld", (long long)st->outbox_age_ms);
    const char *params[] = {age};
    /* On the write pool: a stall of reads must not hold up the relay. */
    if (ain_pg_query(st->pg_write, ain_clock_wall_ms() + S_RELAY_MS, AIN_Q_OUTBOX_DUE, 1, params,
                     s_on_due, st) == 0)
        st->outbox_busy = true;
}

void ain__outbox_start(ain__state_t *st)
{
    ain_actor_timer(st->actor, S_RELAY_MS, true, s_tick, st);
}
