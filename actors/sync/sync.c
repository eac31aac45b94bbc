/* sync.c: the sync actor: JOB_RUN slices, SYNC_PUSH, SYNC_START, the fallback poll.
 *
 * A run is one JOB_RUN: take the account's lease, get an access token, let
 * gmail.c do one bounded step (each provider call asked of the rate-limit
 * actor first), write what changed through MAIL_APPLY, save the progress and
 * release the lease, answer. Every asynchronous completion (a query, a call,
 * an HTTP answer) finds its run through state the run owns: HTTP requests
 * and calls are cancelled when the run ends; queries cannot be, so a run
 * that ended is freed only once its last query came back (pg_pending).
 * See README.md.
 */
#include "actors/sync/sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actors/sync/internal.h"
#include "actors/sync/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/crypto.h"

#define S_MARGIN_MS      500           /* a slice answers this long before its job's lease ends */
#define S_TOKEN_SLACK_MS 60000         /* a cached token this close to expiry is renewed */
#define S_APPLY_BYTES    (1024 * 1024) /* a MAIL_APPLY's changes, at most (then one more) */
#define S_APPLY_MAX      1000

typedef struct {
    char token[AIN__SYNC_TOKEN_MAX];
    int64_t expires_ms;
} s_token_t;

static void s_token_free(void **item)
{
    if (*item) {
        ain_crypto_wipe(*item, sizeof(s_token_t));
        free(*item);
        *item = NULL;
    }
}

static void s_ignore(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    (void)status, (void)reply, (void)arg;
}

static void s_iso(char *out, size_t size, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", buf, (int)(ms % 1000));
}

/* Publishes a user event (EVENT_PUBLISH to "events", envelope user = the user); fire and forget:
 * the event log is the events actor's, and a lost progress event is harmless. */
static void s_publish(ain__sync_t *st, uint64_t user, json_t *event)
{
    char ts[40];
    s_iso(ts, sizeof ts, ain_clock_wall_ms());
    json_object_set_new(event, "timestamp", json_string(ts));
    char *text = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    if (!text)
        return;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_str(&pk, "data", text);
    ain_call(st->calls, "events", AIN_MSG_EVENT_PUBLISH, user, sb.data, sb.size, 0, s_ignore, NULL);
    msgpack_sbuffer_destroy(&sb);
    free(text);
}

/* ------------------------------------------------------------ the run's life */

static void s_run_free(ain__run_t *r)
{
    ain__sync_t *st = r->st;
    if (r->prev)
        r->prev->next = r->next;
    else
        st->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    for (int i = 0; i < r->nurls; i++)
        free(r->urls[i]);
    free(r->address);
    free(r->cursor);
    free(r->next_page);
    free(r->new_cursor);
    free(r->end_error);
    json_decref(r->full);
    json_decref(r->page_ids);
    json_decref(r->hist);
    json_decref(r->large);
    free(r->post_body);
    free(r->position);
    msgpack_sbuffer_destroy(&r->ops);
    ain_crypto_wipe(r->token, sizeof r->token);
    free(r);
    ain_metric_add(st->m.runs_active, -1);
}

bool ain__run_gone(ain__run_t *r)
{
    if (!r->ended)
        return false;
    if (r->pg_pending == 0)
        s_run_free(r);
    return true;
}

ain__run_t *ain__run_of(void *arg)
{
    ain__run_t *r = arg;
    r->pg_pending--;
    return r;
}

void ain__run_release(ain__run_t *r)
{
    (void)ain__run_gone(r);
}

int ain__run_query(ain__run_t *r, const char *sql, int n, const char *const *params, ain_pg_fn *fn)
{
    if (ain_pg_query(r->st->pg, r->deadline_ms, sql, n, params, fn, r) < 0)
        return -1;
    r->pg_pending++;
    return 0;
}

static void s_on_released(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg, (void)o;
    ain__run_release(ain__run_of(arg));
}

static const char *s_end_name(ain__end_t end)
{
    static const char *const names[] = {"done", "retry", "delay", "continue", "fail"};
    return names[end];
}

