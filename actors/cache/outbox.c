/* outbox.c: a committed write's announcement (invalidation, then user
 * events), and its relay when the writer never finished it.
 *
 * Every MAIL_APPLY records what it changed and the events it causes in
 * mail_outbox in its own transaction (ain_mail_write,
 * deploy/migrations/0005_mail_events.sql). The writer then announces the
 * row (ain__announce): invalidation first (L1, L2 and every L1 through the
 * channel), then the events through the events service
 * (EVENT_PUBLISH_BATCH, envelope user 0), then the row goes.
 *
 * A row older than AINBOX_CACHE_OUTBOX_AGE_MS means its writer died
 * between commit and the end of its announcement, or Redis or the events
 * service was away: every cache actor looks for such rows every
 * S_RELAY_MS and announces them the same way. Invalidating twice is
 * harmless; publishing twice would show the user an event twice, so each
 * event carries the key "o<row>.<index>" and the events actor appends a
 * key it has seen within its window only once (and publishes it only
 * then): a row announced by its writer, whose writer died before deleting
 * it, and then by a relay (or by two relays at once) reaches the user
 * once. So no row is locked. Nothing is relayed while Redis is away: the
 * row waits (the reads meanwhile bypass L2, and L1 runs degraded).
 *
 * The same timer prunes idempotency keys older than S_KEY_TTL_S, at most
 * S_PRUNE_BATCH per pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/cache/internal.h"
#include "actors/cache/keys.h"
#include "actors/cache/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_RELAY_MS 2000
/* One publish request: at most this many events and about this many bytes
 * (the events service takes 1,000 events and 1 MiB). */
#define S_CHUNK_EVENTS 500
#define S_CHUNK_BYTES  (512 * 1024)
#define S_PUBLISH_MS   5000 /* a publish not answered by then is left to the relay */
#define S_KEY_TTL_S    (24 * 3600)
#define S_PRUNE_TICKS  30 /* keys are pruned every 30 relay passes (a minute) */
#define S_PRUNE_BATCH  "1000"

/* One announcement: its invalidation, then its publish requests. */
typedef struct ain__announce {
    ain__state_t *st;
    struct ain__announce *next, **prevp; /* st->announcing, while publishing */
    uint64_t user;
    char id[24];    /* the outbox row, "" for none */
    json_t *events; /* the row's events, or NULL */
    ain__l2_done_fn *done;
    void *arg;
    bool relay;      /* a relayed row: counted in st->relaying until freed */
    size_t pending;  /* publish requests not yet answered */
    uint64_t *calls; /* their call ids */
    bool failed;     /* a publish failed: the row stays for the relay */
    bool poison;     /* the events service refused the events as malformed */
} s_announce_t;

