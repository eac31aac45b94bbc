/* inval.c: the edge follows the cache's invalidations, so that an answer it keeps (rendered.c)
 * can be served without asking the cache actor while nothing has changed.
 *
 * One thread holds a Redis subscription to the channel every write's invalidation is published
 * on (proto/channels.h; the cache actor publishes in the script that makes the write visible).
 * Each message moves a per-user generation (a fixed table of counters indexed by a hash of the
 * user: two users sharing a counter only invalidate each other more often); `everything`, an
 * unreadable message, and every loss or return of the subscription move the epoch, which
 * invalidates all. An answer is stamped with (epoch, generation) as they were BEFORE the actor
 * was asked, so an invalidation that arrives while the answer is on its way makes it not current.
 *
 * Read-your-writes: the writer's answer leaves the cache actor only after Redis has written
 * every subscriber's copy of its invalidation (actors/cache/README.md, "Keys and invalidation").
 * So when a request arrives after that answer, the copy is either still in our socket, or being
 * read and applied by the thread, or applied. ain__inval_current checks all three: the socket
 * not readable (poll: no message, and no close the thread has not seen), the thread not in a read
 * (a sequence counter, odd while it reads and applies, and while there is no subscription), and
 * then the stamp; the counter is read again at the end, as a seqlock. Both the stamp and the check
 * first wait a little (at most S_SETTLE_US) for the thread to apply what already reached the
 * socket: without that, a thread slow to get a core (CPU load) made requests ask the actor where
 * they need not (s_settle; the unsettled ones are counted, `inval.unsettled`). On several hosts the
 * same race as the cache actor's L1 remains (a copy still in flight on the network); the lease
 * (AINBOX_EDGE_FRESH_MS) bounds every such case, as it bounds a write whose invalidation never
 * reached Redis.
 *
 * The subscription is pinged every second; no answer within AINBOX_REDIS_TIMEOUT_MS counts as
 * lost. While lost, nothing is current (every request asks the actor) and the thread reconnects
 * with back-off (100 ms doubling to 5 s).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/channels.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/redis.h"

#define S_GENS          65536 /* per-user generation counters (a power of two) */
#define S_PING_MS       1000
#define S_BACKOFF_MIN   100
#define S_BACKOFF_MAX   5000
#define S_WARN_SILENCE  30000 /* "still lost" at most this often */
#define S_SETTLE_US     5000  /* how long a request waits for the thread to apply what came */
#define S_SETTLE_NAP_NS 20000

struct ain__inval {
    ain_edge_t *edge; /* borrowed: log, metrics */
    ain_redis_target_t target;
    int64_t timeout_ms;
    ain_metric_t *unsettled; /* requests that stopped waiting for the thread (s_settle) */
    pthread_t thread;
    int wake; /* eventfd: stop */
    /* Shared with the request threads. */
    atomic_uint_fast64_t seq; /* odd while reading, applying, or not subscribed */
    atomic_int fd;            /* the subscription's socket, -1 without one */
    _Atomic uint32_t epoch;
    _Atomic uint32_t gens[S_GENS];
    /* The thread's own. */
    redisContext *redis;
    int64_t ping_sent_ms, pong_ms;
    bool ping_pending;
};

static size_t s_slot(uint64_t user)
{
    user ^= user >> 33; /* splitmix64's finaliser */
    user *= 0xff51afd7ed558ccdULL;
    user ^= user >> 33;
    return (size_t)(user & (S_GENS - 1));
}

/* True if the thread has applied everything that reached its socket: not in a read (seq even),
 * subscribed, and the socket not readable. Readable, not FIONREAD: a connection the server
 * closed has no bytes to read, yet is news the thread has not seen (a lost subscription, after
 * which nothing is current), and an answer served meanwhile could be stale. */
static bool s_settled(ain__inval_t *self)
{
    struct pollfd p = {.fd = atomic_load(&self->fd), .events = POLLIN};
    return !(atomic_load(&self->seq) & 1) && p.fd >= 0 && poll(&p, 1, 0) == 0;
}