/* Answers the job and ends the run (see the file comment). */
static void s_reply(ain__run_t *r, ain__end_t end, int64_t delay_ms, const char *error)
{
    ain__sync_t *st = r->st;
    if (r->call)
        ain_call_cancel(st->calls, r->call);
    r->call = 0;
    for (int i = 0; i < r->nurls; i++)
        if (r->slots[i].http)
            ain__http_cancel(st->http, r->slots[i].http);
    if (r->timer)
        ain_actor_timer_cancel(st->actor, r->timer);
    r->timer = 0;
    ain_metric_t *count[] = {st->m.done, st->m.retried, st->m.delayed, st->m.continued,
                             st->m.failed};
    ain_metric_inc(count[end]);
    if (ain_request_answered(r->req))
        ain_metric_inc(st->m.late);
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 1 + (end == AIN__END_DELAY || end == AIN__END_RETRY) + (error != NULL) +
                             (end == AIN__END_CONTINUE));
    ain_mp_pack_kv_str(pk, "result", s_end_name(end));
    if (end == AIN__END_DELAY || end == AIN__END_RETRY)
        ain_mp_pack_kv_i64(pk, "delay_ms", delay_ms > 0 ? delay_ms : 0);
    if (error)
        ain_mp_pack_kv_str(pk, "error", error);
    if (end == AIN__END_CONTINUE) {
        /* The progress itself is in accounts.sync_full (any job of the account continues
         * it); the payload only says where it is, for operators reading the queue. */
        const char *phase = r->full ? json_string_value(json_object_get(r->full, "phase")) : NULL;
        ain_mp_pack_str(pk, "payload");
        msgpack_pack_map(pk, 1);
        ain_mp_pack_kv_str(pk, "phase", phase ? phase : "history");
    }
    ain_request_reply_packed(r->req, AIN_STATUS_OK);
    r->req = NULL;
    if (error && end != AIN__END_CONTINUE && end != AIN__END_DELAY)
        ain_info(st->log, "sync: job %" PRIu64 " account %" PRIu64 ": %s: %s", r->job, r->account,
                 s_end_name(end), error);
    r->ended = true;
    ain__run_release(r);
}

void ain__run_finish(ain__run_t *r, ain__end_t end, int64_t delay_ms, const char *error)
{
    if (r->ended)
        return;
    if (r->lease_held) {
        char acc[24];
        snprintf(acc, sizeof acc, "%" PRIu64, r->account);
        const char *params[] = {acc, r->holder};
        r->lease_held = false;
        /* Without a deadline: the lease must go even when the slice ran out of time. */
        if (ain_pg_query(r->st->pg, 0, AIN__Q_RELEASE, 2, params, s_on_released, r) == 0)
            r->pg_pending++;
    }
    s_reply(r, end, delay_ms, error);
}

static void s_on_saved(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__run_t *r = ain__run_of(arg);
    if (ain__run_gone(r))
        return;
    if (!o->result) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the sync state was not saved");
        return;
    }
    r->lease_held = false;
    if (PQcmdTuples(o->result)[0] == '0') {
        ain_warn(r->st->log, "sync: account %" PRIu64 ": lease lost before the save", r->account);
    } else if (r->clear_seen) {
        /* The full sync's end is saved: its seen ids can go (after the answer; no deadline). */
        char acc[24];
        snprintf(acc, sizeof acc, "%" PRIu64, r->account);
        const char *params[] = {acc};
        if (ain_pg_query(r->st->pg, 0, AIN__Q_SEEN_CLEAR, 1, params, s_on_released, r) == 0)
            r->pg_pending++;
    }
    s_reply(r, r->end, r->end_delay_ms, r->end_error);
}

void ain__run_save(ain__run_t *r, ain__end_t end)
{
    r->end = end;
    char acc[24];
    snprintf(acc, sizeof acc, "%" PRIu64, r->account);
    char *full = r->full ? json_dumps(r->full, JSON_COMPACT) : NULL;
    char watch[24];
    if (r->watch_until_ms)
        snprintf(watch, sizeof watch, "%" PRId64, r->watch_until_ms);
    const char *params[] = {acc,
                            r->holder,
                            full,
                            r->new_cursor,
                            r->state ? r->state : (r->full ? "syncing" : "idle"),
                            r->watch_until_ms ? watch : NULL};
    if (ain__run_query(r, AIN__Q_SAVE, 6, params, s_on_saved) < 0)
        ain__run_finish(r, AIN__END_RETRY, 0, "the database queue is full");
    free(full);
}

static void s_on_deadline(ain_actor_t *actor, void *arg)
{
    (void)actor;
    ain__run_t *r = arg;
    r->timer = 0;
    ain__run_finish(r, AIN__END_RETRY, 0, "the slice ran out of time");
}

/* ------------------------------------------------------------ tokens */

static void s_reauth(ain__run_t *r, const char *message)
{
    ain__sync_t *st = r->st;
    ain_metric_inc(st->m.reauth);
    json_t *ev = json_pack("{s:s, s:I, s:s, s:s}", "type", "account_reauth_required", "account",
                           (json_int_t)r->account, "provider", "gmail", "address",
                           r->address ? r->address : "");
    s_publish(st, r->user, ev);
    char why[256];
    snprintf(why, sizeof why, "the account needs a new sign-in (%s)", message ? message : "");
    /* done, not fail: retrying cannot help and the user has been told; their next sign-in
     * (SYNC_START) syncs again. The accounts actor has set sync_state = 'revoked'. */
    ain__run_finish(r, AIN__END_DONE, 0, why);
}