static void s_on_deleted(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__state_t *st = arg;
    (void)pg;
    if (!out->result) {
        /* The row stays: a later pass announces it once more, harmlessly. */
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

static void s_announce_free(s_announce_t *a)
{
    if (a->prevp) {
        *a->prevp = a->next;
        if (a->next)
            a->next->prevp = a->prevp;
    }
    if (a->relay)
        a->st->relaying--;
    json_decref(a->events);
    free(a->calls);
    free(a);
}

static void s_on_published(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    s_announce_t *a = arg;
    ain__state_t *st = a->st;
    if (reply && reply->status == AIN_STATUS_INVALID) {
        /* Never accepted however often it is sent: said loudly, and the
         * row goes (its invalidation ran) rather than clog the relay. */
        a->poison = true;
        ain_error(st->log, "cache: the events service refused the events of outbox row %s: %.*s",
                  a->id, (int)(reply->body_len < 200 ? reply->body_len : 200),
                  (const char *)reply->body);
    } else if (!reply || reply->status != AIN_STATUS_OK) {
        a->failed = true;
        /* Once per write; a relayed row failing again every pass is only
         * counted (cache.events.failed), not logged each time. */
        AIN_LOG_AT(st->log, a->relay ? AIN_LOG_DEBUG : AIN_LOG_WARN,
                   "cache: publishing the events of outbox row %s failed (%s): left to "
                   "the relay",
                   a->id, ain_status_name(reply ? reply->status : status));
    }
    if (--a->pending > 0)
        return;
    if (!a->failed) {
        if (!a->poison)
            ain_metric_add(st->m.events_published, (int64_t)json_array_size(a->events));
        else
            ain_metric_add(st->m.events_failed, (int64_t)json_array_size(a->events));
        if (a->id[0])
            ain__outbox_done(st, a->id);
    } else {
        ain_metric_add(st->m.events_failed, (int64_t)json_array_size(a->events));
    }
    s_announce_free(a);
}

/* Packs events [from, to) of `a` as one EVENT_PUBLISH_BATCH body into sb. */
static void s_pack_chunk(const s_announce_t *a, size_t from, size_t to, char **data,
                         msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_str(&pk, "events");
    msgpack_pack_array(&pk, (uint32_t)(to - from));
    for (size_t i = from; i < to; i++) {
        char key[48];
        snprintf(key, sizeof key, "o%s.%zu", a->id, i);
        msgpack_pack_map(&pk, a->id[0] ? 3 : 2);
        ain_mp_pack_kv_u64(&pk, "user", a->user);
        ain_mp_pack_kv_str(&pk, "data", data[i]);
        if (a->id[0])
            ain_mp_pack_kv_str(&pk, "key", key);
    }
}

/* Sends the events of `a` in chunks; frees `a` now if nothing went out. */
static void s_publish(s_announce_t *a)
{
    ain__state_t *st = a->st;
    size_t n = json_array_size(a->events);
    char **data = ain_calloc(n ? n : 1, sizeof *data);
    a->calls = ain_calloc(n ? n : 1, sizeof *a->calls); /* at most one request per event */
    for (size_t i = 0; i < n; i++)
        data[i] = json_dumps(json_array_get(a->events, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
    /* Listed first: a callback can only come from a later poll. */
    a->next = st->announcing;
    if (a->next)
        a->next->prevp = &a->next;
    a->prevp = &st->announcing;
    st->announcing = a;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int64_t deadline = ain_clock_wall_ms() + S_PUBLISH_MS;
    for (size_t from = 0; from < n && !a->failed;) {
        size_t to = from, bytes = 0;
        while (to < n && to - from < S_CHUNK_EVENTS &&
               (to == from || bytes + strlen(data[to] ? data[to] : "") < S_CHUNK_BYTES))
            bytes += strlen(data[to] ? data[to] : ""), to++;
        sb.size = 0;
        s_pack_chunk(a, from, to, data, &sb);
        uint64_t call = 0;
        if (st->calls)
            call = ain_call(st->calls, "events", AIN_MSG_EVENT_PUBLISH_BATCH, 0, sb.data, sb.size,
                            deadline, s_on_published, a);
        if (call == 0)
            a->failed = true; /* refused: the row waits for the relay */
        else
            a->calls[a->pending++] = call;
        from = to;
    }
    msgpack_sbuffer_destroy(&sb);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    if (a->pending == 0) {
        ain_metric_add(st->m.events_failed, (int64_t)n);
        AIN_LOG_AT(st->log, a->relay ? AIN_LOG_DEBUG : AIN_LOG_WARN,
                   "cache: the events of outbox row %s could not be sent: left to the "
                   "relay",
                   a->id);
        s_announce_free(a);
    }
}

static void s_on_invalidated(ain__state_t *st, bool ok, void *arg)
{
    s_announce_t *a = arg;
    if (a->done)
        a->done(st, ok, a->arg);
    if (!ok) { /* the row stays: the relay announces it again, events included */
        s_announce_free(a);
        return;
    }
    if (json_array_size(a->events) > 0) {
        s_publish(a);
        return;
    }
    if (a->id[0])
        ain__outbox_done(st, a->id);
    s_announce_free(a);
}

void ain__announce(ain__state_t *st, uint64_t user, const char *outbox, char **prefixes, size_t n,
                   bool all, const char *events, bool relay, ain__l2_done_fn *done, void *arg)
{
    s_announce_t *a = AIN_NEW(s_announce_t);
    a->st = st;
    a->relay = relay;
    if (relay)
        st->relaying++;
    a->user = user;
    snprintf(a->id, sizeof a->id, "%s", outbox ? outbox : "");
    a->done = done;
    a->arg = arg;
    if (events && events[0]) {
        a->events = json_loads(events, 0, NULL);
        if (!json_is_array(a->events)) {
            ain_metric_inc(st->m.outbox_errors);
            ain_warn(st->log, "cache: the events of outbox row %s are unreadable: not published",
                     a->id);
            json_decref(a->events);
            a->events = NULL;
        }
    }
    if (n == 0 && !all) {
        free(prefixes); /* nothing any key holds changed */
        s_on_invalidated(st, true, a);
        return;
    }
    ain__invalidate(st, user, prefixes, n, s_on_invalidated, a);
}

void ain__outbox_stop(ain__state_t *st)
{
    while (st->announcing) {
        s_announce_t *a = st->announcing;
        for (size_t i = 0; i < a->pending; i++)
            ain_call_cancel(st->calls, a->calls[i]);
        s_announce_free(a); /* the row stays for a relay */
    }
    ain_calls_destroy(&st->calls);
}

/* ------------------------------------------------------------ the relay */

static void s_on_relayed(ain__state_t *st, bool ok, void *arg)
{
    (void)arg;
    if (ok)
        ain_metric_inc(st->m.outbox_relayed);
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
    bool all = false;
    if (n < 0) {
        /* Not written by ain_mail_write: drop every key of the user rather
         * than guess. */
        ain_metric_inc(st->m.outbox_errors);
        ain_warn(st->log, "cache: outbox row %s is unreadable: all of user %llu's keys go",
                 PQgetvalue(r, i, 0), (unsigned long long)user);
        prefixes = ain_malloc(sizeof *prefixes);
        n = 0;
        all = true;
    }
    ain_debug(st->log, "cache: relaying outbox row %s (user %llu)", PQgetvalue(r, i, 0),
              (unsigned long long)user);
    ain__announce(st, user, PQgetvalue(r, i, 0), prefixes, (size_t)n, all, PQgetvalue(r, i, 3),
                  true, s_on_relayed, NULL);
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
    if (rows > 0)
        ain_info(st->log, "cache: relaying %d outbox rows (oldest %s)", rows,
                 PQgetvalue(out->result, 0, 0));
    for (int i = 0; i < rows && ain__l2_up(st); i++)
        s_relay_row(st, out->result, i);
}

static void s_on_pruned(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__state_t *st = arg;
    (void)pg;
    if (out->result)
        ain_metric_add(st->m.keys_pruned, strtoll(PQcmdTuples(out->result), NULL, 10));
    else
        ain_debug(st->log, "cache: pruning write keys failed: %s", out->error ? out->error : "?");
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    ain__state_t *st = arg;
    (void)actor;
    if (!st->pg_write)
        return;
    if (st->relay_ticks++ % S_PRUNE_TICKS == 0) {
        char ttl[24];
        snprintf(ttl, sizeof ttl, "%d", S_KEY_TTL_S);
        const char *params[] = {ttl, S_PRUNE_BATCH};
        ain_pg_query(st->pg_write, ain_clock_wall_ms() + S_RELAY_MS, AIN_Q_KEYS_PRUNE, 2, params,
                     s_on_pruned, st);
    }
    /* One pass at a time: rows still being announced are not scanned again. */
    if (st->outbox_busy || st->relaying > 0 || !ain__l2_up(st))
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
    st->calls = ain_calls_new(st->actor, 0);
    if (!st->calls)
        ain_warn(st->log, "cache: no client to the events service: writes publish no events "
                          "(their outbox rows stay)");
    ain_actor_timer(st->actor, S_RELAY_MS, true, s_tick, st);
}
