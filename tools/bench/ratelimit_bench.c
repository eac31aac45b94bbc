/* ratelimit_bench.c: ainbox-bench-ratelimit, decisions per second through
 * the rate-limit actor.
 *
 * Against a running broker with ratelimit actors (tools/bench/
 * ratelimit-bench.sh starts everything privately): for each batch size
 * given (1 = one decision per request, "single"; 16 or 64 = one request
 * carrying that many, "batched"), keeps K requests in flight for S seconds,
 * each decision for a random subject among N (the user API limit of user
 * 1..N, or a Gmail account's messages.get), and prints decisions per
 * second, request latency (p50/p99 as the client saw it), the share
 * admitted, and from the actors' own counters how many decisions each
 * Redis script call carried and how many were answered from the deny cache.
 *
 * The actor batches by itself too: single requests that arrive while its
 * script calls are out go to Redis together. So "single" measures one
 * decision per broker round trip, not one per Redis call.
 *
 * Not a test: no pass/fail beyond "could not measure" (1) and usage (2).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <zmq.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/client.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/proc.h"
#include "tools/bench/connect.h"

#define S_RING        16384
#define S_SAMPLES_MAX 20000000
#define S_BATCHES_MAX 8

typedef struct {
    int subjects, seconds, inflight, nbatch;
    int batches[S_BATCHES_MAX];
    bool gmail;
    const char *broker;
} s_opts_t;

typedef struct {
    int64_t decisions, allowed, refused, cached, calls, call_decisions, errors;
} s_counts_t;

typedef struct {
    s_opts_t o;
    ain_client_t *client;
    int64_t sent_us[S_RING];
    bool busy[S_RING];
    int inflight, window; /* requests in flight, and at most */
    uint64_t next_corr, rng;
    uint32_t *lat_us;
    size_t nlat;
    s_counts_t got; /* as the client counted */
    msgpack_sbuffer buf;
} s_bench_t;