static void s_after_token(ain__run_t *r)
{
    ain__step_fn *resume = r->resume;
    r->resume = NULL;
    if (resume)
        resume(r);
    else
        ain__gmail_step(r);
}

static void s_on_token(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    ain__run_t *r = arg;
    r->call = 0;
    ain_body_t body;
    ain_status_t parsed =
        reply ? ain_body_parse(&body, reply->body, reply->body_len) : AIN_STATUS_INVALID;
    const char *tok = NULL, *code = NULL;
    size_t tok_len = 0, code_len = 0;
    int64_t expires_in = 0;
    if (parsed == AIN_STATUS_OK) {
        ain_mp_get_str(body.root, "access_token", &tok, &tok_len);
        ain_mp_get_str(body.root, "code", &code, &code_len);
        ain_mp_get_i64(body.root, "expires_in", &expires_in);
    }
    if (status == AIN_STATUS_OK && reply && reply->status == AIN_STATUS_OK && tok && tok_len > 0 &&
        tok_len < AIN__SYNC_TOKEN_MAX) {
        memcpy(r->token, tok, tok_len);
        r->token[tok_len] = '\0';
        char key[24];
        snprintf(key, sizeof key, "%" PRIu64, r->account);
        if (zhashx_size(r->st->tokens) >= AIN__SYNC_TOKENS_MAX)
            zhashx_purge(r->st->tokens); /* bounded; they are cheap to get again */
        s_token_t *t = AIN_NEW(s_token_t);
        memcpy(t->token, r->token, tok_len + 1);
        t->expires_ms = ain_clock_wall_ms() + (expires_in > 0 ? expires_in : 60) * 1000;
        zhashx_update(r->st->tokens, key, t);
        ain_body_release(&body);
        s_after_token(r);
        return;
    }
    bool reauth = reply && code && code_len == 15 && memcmp(code, "REAUTH_REQUIRED", 15) == 0;
    bool gone = reply && reply->status == AIN_STATUS_NOT_FOUND;
    char why[160];
    snprintf(why, sizeof why, "no access token: %s%.*s",
             reply ? ain_status_name(reply->status) : ain_status_name(status), code ? 1 : 0, " ");
    ain_body_release(&body);
    if (reauth)
        s_reauth(r, "invalid_grant");
    else if (gone)
        ain__run_finish(r, AIN__END_DONE, 0, "the account is gone");
    else
        ain__run_finish(r, AIN__END_RETRY, 0, why);
}

/* The account's access token into r->token, then the step; cached until near expiry. */
static void s_token(ain__run_t *r, bool fresh)
{
    char key[24];
    snprintf(key, sizeof key, "%" PRIu64, r->account);
    s_token_t *t = zhashx_lookup(r->st->tokens, key);
    if (t && fresh)
        zhashx_delete(r->st->tokens, key);
    else if (t && t->expires_ms > ain_clock_wall_ms() + S_TOKEN_SLACK_MS) {
        snprintf(r->token, sizeof r->token, "%s", t->token);
        s_after_token(r);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_u64(&pk, "account", r->account);
    r->call = ain_call(r->st->calls, "accounts", AIN_MSG_ACCOUNT_TOKEN, r->user, sb.data, sb.size,
                       r->deadline_ms, s_on_token, r);
    msgpack_sbuffer_destroy(&sb);
    if (!r->call)
        ain__run_finish(r, AIN__END_RETRY, 0, "too many calls in flight");
}

/* ------------------------------------------------------------ provider calls */

static void s_launch(ain__run_t *r);
static void s_rate_then_call(ain__run_t *r);
static void s_on_rate_ok(ain__run_t *r);

static bool s_rate_reason(const char *body)
{
    return body && (strstr(body, "ateLimitExceeded") || strstr(body, "RESOURCE_EXHAUSTED") ||
                    strstr(body, "Too many concurrent"));
}

static void s_batch_end(ain__run_t *r)
{
    ain__sync_t *st = r->st;
    bool all = true;
    for (int i = 0; i < r->nurls; i++)
        all = all && r->slots[i].ok;
    if (all) {
        for (int i = 0; i < r->nurls; i++)
            free(r->urls[i]);
        r->nurls = 0;
        r->on_batch(r);
        return;
    }
    if (r->worst == 401 && !r->refreshed) {
        /* Expired mid-run: one fresh token, then the calls that failed again. */
        r->refreshed = true;
        r->worst = 0;
        r->resume = s_rate_then_call;
        s_token(r, true);
        return;
    }
    if (r->lenient && r->worst != 429 && r->worst != 401) {
        /* A call whose failure must not end the job (users.watch): the step goes on. */
        r->batch_failed = true;
        for (int i = 0; i < r->nurls; i++)
            free(r->urls[i]);
        r->nurls = 0;
        r->on_batch(r);
        return;
    }
    if (r->worst == 429) {
        ain_metric_inc(st->m.rate_delays);
        ain__run_finish(r, AIN__END_DELAY, r->retry_after_ms > 0 ? r->retry_after_ms : 5000,
                        "the provider said over quota");
    } else if (r->worst == 401) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the provider refused a fresh token");
    } else if (r->worst >= 500 || r->worst == 0) {
        ain__run_finish(r, AIN__END_RETRY, r->retry_after_ms, r->why ? r->why : "provider error");
    } else {
        char why[96];
        snprintf(why, sizeof why, "the provider refused %s: %ld", r->method, r->worst);
        ain__run_finish(r, AIN__END_FAIL, 0, why);
    }
}

