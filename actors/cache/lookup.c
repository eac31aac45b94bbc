/* lookup.c: one read through the layers.
 *
 * L1 first. On a miss, the request joins the load already running for the
 * same (user, key), or starts one: L2, then L3 if L2 misses or is down.
 * Every waiter of a load is answered from its one result, so N concurrent
 * misses cost one L2 read and at most one L3 read (request coalescing).
 * A hit close to expiry may start an early refresh (XFetch: Vattani et
 * al., "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015): the
 * closer to expiry and the slower the value was to compute, the likelier,
 * so hot keys are refreshed before they expire instead of all at once.
 *
 * Each lookup is counted once, by where its answer came from: L1, L2, L3,
 * not found (a miss everywhere), or failed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/internal.h"
#include "proto/body.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_XFETCH_BETA 1.0

uint64_t ain__etag_of(const uint8_t *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 0x100000001b3ULL;
    return h;
}

/* Answers {etag, data} or, if the client already has it, {etag,
 * not_modified: true}. */
static void s_reply(ain__state_t *st, ain_request_t *req, const char *if_none_match,
                    const uint8_t *data, size_t len, uint64_t etag)
{
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)etag);
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 2);
    ain_mp_pack_kv_str(pk, "etag", hex);
    if (if_none_match && strcmp(if_none_match, hex) == 0) {
        ain_metric_inc(st->m.not_modified);
        ain_mp_pack_str(pk, "not_modified");
        msgpack_pack_true(pk);
    } else {
        ain_mp_pack_str(pk, "data");
        pk->callback(pk->data, (const char *)data, len); /* already msgpack */
    }
    ain_request_reply_packed(req, AIN_STATUS_OK);
}

/* The if_none_match a waiting request carried: re-read from its body. */
static void s_etag_of_request(ain_request_t *req, char *out, size_t size)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    const char *p;
    size_t n;
    out[0] = '\0';
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
        ain_mp_get_str(body.root, "if_none_match", &p, &n) == 1 && n < size) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    ain_body_release(&body);
}

static uint64_t s_user_epoch(ain__state_t *st, uint64_t user)
{
    char k[24];
    snprintf(k, sizeof k, "%llu", (unsigned long long)user);
    return (uint64_t)(uintptr_t)zhashx_lookup(st->epochs, k);
}

/* A uniform double in [0, 1) from the actor's own generator (xorshift64*:
 * no system call on the hit path). */