/* Waits, at most S_SETTLE_US, for the thread to apply what has reached its socket: a message
 * there (a write's invalidation, or the answer to the thread's own PING) made a stamp taken
 * now stale as soon as it was applied, and a check made now "not current", so a request asked
 * the actor where it need not: the read after a write built its answer with a stamp from before
 * that write's invalidation was applied, and the read after it asked again (a spurious
 * revalidation, seen under CPU load where the thread waits longer for a core). The thread
 * applies a message in microseconds once it runs; a sleep lets it run on this core. Returns
 * true if settled. */
static bool s_settle(ain__inval_t *self)
{
    if (s_settled(self))
        return true;
    if (atomic_load(&self->fd) < 0)
        return false; /* not subscribed: nothing to wait for */
    int64_t until = ain_clock_mono_us() + S_SETTLE_US;
    do {
        struct timespec nap = {0, S_SETTLE_NAP_NS};
        nanosleep(&nap, NULL);
        if (s_settled(self))
            return true;
    } while (atomic_load(&self->fd) >= 0 && ain_clock_mono_us() < until);
    ain_metric_inc(self->unsettled);
    return false;
}

uint64_t ain__inval_stamp(ain__inval_t *self, uint64_t user)
{
    if (!self || atomic_load(&self->fd) < 0)
        return 0;
    /* Absorbing what is waiting is safe: every message on the socket now, or arriving while we
     * wait, is from a write already visible (it is published in the script that makes the write
     * visible), so the actor, asked after this stamp, answers with it. */
    s_settle(self);
    return (uint64_t)atomic_load(&self->epoch) << 32 | atomic_load(&self->gens[s_slot(user)]);
}

/* 1 if `stamp` is current for `user`, 0 if not, -1 if the thread has not applied everything yet
 * (so the answer is not known). A seqlock: seq is read before the socket and again after the
 * generations, so a read the thread started meanwhile is noticed. */
static int s_check(ain__inval_t *self, uint64_t user, uint64_t stamp)
{
    uint64_t seq = atomic_load(&self->seq);
    if ((seq & 1) || !s_settled(self))
        return -1;
    uint64_t now =
        (uint64_t)atomic_load(&self->epoch) << 32 | atomic_load(&self->gens[s_slot(user)]);
    if (atomic_load(&self->seq) != seq)
        return -1;
    return now == stamp;
}

bool ain__inval_current(ain__inval_t *self, uint64_t user, uint64_t stamp)
{
    if (!self || stamp == 0)
        return false;
    int current = s_check(self, user, stamp);
    if (current < 0 && s_settle(self))
        current = s_check(self, user, stamp);
    return current == 1;
}

/* ------------------------------------------------------------ the thread */

static void s_everything(ain__inval_t *self)
{
    atomic_fetch_add(&self->epoch, 1);
}

static void s_message(ain__inval_t *self, const char *data, size_t len)
{
    ain_body_t body;
    uint64_t user = 0;
    bool everything = false;
    int rc =
        ain_body_parse(&body, data, len) == AIN_STATUS_OK && body.root->type == MSGPACK_OBJECT_MAP
            ? 0
            : -1;
    if (rc == 0 && ain_mp_get_bool(body.root, "everything", &everything) == 1 && everything)
        s_everything(self);
    else if (rc == 0 && ain_mp_get_u64(body.root, "user", &user) == 1 && user > 0)
        atomic_fetch_add(&self->gens[s_slot(user)], 1);
    else
        rc = -1;
    ain_body_release(&body);
    if (rc == 0) {
        ain_metric_inc(self->edge->m.inval_received);
        return;
    }
    /* Which user it meant is unknown: nothing kept is current any more. */
    s_everything(self);
    ain_metric_inc(self->edge->m.inval_bad);
    ain_warn(self->edge->log, "unreadable message on %s (%zu bytes): every kept answer dropped",
             AIN_CHANNEL_CACHE_INVAL, len);
}