static void s_on_http(const ain__http_result_t *res, void *arg)
{
    ain__slot_t *slot = arg;
    ain__run_t *r = slot->r;
    ain__sync_t *st = r->st;
    slot->http = 0;
    r->inflight--;
    r->outstanding--;
    long s = res->status;
    if (s >= 200 && s < 300) {
        json_error_t err;
        json_t *answer = json_loadb(res->body, res->len, 0, &err);
        if (json_is_object(answer)) {
            slot->ok = true;
            r->on_result(r, slot->idx, s, answer);
        } else {
            r->worst = r->worst ? r->worst : 502;
            r->why = "the provider's answer is not JSON";
            ain_metric_inc(st->m.http_errors);
        }
        json_decref(answer);
    } else if (s == 404) {
        slot->ok = true;
        r->on_result(r, slot->idx, 404, NULL);
    } else if (res->too_large) {
        /* Larger than we read: the step decides (a raw message keeps its metadata). */
        ain_metric_inc(st->m.too_large);
        slot->ok = true;
        r->on_result(r, slot->idx, 413, NULL);
    } else {
        ain_metric_inc(st->m.http_errors);
        long kind = s;
        if (s == 429 || (s == 403 && s_rate_reason(res->body)))
            kind = 429;
        else if (s == 0 || s >= 500)
            kind = s ? s : 503;
        if (kind == 429)
            ain_metric_inc(st->m.http_429);
        else if (kind >= 500)
            ain_metric_inc(st->m.http_5xx);
        else if (kind == 401)
            ain_metric_inc(st->m.http_401);
        if (res->retry_after_ms > r->retry_after_ms)
            r->retry_after_ms = res->retry_after_ms;
        if (s == 0)
            r->why = res->error;
        /* The one to act on: quota first (wait), then 401 (refresh), then 5xx (retry). */
        static const long order[] = {429, 401, 503};
        int rank_new = 3, rank_old = 3;
        for (int i = 0; i < 3; i++) {
            if (order[i] == (kind >= 500 ? 503 : kind))
                rank_new = i;
            if (order[i] == (r->worst >= 500 ? 503 : r->worst))
                rank_old = i;
        }
        if (!r->worst || rank_new < rank_old || (rank_new == 3 && rank_old == 3))
            r->worst = kind;
    }
    ain_metric_set(st->m.http_pending, (int64_t)ain__http_pending(st->http));
    if (r->ended)
        return;
    if (r->outstanding == 0)
        s_batch_end(r);
    else
        s_launch(r);
}

static void s_launch(ain__run_t *r)
{
    ain__sync_t *st = r->st;
    while (r->inflight < st->parallel && r->launch_at < r->nurls) {
        int i = r->launch_at++;
        if (r->slots[i].ok)
            continue;
        r->slots[i].http =
            ain__http_get(st->http, r->urls[i], r->token, r->post, st->http_timeout_ms,
                          (size_t)st->body_max, s_on_http, &r->slots[i]);
        ain_metric_inc(st->m.http_calls);
        if (!r->slots[i].http) {
            ain__run_finish(r, AIN__END_RETRY, 0, "libcurl refused a request");
            return;
        }
        r->inflight++;
    }
}

static void s_on_rate(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    ain__run_t *r = arg;
    r->call = 0;
    if (status != AIN_STATUS_OK || !reply || reply->status != AIN_STATUS_OK) {
        bool invalid = reply && reply->status == AIN_STATUS_INVALID;
        ain__run_finish(r, invalid ? AIN__END_FAIL : AIN__END_DELAY, 1000,
                        invalid ? "the rate-limit actor refused the decision"
                                : "the rate-limit actor did not answer");
        return;
    }
    ain_body_t body;
    bool allowed = false;
    int64_t retry = 0;
    if (ain_body_parse(&body, reply->body, reply->body_len) == AIN_STATUS_OK) {
        ain_mp_get_bool(body.root, "allowed", &allowed);
        ain_mp_get_i64(body.root, "retry_after_ms", &retry);
    }
    ain_body_release(&body);
    if (!allowed) {
        ain_metric_inc(r->st->m.rate_delays);
        r->prepaid = 0;
        ain__run_finish(r, AIN__END_DELAY, retry > 0 ? retry : 1000, "over quota");
        return;
    }
    s_on_rate_ok(r);
}