static uint64_t s_rand(s_bench_t *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

/* One decision for a random subject; returns the envelope user. */
static uint64_t s_pack_decision(s_bench_t *b, msgpack_packer *pk)
{
    uint64_t subject = s_rand(b) % (uint64_t)b->o.subjects + 1;
    if (!b->o.gmail) {
        msgpack_pack_map(pk, 1);
        ain_mp_pack_kv_str(pk, "quota", "api");
        return subject;
    }
    char account[40];
    snprintf(account, sizeof account, "bench%llu@example.com", (unsigned long long)subject);
    msgpack_pack_map(pk, 3);
    ain_mp_pack_kv_str(pk, "quota", "gmail");
    ain_mp_pack_kv_str(pk, "account", account);
    ain_mp_pack_kv_str(pk, "method", "messages.get");
    return subject;
}

static int s_send(s_bench_t *b, int batch)
{
    uint64_t corr = b->next_corr;
    if (b->busy[corr % S_RING])
        return -1;
    msgpack_sbuffer_clear(&b->buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->buf, msgpack_sbuffer_write);
    uint64_t user;
    if (batch == 1) {
        user = s_pack_decision(b, &pk);
    } else {
        /* The api quota is the envelope user's: one user per request, so
         * a batch is that user's decisions (as an edge would batch). */
        msgpack_pack_map(&pk, 1);
        ain_mp_pack_str(&pk, "decisions");
        msgpack_pack_array(&pk, (uint32_t)batch);
        user = s_pack_decision(b, &pk);
        for (int i = 1; i < batch; i++)
            s_pack_decision(b, &pk);
    }
    ain_envelope_t env = {.type = AIN_MSG_RATE_CHECK,
                          .corr = corr,
                          .user = user,
                          .deadline_ms = ain_clock_wall_ms() + 10000,
                          .body = (const uint8_t *)b->buf.data,
                          .body_len = b->buf.size};
    if (ain_client_send(b->client, "ratelimit", &env) < 0)
        return -1;
    b->next_corr++;
    b->busy[corr % S_RING] = true;
    b->sent_us[corr % S_RING] = ain_clock_mono_us();
    b->inflight++;
    return 0;
}

static void s_count_one(s_bench_t *b, const msgpack_object *d)
{
    bool allowed = false;
    b->got.decisions++;
    if (ain_mp_get_bool(d, "allowed", &allowed) == 1 && allowed)
        b->got.allowed++;
    else
        b->got.refused++;
}

static void s_on_reply(s_bench_t *b, const ain_reply_t *r)
{
    int64_t us = ain_clock_mono_us() - b->sent_us[r->env.corr % S_RING];
    if (b->nlat < S_SAMPLES_MAX)
        b->lat_us[b->nlat++] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
    ain_body_t body;
    if (r->env.status != AIN_STATUS_OK ||
        ain_body_parse(&body, r->env.body, r->env.body_len) != AIN_STATUS_OK) {
        b->got.errors++;
        return;
    }
    const msgpack_object *results = ain_mp_get(body.root, "results");
    if (results && results->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < results->via.array.size; i++)
            s_count_one(b, &results->via.array.ptr[i]);
    else
        s_count_one(b, body.root);
    ain_body_release(&body);
}

static int s_drain(s_bench_t *b, int timeout_ms)
{
    ain_reply_t r;
    int n = 0, rc;
    while ((rc = ain_client_recv(b->client, &r, n ? 0 : timeout_ms)) == 1) {
        size_t slot = r.env.corr % S_RING;
        if (b->busy[slot]) {
            s_on_reply(b, &r);
            b->busy[slot] = false;
            b->inflight--;
        }
        ain_reply_close(&r);
        n++;
    }
    return rc < 0 ? -1 : n;
}

/* The actors' counters, summed over every worker STATS reaches (one per
 * call: asks as many times as there may be workers and keeps distinct
 * instances). */
static int s_actor_counts(s_bench_t *b, s_counts_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t seen[16];
    int nseen = 0;
    for (int i = 0; i < 32 && nseen < 16; i++) {
        ain_reply_t r;
        if (ain_client_call(b->client, "ratelimit", AIN_MSG_STATS, 0, NULL, 0, 3000, &r) !=
            AIN_STATUS_OK) {
            ain_reply_close(&r);
            return nseen ? 0 : -1;
        }
        ain_body_t body;
        uint64_t instance = 0;
        if (ain_body_parse(&body, r.env.body, r.env.body_len) == AIN_STATUS_OK &&
            ain_mp_get_u64(body.root, "instance", &instance) == 1) {
            bool dup = false;
            for (int k = 0; k < nseen; k++)
                dup |= seen[k] == instance;
            const msgpack_object *m = ain_mp_get(body.root, "metrics");
            if (!dup && m) {
                seen[nseen++] = instance;
                int64_t v;
#define GET(field, name)                                                                           \
    if (ain_mp_get_i64(m, name, &v) == 1)                                                          \
    out->field += v
                GET(decisions, "ratelimit.decisions");
                GET(allowed, "ratelimit.allowed");
                GET(refused, "ratelimit.refused");
                GET(cached, "ratelimit.refused.cached");
                GET(calls, "ratelimit.redis.calls");
                GET(call_decisions, "ratelimit.redis.call_decisions");
#undef GET
            }
        }
        ain_body_release(&body);
        ain_reply_close(&r);
    }
    return 0;
}

static int s_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int s_phase(s_bench_t *b, int batch)
{
    s_counts_t before, after;
    memset(&b->got, 0, sizeof b->got);
    b->nlat = 0;
    b->window = b->o.inflight / batch > 0 ? b->o.inflight / batch : 1;
    if (s_actor_counts(b, &before) < 0)
        return -1;
    int64_t t0 = ain_clock_mono_us(), stop = t0 + (int64_t)b->o.seconds * 1000000;
    for (int64_t now = t0; now < stop; now = ain_clock_mono_us()) {
        while (b->inflight < b->window && s_send(b, batch) == 0)
            ;
        if (s_drain(b, 1) < 0)
            return -1;
    }
    int64_t t1 = ain_clock_mono_us();
    while (b->inflight > 0 && s_drain(b, 3000) > 0)
        ;
    if (s_actor_counts(b, &after) < 0)
        return -1;
    double secs = (double)(t1 - t0) / 1e6;
    qsort(b->lat_us, b->nlat, sizeof *b->lat_us, s_cmp_u32);
    int64_t calls = after.calls - before.calls,
            in_calls = after.call_decisions - before.call_decisions;
    printf("%-8s batch %2d x %4d in flight: %7.0f decisions/s  %6.0f requests/s  p50 %5u us  p99 "
           "%6u us  "
           "admitted %5.1f%%  per Redis call %5.1f  deny cache %lld  errors %lld\n",
           batch == 1 ? "single" : "batched", batch, b->window, (double)b->got.decisions / secs,
           (double)b->nlat / secs, b->nlat ? b->lat_us[b->nlat / 2] : 0,
           b->nlat ? b->lat_us[b->nlat * 99 / 100] : 0,
           b->got.decisions ? 100.0 * (double)b->got.allowed / (double)b->got.decisions : 0.0,
           calls ? (double)in_calls / (double)calls : 0.0,
           (long long)(after.cached - before.cached), (long long)b->got.errors);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ main */

static void s_usage(FILE *out)
{
    fprintf(out, "usage: ainbox-bench-ratelimit [--seconds S] [--inflight K] [--subjects N]\n"
                 "                              [--batch B]... [--gmail] [--broker ENDPOINT]\n"
                 "  --seconds S    length of each phase (default 10)\n"
                 "  --inflight K   decisions in flight (default 512): K / B requests\n"
                 "  --subjects N   users (api) or Gmail accounts decided for (default 10000)\n"
                 "  --batch B      decisions per request, one phase each (default: 1 and 64)\n"
                 "  --gmail        Gmail messages.get decisions (account + project buckets)\n"
                 "                 instead of the user API limit\n"
                 "Needs a ratelimit actor behind the broker: tools/bench/ratelimit-bench.sh\n"
                 "sets one up privately, with limits high enough to admit most decisions.\n");
}

static int s_parse(int argc, char **argv, s_opts_t *o)
{
    *o = (s_opts_t){10000, 10, 512, 0, {0}, false, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long n = v ? strtol(v, &end, 10) : -1;
        bool num = v && end && !*end && n > 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 1;
        } else if (strcmp(a, "--gmail") == 0) {
            o->gmail = true;
            continue;
        } else if (strcmp(a, "--broker") == 0 && v) {
            o->broker = v;
        } else if (strcmp(a, "--seconds") == 0 && num && n <= 3600) {
            o->seconds = (int)n;
        } else if (strcmp(a, "--inflight") == 0 && num && n <= S_RING / 2) {
            o->inflight = (int)n;
        } else if (strcmp(a, "--subjects") == 0 && num && n <= 10000000) {
            o->subjects = (int)n;
        } else if (strcmp(a, "--batch") == 0 && num && n <= 64 && o->nbatch < S_BATCHES_MAX) {
            o->batches[o->nbatch++] = (int)n;
        } else {
            fprintf(stderr, "ainbox-bench-ratelimit: bad option or value: %s %s\n", a, v ? v : "");
            s_usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->nbatch == 0) {
        o->batches[o->nbatch++] = 1;
        o->batches[o->nbatch++] = 64;
    }
    return 0;
}

int main(int argc, char **argv)
{
    s_bench_t *b = AIN_NEW(s_bench_t);
    int rc = s_parse(argc, argv, &b->o);
    if (rc != 0) {
        free(b);
        return rc < 0 ? 2 : 0;
    }
    ain_bench_conn_t conn;
    rc = ain_bench_connect(&conn, "ainbox-bench-ratelimit", b->o.broker, "ratelimit");
    b->client = conn.client;
    b->lat_us = ain_malloc(S_SAMPLES_MAX * sizeof *b->lat_us);
    b->next_corr = 1;
    b->rng = ain_random_u64() | 1;
    msgpack_sbuffer_init(&b->buf);
    if (rc == 0) {
        printf("%s decisions over %d subjects, %d decisions in flight, %d s per phase\n",
               b->o.gmail ? "Gmail messages.get" : "user API", b->o.subjects, b->o.inflight,
               b->o.seconds);
        for (int i = 0; i < b->o.nbatch && rc == 0; i++)
            if (s_phase(b, b->o.batches[i]) < 0) {
                fprintf(stderr, "ainbox-bench-ratelimit: the broker stopped answering\n");
                rc = 1;
            }
    }
    msgpack_sbuffer_destroy(&b->buf);
    free(b->lat_us);
    ain_bench_disconnect(&conn);
    free(b);
    return rc;
}