static double s_random01(ain__state_t *st)
{
    st->rng ^= st->rng >> 12;
    st->rng ^= st->rng << 25;
    st->rng ^= st->rng >> 27;
    return (double)((st->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* True if, by the XFetch rule, this hit should refresh its value early:
 * now - delta * beta * ln(random) >= expiry. */
static bool s_refresh_due(ain__state_t *st, const ain_l1_value_t *v, int64_t now)
{
    double r = s_random01(st);
    double gap = -(double)v->delta_ms * S_XFETCH_BETA * log(r > 0 ? r : 1e-12);
    return now + (int64_t)gap >= v->expires_ms;
}

static void s_start(ain__state_t *st, ain_request_t *req, const ain__view_t *view);

void ain__lookup(ain__state_t *st, ain_request_t *req, const ain__view_t *view)
{
    ain_metric_inc(st->m.lookups);
    int64_t now = ain_clock_mono_ms();
    const ain_l1_value_t *v = st->l1_ttl_now_ms > 0
                                  ? ain_l1_get(st->l1, view->user, view->key, view->key_len, now)
                                  : NULL;
    if (!v) {
        s_start(st, req, view);
        return;
    }
    ain_metric_inc(st->m.l1_hits);
    bool refresh = s_refresh_due(st, v, now);
    s_reply(st, req, view->etag, v->data, v->len, v->etag); /* v is invalid after this */
    if (refresh)
        s_start(st, NULL, view);
}

static void s_add_waiter(ain__load_t *load, ain_request_t *req)
{
    if (load->nwaiters == load->cap) {
        load->cap = load->cap ? load->cap * 2 : 4;
        load->waiters = ain_realloc(load->waiters, load->cap * sizeof *load->waiters);
    }
    load->waiters[load->nwaiters++] = req;
}

/* Joins the load running for the view's key, or starts one (with no
 * waiter when it is an early refresh). */
static void s_start(ain__state_t *st, ain_request_t *req, const ain__view_t *view)
{
    char id[AIN_KEY_MAX + 24];
    snprintf(id, sizeof id, "%llu/%s", (unsigned long long)view->user, view->key);
    ain__load_t *load = zhashx_lookup(st->loads, id);
    if (load && (load->user_epoch != s_user_epoch(st, view->user) ||
                 load->global_epoch != st->global_epoch)) {
        /* It began before an invalidation of this user: its value may
         * predate the change, so nobody new may wait for it. It finishes
         * for its own waiters, out of the table. */
        zhashx_delete(st->loads, id);
        load->detached = true;
        st->detached++;
        load = NULL;
    }
    if (load) {
        if (!req)
            return; /* a refresh is already running */
        if (load->nwaiters >= AIN__WAITERS_MAX) {
            ain_request_fail(req, AIN_STATUS_BUSY, "too many requests wait for this view");
            return;
        }
        ain_metric_inc(st->m.coalesced);
        s_add_waiter(load, req);
        return;
    }
    if (zhashx_size(st->loads) + st->detached >= AIN__LOADS_MAX) {
        if (req)
            ain_request_fail(req, AIN_STATUS_BUSY, "the cache has too many loads in flight");
        else
            ain_metric_inc(st->m.refresh_skipped);
        return;
    }
    load = AIN_NEW(ain__load_t);
    load->state = st;
    load->view = *view;
    snprintf(load->id, sizeof load->id, "%s", id);
    load->started_ms = ain_clock_mono_ms();
    load->user_epoch = s_user_epoch(st, view->user);
    load->global_epoch = st->global_epoch;
    load->refresh = !req;
    msgpack_sbuffer_init(&load->out);
    if (req)
        s_add_waiter(load, req);
    else
        ain_metric_inc(st->m.refreshes);
    zhashx_insert(st->loads, id, load);
    if (ain__l2_up(st))
        ain__l2_get(st, load);
    else
        ain__load_l3(st, load);
}

static void s_free_load(ain__state_t *st, ain__load_t *load)
{
    if (!load->detached)
        zhashx_delete(st->loads, load->id);
    else
        st->detached--;
    msgpack_sbuffer_destroy(&load->out);
    if (load->held)
        PQclear(load->held);
    free(load->waiters);
    free(load);
}

/* Answers every waiter of a load from its one outcome. */
static void s_answer(ain__state_t *st, ain__load_t *load, ain__source_t source, const uint8_t *data,
                     size_t len, uint64_t etag, const char *why)
{
    ain_metric_t *counter = source == AIN__FROM_L2     ? st->m.l2_hits
                            : source == AIN__FROM_L3   ? st->m.l3_hits
                            : source == AIN__NOT_FOUND ? st->m.misses
                                                       : st->m.failed;
    for (size_t i = 0; i < load->nwaiters; i++) {
        ain_request_t *req = load->waiters[i];
        ain_metric_inc(counter);
        if (source == AIN__NOT_FOUND) {
            ain_request_fail(req, AIN_STATUS_NOT_FOUND, why ? why : "no such object");
        } else if (source == AIN__FAILED) {
            ain_request_fail(req, AIN_STATUS_UNAVAILABLE, why ? why : "the mail store failed");
        } else {
            char etag_in[24];
            s_etag_of_request(req, etag_in, sizeof etag_in);
            s_reply(st, req, etag_in, data, len, etag);
        }
    }
}

void ain__load_done(ain__state_t *st, ain__load_t *load, ain__source_t source, const uint8_t *data,
                    size_t len, uint64_t etag, int64_t delta_ms, const char *why)
{
    s_answer(st, load, source, data, len, etag, why);
    const ain__view_t *v = &load->view;
    if (data && source == AIN__FROM_L3 && ain__l2_up(st))
        ain__l2_put(st, load, data, len, etag, delta_ms);
    /* Into L1 only if no invalidation for this user arrived meanwhile: the
     * value might predate the change that caused it. */
    if (data && st->l1_ttl_now_ms > 0 && load->user_epoch == s_user_epoch(st, v->user) &&
        load->global_epoch == st->global_epoch) {
        int64_t now = ain_clock_mono_ms();
        ain_l1_put(st->l1, v->user, v->key, v->key_len, data, len, now + st->l1_ttl_now_ms,
                   delta_ms, etag, now);
    }
    s_free_load(st, load);
}

void ain__lookup_l2_answer(ain__state_t *st, ain__load_t *load, const uint8_t *data, size_t len,
                           uint64_t etag, int64_t delta_ms, int64_t expires_wall_ms)
{
    if (!data) {
        ain__load_l3(st, load);
        return;
    }
    /* An L2 value near its own expiry is refreshed from L3 after answering. */
    ain_l1_value_t v = {data, len, expires_wall_ms, delta_ms, etag};
    bool refresh = s_refresh_due(st, &v, ain_clock_wall_ms());
    if (!refresh) {
        ain__load_done(st, load, AIN__FROM_L2, data, len, etag, delta_ms, NULL);
        return;
    }
    s_answer(st, load, AIN__FROM_L2, data, len, etag, NULL);
    load->nwaiters = 0;
    load->refresh = true;
    ain_metric_inc(st->m.refreshes);
    ain__load_l3(st, load);
}