static void s_on_rate_ok(ain__run_t *r)
{
    /* Every slot that is not done yet starts again from the first. */
    r->launch_at = 0;
    r->outstanding = 0;
    r->worst = 0;
    r->retry_after_ms = 0;
    r->why = NULL;
    for (int i = 0; i < r->nurls; i++)
        r->outstanding += !r->slots[i].ok;
    s_launch(r);
}

/* Asks the rate-limit actor for the slots of the batch not done yet, then calls them. */
static void s_rate_then_call(ain__run_t *r)
{
    int count = 0;
    for (int i = 0; i < r->nurls; i++)
        count += !r->slots[i].ok;
    if (count == 0) {
        s_batch_end(r);
        return;
    }
    if (r->prepaid >= count) { /* paid with the list that named these messages */
        r->prepaid -= count;
        s_on_rate_ok(r);
        return;
    }
    r->prepaid = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ain_mp_pack_kv_str(&pk, "quota", "gmail");
    ain_mp_pack_kv_str(&pk, "account", r->address);
    if (r->prepay > 0 && r->st->units_mode) {
        /* A list and the gets of the messages it will name, as one decision: admitted
         * together or not at all. Asked apart, a refused get batch after an admitted list
         * makes the next slice list (and pay) again, and under a tight quota that repeated
         * list can eat what the wait refilled, for ever. */
        ain_mp_pack_kv_u64(&pk, "units",
                           (uint64_t)(r->st->cost_list + r->prepay * r->st->cost_get));
        ain_mp_pack_kv_u64(&pk, "count", 1);
        r->prepaid = r->prepay;
    } else {
        ain_mp_pack_kv_str(&pk, "method", r->method);
        ain_mp_pack_kv_u64(&pk, "count", (uint64_t)count);
    }
    r->prepay = 0;
    r->call = ain_call(r->st->calls, "ratelimit", AIN_MSG_RATE_CHECK, r->user, sb.data, sb.size,
                       r->deadline_ms, s_on_rate, r);
    msgpack_sbuffer_destroy(&sb);
    if (!r->call)
        ain__run_finish(r, AIN__END_RETRY, 0, "too many calls in flight");
}

void ain__run_add_url(ain__run_t *r, char *url)
{
    if (r->nurls >= AIN__SYNC_BATCH_MAX) {
        free(url);
        return;
    }
    int i = r->nurls++;
    r->urls[i] = url;
    r->slots[i] = (ain__slot_t){.r = r, .idx = i};
}

void ain__run_batch(ain__run_t *r, const char *method, ain__result_fn *on_result,
                    ain__step_fn *on_batch)
{
    r->method = method;
    r->on_result = on_result;
    r->on_batch = on_batch;
    r->refreshed = false;
    r->batch_failed = false;
    s_rate_then_call(r);
}

/* ------------------------------------------------------------ MAIL_APPLY */

static void s_apply_chunk(ain__run_t *r);

static void s_on_applied(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    ain__run_t *r = arg;
    r->call = 0;
    if (status != AIN_STATUS_OK || !reply || reply->status != AIN_STATUS_OK) {
        const char *why = "the mail writer did not answer";
        if (reply && reply->status == AIN_STATUS_INVALID) {
            ain_metric_inc(r->st->m.invalid);
            ain_body_t body;
            char msg[200] = "";
            if (ain_body_parse(&body, reply->body, reply->body_len) == AIN_STATUS_OK)
                ain_mp_get_text(body.root, "message", msg, sizeof msg);
            ain_body_release(&body);
            ain_error(r->st->log, "sync: account %" PRIu64 ": MAIL_APPLY refused: %s", r->account,
                      msg);
            why = "the mail writer refused the changes";
        }
        ain__run_finish(r, AIN__END_RETRY, 0, why);
        return;
    }
    r->apply_off = r->apply_end;
    s_apply_chunk(r);
}

/* The next MAIL_APPLY of the step's changes: whole changes from apply_off, at most
 * S_APPLY_BYTES (one message's bodies can be megabytes; a broker message holds
 * AINBOX_MSG_MAX_BYTES) and 1000 changes (the writer's cap). In order, one after another. */
