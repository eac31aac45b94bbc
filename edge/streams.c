/* streams.c: the stream pump's streams: who holds which, what is unsent,
 * who is due a heartbeat.
 *
 * One set of streams belongs to one pump thread and is only ever touched
 * from it (no locks). It holds:
 *   - an epoll set with every attached socket (EPOLLOUT only while bytes
 *     wait), so a peer that closes is noticed and partial writes resume;
 *   - the per-user index, user -> that user's streams, so an event costs
 *     one lookup and one write per stream of its user; the owner is told
 *     when a user's first stream opens and the last closes (it subscribes
 *     and unsubscribes the user's bus topic);
 *   - each stream's unsent bytes, at most S_OUT_MAX beyond its kernel
 *     send buffer (fixed by the owner, so that it does not grow to
 *     megabytes for a client that stopped reading): a stream that would
 *     pass it has stopped reading, and is cut (closed with a reset, which
 *     frees its kernel buffers at once) while the others go on;
 *   - every stream in one list ordered by when it was last sent anything.
 *     The heartbeat interval is the same for all, so a stream that is sent
 *     something moves to the tail and the streams due a heartbeat are
 *     always at the head: each tick costs only the streams it pings.
 *
 * A stream is "pending" from ain__streams_open until the hand-off gives it
 * its socket (attach) or fails (abort): it already counts against the caps,
 * its user is subscribed and what arrives for it is kept, so nothing sent
 * between the subscription and the hand-off is lost. Ended streams are
 * unlinked at once but freed by ain__streams_reap, so a batch of epoll
 * events never points at freed memory.
 *
 * A resuming stream (Last-Event-ID) is opened "holding": while its handler
 * replays the log, live events are held apart with their ids (at most
 * S_HOLD_MAX of them and S_OUT_MAX bytes; beyond that it is cut at attach,
 * and the client resumes again from what it got). Attach names the last
 * id the replay wrote: held events above it go out, in arrival order, the
 * others were in the replay.
 *
 * After the bus link lost events (edge/link.c, edge/catchup.c), every live
 * stream is made to hold in the same way while its user's missed events are
 * replayed from the log straight into it ("catching up"); then the held
 * events above the last replayed id go out. Catching up starts after the
 * last id the user was sent before the loss was noticed (the connection
 * closed, or went silent: ain__streams_loss); when only a gap in the bus
 * heartbeat shows it, after the last id sent before the last heartbeat
 * that arrived in sequence, since a later delivery may have followed the
 * loss (a duplicate then, never a gap).
 *
 * Ids in order per stream: with several events actors, one user's events
 * may reach the bus in a different order than their ids (each actor
 * publishes when its own append answers). Each stream keeps the highest id
 * it was sent with an `id:` line; an event whose id is below it goes out
 * without its `id:` line (s_send_event). The SSE spec leaves the
 * browser's lastEventId unchanged by an event without an id, so a
 * reconnect resumes after the highest id delivered, and every event
 * delivered live before it is neither replayed (it is below that id) nor
 * lost. (An event still on its way when the client reconnects, with an id
 * below one it already got, is not replayed: actors/events/README.md.)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <czmq.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

#define S_OUT_MAX     (64 * 1024)
#define S_OUT_MIN_CAP 1024
#define S_EPOLL_BATCH 256
#define S_PING        ": ping\n\n"
#define S_HOLD_MAX    256
/* Reconnection delays given out when the edge stops. */
#define S_STOP_RETRY_MIN_MS    1000
#define S_STOP_RETRY_SPREAD_MS 9000

enum { S_PENDING, S_LIVE, S_DEAD };
enum { S_END_PEER, S_END_CUT, S_END_STOP, S_END_ABORT };

typedef struct {
    uint64_t id;
    int count;
    ain__stream_t *first;
    /* ids ("<ms>-<seq>") of the last event delivered, and of the last one
     * delivered before the beat `snap_beat` (see ain__streams_beat) */
    uint64_t last_ms, last_seq, snap_ms, snap_seq, snap_beat;
    uint64_t safe_ms, safe_seq; /* the last id when a loss was first noticed */
} s_user_t;

/* A live event held while its stream replays. */
typedef struct s_held {
    struct s_held *next;
    uint64_t ms, seq; /* its id */
    size_t len;
    char text[];
} s_held_t;

struct ain__stream {
    int fd; /* -1 until attached */
    int state;
    bool holding;                  /* replaying: live events go to `held` */
    bool catching;                 /* holding while catching up (catchup.c) */
    s_held_t *held, **held_tail;   /* in arrival order */
    size_t held_count, held_bytes; /* bounded by S_HOLD_MAX, S_OUT_MAX */
    bool overflow;                 /* fell too far behind while pending: cut at attach */
    bool pollout;                  /* EPOLLOUT is in the epoll set */
    s_user_t *user;
    char *out; /* unsent bytes: out[off, off + len); NULL when none */
    size_t off, len, cap;
    int64_t last_ms;              /* when it was last sent something */
    bool top_set;                 /* top_ms/top_seq hold an id */
    uint64_t top_ms, top_seq;     /* the highest id sent with an `id:` line */
    ain__stream_t *unext, *uprev; /* the user's streams; unext links the dead */
    ain__stream_t *inext, *iprev; /* every open stream, by last_ms */
};

