/* apply.c: MAIL_APPLY, the one write path of the mail store.
 *
 * {account, changes: [{op, ...}], key?} for the envelope's user goes to
 * ain_mail_write() in one statement (all or nothing; the ops are in
 * actors/cache/README.md). Its transaction also writes the outbox row:
 * what changed, and the user events that causes (new_email, ...), built
 * in SQL (deploy/migrations/0005_mail_events.sql). After the commit the
 * row is announced (outbox.c): what changed becomes key prefixes
 * (keys.h), dropped from this process's L1 at once and from L2 and every
 * other L1 through one Redis script; the reply waits for that script, so
 * once a writer has its answer no cache anywhere serves what the write
 * replaced (unless Redis was unreachable: then the reply says so, and the
 * invalidation is replayed when Redis is back). The events then go to the
 * events service, and the row is deleted. If this process dies in
 * between, outbox.c on any cache actor relays the row, so neither the
 * invalidation nor the events of a committed write depend on its writer
 * surviving.
 *
 * A write with a `key` is applied once per (user, key): the same key
 * again (a retry after UNAVAILABLE) answers the first write's result with
 * `replayed: true`, and announces its outbox row again if it is still
 * there (harmless: events are keyed by row), so the retrying caller reads
 * its write at once even if the first writer died.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/cache/internal.h"
#include "actors/cache/queries.h"
#include "proto/body.h"
#include "runtime/alloc.h"
#include "runtime/mpjson.h"

#define S_CHANGES_MAX  1000 /* changes in one MAIL_APPLY */
#define S_KEY_MAX      128  /* bytes of an idempotency key */
#define S_PREFIXES_MAX 64   /* beyond this, all of the user's keys go */

typedef struct {
    ain__state_t *st;
    ain_request_t *req;
    uint64_t user;
    msgpack_sbuffer changed; /* [{kind, ref}], packed for the reply */
    size_t nchanged;
    size_t nevents; /* user events the write caused */
    bool replayed;  /* the key had been written: nothing applied now */
} s_write_t;

static void s_free(s_write_t *w)
{
    msgpack_sbuffer_destroy(&w->changed);
    free(w);
}

static void s_reply(ain__state_t *st, s_write_t *w, bool caches_ok)
{
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 4);
    ain_mp_pack_str(pk, "changed");
    msgpack_pack_array(pk, (uint32_t)w->nchanged);
    pk->callback(pk->data, w->changed.data, w->changed.size);
    ain_mp_pack_kv_str(pk, "caches",
                       caches_ok ? "invalidated"
                                 : "pending: Redis unreachable, replayed on reconnect");
    ain_mp_pack_kv_u64(pk, "events", w->nevents);
    ain_mp_pack_str(pk, "replayed");
    if (w->replayed)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    ain_request_reply_packed(w->req, AIN_STATUS_OK);
    s_free(w);
}

static void s_on_invalidated(ain__state_t *st, bool ok, void *arg)
{
    s_reply(st, arg, ok);
}

void ain__invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n,
                     ain__l2_done_fn *done, void *arg)
{
    size_t use = n > S_PREFIXES_MAX ? 0 : n; /* 0: every key of the user */
    ain__l1_invalidate(st, user, prefixes, use);
    ain__l2_invalidate(st, user, prefixes, use, done, arg);
    for (size_t i = 0; i < n; i++)
        free(prefixes[i]);
    free(prefixes);
}

/* The first line of a PostgreSQL error, without its "ERROR:  " prefix. */
static void s_error_line(const char *error, char *out, size_t size)
{
    const char *p = error ? error : "";
    if (strncmp(p, "ERROR:  ", 8) == 0)
        p += 8;
    size_t n = strcspn(p, "\n");
    snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), p);
}