static void s_apply_chunk(ain__run_t *r)
{
    if (r->apply_off >= r->ops.size) {
        msgpack_sbuffer_clear(&r->ops);
        r->nops = 0;
        r->apply_off = r->apply_end = 0;
        r->on_batch(r);
        return;
    }
    msgpack_unpacked one;
    msgpack_unpacked_init(&one);
    size_t off = r->apply_off;
    uint32_t n = 0;
    while (off < r->ops.size && n < S_APPLY_MAX && (n == 0 || off - r->apply_off < S_APPLY_BYTES)) {
        size_t at = off;
        if (msgpack_unpack_next(&one, r->ops.data, r->ops.size, &at) != MSGPACK_UNPACK_SUCCESS)
            break; /* cannot happen: we packed it */
        off = at;
        n++;
    }
    msgpack_unpacked_destroy(&one);
    r->apply_end = off;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* A first backfill is quiet: mail that was there before sign-in is not news (the writer
     * then announces counts only; the user follows the backfill by sync_progress). A resync's
     * changes are news: what it adds or deletes changed while we were not looking. */
    bool quiet = r->full && !r->cursor;
    msgpack_pack_map(&pk, quiet ? 4 : 3);
    if (quiet) {
        ain_mp_pack_str(&pk, "quiet");
        msgpack_pack_true(&pk);
    }
    ain_mp_pack_kv_u64(&pk, "account", r->account);
    /* The idempotency key names this write: the job, where its slice started (cursor and
     * full-sync progress as read under the lease), the write's number in the slice, and its
     * changes. A retried slice that writes the same changes from the same place replays the
     * first write (safe: it is the same write); one whose changes differ (the mailbox moved
     * meanwhile) gets another key rather than the writer's CONFLICT; a later identical change
     * from a later place (a label set again) is a new write, not a replay. */
    char seq[16];
    snprintf(seq, sizeof seq, "|%d|", ++r->seq);
    msgpack_sbuffer kb;
    msgpack_sbuffer_init(&kb);
    msgpack_sbuffer_write(&kb, r->position ? r->position : "",
                          r->position ? strlen(r->position) : 0);
    msgpack_sbuffer_write(&kb, seq, strlen(seq));
    msgpack_sbuffer_write(&kb, r->ops.data + r->apply_off, off - r->apply_off);
    uint8_t digest[AIN_CRYPTO_SHA256_LEN];
    ain_crypto_sha256(kb.data, kb.size, digest);
    msgpack_sbuffer_destroy(&kb);
    char key[96];
    int n0 = snprintf(key, sizeof key, "sync:%" PRIu64 ":", r->account);
    for (int i = 0; i < 20 && n0 + 2 < (int)sizeof key; i++, n0 += 2)
        snprintf(key + n0, sizeof key - (size_t)n0, "%02x", digest[i]);
    ain_mp_pack_kv_str(&pk, "key", key);
    ain_mp_pack_str(&pk, "changes");
    msgpack_pack_array(&pk, n);
    msgpack_sbuffer_write(&sb, r->ops.data + r->apply_off, off - r->apply_off);
    r->call = ain_call(r->st->calls, "cache", AIN_MSG_MAIL_APPLY, r->user, sb.data, sb.size,
                       r->deadline_ms, s_on_applied, r);
    msgpack_sbuffer_destroy(&sb);
    if (!r->call)
        ain__run_finish(r, AIN__END_RETRY, 0, "too many calls in flight");
}

void ain__run_apply(ain__run_t *r, ain__step_fn *next)
{
    r->on_batch = next;
    r->apply_off = r->apply_end = 0;
    s_apply_chunk(r);
}

void ain__run_progress(ain__run_t *r, const char *phase)
{
    json_int_t done = r->full ? json_integer_value(json_object_get(r->full, "done")) : 0;
    json_t *total = r->full ? json_object_get(r->full, "total") : NULL;
    json_t *ev = json_pack("{s:s, s:I, s:s, s:I}", "type", "sync_progress", "account",
                           (json_int_t)r->account, "phase", phase, "done", done);
    if (total)
        json_object_set(ev, "total", total);
    s_publish(r->st, r->user, ev);
}

/* ------------------------------------------------------------ JOB_RUN */

static void s_on_taken(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__run_t *r = ain__run_of(arg);
    if (ain__run_gone(r))
        return;
    if (!o->result) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the database did not answer");
        return;
    }
    PGresult *res = o->result;
    if (PQntuples(res) == 0) {
        ain__run_finish(r, AIN__END_DONE, 0, "no such account of this user");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 5), "t") != 0) {
        ain_metric_inc(r->st->m.lease_busy);
        int64_t left = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
        ain__run_finish(r, AIN__END_DELAY, left > 100 ? (left < 30000 ? left : 30000) : 100,
                        "another run holds the account");
        return;
    }
    r->lease_held = true;
    if (strcmp(PQgetvalue(res, 0, 0), "gmail") != 0) {
        ain__run_finish(r, AIN__END_DONE, 0, "not a Gmail account (no sync for it yet)");
        return;
    }
    r->address = ain_strdup(PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 2))
        r->cursor = ain_strdup(PQgetvalue(res, 0, 2));
    if (!PQgetisnull(res, 0, 3)) {
        json_error_t err;
        r->full = json_loads(PQgetvalue(res, 0, 3), 0, &err);
        if (!json_is_object(r->full)) {
            json_decref(r->full);
            r->full = NULL;
        }
    }
    r->watch_due = strcmp(PQgetvalue(res, 0, 7), "t") == 0;
    r->position =
        ain_sprintf("%" PRIu64 "|%s|%s", r->job, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3));
    if (strcmp(PQgetvalue(res, 0, 4), "revoked") == 0) {
        ain__run_finish(r, AIN__END_DONE, 0, "the account needs a new sign-in");
        return;
    }
    s_token(r, false);
}