struct ain__streams {
    int epfd;
    ain__fdset_t *owned;
    zhashx_t *users; /* "<id>" -> s_user_t, owned */
    ain__stream_t *head, *tail;
    ain__stream_t *dead;
    size_t count, max_total, max_user;
    int64_t heartbeat_ms;
    uint64_t beats;   /* bus heartbeats that arrived in sequence */
    bool loss_marked; /* ain__streams_loss: users' safe ids are set */
    int sndbuf;
    const ain__edge_metrics_t *m;
    ain__streams_user_fn *on_user;
    void *arg;
};

static void s_key(uint64_t user, char key[24])
{
    snprintf(key, 24, "%" PRIu64, user);
}

/* Parses "<ms>-<seq>" (len bytes); returns 0 or -1. */
static int s_id_parse(const char *id, size_t len, uint64_t *ms, uint64_t *seq)
{
    uint64_t part[2] = {0, 0};
    int k = 0;
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] == '-' && k == 0 && digits > 0) {
            k = 1;
            digits = 0;
        } else if (id[i] >= '0' && id[i] <= '9' && digits < 19) {
            part[k] = part[k] * 10 + (uint64_t)(id[i] - '0');
            digits++;
        } else {
            return -1;
        }
    }
    if (k != 1 || digits == 0)
        return -1;
    *ms = part[0];
    *seq = part[1];
    return 0;
}

/* -1, 0, 1 as id a is below, equal to, above id b. */
static int s_id_cmp(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq)
{
    if (ams != bms)
        return ams < bms ? -1 : 1;
    return aseq < bseq ? -1 : aseq > bseq;
}

int ain__event_id_cmp(const char *a, size_t a_len, const char *b, size_t b_len, int *out)
{
    uint64_t ams, aseq, bms, bseq;
    if (s_id_parse(a, a_len, &ams, &aseq) < 0 || s_id_parse(b, b_len, &bms, &bseq) < 0)
        return -1;
    *out = s_id_cmp(ams, aseq, bms, bseq);
    return 0;
}

