/* cache_bench.c: ainbox-bench-cache, the cache actor under a skewed inbox
 * workload with mail changing underneath.
 *
 * Against a running broker with cache actors (tools/bench/cache-bench.sh
 * starts everything privately): seeds U users' mailboxes through
 * MAIL_APPLY, then for S seconds keeps K reads in flight, choosing the
 * user and the view by Zipf laws (a few users and their inbox are read
 * far more than the rest), while W writes per second mark messages read or
 * unread. Prints throughput and latency as the client saw them, hit rates
 * per layer from the cache actors' own counters (whole run and after the
 * warm-up), and stale reads.
 *
 * Stale read: a read sent after the last write to its user was answered,
 * with no write of that user in flight until its reply, that does not show
 * what that write made true. The bench keeps the truth itself: each
 * thread's first message is the one that is toggled, so its unread flag,
 * the thread's unread count in every list, the thread view and the INBOX
 * unread total are all known. Reads that overlap a write are counted as
 * unchecked, not guessed.
 *
 * Not a test: no pass/fail beyond "could not measure" (1) and usage (2).
 */
#include <math.h>
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
#include "runtime/mpjson.h"
#include "runtime/proc.h"
#include "tools/bench/connect.h"

#define S_RING        16384 /* > the most requests in flight */
#define S_MAX_THREADS 200
#define S_SAMPLES_MAX 20000000
#define S_T0          1700000000000LL
#define S_FIXED_VIEWS 3 /* inbox list, counts, Work list; then one per thread */

typedef struct {
    int users, threads, seconds, warmup, inflight, writes_per_s;
    double zipf_users, zipf_views;
    bool seed, seed_only;
    const char *broker;
} s_opts_t;

/* What the bench knows to be true of one user's mailbox. */
typedef struct {
    bool unread[S_MAX_THREADS]; /* of thread k's first message */
    bool write_pending;
    bool unknown;     /* a write's outcome is unknown: never checked again */
    int64_t acked_us; /* when the last write was answered */
    uint64_t write_seq;
} s_user_t;

typedef enum { S_FREE, S_READ, S_WRITE } s_kind_t;

typedef struct {
    s_kind_t kind;
    int user, view, thread;
    bool value;         /* a write: the unread flag it sets */
    bool checkable;     /* a read: no write of its user in flight at send */
    uint64_t write_seq; /* a read: the user's write count at send */
    int64_t sent_us;
} s_slot_t;

typedef struct {
    uint64_t reads, read_errors, writes, write_errors, writes_pending, checked, unchecked, stale;
    uint64_t not_found;
} s_tally_t;

typedef struct {
    int64_t lookups, l1, l2, l3, misses, failed, coalesced, refreshes, l3_queries, l2_errors, late;
    int instances;
} s_layers_t;

typedef struct {
    s_opts_t o;
    ain_client_t *client;
    s_user_t *users;
    double *cdf_users, *cdf_views, *cdf_threads;
    int nviews;
    int inflight_writes;
    s_slot_t ring[S_RING];
    int inflight_reads;
    uint64_t next_corr, rng;
    s_tally_t tally;
    uint32_t *lat_us;
    size_t nlat;
    msgpack_sbuffer buf;
} s_bench_t;

/* ------------------------------------------------------------ randomness */