static int s_job_run(ain_actor_t *actor, ain_request_t *req)
{
    ain__sync_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    ain_status_t parsed = ain_body_parse(&body, env->body, env->body_len);
    uint64_t job = 0, user = 0, account = 0, attempt = 0;
    char kind[64] = "";
    const char *why = NULL;
    if (parsed != AIN_STATUS_OK || body.root->type != MSGPACK_OBJECT_MAP)
        why = "body must be {id, kind, user, account, payload, attempt, lease_ms}";
    else if (ain_mp_get_u64(body.root, "id", &job) != 1 ||
             ain_mp_get_u64(body.root, "account", &account) != 1 || account == 0 ||
             ain_mp_get_text(body.root, "kind", kind, sizeof kind) != 1 ||
             ain_mp_get_u64(body.root, "user", &user) < 0 ||
             ain_mp_get_u64(body.root, "attempt", &attempt) < 0)
        why = "id, account, kind are required; user and attempt are integers";
    else if (env->user == 0 || (user && user != env->user))
        why = "the envelope's user must be the job's user";
    ain_body_release(&body);
    if (!why && strcmp(kind, "gmail.sync") != 0) {
        /* An unknown kind can never run here: fail it into the dead-letter queue. */
        ain_metric_inc(st->m.invalid);
        msgpack_packer *pk = ain_actor_body(actor);
        msgpack_pack_map(pk, 2);
        ain_mp_pack_kv_str(pk, "result", "fail");
        ain_mp_pack_kv_str(pk, "error", "unknown job kind");
        ain_request_reply_packed(req, AIN_STATUS_OK);
        return 0;
    }
    if (why) {
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, why);
        return 0;
    }
    if (!st->pg) {
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "the sync actor is not configured");
        return 0;
    }
    ain__run_t *r = AIN_NEW(ain__run_t);
    r->st = st;
    r->req = req;
    r->job = job;
    r->user = env->user;
    r->account = account;
    r->attempt = (int)attempt;
    r->deadline_ms =
        env->deadline_ms > 0 ? env->deadline_ms - S_MARGIN_MS : ain_clock_wall_ms() + 30000;
    snprintf(r->holder, sizeof r->holder, "%s:%" PRIu64, st->holder, job);
    msgpack_sbuffer_init(&r->ops);
    msgpack_packer_init(&r->pk, &r->ops, msgpack_sbuffer_write);
    r->next = st->runs;
    if (st->runs)
        st->runs->prev = r;
    st->runs = r;
    ain_metric_inc(st->m.runs);
    ain_metric_add(st->m.runs_active, 1);
    int64_t left = r->deadline_ms - ain_clock_wall_ms();
    if (left < 200) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the job's lease is too short");
        return 0;
    }
    r->timer = ain_actor_timer(actor, (int)left, false, s_on_deadline, r);
    char acc[24], usr[24], lease[24];
    snprintf(acc, sizeof acc, "%" PRIu64, account);
    snprintf(usr, sizeof usr, "%" PRIu64, r->user);
    snprintf(lease, sizeof lease, "%" PRId64, left + S_MARGIN_MS);
    const char *params[] = {acc, usr, r->holder, lease};
    if (ain__run_query(r, AIN__Q_TAKE, 4, params, s_on_taken) < 0)
        ain__run_finish(r, AIN__END_RETRY, 0, "the database queue is full");
    return 0;
}

/* ------------------------------------------------------------ start, stop */