static void s_held_free(ain__stream_t *s)
{
    for (s_held_t *h = s->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    s->held = NULL;
    s->held_tail = &s->held;
    s->held_count = s->held_bytes = 0;
}

static void s_user_free(void **item)
{
    free(*item);
    *item = NULL;
}

static bool s_in_order(const ain__streams_t *self, const ain__stream_t *s)
{
    return s->iprev || s->inext || self->head == s;
}

static void s_order_unlink(ain__streams_t *self, ain__stream_t *s)
{
    if (!s_in_order(self, s))
        return;
    if (s->iprev)
        s->iprev->inext = s->inext;
    else
        self->head = s->inext;
    if (s->inext)
        s->inext->iprev = s->iprev;
    else
        self->tail = s->iprev;
    s->inext = s->iprev = NULL;
}

/* Marks `s` as just sent something: to the tail of the heartbeat order. */
static void s_touch(ain__streams_t *self, ain__stream_t *s, int64_t now)
{
    s->last_ms = now;
    if (self->tail == s)
        return;
    s_order_unlink(self, s);
    s->iprev = self->tail;
    if (self->tail)
        self->tail->inext = s;
    else
        self->head = s;
    self->tail = s;
}

static void s_user_unlink(ain__streams_t *self, ain__stream_t *s)
{
    s_user_t *u = s->user;
    if (s->uprev)
        s->uprev->unext = s->unext;
    else
        u->first = s->unext;
    if (s->unext)
        s->unext->uprev = s->uprev;
    s->unext = s->uprev = NULL;
    s->user = NULL;
    if (--u->count == 0) {
        uint64_t id = u->id;
        char key[24];
        s_key(id, key);
        zhashx_delete(self->users, key); /* frees u */
        ain_metric_set(self->m->users, (int64_t)zhashx_size(self->users));
        self->on_user(self->arg, id, false);
    }
}

/* Discards what the client sent (an SSE client sends nothing after its
 * request), so closing does not reset a connection over unread input. */
static bool s_drain_input(int fd)
{
    char buf[512];
    for (int i = 0; i < 8; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    return true;
}

/* An edge that stops offers each stream what waits and a reconnection
 * delay spread over S_STOP_RETRY_SPREAD_MS, so that its clients do not all
 * come back in the same instant; then it reads what the client sent, so
 * the close is a FIN, not a reset. Nothing blocks. */
static void s_last_words(ain__stream_t *s)
{
    ssize_t sent = s->len ? send(s->fd, s->out + s->off, s->len, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
    if (sent == (ssize_t)s->len) { /* never after half a frame */
        char retry[32];
        uint64_t mix = ((uint64_t)(uintptr_t)s ^ (uint64_t)s->fd) * 0x9E3779B97F4A7C15ULL;
        int n = snprintf(retry, sizeof retry, "retry: %d\n\n",
                         S_STOP_RETRY_MIN_MS + (int)((mix >> 33) % S_STOP_RETRY_SPREAD_MS));
        send(s->fd, retry, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    s_drain_input(s->fd);
}

/* Ends a stream now: socket closed, unlinked from the user and the order;
 * freed at the next reap. */
static void s_end(ain__streams_t *self, ain__stream_t *s, int why)
{
    if (s->state == S_DEAD)
        return;
    s->state = S_DEAD;
    if (s->fd >= 0) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        if (why == S_END_CUT) {
            /* A reset: the kernel drops the unread backlog at once. */
            struct linger lg = {1, 0};
            setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        } else if (why == S_END_STOP) {
            s_last_words(s);
        }
        /* Forget the number before closing it: a hand-off probing it after
         * the close must see it (civetweb may accept into it). */
        ain__fdset_del(self->owned, s->fd);
        close(s->fd);
        s->fd = -1;
    }
    free(s->out);
    s->out = NULL;
    s->off = s->len = s->cap = 0;
    s_held_free(s);
    s_order_unlink(self, s);
    s_user_unlink(self, s);
    self->count--;
    s->unext = self->dead;
    self->dead = s;
    ain_metric_inc(self->m->closed);
    if (why == S_END_CUT)
        ain_metric_inc(self->m->cut_slow);
    ain_metric_set(self->m->streams, (int64_t)self->count);
}

static void s_want_out(ain__streams_t *self, ain__stream_t *s, bool on)
{
    if (s->fd < 0 || s->pollout == on)
        return;
    struct epoll_event ev = {EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), {.ptr = s}};
    if (epoll_ctl(self->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
        s->pollout = on;
}

static void s_append(ain__stream_t *s, const char *text, size_t len)
{
    if (s->off + s->len + len > s->cap) {
        if (s->off) {
            memmove(s->out, s->out + s->off, s->len);
            s->off = 0;
        }
        if (s->len + len > s->cap) {
            size_t cap = s->cap ? s->cap : S_OUT_MIN_CAP;
            while (cap < s->len + len)
                cap *= 2;
            s->cap = cap < S_OUT_MAX ? cap : S_OUT_MAX;
            s->out = ain_realloc(s->out, s->cap);
        }
    }
    memcpy(s->out + s->off + s->len, text, len);
    s->len += len;
}

/* Writes what waits; returns 0, or -1 if the stream ended. */
static int s_flush(ain__streams_t *self, ain__stream_t *s)
{
    while (s->len) {
        ssize_t n = send(s->fd, s->out + s->off, s->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s_end(self, s, S_END_PEER);
            return -1;
        }
        ain_metric_add(self->m->bytes_written, n);
        s->off += (size_t)n;
        s->len -= (size_t)n;
    }
    if (s->len == 0) {
        free(s->out); /* an idle stream holds no buffer */
        s->out = NULL;
        s->off = s->cap = 0;
    }
    s_want_out(self, s, s->len > 0);
    return 0;
}

/* Sends `text` to one stream: straight to the socket if nothing waits,
 * the rest queued. Returns 0, or -1 if the stream ended (peer gone, or
 * cut for being S_OUT_MAX behind). */
static int s_send(ain__streams_t *self, ain__stream_t *s, const char *text, size_t len, int64_t now)
{
    if (s->state == S_DEAD)
        return -1;
    if (s->overflow) {
        s_touch(self, s, now);
        return -1;
    }
    size_t done = 0;
    if (s->state == S_LIVE && s->len == 0) {
        ssize_t n = send(s->fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            s_end(self, s, S_END_PEER);
            return -1;
        }
        if (n > 0) {
            ain_metric_add(self->m->bytes_written, n);
            done = (size_t)n;
        }
    }
    if (done < len) {
        if (s->len + (len - done) > S_OUT_MAX) {
            if (s->state == S_PENDING) {
                /* The handler still holds it: cut when it attaches. To
                 * the tail, so the heartbeat tick passes it by. */
                s->overflow = true;
                s_touch(self, s, now);
                return -1;
            }
            s_end(self, s, S_END_CUT);
            return -1;
        }
        s_append(s, text + done, len - done);
        s_want_out(self, s, true);
    }
    s_touch(self, s, now);
    return 0;
}

/* Sends an event's text ("id: <id>\n..." when it has an id) to `s`: with
 * its `id:` line if the id is not below the highest this stream was sent
 * one with, else without it (see the top of the file). `id` NULL or
 * unparsable, or a text without an id line: as it is. */
static int s_send_event(ain__streams_t *self, ain__stream_t *s, const char *id, size_t id_len,
                        const char *text, size_t len, int64_t now)
{
    uint64_t ms, seq;
    if (!id || len < 4 || memcmp(text, "id: ", 4) != 0 || s_id_parse(id, id_len, &ms, &seq) < 0)
        return s_send(self, s, text, len, now);
    if (s->top_set && s_id_cmp(ms, seq, s->top_ms, s->top_seq) < 0) {
        const char *nl = memchr(text, '\n', len);
        size_t skip = nl ? (size_t)(nl - text) + 1 : 0;
        ain_metric_inc(self->m->events_unordered);
        return s_send(self, s, text + skip, len - skip, now);
    }
    s->top_set = true;
    s->top_ms = ms;
    s->top_seq = seq;
    return s_send(self, s, text, len, now);
}

/* Notes that `s` was sent event `id` with its `id:` line by someone else
 * (the resume handler's replay). */
static void s_sent_id(ain__stream_t *s, const char *id)
{
    uint64_t ms, seq;
    if (!id || s_id_parse(id, strlen(id), &ms, &seq) < 0)
        return;
    if (!s->top_set || s_id_cmp(ms, seq, s->top_ms, s->top_seq) > 0) {
        s->top_set = true;
        s->top_ms = ms;
        s->top_seq = seq;
    }
}

ain__streams_t *ain__streams_new(const ain__streams_config_t *config)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return NULL;
    ain__streams_t *self = AIN_NEW(ain__streams_t);
    self->epfd = epfd;
    self->owned = config->owned;
    self->users = zhashx_new();
    zhashx_set_destructor(self->users, s_user_free);
    self->max_total = config->max_total;
    self->max_user = config->max_user;
    self->heartbeat_ms = config->heartbeat_ms;
    self->sndbuf = config->sndbuf;
    self->m = config->metrics;
    self->on_user = config->on_user;
    self->arg = config->arg;
    return self;
}

void ain__streams_destroy(ain__streams_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__streams_t *self = *self_p;
    while (self->head)
        s_end(self, self->head, S_END_STOP);
    ain__streams_reap(self);
    zhashx_destroy(&self->users);
    close(self->epfd);
    free(self);
    *self_p = NULL;
}

int ain__streams_fd(const ain__streams_t *self)
{
    return self->epfd;
}

size_t ain__streams_count(const ain__streams_t *self)
{
    return self->count;
}

int ain__streams_open(ain__streams_t *self, uint64_t user, const char *hello, size_t len, bool hold,
                      int64_t now, ain__stream_t **stream)
{
    *stream = NULL;
    if (self->count >= self->max_total) {
        ain_metric_inc(self->m->refused_full);
        return AIN__OPEN_FULL;
    }
    char key[24];
    s_key(user, key);
    s_user_t *u = zhashx_lookup(self->users, key);
    if (u && (size_t)u->count >= self->max_user) {
        ain_metric_inc(self->m->refused_user);
        return AIN__OPEN_USER_FULL;
    }
    if (!u) {
        u = AIN_NEW(s_user_t);
        u->id = user;
        zhashx_insert(self->users, key, u);
        ain_metric_set(self->m->users, (int64_t)zhashx_size(self->users));
        /* Subscribed before a byte of the stream exists. */
        self->on_user(self->arg, user, true);
    }
    ain__stream_t *s = AIN_NEW(ain__stream_t);
    s->fd = -1;
    s->state = S_PENDING;
    s->holding = hold;
    s->held_tail = &s->held;
    s->user = u;
    s->unext = u->first;
    if (u->first)
        u->first->uprev = s;
    u->first = s;
    u->count++;
    self->count++;
    ain_metric_inc(self->m->opened);
    ain_metric_set(self->m->streams, (int64_t)self->count);
    if (len)
        s_send(self, s, hello, len, now);
    else
        s_touch(self, s, now);
    *stream = s;
    return AIN__OPEN_OK;
}

/* Ends holding: the held events whose ids are above `after` (all of them
 * if `after` is NULL) are queued, in order. */
static void s_release(ain__streams_t *self, ain__stream_t *s, const char *after, int64_t now)
{
    uint64_t ms = 0, seq = 0;
    bool all = !after || s_id_parse(after, strlen(after), &ms, &seq) < 0;
    s_held_t *h = s->held;
    s->held = NULL; /* detached: a send below must not free it under us */
    s_held_free(s);
    s->holding = false;
    while (h) {
        s_held_t *next = h->next;
        if (s->state != S_DEAD && (all || h->ms > ms || (h->ms == ms && h->seq > seq))) {
            char id[48];
            int n = snprintf(id, sizeof id, "%" PRIu64 "-%" PRIu64, h->ms, h->seq);
            s_send_event(self, s, id, (size_t)n, h->text, h->len, now);
        }
        free(h);
        h = next;
    }
}

/* Holds a live event for a replaying stream; one that does not fit makes
 * the stream overflow (cut at attach). */
static void s_hold(ain__stream_t *s, const char *id, size_t id_len, const char *text, size_t len)
{
    uint64_t ms, seq;
    if (s->overflow)
        return;
    if (s->held_count >= S_HOLD_MAX || s->held_bytes + len > S_OUT_MAX ||
        s_id_parse(id, id_len, &ms, &seq) < 0) {
        s->overflow = true; /* an id we cannot order: resume again, from the log */
        s_held_free(s);
        return;
    }
    s_held_t *h = ain_malloc(sizeof *h + len);
    h->next = NULL;
    h->ms = ms;
    h->seq = seq;
    h->len = len;
    memcpy(h->text, text, len);
    *s->held_tail = h;
    s->held_tail = &h->next;
    s->held_count++;
    s->held_bytes += len;
}

int ain__streams_attach(ain__streams_t *self, ain__stream_t *s, int fd, const char *after,
                        int64_t now)
{
    s_sent_id(s, after); /* the handler's replay ended with it */
    if (s->holding)
        s_release(self, s, after, now);
    s->fd = fd;
    if (self->sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &self->sndbuf, sizeof self->sndbuf);
    struct epoll_event ev = {EPOLLIN | EPOLLRDHUP | (s->len ? EPOLLOUT : 0), {.ptr = s}};
    if (s->overflow || epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        s_end(self, s, s->overflow ? S_END_CUT : S_END_PEER);
        return -1;
    }
    s->state = S_LIVE;
    s->pollout = s->len > 0;
    return s_flush(self, s);
}

void ain__streams_abort(ain__streams_t *self, ain__stream_t *s)
{
    s_end(self, s, S_END_ABORT);
}

/* Notes that `u` was sent event `id`: its last id, and the snapshot of the
 * last id before the latest in-sequence beat. */
static void s_user_saw(const ain__streams_t *self, s_user_t *u, const char *id, size_t id_len)
{
    uint64_t ms, seq;
    if (s_id_parse(id, id_len, &ms, &seq) < 0)
        return;
    if (u->snap_beat != self->beats) {
        u->snap_ms = u->last_ms;
        u->snap_seq = u->last_seq;
        u->snap_beat = self->beats;
    }
    if (ms > u->last_ms || (ms == u->last_ms && seq > u->last_seq)) {
        u->last_ms = ms;
        u->last_seq = seq;
    }
}

void ain__streams_beat(ain__streams_t *self)
{
    self->beats++;
}

void ain__streams_loss(ain__streams_t *self)
{
    if (self->loss_marked)
        return;
    for (s_user_t *u = zhashx_first(self->users); u; u = zhashx_next(self->users)) {
        u->safe_ms = u->last_ms;
        u->safe_seq = u->last_seq;
    }
    self->loss_marked = true;
}

size_t ain__streams_deliver(ain__streams_t *self, uint64_t user, const char *id, size_t id_len,
                            const char *text, size_t len, int64_t now)
{
    char key[24];
    s_key(user, key);
    s_user_t *u = zhashx_lookup(self->users, key);
    size_t delivered = 0;
    if (u)
        s_user_saw(self, u, id, id_len);
    /* `next` is read first: a send may end the stream, and the last
     * stream's end frees its user. */
    for (ain__stream_t *s = u ? u->first : NULL, *next; s; s = next) {
        next = s->unext;
        if (s->holding)
            s_hold(s, id, id_len, text, len);
        else if (s_send_event(self, s, id, id_len, text, len, now) == 0)
            delivered++;
    }
    ain_metric_add(self->m->events_delivered, (int64_t)delivered);
    return delivered;
}

ain__catchup_user_t *ain__streams_catchup_begin(ain__streams_t *self, uint64_t fallback_ms,
                                                size_t *n)
{
    size_t size = zhashx_size(self->users), i = 0;
    ain__catchup_user_t *out = ain_calloc(size + 1, sizeof *out);
    for (s_user_t *u = zhashx_first(self->users); u; u = zhashx_next(self->users)) {
        bool any = false;
        for (ain__stream_t *s = u->first; s; s = s->unext) {
            if (s->state != S_LIVE || s->holding)
                continue; /* a pending or replaying stream reads the log itself */
            s->holding = s->catching = true;
            any = true;
        }
        if (!any)
            continue;
        /* From the last id sent before the loss was noticed (a closed
         * connection, silence); when only a gap in the beat showed it,
         * something delivered since the last in-sequence beat may have
         * followed the loss: start before it (a duplicate, never a gap). */
        bool since_beat = !self->loss_marked && u->snap_beat == self->beats;
        uint64_t ms = self->loss_marked ? u->safe_ms : since_beat ? u->snap_ms : u->last_ms;
        uint64_t seq = self->loss_marked ? u->safe_seq : since_beat ? u->snap_seq : u->last_seq;
        if (ms == 0) {
            ms = fallback_ms; /* nothing delivered yet: from about the loss */
            seq = 0;
            out[i].since = true;
        }
        out[i].user = u->id;
        snprintf(out[i].after, sizeof out[i].after, "%" PRIu64 "-%" PRIu64, ms, seq);
        i++;
    }
    self->loss_marked = false;
    *n = i;
    return out;
}

void ain__streams_catchup_event(ain__streams_t *self, uint64_t user, const char *id, size_t id_len,
                                const char *text, size_t len, int64_t now)
{
    char key[24];
    s_key(user, key);
    s_user_t *u = zhashx_lookup(self->users, key);
    if (!u)
        return;
    s_user_saw(self, u, id, id_len);
    for (ain__stream_t *s = u->first, *next; s; s = next) {
        next = s->unext;
        if (s->catching)
            s_send_event(self, s, id, id_len, text, len, now);
    }
}

void ain__streams_catchup_end(ain__streams_t *self, uint64_t user, const char *reset,
                              const char *after, int64_t now)
{
    char key[24];
    s_key(user, key);
    s_user_t *u = zhashx_lookup(self->users, key);
    for (ain__stream_t *s = u ? u->first : NULL, *next; s; s = next) {
        next = s->unext;
        if (!s->catching)
            continue;
        s->catching = false;
        if (s->overflow) {
            s->holding = false;
            s_held_free(s);
            s_end(self, s, S_END_CUT); /* the client resumes from the log itself */
            continue;
        }
        if (reset)
            s_send(self, s, reset, strlen(reset), now);
        s_release(self, s, reset ? NULL : after, now);
    }
}

int ain__streams_io(ain__streams_t *self)
{
    struct epoll_event ev[S_EPOLL_BATCH];
    int n = epoll_wait(self->epfd, ev, S_EPOLL_BATCH, 0);
    for (int i = 0; i < n; i++) {
        ain__stream_t *s = ev[i].data.ptr;
        if (s->state == S_DEAD)
            continue;
        if ((ev[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) ||
            ((ev[i].events & EPOLLIN) && !s_drain_input(s->fd))) {
            s_end(self, s, S_END_PEER);
            continue;
        }
        if (ev[i].events & EPOLLOUT)
            s_flush(self, s);
    }
    return n < 0 ? 0 : n;
}

int64_t ain__streams_tick(ain__streams_t *self, int64_t now)
{
    /* A ping moves its stream to the tail (or ends it), so this stops at
     * the first stream not yet due. */
    while (self->head && self->head->last_ms + self->heartbeat_ms <= now)
        s_send(self, self->head, S_PING, sizeof S_PING - 1, now);
    return self->head ? self->head->last_ms + self->heartbeat_ms - now : self->heartbeat_ms;
}

void ain__streams_reap(ain__streams_t *self)
{
    while (self->dead) {
        ain__stream_t *s = self->dead;
        self->dead = s->unext;
        free(s);
    }
}

/* ------------------------------------------------------------- selftest */

typedef struct {
    int failures;
    int calls;
    uint64_t user[8];
    bool first[8];
} s_test_t;

static void s_test_on_user(void *arg, uint64_t user, bool first)
{
    s_test_t *t = arg;
    if (t->calls < 8) {
        t->user[t->calls] = user;
        t->first[t->calls] = first;
    }
    t->calls++;
}

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "streams: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            t.failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* A connected pair: *ours is non-blocking, *peer is the client's end. */
static void s_test_pair(int *ours, int *peer)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    *ours = sv[0];
    *peer = sv[1];
}

/* Everything readable from `fd` now, into buf (NUL-terminated); returns
 * its length, or -1 if the stream ended with nothing left to read. */
static ssize_t s_test_recv(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r = 0;
    while (n < size - 1 && (r = recv(fd, buf + n, size - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    return n == 0 && r == 0 ? -1 : (ssize_t)n;
}

int ain_edge_streams_test(bool verbose)
{
    s_test_t t = {0};
    ain_metrics_t *registry = ain_metrics_new();
    ain__edge_metrics_t m = {0};
    ain_metric_t **slots[] = {
        &m.streams,         &m.users,          &m.max_streams,      &m.max_per_user,
        &m.opened,          &m.closed,         &m.cut_slow,         &m.refused_full,
        &m.refused_user,    &m.handoff_failed, &m.events_delivered, &m.bytes_written,
        &m.events_unordered};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%zu", i);
        *slots[i] = ain_metrics_counter(registry, name);
    }
    ain__fdset_t *owned = ain__fdset_new();
    /* A small kernel buffer, so that writes stop early. */
    ain__streams_config_t config = {owned, 3, 2, 100, 4096, &m, s_test_on_user, &t};
    ain__streams_t *set = ain__streams_new(&config);
    char buf[256 * 1024];
    int64_t now = 1000;

    /* Caps: two streams per user, three in all. */
    ain__stream_t *a, *b, *c, *none;
    S_CHECK(ain__streams_open(set, 1, "hello\n\n", 7, false, now, &a) == AIN__OPEN_OK);
    S_CHECK(t.calls == 1 && t.user[0] == 1 && t.first[0]);
    S_CHECK(ain__streams_open(set, 1, "hello\n\n", 7, false, now, &b) == AIN__OPEN_OK);
    S_CHECK(t.calls == 1); /* already subscribed */
    S_CHECK(ain__streams_open(set, 1, "x", 1, false, now, &none) == AIN__OPEN_USER_FULL && !none);
    S_CHECK(ain__streams_open(set, 2, "hello\n\n", 7, false, now, &c) == AIN__OPEN_OK);
    S_CHECK(t.calls == 2 && t.user[1] == 2 && t.first[1]);
    S_CHECK(ain__streams_open(set, 3, "x", 1, false, now, &none) == AIN__OPEN_FULL && !none);
    S_CHECK(ain_metric_get(m.refused_user) == 1 && ain_metric_get(m.refused_full) == 1);
    S_CHECK(ain__streams_count(set) == 3 && ain_metric_get(m.users) == 2);

    /* An event that arrives before the hand-off waits for the socket,
     * behind the hello. */
    S_CHECK(ain__streams_deliver(set, 2, "1-0", 3, "data: early\n\n", 13, now) == 1);
    int fa, pa, fb, pb, fc, pc;
    s_test_pair(&fa, &pa);
    s_test_pair(&fb, &pb);
    s_test_pair(&fc, &pc);
    ain__fdset_add(owned, fa);
    S_CHECK(ain__streams_attach(set, a, fa, NULL, now) == 0);
    S_CHECK(ain__streams_attach(set, b, fb, NULL, now) == 0);
    S_CHECK(ain__streams_attach(set, c, fc, NULL, now) == 0);
    S_CHECK(s_test_recv(pc, buf, sizeof buf) == 20 && strcmp(buf, "hello\n\ndata: early\n\n") == 0);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == 7 && s_test_recv(pb, buf, sizeof buf) == 7);

    /* An event reaches each stream of its user, and nobody else's. */
    S_CHECK(ain__streams_deliver(set, 1, "1-0", 3, "data: 1\n\n", 9, now) == 2);
    S_CHECK(ain__streams_deliver(set, 9, "1-0", 3, "data: 9\n\n", 9, now) == 0);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == 9 && strcmp(buf, "data: 1\n\n") == 0);
    S_CHECK(s_test_recv(pb, buf, sizeof buf) == 9);
    S_CHECK(s_test_recv(pc, buf, sizeof buf) == 0);

    /* Heartbeats: only streams silent for the interval, then the next one
     * is due a full interval later. */
    S_CHECK(ain__streams_tick(set, now + 50) == 50);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == 0);
    S_CHECK(ain__streams_tick(set, now + 100) == 100);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == 8 && strcmp(buf, S_PING) == 0);
    S_CHECK(s_test_recv(pb, buf, sizeof buf) == 8 && s_test_recv(pc, buf, sizeof buf) == 8);
    now += 100;

    /* Partial writes: what the socket does not take waits, in order, and
     * leaves once the client reads again. */
    char chunk[1000];
    size_t sent = 0, got = 0;
    for (int i = 0; i < 40; i++) {
        memset(chunk, 'a' + i % 26, sizeof chunk);
        S_CHECK(ain__streams_deliver(set, 1, "1-0", 3, chunk, sizeof chunk, now) == 2);
        sent += sizeof chunk;
        s_test_recv(pa, buf, sizeof buf); /* a reads along, b does not */
        ain__streams_io(set);
    }
    for (int i = 0; i < 1000 && got < sent; i++) {
        ssize_t n = s_test_recv(pb, buf + got, sizeof buf - got);
        got += n > 0 ? (size_t)n : 0;
        ain__streams_io(set);
    }
    S_CHECK(got == sent && buf[0] == 'a' && buf[sent - 1] == 'a' + 39 % 26);
    S_CHECK(ain_metric_get(m.cut_slow) == 0);

    /* A client that stops reading is cut at 64 KiB behind; the other
     * stream of the same user goes on. */
    int cut_at = -1;
    for (int i = 0; i < 200 && cut_at < 0; i++) {
        if (ain__streams_deliver(set, 1, "1-0", 3, chunk, sizeof chunk, now) < 2)
            cut_at = i;
        s_test_recv(pa, buf, sizeof buf);
        ain__streams_io(set);
    }
    S_CHECK(cut_at > 60 && ain_metric_get(m.cut_slow) == 1);
    S_CHECK(ain__streams_deliver(set, 1, "1-0", 3, "data: 2\n\n", 9, now) == 1);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == 9);
    ain__streams_reap(set);
    S_CHECK(s_test_recv(pb, buf, sizeof buf) >= 0 && s_test_recv(pb, buf, sizeof buf) == -1);

    /* A client that leaves is noticed and its user unsubscribed. */
    close(pc);
    S_CHECK(ain__streams_io(set) >= 1);
    S_CHECK(t.calls == 3 && t.user[2] == 2 && !t.first[2]);
    S_CHECK(ain__streams_count(set) == 1);

    /* A resuming stream holds live events until attach, then sends only
     * those above the last replayed id, in order. */
    ain__stream_t *r;
    int fr, pr;
    S_CHECK(ain__streams_open(set, 5, "", 0, true, now, &r) == AIN__OPEN_OK);
    S_CHECK(ain__streams_deliver(set, 5, "7-1", 3, "id: 7-1\n\n", 9, now) == 0);
    S_CHECK(ain__streams_deliver(set, 5, "7-2", 3, "id: 7-2\n\n", 9, now) == 0);
    S_CHECK(ain__streams_deliver(set, 5, "8-0", 3, "id: 8-0\n\n", 9, now) == 0);
    s_test_pair(&fr, &pr);
    S_CHECK(ain__streams_attach(set, r, fr, "7-1", now) == 0);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 18 && strcmp(buf, "id: 7-2\n\nid: 8-0\n\n") == 0);
    S_CHECK(ain__streams_deliver(set, 5, "9-0", 3, "id: 9-0\n\n", 9, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 9);
    /* Ids compare as numbers ("10-0" is above "9-0"); an event below the
     * highest id the stream was sent goes without its id line, so the
     * client's lastEventId stays at the highest; equal stays as it is. */
    S_CHECK(ain__streams_deliver(set, 5, "10-0", 4, "id: 10-0\ndata: a\n\n", 18, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 18 && strcmp(buf, "id: 10-0\ndata: a\n\n") == 0);
    S_CHECK(ain__streams_deliver(set, 5, "9-5", 3, "id: 9-5\ndata: b\n\n", 17, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 9 && strcmp(buf, "data: b\n\n") == 0);
    S_CHECK(ain__streams_deliver(set, 5, "10-0", 4, "id: 10-0\ndata: c\n\n", 18, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 18);
    S_CHECK(ain__streams_deliver(set, 5, "10-11", 5, "id: 10-11\ndata: d\n\n", 19, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 19);
    S_CHECK(ain__streams_deliver(set, 5, "10-2", 4, "id: 10-2\ndata: e\n\n", 18, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 9 && strcmp(buf, "data: e\n\n") == 0);
    S_CHECK(ain_metric_get(m.events_unordered) == 2);
    close(pr);
    ain__streams_io(set);
    S_CHECK(t.calls == 5 && !t.first[4]);

    /* A hand-off that fails gives the slot back. */
    ain__stream_t *d;
    S_CHECK(ain__streams_open(set, 4, "x", 1, false, now, &d) == AIN__OPEN_OK);
    ain__streams_abort(set, d);
    S_CHECK(t.calls == 7 && t.user[5] == 4 && t.first[5] && t.user[6] == 4 && !t.first[6]);
    S_CHECK(ain_metric_get(m.opened) == 5 && ain_metric_get(m.closed) == 4);

    /* A resumed stream's top starts at the replay's last id: held events
     * above `after` go out in arrival order, a lower one after a higher
     * one without its id line, and so does a live one below the top. */
    S_CHECK(ain__streams_open(set, 6, "", 0, true, now, &r) == AIN__OPEN_OK);
    S_CHECK(ain__streams_deliver(set, 6, "20-0", 4, "id: 20-0\ndata: g\n\n", 18, now) == 0);
    S_CHECK(ain__streams_deliver(set, 6, "19-0", 4, "id: 19-0\ndata: h\n\n", 18, now) == 0);
    s_test_pair(&fr, &pr);
    S_CHECK(ain__streams_attach(set, r, fr, "18-0", now) == 0);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 27 &&
            strcmp(buf, "id: 20-0\ndata: g\n\ndata: h\n\n") == 0);
    S_CHECK(ain__streams_deliver(set, 6, "17-0", 4, "id: 17-0\ndata: f\n\n", 18, now) == 1);
    S_CHECK(s_test_recv(pr, buf, sizeof buf) == 9 && strcmp(buf, "data: f\n\n") == 0);
    S_CHECK(ain_metric_get(m.events_unordered) == 4);
    close(pr);
    ain__streams_io(set);

    /* The comparison itself: numeric per part, not textual. */
    static const struct {
        const char *a, *b;
        int cmp;
    } ids[] = {{"9-0", "10-0", -1},
               {"10-0", "9-0", 1},
               {"1-9", "1-10", -1},
               {"1-10", "1-9", 1},
               {"5-5", "5-5", 0},
               {"0-1", "0-0", 1},
               {"1700000000000-0", "1700000000000-4294967296", -1}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int cmp = 9;
        S_CHECK(ain__event_id_cmp(ids[i].a, strlen(ids[i].a), ids[i].b, strlen(ids[i].b), &cmp) ==
                    0 &&
                cmp == ids[i].cmp);
    }
    int cmp = 9;
    S_CHECK(ain__event_id_cmp("x-1", 3, "1-1", 3, &cmp) < 0 && cmp == 9);
    S_CHECK(ain__event_id_cmp("1-1", 3, "11", 2, &cmp) < 0 && cmp == 9);

    ain__streams_destroy(&set);
    ain__streams_destroy(&set);
    /* Stopping closes what is left, with a reconnection delay. */
    S_CHECK(s_test_recv(pa, buf, sizeof buf) > 0 && strncmp(buf, "retry: ", 7) == 0);
    S_CHECK(s_test_recv(pa, buf, sizeof buf) == -1);
    S_CHECK(!ain__fdset_has(owned, fa) && ain_metric_get(m.streams) == 0);
    close(pa);
    close(pb);
    ain__fdset_destroy(&owned);
    ain_metrics_destroy(&registry);
    if (verbose)
        printf("streams: %s\n", t.failures ? "FAILED" : "ok");
    return t.failures ? 1 : 0;
}