static void s_on_applied(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    s_write_t *w = arg;
    ain__state_t *st = w->st;
    (void)pg;
    if (!out->result) {
        char why[256];
        const char *state = out->sqlstate;
        ain_metric_inc(st->m.write_errors);
        s_error_line(out->error, why, sizeof why);
        if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0) {
            ain_request_fail(w->req, AIN_STATUS_INVALID, why);
        } else if (strcmp(state, "AI409") == 0) {
            ain_request_fail(w->req, AIN_STATUS_CONFLICT,
                             "that key was used for a different write (other account or "
                             "changes)");
        } else if (strcmp(state, "42501") == 0) {
            ain_request_fail(w->req, AIN_STATUS_DENIED, "that account is not the user's");
        } else {
            ain_warn(st->log, "cache: write for user %llu failed (%s): %s",
                     (unsigned long long)w->user, state[0] ? state : "no answer", why);
            ain_request_fail(w->req, AIN_STATUS_UNAVAILABLE,
                             state[0] ? "the mail store refused the write"
                                      : "the mail store did not answer: the write may or may "
                                        "not have been applied");
        }
        s_free(w);
        return;
    }
    const PGresult *r = out->result;
    if (PQntuples(r) != 1 || PQnfields(r) != 5) {
        ain_metric_inc(st->m.write_errors);
        ain_error(st->log, "cache: ain_mail_write answered %d rows of %d columns", PQntuples(r),
                  PQnfields(r));
        ain_request_fail(w->req, AIN_STATUS_ERROR, "the mail store answered out of shape");
        s_free(w);
        return;
    }
    w->replayed = PQgetvalue(r, 0, 3)[0] == 't';
    ain_metric_inc(w->replayed ? st->m.writes_replayed : st->m.writes);
    const char *outbox = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1);
    json_t *changed = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    w->nevents = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
    size_t rows = json_array_size(changed), n = 0, i;
    char **prefixes = ain_malloc((rows ? rows : 1) * sizeof *prefixes);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->changed, msgpack_sbuffer_write);
    json_t *pair;
    json_array_foreach(changed, i, pair)
    {
        const char *kind = json_string_value(json_array_get(pair, 0));
        const char *ref = json_string_value(json_array_get(pair, 1));
        char buf[AIN_KEY_MAX];
        if (!kind || !ref)
            continue;
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_str(&pk, "kind", kind);
        ain_mp_pack_kv_str(&pk, "ref", ref);
        w->nchanged++;
        /* A ref that cannot be a key part was never part of a key. */
        if (ain_key_prefix(buf, kind, ref) >= 0)
            prefixes[n++] = ain_strdup(buf);
    }
    json_decref(changed);
    if (w->replayed && !outbox[0]) {
        /* The first write's announcement already ran to its end. */
        for (size_t k = 0; k < n; k++)
            free(prefixes[k]);
        free(prefixes);
        s_reply(st, w, true);
        return;
    }
    ain__announce(st, w->user, outbox, prefixes, n, false, PQgetvalue(r, 0, 2), false,
                  s_on_invalidated, w);
}

int ain__apply(ain__state_t *st, ain_request_t *req)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t account = 0;
    const msgpack_object *changes = NULL;
    const char *why = NULL, *key = NULL;
    size_t key_len = 0;
    int has_key = 0, has_quiet = 0;
    bool quiet = false;
    char keybuf[S_KEY_MAX + 1] = "";
    char *json = NULL;
    bool parsed = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK;
    if (env->user == 0)
        why = "a write needs the envelope's user";
    else if (!parsed || body.root->type != MSGPACK_OBJECT_MAP)
        why = "body must be {account, changes: [...]}";
    else if (ain_mp_get_u64(body.root, "account", &account) != 1 || account == 0)
        why = "account must be an account id";
    else if (!(changes = ain_mp_get(body.root, "changes")) ||
             changes->type != MSGPACK_OBJECT_ARRAY || changes->via.array.size == 0 ||
             changes->via.array.size > S_CHANGES_MAX)
        why = "changes must be an array of 1..1000 changes";
    else if ((has_key = ain_mp_get_str(body.root, "key", &key, &key_len)) != 0 &&
             (has_key != 1 || key_len == 0 || key_len > S_KEY_MAX || memchr(key, 0, key_len)))
        why = "key must be a string of 1..128 bytes";
    else if ((has_quiet = ain_mp_get_bool(body.root, "quiet", &quiet)) < 0)
        why = "quiet must be true or false";
    if (!why && has_key == 1)
        memcpy(keybuf, key, key_len);
    if (!why) {
        json_t *j = ain_mpjson_from_object(changes);
        json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    ain_body_release(&body);
    if (why || !json) {
        free(json);
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, why ? why : "changes cannot be written as JSON");
        return 0;
    }
    if (!st->pg_write) {
        free(json);
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "no mail store is configured (DATABASE_URL)");
        return 0;
    }
    s_write_t *w = AIN_NEW(s_write_t);
    w->st = st;
    w->req = req;
    w->user = env->user;
    msgpack_sbuffer_init(&w->changed);
    char user[24], acc[24];
    snprintf(user, sizeof user, "%llu", (unsigned long long)env->user);
    snprintf(acc, sizeof acc, "%llu", (unsigned long long)account);
    const char *params[] = {user, acc, json, keybuf[0] ? keybuf : NULL, quiet ? "t" : "f"};
    if (ain_pg_query(st->pg_write, env->deadline_ms, AIN_Q_APPLY, 5, params, s_on_applied, w) < 0) {
        s_free(w);
        ain_request_fail(req, AIN_STATUS_BUSY, "the mail store has too many queries waiting");
    }
    free(json);
    return 0;
}