static void s_metrics_init(ain__sync_metrics_t *m, ain_metrics_t *reg)
{
#define C(f, name) m->f = ain_metrics_counter(reg, "sync." name)
    C(runs, "runs");
    C(done, "done");
    C(continued, "continued");
    C(delayed, "delayed");
    C(retried, "retried");
    C(failed, "failed");
    C(late, "late");
    C(http_calls, "http.calls");
    C(http_errors, "http.errors");
    C(http_401, "http.401");
    C(http_429, "http.429");
    C(http_5xx, "http.5xx");
    C(rate_delays, "rate_delays");
    C(messages, "messages");
    C(bodies, "bodies");
    C(deleted, "deleted");
    C(resyncs, "resyncs");
    C(reauth, "reauth_required");
    C(invalid, "invalid");
    C(lease_busy, "lease_busy");
    C(pushes, "pushes");
    C(starts, "starts");
    C(polled, "polled");
    C(enqueue_errors, "enqueue_errors");
    C(mime_errors, "mime_errors");
    C(too_large, "too_large");
#undef C
    m->runs_active = ain_metrics_gauge(reg, "sync.runs_active");
    m->http_pending = ain_metrics_gauge(reg, "sync.http_pending");
}

static int s_start(ain_actor_t *actor)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    ain__sync_t *st = AIN_NEW(ain__sync_t);
    st->actor = actor;
    st->log = ain_actor_log(actor);
    s_metrics_init(&st->m, ain_actor_metrics(actor));
    const char *api = ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_API_URL);
    snprintf(st->api, sizeof st->api, "%s", api ? api : "");
    size_t n = strlen(st->api);
    while (n > 0 && st->api[n - 1] == '/')
        st->api[--n] = '\0';
    st->page = (int)ain_config_int(cfg, AIN_CFG_AINBOX_SYNC_PAGE);
    st->parallel = (int)ain_config_int(cfg, AIN_CFG_AINBOX_SYNC_PARALLEL);
    st->http_timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_SYNC_HTTP_TIMEOUT_MS);
    st->body_max = ain_config_int(cfg, AIN_CFG_AINBOX_SYNC_BODY_MAX);
    st->poll_s = (int)ain_config_int(cfg, AIN_CFG_AINBOX_SYNC_POLL_S);
    /* The rate-limit actor's cost table (provider-apis.md 1.7), for decisions in units. */
    bool old = strcmp(ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_QUOTA), "old") == 0;
    st->cost_get = old ? 5 : 20;
    st->cost_list = 5;
    st->units_mode = strcmp(ain_config_str(cfg, AIN_CFG_AINBOX_RATELIMIT_GMAIL_USER), "units") == 0;
    const char *topic = ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_PUSH_TOPIC);
    snprintf(st->topic, sizeof st->topic, "%s", topic ? topic : "");
    uint64_t rnd = 0;
    ain_crypto_random(&rnd, sizeof rnd);
    snprintf(st->holder, sizeof st->holder, "%d.%016" PRIx64, (int)getpid(), rnd);
    st->tokens = zhashx_new();
    zhashx_set_destructor(st->tokens, s_token_free);
    ain_actor_set_state(actor, st);
    const char *db = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    if (strncmp(st->api, "http://", 7) != 0 && strncmp(st->api, "https://", 8) != 0)
        return ain_actor_unconfigured(actor, "AINBOX_GMAIL_API_URL is not an http(s) URL") < 0
                   ? (zhashx_destroy(&st->tokens), free(st), -1)
                   : 0;
    if (!db)
        return ain_actor_unconfigured(actor, "DATABASE_URL is not set") < 0
                   ? (zhashx_destroy(&st->tokens), free(st), -1)
                   : 0;
    st->calls = ain_calls_new(actor, 0);
    st->http = ain__http_new(actor, st->parallel * 2);
    if (!st->calls || !st->http) {
        ain_error(st->log, "sync: cannot start its broker client or libcurl");
        ain_calls_destroy(&st->calls);
        ain__http_destroy(&st->http);
        zhashx_destroy(&st->tokens);
        free(st);
        return -1;
    }
    /* Two connections: the runs' queries, and one spare so a poll never waits behind them. */
    st->pg = ain_pg_new(actor, db, 2);
    ain_actor_timer(actor, AIN__SYNC_POLL_TICK_MS, true, ain__sync_poll, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    ain__sync_t *st = ain_actor_state(actor);
    if (!st)
        return;
    for (ain__run_t *r = st->runs, *nx; r; r = nx) {
        nx = r->next;
        if (!r->ended)
            ain__run_finish(r, AIN__END_RETRY, 0, "the sync actor is stopping");
    }
    ain_calls_destroy(&st->calls);
    ain__http_destroy(&st->http);
    ain_pg_destroy(&st->pg); /* the queries' callbacks free the runs that waited for them */
    while (st->runs)         /* none should be left; free what is */
        s_run_free(st->runs);
    zhashx_destroy(&st->tokens);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_JOB_RUN, s_job_run},
    {AIN_MSG_SYNC_PUSH, ain__sync_push},
    {AIN_MSG_SYNC_START, ain__sync_start},
    {0, NULL},
};

const ain_actor_def_t ain_sync_actor = {
    .service = "sync",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Runs wait on the provider, the database and other actors without holding the thread. */
    .credit = 64,
};