/* Replies read so far: messages applied, a pong noted. -1 if the connection is unusable. */
static int s_drain(ain__inval_t *self)
{
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReplyFromReader(self->redis, (void **)&r) != REDIS_OK)
            return -1;
        if (!r)
            return 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            r->element[0]->type == REDIS_REPLY_STRING) {
            const char *kind = r->element[0]->str;
            if (strcmp(kind, "message") == 0 && r->elements == 3 &&
                r->element[2]->type == REDIS_REPLY_STRING)
                s_message(self, r->element[2]->str, r->element[2]->len);
            else if (strcmp(kind, "pong") == 0) {
                self->ping_pending = false;
                self->pong_ms = ain_clock_mono_ms();
            }
        }
        freeReplyObject(r);
    }
}

/* Connects and subscribes; true once the subscription is confirmed. */
static bool s_subscribe(ain__inval_t *self, char *why, size_t size)
{
    struct timeval tv = {.tv_sec = self->timeout_ms / 1000,
                         .tv_usec = (self->timeout_ms % 1000) * 1000};
    const ain_redis_target_t *t = &self->target;
    self->redis = t->path[0] ? redisConnectUnixWithTimeout(t->path, tv)
                             : redisConnectWithTimeout(t->host, t->port, tv);
    if (!self->redis || self->redis->err) {
        snprintf(why, size, "%s", self->redis ? self->redis->errstr : "out of memory");
        return false;
    }
    redisSetTimeout(self->redis, tv);
    redisEnableKeepAlive(self->redis);
    redisReply *r;
    if (t->password[0]) {
        r = redisCommand(self->redis, "AUTH %s", t->password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) {
            snprintf(why, size, "AUTH refused");
            return false;
        }
    }
    r = redisCommand(self->redis, "SUBSCRIBE %s", AIN_CHANNEL_CACHE_INVAL);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              strcmp(r->element[0]->str, "subscribe") == 0;
    freeReplyObject(r);
    if (!ok)
        snprintf(why, size, "%s", self->redis->err ? self->redis->errstr : "SUBSCRIBE refused");
    return ok;
}

/* Odd (busy: requests ask the actor) or even (followed). Only this thread writes seq. */
static void s_busy(ain__inval_t *self, bool busy)
{
    if ((atomic_load(&self->seq) & 1) != busy)
        atomic_fetch_add(&self->seq, 1);
}

/* True if hiredis holds bytes of a reply not complete yet: a message half read is a message not
 * applied, so the thread stays busy until the rest arrives. */
static bool s_partial(const ain__inval_t *self)
{
    return self->redis->reader->len > self->redis->reader->pos;
}

static void s_disconnect(ain__inval_t *self)
{
    s_busy(self, true); /* until subscribed again */
    atomic_store(&self->fd, -1);
    s_everything(self);
    ain_metric_set(self->edge->m.inval_up, 0);
    if (self->redis)
        redisFree(self->redis);
    self->redis = NULL;
}

/* Sends a PING on the subscription, or notices that the last one went unanswered. -1 if the
 * connection is to be dropped. */
static int s_ping(ain__inval_t *self, int64_t now)
{
    if (self->ping_pending)
        return now - self->ping_sent_ms > self->timeout_ms ? -1 : 0;
    if (now - self->pong_ms < S_PING_MS)
        return 0;
    int done = 0;
    if (redisAppendCommand(self->redis, "PING") != REDIS_OK)
        return -1;
    while (!done)
        if (redisBufferWrite(self->redis, &done) != REDIS_OK)
            return -1;
    self->ping_pending = true;
    self->ping_sent_ms = now;
    return 0;
}