static double s_rand01(s_bench_t *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return (double)((b->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* The cumulative distribution of Zipf(s) over n ranks. */
static double *s_zipf_cdf(int n, double s)
{
    double *cdf = ain_malloc((size_t)n * sizeof *cdf), sum = 0;
    for (int i = 0; i < n; i++)
        cdf[i] = sum += 1.0 / pow(i + 1, s);
    for (int i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

static int s_zipf(s_bench_t *b, const double *cdf, int n)
{
    double r = s_rand01(b);
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ------------------------------------------------------------ requests */

static msgpack_packer s_packer(s_bench_t *b)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&b->buf);
    msgpack_packer_init(&pk, &b->buf, msgpack_sbuffer_write);
    return pk;
}

static int s_send(s_bench_t *b, uint16_t type, int user, s_slot_t slot)
{
    uint64_t corr = b->next_corr;
    s_slot_t *s = &b->ring[corr % S_RING];
    if (s->kind != S_FREE)
        return -1; /* the ring is full: try later */
    ain_envelope_t env = {.type = type,
                          .corr = corr,
                          .user = (uint64_t)user,
                          .deadline_ms = ain_clock_wall_ms() + 10000,
                          .body = (const uint8_t *)b->buf.data,
                          .body_len = b->buf.size};
    if (ain_client_send(b->client, "cache", &env) < 0)
        return -1;
    b->next_corr++;
    slot.sent_us = ain_clock_mono_us();
    *s = slot;
    return 0;
}

/* View v of a user: 0 inbox list, 1 counts, 2 the Work list, 3+k thread
 * T-1-k (the newest threads are the most read). */
static int s_send_read(s_bench_t *b, int user, int view)
{
    msgpack_packer pk = s_packer(b);
    uint16_t type;
    int thread = -1;
    if (view == 0 || view == 2) {
        type = AIN_MSG_MAIL_LIST;
        msgpack_pack_map(&pk, 2);
        if (view == 0)
            ain_mp_pack_kv_str(&pk, "role", "inbox");
        else
            ain_mp_pack_kv_str(&pk, "label", "Work");
        ain_mp_pack_kv_u64(&pk, "limit", 20);
    } else if (view == 1) {
        type = AIN_MSG_MAIL_COUNTS;
        msgpack_pack_map(&pk, 0);
    } else {
        char id[16];
        thread = b->o.threads - 1 - (view - S_FIXED_VIEWS);
        snprintf(id, sizeof id, "t%d", thread);
        type = AIN_MSG_MAIL_THREAD;
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_str(&pk, "thread", id);
        ain_mp_pack_str(&pk, "bodies");
        msgpack_pack_true(&pk);
    }
    s_user_t *u = &b->users[user - 1];
    s_slot_t slot = {S_READ,       user, view, thread, false, !u->write_pending && !u->unknown,
                     u->write_seq, 0};
    return s_send(b, type, user, slot);
}

static int s_send_write(s_bench_t *b, int user, int thread, bool unread)
{
    char id[16];
    snprintf(id, sizeof id, "t%da", thread);
    msgpack_packer pk = s_packer(b);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_u64(&pk, "account", (uint64_t)user);
    ain_mp_pack_str(&pk, "changes");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 3);
    ain_mp_pack_kv_str(&pk, "op", "set_flags");
    ain_mp_pack_kv_str(&pk, "id", id);
    ain_mp_pack_str(&pk, "unread");
    if (unread)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    s_slot_t slot = {S_WRITE, user, -1, thread, unread, false, 0, 0};
    if (s_send(b, AIN_MSG_MAIL_APPLY, user, slot) < 0)
        return -1;
    b->inflight_writes++;
    b->users[user - 1].write_pending = true;
    b->users[user - 1].write_seq++;
    return 0;
}

/* ------------------------------------------------------------ checking */

static bool s_str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static int64_t s_int(const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)o->via.u64;
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return -1;
}

/* Thread k's id "t<k>" -> k, or -1. */
static int s_thread_of(const msgpack_object *id)
{
    if (!id || id->type != MSGPACK_OBJECT_STR || id->via.str.size < 2 || id->via.str.ptr[0] != 't')
        return -1;
    int k = 0;
    for (uint32_t i = 1; i < id->via.str.size; i++) {
        char c = id->via.str.ptr[i];
        if (c < '0' || c > '9')
            return -1;
        k = k * 10 + (c - '0');
    }
    return k;
}

/* True if the data of a read shows what the bench knows of `u`. */
static bool s_fresh(const s_bench_t *b, const s_slot_t *s, const s_user_t *u,
                    const msgpack_object *data)
{
    if (s->view == 0 || s->view == 2) {
        const msgpack_object *threads = ain_mp_get(data, "threads");
        if (!threads || threads->type != MSGPACK_OBJECT_ARRAY)
            return false;
        for (uint32_t i = 0; i < threads->via.array.size; i++) {
            const msgpack_object *t = &threads->via.array.ptr[i];
            int k = s_thread_of(ain_mp_get(t, "id"));
            if (k < 0 || k >= b->o.threads || s_int(ain_mp_get(t, "unread")) != u->unread[k])
                return false;
        }
        return true;
    }
    if (s->view == 1) {
        const msgpack_object *labels = ain_mp_get(data, "labels");
        int64_t want = 0;
        for (int k = 0; k < b->o.threads; k++)
            want += u->unread[k];
        for (uint32_t i = 0;
             labels && labels->type == MSGPACK_OBJECT_ARRAY && i < labels->via.array.size; i++) {
            const msgpack_object *l = &labels->via.array.ptr[i];
            if (s_str_is(ain_mp_get(l, "id"), "INBOX"))
                return s_int(ain_mp_get(l, "unread")) == want;
        }
        return false;
    }
    const msgpack_object *msgs = ain_mp_get(data, "messages");
    if (!msgs || msgs->type != MSGPACK_OBJECT_ARRAY || msgs->via.array.size < 1)
        return false;
    const msgpack_object *unread = ain_mp_get(&msgs->via.array.ptr[0], "unread");
    return unread && unread->type == MSGPACK_OBJECT_BOOLEAN &&
           unread->via.boolean == u->unread[s->thread];
}

static void s_on_read(s_bench_t *b, s_slot_t *s, const ain_reply_t *r)
{
    b->inflight_reads--;
    b->tally.reads++;
    if (b->nlat < S_SAMPLES_MAX)
        b->lat_us[b->nlat++] = (uint32_t)(ain_clock_mono_us() - s->sent_us);
    if (r->env.status != AIN_STATUS_OK) {
        b->tally.read_errors++;
        b->tally.not_found += r->env.status == AIN_STATUS_NOT_FOUND;
        return;
    }
    s_user_t *u = &b->users[s->user - 1];
    if (!s->checkable || u->write_pending || u->write_seq != s->write_seq || u->unknown) {
        b->tally.unchecked++;
        return;
    }
    ain_body_t body;
    bool fresh = false;
    if (ain_body_parse(&body, r->env.body, r->env.body_len) == AIN_STATUS_OK)
        fresh = s_fresh(b, s, u, ain_mp_get(body.root, "data"));
    b->tally.checked++;
    if (!fresh) {
        b->tally.stale++;
        if (b->tally.stale <= 10) {
            json_t *j = ain_mpjson_from_body(r->env.body, r->env.body_len);
            char *text = json_dumps(j, JSON_COMPACT);
            fprintf(stderr,
                    "stale read: user %d view %d, sent %lld us after the write's answer: %.300s\n",
                    s->user, s->view, (long long)(s->sent_us - u->acked_us), text);
            free(text);
            json_decref(j);
        }
    }
    ain_body_release(&body);
}

static void s_on_write(s_bench_t *b, s_slot_t *s, const ain_reply_t *r)
{
    s_user_t *u = &b->users[s->user - 1];
    u->write_pending = false;
    u->acked_us = ain_clock_mono_us();
    b->inflight_writes--;
    b->tally.writes++;
    if (r->env.status == AIN_STATUS_OK) {
        if (s->thread >= 0) /* (-1: the seed, whose truth is set as it is sent) */
            u->unread[s->thread] = s->value;
        /* "caches": "pending...": committed, but Redis did not take the
         * invalidation (it is replayed on reconnect). */
        ain_body_t body;
        const char *caches;
        size_t n;
        if (ain_body_parse(&body, r->env.body, r->env.body_len) == AIN_STATUS_OK &&
            ain_mp_get_str(body.root, "caches", &caches, &n) == 1 && n >= 7 &&
            memcmp(caches, "pending", 7) == 0)
            b->tally.writes_pending++;
        ain_body_release(&body);
    } else {
        b->tally.write_errors++;
        u->unknown = true; /* it may or may not have been applied */
    }
}

/* Handles every reply waiting, or one within `timeout_ms`. */
static int s_drain(s_bench_t *b, int timeout_ms)
{
    ain_reply_t r;
    int n = 0, rc;
    while ((rc = ain_client_recv(b->client, &r, n ? 0 : timeout_ms)) == 1) {
        s_slot_t *s = &b->ring[r.env.corr % S_RING];
        if (s->kind == S_READ)
            s_on_read(b, s, &r);
        else if (s->kind == S_WRITE)
            s_on_write(b, s, &r);
        s->kind = S_FREE;
        ain_reply_close(&r);
        n++;
    }
    return rc < 0 ? -1 : n;
}

/* ------------------------------------------------------------ seeding */

/* One batch per user: T threads of two messages (the first unread in
 * every third thread), all in INBOX, every fifth also in Work. */
static int s_seed(s_bench_t *b)
{
    int sent = 0, done = 0, failed = 0;
    int64_t deadline = ain_clock_mono_ms() + 120000;
    while (done < b->o.users && ain_clock_mono_ms() < deadline) {
        while (sent < b->o.users && sent - done < 32) {
            int user = sent + 1;
            msgpack_packer pk = s_packer(b);
            msgpack_pack_map(&pk, 2);
            ain_mp_pack_kv_u64(&pk, "account", (uint64_t)user);
            ain_mp_pack_str(&pk, "changes");
            msgpack_pack_array(&pk, (uint32_t)(2 * b->o.threads));
            for (int k = 0; k < b->o.threads; k++) {
                for (int m = 0; m < 2; m++) {
                    char id[16], thread[16], subject[32];
                    bool unread = m == 0 && k % 3 == 0;
                    snprintf(id, sizeof id, "t%d%c", k, m ? 'b' : 'a');
                    snprintf(thread, sizeof thread, "t%d", k);
                    snprintf(subject, sizeof subject, "Subject of thread %d", k);
                    msgpack_pack_map(&pk, 10);
                    ain_mp_pack_kv_str(&pk, "op", "upsert_message");
                    ain_mp_pack_kv_str(&pk, "id", id);
                    ain_mp_pack_kv_str(&pk, "thread_id", thread);
                    ain_mp_pack_kv_i64(&pk, "sent_at_ms", S_T0 + k * 60000LL + m);
                    ain_mp_pack_str(&pk, "labels");
                    msgpack_pack_array(&pk, k % 5 == 0 ? 2 : 1);
                    ain_mp_pack_str(&pk, "INBOX");
                    if (k % 5 == 0)
                        ain_mp_pack_str(&pk, "Work");
                    ain_mp_pack_str(&pk, "unread");
                    if (unread)
                        msgpack_pack_true(&pk);
                    else
                        msgpack_pack_false(&pk);
                    ain_mp_pack_kv_str(&pk, "subject", subject);
                    ain_mp_pack_kv_str(&pk, "from_name", "A Sender");
                    ain_mp_pack_kv_str(&pk, "from_addr", "sender@example.com");
                    ain_mp_pack_kv_str(&pk, "snippet",
                                       "A few words of the message, as a list shows them.");
                }
            }
            s_slot_t slot = {S_WRITE, user, -1, -1, false, false, 0, 0};
            if (s_send(b, AIN_MSG_MAIL_APPLY, user, slot) < 0)
                break;
            b->inflight_writes++;
            b->users[user - 1].write_pending = true;
            sent++;
        }
        uint64_t errors = b->tally.write_errors;
        int n = s_drain(b, 100);
        if (n < 0)
            return -1;
        done += n;
        failed += (int)(b->tally.write_errors - errors);
    }
    memset(&b->tally, 0, sizeof b->tally);
    if (done < b->o.users || failed) {
        fprintf(stderr, "seeding failed: %d of %d users answered, %d refused\n", done, b->o.users,
                failed);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ layers */

/* Sums the counters of every cache actor (asked by STATS until no new
 * instance answers for a while). */
static int s_layers(s_bench_t *b, s_layers_t *out)
{
    uint64_t seen[64];
    int nseen = 0, misses = 0;
    memset(out, 0, sizeof *out);
    while (misses < 12 && nseen < 64) {
        ain_reply_t r;
        if (ain_client_call(b->client, "cache", AIN_MSG_STATS, 0, "", 0, 3000, &r) != AIN_STATUS_OK)
            return -1;
        ain_body_t body;
        uint64_t inst = 0;
        bool fresh = false;
        if (ain_body_parse(&body, r.env.body, r.env.body_len) == AIN_STATUS_OK &&
            ain_mp_get_u64(body.root, "instance", &inst) == 1) {
            fresh = true;
            for (int i = 0; i < nseen; i++)
                fresh = fresh && seen[i] != inst;
        }
        if (fresh) {
            const msgpack_object *m = ain_mp_get(body.root, "metrics");
            seen[nseen++] = inst;
            out->lookups += s_int(ain_mp_get(m, "cache.lookups"));
            out->l1 += s_int(ain_mp_get(m, "cache.l1.hits"));
            out->l2 += s_int(ain_mp_get(m, "cache.l2.hits"));
            out->l3 += s_int(ain_mp_get(m, "cache.l3.hits"));
            out->misses += s_int(ain_mp_get(m, "cache.misses"));
            out->failed += s_int(ain_mp_get(m, "cache.failed"));
            out->coalesced += s_int(ain_mp_get(m, "cache.coalesced"));
            out->refreshes += s_int(ain_mp_get(m, "cache.early_refreshes"));
            out->l3_queries += s_int(ain_mp_get(m, "cache.l3.queries"));
            out->l2_errors += s_int(ain_mp_get(m, "cache.l2.errors"));
            out->late += s_int(ain_mp_get(m, "cache.invalidations.late"));
            misses = 0;
        } else {
            misses++;
        }
        ain_body_release(&body);
        ain_reply_close(&r);
    }
    out->instances = nseen;
    return 0;
}

static void s_layers_sub(s_layers_t *a, const s_layers_t *b)
{
    a->lookups -= b->lookups;
    a->l1 -= b->l1;
    a->l2 -= b->l2;
    a->l3 -= b->l3;
    a->misses -= b->misses;
    a->failed -= b->failed;
    a->coalesced -= b->coalesced;
    a->refreshes -= b->refreshes;
    a->l3_queries -= b->l3_queries;
    a->l2_errors -= b->l2_errors;
    a->late -= b->late;
}

static double s_pct(int64_t part, int64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0;
}

static void s_print_layers(const char *what, const s_layers_t *l)
{
    printf("%-18s %9lld lookups: L1 %5.1f%%  L2 %5.1f%%  L3 %5.1f%%  not found %lld  failed %lld"
           "  | hit rate (L1+L2) %5.2f%%\n",
           what, (long long)l->lookups, s_pct(l->l1, l->lookups), s_pct(l->l2, l->lookups),
           s_pct(l->l3, l->lookups), (long long)l->misses, (long long)l->failed,
           s_pct(l->l1 + l->l2, l->lookups));
}

/* ------------------------------------------------------------ the run */

static int s_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int s_run(s_bench_t *b)
{
    s_layers_t start, warm, end;
    if (s_layers(b, &start) < 0)
        return -1;
    int64_t t0 = ain_clock_mono_us(), warm_at = t0 + (int64_t)b->o.warmup * 1000000;
    int64_t stop_at = t0 + (int64_t)b->o.seconds * 1000000;
    int64_t write_gap = b->o.writes_per_s ? 1000000 / b->o.writes_per_s : 0, next_write = t0;
    bool warmed = b->o.warmup == 0;
    uint64_t reads_at_warm = 0;
    int64_t warm_us = t0;
    if (warmed)
        warm = start;
    for (int64_t now = t0; now < stop_at; now = ain_clock_mono_us()) {
        if (!warmed && now >= warm_at) {
            /* STATS is synchronous: drain first so nothing is dropped. */
            while ((b->inflight_reads > 0 || b->inflight_writes > 0) && s_drain(b, 100) >= 0)
                ;
            if (s_layers(b, &warm) < 0)
                return -1;
            warmed = true;
            reads_at_warm = b->tally.reads;
            warm_us = ain_clock_mono_us();
        }
        if (next_write < now - 1000000)
            next_write = now; /* behind (the warm-up pause): no burst */
        while (write_gap && now >= next_write) {
            next_write += write_gap;
            int user = s_zipf(b, b->cdf_users, b->o.users) + 1;
            s_user_t *u = &b->users[user - 1];
            if (u->write_pending || u->unknown)
                continue;
            int k = b->o.threads - 1 - s_zipf(b, b->cdf_threads, b->o.threads);
            s_send_write(b, user, k, !u->unread[k]);
        }
        while (b->inflight_reads < b->o.inflight) {
            int user = s_zipf(b, b->cdf_users, b->o.users) + 1;
            if (s_send_read(b, user, s_zipf(b, b->cdf_views, b->nviews)) < 0)
                break;
            b->inflight_reads++;
        }
        if (s_drain(b, 1) < 0)
            return -1;
    }
    int64_t t1 = ain_clock_mono_us();
    while ((b->inflight_reads > 0 || b->inflight_writes > 0) && s_drain(b, 2000) > 0)
        ;
    if (s_layers(b, &end) < 0)
        return -1;
    s_layers_t whole = end, steady = end;
    s_layers_sub(&whole, &start);
    s_layers_sub(&steady, &warm);
    qsort(b->lat_us, b->nlat, sizeof *b->lat_us, s_cmp_u32);
    double secs = (double)(t1 - t0) / 1e6, steady_secs = (double)(t1 - warm_us) / 1e6;
    printf("\n%d users x %d threads (%d views each), Zipf s=%.2f over users, s=%.2f over views\n",
           b->o.users, b->o.threads, b->nviews, b->o.zipf_users, b->o.zipf_views);
    printf("%d s (%d s warm-up), %d reads in flight, %d writes/s; %d cache actor(s)\n",
           b->o.seconds, b->o.warmup, b->o.inflight, b->o.writes_per_s, end.instances);
    printf("reads              %9llu  %8.0f/s (after warm-up %.0f/s)  p50 %u us  p99 %u us"
           "  errors %llu\n",
           (unsigned long long)b->tally.reads, (double)b->tally.reads / secs,
           steady_secs > 0 ? (double)(b->tally.reads - reads_at_warm) / steady_secs : 0,
           b->nlat ? b->lat_us[b->nlat / 2] : 0, b->nlat ? b->lat_us[b->nlat * 99 / 100] : 0,
           (unsigned long long)b->tally.read_errors);
    printf("writes             %9llu  %8.1f/s  errors %llu, invalidation left pending %llu\n",
           (unsigned long long)b->tally.writes, (double)b->tally.writes / secs,
           (unsigned long long)b->tally.write_errors, (unsigned long long)b->tally.writes_pending);
    s_print_layers("whole run", &whole);
    if (b->o.warmup)
        s_print_layers("after warm-up", &steady);
    printf("coalesced %lld, early refreshes %lld, L3 queries %lld, L2 errors %lld, "
           "invalidations received 5 ms or more after sending %lld\n",
           (long long)whole.coalesced, (long long)whole.refreshes, (long long)whole.l3_queries,
           (long long)whole.l2_errors, (long long)whole.late);
    printf("stale reads        %9llu  of %llu checked (%llu overlapped a write: unchecked)\n",
           (unsigned long long)b->tally.stale, (unsigned long long)b->tally.checked,
           (unsigned long long)b->tally.unchecked);
    return 0;
}

/* ------------------------------------------------------------ main */

static void s_usage(FILE *out)
{
    fprintf(out, "usage: ainbox-bench-cache [--users N] [--threads T] [--seconds S] [--warmup S]\n"
                 "                          [--inflight K] [--writes W] [--zipf-users s]\n"
                 "                          [--zipf-views s] [--no-seed] [--broker ENDPOINT]\n"
                 "  --users N      users (default 1000; ids 1..N, each with account id = user id)\n"
                 "  --threads T    threads per user, two messages each (default 30, at most 200)\n"
                 "  --seconds S    length of the run (default 20)\n"
                 "  --warmup S     seconds before the steady-state figures start (default 5)\n"
                 "  --inflight K   reads in flight (default 64)\n"
                 "  --writes W     writes per second during the run (default 10)\n"
                 "  --zipf-users s skew over users (default 1.0)\n"
                 "  --zipf-views s skew over a user's views (default 1.0)\n"
                 "  --no-seed      the mailboxes are already there\n"
                 "  --seed-only    create the mailboxes and stop\n"
                 "Needs users and accounts 1..N in the store and a cache actor behind the\n"
                 "broker: tools/bench/cache-bench.sh sets all that up privately.\n");
}

static int s_num(const char *v, double min, double max, double *out)
{
    char *end = NULL;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !end || *end || d < min || d > max)
        return -1;
    *out = d;
    return 0;
}

static int s_parse(int argc, char **argv, s_opts_t *o)
{
    *o = (s_opts_t){1000, 30, 20, 5, 64, 10, 1.0, 1.0, true, false, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
        int rc = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 1;
        } else if (strcmp(a, "--no-seed") == 0) {
            o->seed = false;
            continue;
        } else if (strcmp(a, "--seed-only") == 0) {
            o->seed_only = true;
            continue;
        } else if (strcmp(a, "--broker") == 0 && v) {
            o->broker = v;
        } else if (strcmp(a, "--users") == 0 && (rc = s_num(v, 1, 1e6, &d)) == 0) {
            o->users = (int)d;
        } else if (strcmp(a, "--threads") == 0 && (rc = s_num(v, 1, S_MAX_THREADS, &d)) == 0) {
            o->threads = (int)d;
        } else if (strcmp(a, "--seconds") == 0 && (rc = s_num(v, 1, 3600, &d)) == 0) {
            o->seconds = (int)d;
        } else if (strcmp(a, "--warmup") == 0 && (rc = s_num(v, 0, 3600, &d)) == 0) {
            o->warmup = (int)d;
        } else if (strcmp(a, "--inflight") == 0 && (rc = s_num(v, 1, S_RING / 2, &d)) == 0) {
            o->inflight = (int)d;
        } else if (strcmp(a, "--writes") == 0 && (rc = s_num(v, 0, 100000, &d)) == 0) {
            o->writes_per_s = (int)d;
        } else if (strcmp(a, "--zipf-users") == 0 && (rc = s_num(v, 0, 5, &d)) == 0) {
            o->zipf_users = d;
        } else if (strcmp(a, "--zipf-views") == 0 && (rc = s_num(v, 0, 5, &d)) == 0) {
            o->zipf_views = d;
        } else {
            fprintf(stderr, "ainbox-bench-cache: bad option or value: %s %s\n", a, v ? v : "");
            s_usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->warmup >= o->seconds)
        o->warmup = 0;
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
    rc = ain_bench_connect(&conn, "ainbox-bench-cache", b->o.broker, "cache");
    b->client = conn.client;
    b->users = ain_calloc((size_t)b->o.users, sizeof *b->users);
    b->nviews = S_FIXED_VIEWS + b->o.threads;
    b->cdf_users = s_zipf_cdf(b->o.users, b->o.zipf_users);
    b->cdf_views = s_zipf_cdf(b->nviews, b->o.zipf_views);
    b->cdf_threads = s_zipf_cdf(b->o.threads, b->o.zipf_views);
    b->lat_us = ain_malloc(S_SAMPLES_MAX * sizeof *b->lat_us);
    b->next_corr = 1;
    for (int i = 0; i < b->o.users; i++) /* what s_seed writes */
        for (int k = 0; k < b->o.threads; k++)
            b->users[i].unread[k] = k % 3 == 0;
    b->rng = ain_random_u64() | 1;
    msgpack_sbuffer_init(&b->buf);
    if (rc == 0) {
        rc = 1;
        if (b->o.seed && s_seed(b) < 0)
            fprintf(stderr, "ainbox-bench-cache: could not seed the mailboxes\n");
        else if (!b->o.seed_only && s_run(b) < 0)
            fprintf(stderr, "ainbox-bench-cache: the broker stopped answering\n");
        else
            rc = 0;
    }
    msgpack_sbuffer_destroy(&b->buf);
    free(b->lat_us);
    free(b->cdf_users);
    free(b->cdf_views);
    free(b->cdf_threads);
    free(b->users);
    ain_bench_disconnect(&conn);
    free(b);
    return rc;
}