/* Follows the subscription until it is lost (returns) or the edge stops (returns true). */
static bool s_follow(ain__inval_t *self)
{
    for (;;) {
        int64_t now = ain_clock_mono_ms();
        if (s_ping(self, now) < 0) {
            ain_warn(self->edge->log, "%s: no answer from Redis in %lld ms",
                     AIN_CHANNEL_CACHE_INVAL, (long long)self->timeout_ms);
            return false;
        }
        struct pollfd fds[2] = {{.fd = self->redis->fd, .events = POLLIN},
                                {.fd = self->wake, .events = POLLIN}};
        int n = poll(fds, 2, S_PING_MS / 4);
        if (n < 0 && errno != EINTR)
            return false;
        if (fds[1].revents)
            return true;
        if (n <= 0 || !fds[0].revents)
            continue;
        s_busy(self, true);
        int rc = redisBufferRead(self->redis) == REDIS_OK ? s_drain(self) : -1;
        if (rc == 0)
            s_busy(self, s_partial(self));
        if (rc < 0) {
            ain_warn(self->edge->log, "%s: %s", AIN_CHANNEL_CACHE_INVAL,
                     self->redis->err ? self->redis->errstr : "unreadable reply");
            return false;
        }
    }
}

static bool s_sleep(ain__inval_t *self, int64_t ms)
{
    struct pollfd fd = {.fd = self->wake, .events = POLLIN};
    return poll(&fd, 1, (int)ms) > 0;
}

static void *s_thread(void *arg)
{
    ain__inval_t *self = arg;
    int64_t backoff = S_BACKOFF_MIN, warned = INT64_MIN / 2;
    for (;;) {
        char why[128] = "unreadable reply";
        /* s_drain: what came in with the confirmation. */
        if (s_subscribe(self, why, sizeof why) && s_drain(self) == 0) {
            self->ping_pending = false;
            self->pong_ms = ain_clock_mono_ms();
            s_everything(self); /* a stamp taken while we were away is not current */
            atomic_store(&self->fd, self->redis->fd);
            s_busy(self, s_partial(self));
            ain_metric_set(self->edge->m.inval_up, 1);
            ain_info(self->edge->log, "following %s: kept answers served for up to %lld ms",
                     AIN_CHANNEL_CACHE_INVAL, (long long)self->edge->fresh_ms);
            backoff = S_BACKOFF_MIN;
            bool stop = s_follow(self);
            s_disconnect(self);
            if (stop)
                return NULL;
            ain_warn(self->edge->log, "%s lost: every request asks the cache until it is back",
                     AIN_CHANNEL_CACHE_INVAL);
            warned = ain_clock_mono_ms();
        } else {
            s_disconnect(self);
            int64_t now = ain_clock_mono_ms();
            if (now - warned >= S_WARN_SILENCE) {
                ain_warn(self->edge->log, "cannot follow %s (%s): every request asks the cache",
                         AIN_CHANNEL_CACHE_INVAL, why);
                warned = now;
            }
        }
        if (s_sleep(self, backoff))
            return NULL;
        backoff = backoff * 2 > S_BACKOFF_MAX ? S_BACKOFF_MAX : backoff * 2;
    }
}

ain__inval_t *ain__inval_new(ain_edge_t *edge, const ain_config_t *cfg)
{
    ain__inval_t *self = AIN_NEW(ain__inval_t);
    self->edge = edge;
    const char *why = NULL;
    if (ain_redis_target(cfg, &self->target, &why) < 0) {
        ain_error(edge->log, "%s", why);
        free(self);
        return NULL;
    }
    self->timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_REDIS_TIMEOUT_MS);
    self->unsettled = ain_metrics_counter(edge->metrics, "inval.unsettled");
    atomic_init(&self->seq, 1); /* not subscribed yet */
    atomic_init(&self->fd, -1);
    atomic_init(&self->epoch, 1); /* stamps are never 0 */
    self->wake = eventfd(0, EFD_CLOEXEC);
    if (self->wake < 0 || pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        ain_error(edge->log, "cannot start the invalidation follower: %s", strerror(errno));
        if (self->wake >= 0)
            close(self->wake);
        free(self);
        return NULL;
    }
    return self;
}

void ain__inval_destroy(ain__inval_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__inval_t *self = *self_p;
    uint64_t one = 1;
    if (write(self->wake, &one, sizeof one) != sizeof one)
        ain_warn(self->edge->log, "invalidation follower: cannot wake it: %s", strerror(errno));
    pthread_join(self->thread, NULL);
    close(self->wake);
    free(self);
    *self_p = NULL;
}
