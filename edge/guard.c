/* guard.c: what the edge refuses before routing: greedy client addresses, more connections
 * than its workers, oversized bodies, too many headers, NUL bytes in the path.
 *
 * civetweb gives every connection a worker thread from its pool (AINBOX_EDGE_CONNECTIONS) while
 * it reads the request, however slowly the client sends it, and while a keep-alive connection
 * waits for its next one. The pool is large, so that slow clients cannot take all of it, and a
 * watch thread keeps it from filling up anyway. Every S_WATCH_MS it looks at every connection
 * on the edge's port through the kernel (getsockname/getpeername of each descriptor number;
 * the pump's streams are skipped by its bitmap, handoff.c) and:
 *   - an address holding more than AINBOX_EDGE_PER_ADDR_MAX connections loses its newest ones;
 *   - past AINBOX_EDGE_CONNECTIONS minus a reserve (a sixteenth, at least one), the oldest
 *     connections go (among those older than S_SHED_AGE_MS), so that a new connection finds
 *     a worker;
 * never one whose request is being answered (s_dispatch marks those: ain__guard_enter). A
 * connection that goes is answered 429 (its address) or 503 (the bound), without waiting, and
 * shut down both ways: the client reads the answer and the end, civetweb's read ends at once
 * and it closes the descriptor as usual (it stays civetweb's: the watch never closes one).
 *
 * Why a thread that looks, rather than counting in civetweb's callbacks: civetweb 1.15 calls
 * init_connection before the request is read, but its request info (the client's address) is
 * not available there (mg_get_request_info answers NULL until a request was parsed), and no
 * callback runs while a head trickles in; the kernel knows every connection's address at any
 * time. Each look costs two system calls per open connection (about 2 ms for 4,000).
 *
 * Request checks (ain__guard_request), after civetweb parsed the head and before any route:
 *   - a declared body larger than any route reads (AIN__BODY_MAX): 413, connection closed
 *     without reading the body (civetweb would otherwise go on reading or discarding it);
 *   - MG_MAX_HEADERS (64) header lines or more: 431. civetweb 1.15 keeps the first 64 and drops
 *     the rest without a word (a dropped `Connection: close` was ignored), so a request that
 *     reaches the limit is refused: 64 and 65 cannot be told apart;
 *   - a NUL in the path (`%00`): 400. civetweb decoded the path in place, so everything
 *     after the NUL vanished (`/threads/at0%00x` read as thread `at0`): its decoding is off
 *     (decode_url=no) and the path is decoded here, into http->path, which routing uses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "edge/internal.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

typedef struct s_entry {
    struct s_entry *next;
    int count;
    char addr[64]; /* an address as civetweb writes it, or "address port" */
} s_entry_t;

/* A count per key (an address, or "address port"), one entry per key counted; not
 * thread-safe. */
typedef struct {
    s_entry_t **buckets;
    size_t mask;
    int size; /* entries */
} s_table_t;

static s_table_t *s_table_new(int expected)
{
    s_table_t *self = AIN_NEW(s_table_t);
    size_t n = 64;
    while (n < (size_t)expected * 2)
        n *= 2;
    self->buckets = ain_calloc(n, sizeof *self->buckets);
    self->mask = n - 1;
    return self;
}

static void s_table_destroy(s_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_table_t *self = *self_p;
    for (size_t i = 0; i <= self->mask; i++)
        while (self->buckets[i]) {
            s_entry_t *e = self->buckets[i];
            self->buckets[i] = e->next;
            free(e);
        }
    free(self->buckets);
    free(self);
    *self_p = NULL;
}

/* FNV-1a: addresses are short, and an attacker choosing many of them gains nothing from
 * collisions beyond a longer chain under one lock (the table has as many buckets as twice
 * the worker threads). */
static size_t s_hash(const char *addr)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)h;
}

static s_entry_t **s_slot(s_table_t *self, const char *addr)
{
    s_entry_t **e = &self->buckets[s_hash(addr) & self->mask];
    while (*e && strcmp((*e)->addr, addr) != 0)
        e = &(*e)->next;
    return e;
}

/* Counts one more for `key` and returns true, or returns false (not counted) if it has `max`
 * already. */
static bool s_table_add(s_table_t *self, const char *key, int max)
{
    s_entry_t **slot = s_slot(self, key);
    if (!*slot) {
        s_entry_t *e = AIN_NEW(s_entry_t);
        snprintf(e->addr, sizeof e->addr, "%s", key);
        *slot = e;
        self->size++;
    }
    if ((*slot)->count >= max)
        return false;
    (*slot)->count++;
    return true;
}

/* Counts one less for `key` (ignored if it has none); the entry goes with its last one. */
static void s_table_del(s_table_t *self, const char *key)
{
    s_entry_t **slot = s_slot(self, key);
    s_entry_t *e = *slot;
    if (e && --e->count <= 0) {
        *slot = e->next;
        free(e);
        self->size--;
    }
}

static int s_table_count(s_table_t *self, const char *key)
{
    s_entry_t *e = *s_slot(self, key);
    return e ? e->count : 0;
}

/* ------------------------------------------------------------- the watch */

/* How often the watch looks at the connections; a connection beyond a cap lives this long. */
#define S_WATCH_MS 250
/* How long a connection is left alone by the bound on all connections: a burst of quick
 * requests waiting a moment for a worker (civetweb queues 20 accepted connections) is not
 * what the bound is for. */
#define S_SHED_AGE_MS 1000
/* Consecutive unused descriptor numbers that end a scan (numbers are handed out lowest first,
 * so the open ones are dense). */
#define S_GAP 512

typedef struct {
    int64_t seen_ms; /* when a scan first saw this connection; 0: none here */
    uint16_t port;
    bool shed;
    char addr[48];
} s_conn_t;

struct ain__guard {
    ain_edge_t *edge; /* borrowed */
    int server_port, per_addr_max, max_live;
    pthread_mutex_t lock;
    s_table_t *handling; /* "addr port" of the connections inside a handler; under lock */
    s_conn_t *conns;     /* by descriptor number; the watch thread's */
    int *cand;           /* descriptors a scan may shed */
    int nconns;
    atomic_bool stop;
    pthread_t thread;
    bool started;
};

/* The client's address and port as civetweb writes them. */
static bool s_text(const struct sockaddr_storage *ss, char *addr, size_t size, uint16_t *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        *port = ntohs(in->sin_port);
        return inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)size) != NULL;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *port = ntohs(in6->sin6_port);
        return inet_ntop(AF_INET6, &in6->sin6_addr, addr, (socklen_t)size) != NULL;
    }
    return false;
}

/* 1 if `fd` is a connection accepted on our port (its client in addr, port), 0 if it is
 * something else, -1 if the number is not open. */
static int s_peer(int fd, int server_port, char *addr, size_t size, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return errno == EBADF ? -1 : 0;
    uint16_t local;
    char text[48];
    if (!s_text(&ss, text, sizeof text, &local) || local != server_port)
        return 0;
    len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) /* the listener, a hand-off's dummy */
        return 0;
    return s_text(&ss, addr, size, port) ? 1 : 0;
}

static void s_key(char *key, size_t size, const char *addr, unsigned port)
{
    snprintf(key, size, "%s %u", addr, port);
}

static bool s_handling(ain__guard_t *self, const s_conn_t *c)
{
    char key[64];
    s_key(key, sizeof key, c->addr, c->port);
    pthread_mutex_lock(&self->lock);
    bool in = s_table_count(self->handling, key) > 0;
    pthread_mutex_unlock(&self->lock);
    return in;
}

/* Answers `status` on `fd` and shuts it down, if it is still the connection the scan saw:
 * civetweb's read ends (its thread is free) and civetweb closes the descriptor. */
static bool s_shed(ain__guard_t *self, int fd, int status, const char *code, const char *message)
{
    s_conn_t *c = &self->conns[fd];
    char addr[48];
    uint16_t port;
    if (s_peer(fd, self->server_port, addr, sizeof addr, &port) != 1 || port != c->port ||
        strcmp(addr, c->addr) != 0)
        return false;
    char body[160], out[512], date[64];
    int blen = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                        message);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nCache-Control: no-store\r\nRetry-After: 5\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, status == 429 ? "Too Many Requests" : "Service Unavailable", date,
                     blen, body);
    /* Best effort and never blocking: a client that does not read gets the shutdown only. */
    if (send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* nothing to do: the shutdown below is what matters */
    }
    shutdown(fd, SHUT_RDWR);
    c->shed = true;
    ain__http_count(self->edge, status);
    return true;
}

static int s_newest_first(const void *a, const void *b, void *arg)
{
    const s_conn_t *conns = arg;
    int64_t x = conns[*(const int *)a].seen_ms, y = conns[*(const int *)b].seen_ms;
    return x < y ? 1 : x > y ? -1 : *(const int *)b - *(const int *)a;
}

/* One look at every connection on our port: the count per address, the caps enforced. */
static void s_scan(ain__guard_t *self, int64_t now)
{
    ain_edge_t *edge = self->edge;
    ain__fdset_t *owned = ain__pump_owned(edge->pump);
    s_table_t *per_addr = s_table_new(self->max_live);
    int live = 0, ncand = 0, gap = 0;
    for (int fd = 3; fd < self->nconns && gap < S_GAP; fd++) {
        s_conn_t *c = &self->conns[fd];
        char addr[48];
        uint16_t port;
        int r =
            ain__fdset_has(owned, fd) ? 0 : s_peer(fd, self->server_port, addr, sizeof addr, &port);
        gap = r < 0 ? gap + 1 : 0;
        if (r != 1) {
            c->seen_ms = 0;
            continue;
        }
        if (!c->seen_ms || c->port != port || strcmp(c->addr, addr) != 0) {
            c->seen_ms = now;
            c->port = port;
            c->shed = false;
            snprintf(c->addr, sizeof c->addr, "%s", addr);
        }
        if (c->shed)
            continue; /* civetweb has not closed it yet */
        live++;
        s_table_add(per_addr, addr, INT_MAX);
        if (!s_handling(self, c))
            self->cand[ncand++] = fd;
    }
    qsort_r(self->cand, (size_t)ncand, sizeof *self->cand, s_newest_first, self->conns);
    /* An address beyond its cap loses its newest connections... */
    for (int i = 0; i < ncand; i++) {
        s_conn_t *c = &self->conns[self->cand[i]];
        if (s_table_count(per_addr, c->addr) > self->per_addr_max &&
            s_shed(self, self->cand[i], 429, "TOO_MANY_CONNECTIONS",
                   "too many connections from this address")) {
            s_table_del(per_addr, c->addr);
            ain_metric_inc(edge->m.conn_refused);
            live--;
        }
    }
    /* ...and past the reading bound, the oldest idle or reading connections go, so that new
     * ones always find a worker thread. */
    for (int i = ncand - 1; i >= 0 && live > self->max_live; i--)
        if (!self->conns[self->cand[i]].shed &&
            now - self->conns[self->cand[i]].seen_ms >= S_SHED_AGE_MS &&
            s_shed(self, self->cand[i], 503, "BUSY", "the edge is busy, try again")) {
            ain_metric_inc(edge->m.conn_shed);
            live--;
        }
    ain_metric_set(edge->m.connections, live);
    s_table_destroy(&per_addr);
}

static void *s_watch(void *arg)
{
    ain__guard_t *self = arg;
    while (!atomic_load(&self->stop)) {
        struct timespec ts = {0, S_WATCH_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (!atomic_load(&self->stop))
            s_scan(self, ain_clock_mono_ms());
    }
    return NULL;
}

ain__guard_t *ain__guard_new(ain_edge_t *edge, int server_port, int max_connections,
                             int per_addr_max)
{
    ain__guard_t *self = AIN_NEW(ain__guard_t);
    self->edge = edge;
    self->server_port = server_port;
    self->per_addr_max = per_addr_max;
    /* A sixteenth of the workers (at least one) stays for connections to come. */
    int reserve = max_connections / 16 > 1 ? max_connections / 16 : 1;
    self->max_live = max_connections - reserve;
    pthread_mutex_init(&self->lock, NULL);
    self->handling = s_table_new(max_connections);
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    self->nconns = n == RLIM_INFINITY || n > (1 << 20) ? (1 << 20) : (int)n;
    self->conns = ain_calloc((size_t)self->nconns, sizeof *self->conns);
    self->cand = ain_calloc((size_t)self->nconns, sizeof *self->cand);
    if (pthread_create(&self->thread, NULL, s_watch, self) != 0) {
        ain__guard_destroy(&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void ain__guard_destroy(ain__guard_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__guard_t *self = *self_p;
    atomic_store(&self->stop, true);
    if (self->started)
        pthread_join(self->thread, NULL);
    s_table_destroy(&self->handling);
    pthread_mutex_destroy(&self->lock);
    free(self->conns);
    free(self->cand);
    free(self);
    *self_p = NULL;
}

void ain__guard_enter(ain__guard_t *self, const struct mg_request_info *info)
{
    char key[64];
    s_key(key, sizeof key, info->remote_addr, (unsigned)info->remote_port);
    pthread_mutex_lock(&self->lock);
    s_table_add(self->handling, key, INT_MAX);
    pthread_mutex_unlock(&self->lock);
}

void ain__guard_leave(ain__guard_t *self, const struct mg_request_info *info)
{
    char key[64];
    s_key(key, sizeof key, info->remote_addr, (unsigned)info->remote_port);
    pthread_mutex_lock(&self->lock);
    s_table_del(self->handling, key);
    pthread_mutex_unlock(&self->lock);
}

int ain__guard_request(ain__http_t *http)
{
    const struct mg_request_info *info = http->info;
    if (info->content_length > AIN__BODY_MAX) {
        mg_disable_connection_keep_alive(http->conn);
        return ain__http_error_extra(http, 413, "PAYLOAD_TOO_LARGE",
                                     "the request body is larger than any route takes",
                                     "Connection: close\r\n");
    }
    if (info->num_headers >= MG_MAX_HEADERS) {
        mg_disable_connection_keep_alive(http->conn);
        char message[64];
        snprintf(message, sizeof message, "at most %d header lines", MG_MAX_HEADERS - 1);
        return ain__http_error_extra(http, 431, "HEADERS_TOO_MANY", message,
                                     "Connection: close\r\n");
    }
    const char *raw = info->local_uri ? info->local_uri : "";
    int n = mg_url_decode(raw, (int)strlen(raw), http->path, (int)sizeof http->path, 0);
    if (n < 0) {
        http->path[0] = '\0';
        return ain__http_error(http, 414, "URI_TOO_LONG", "the path is too long");
    }
    if (memchr(http->path, '\0', (size_t)n))
        return ain__http_error(http, 400, "BAD_REQUEST", "the path contains a NUL byte (%00)");
    return 0;
}

/* ------------------------------------------------------------- selftest */

int ain_edge_guard_test(bool verbose)
{
    int failures = 0;
#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "guard: %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
    s_table_t *g = s_table_new(4);
    S_CHECK(s_table_add(g, "127.0.0.2", 2));
    S_CHECK(s_table_add(g, "127.0.0.2", 2));
    S_CHECK(!s_table_add(g, "127.0.0.2", 2)); /* the cap: refused, not counted */
    S_CHECK(s_table_count(g, "127.0.0.2") == 2);
    S_CHECK(s_table_add(g, "::1", 2));
    S_CHECK(g->size == 2);
    s_table_del(g, "127.0.0.2");
    S_CHECK(s_table_add(g, "127.0.0.2", 2)); /* a slot came free */
    s_table_del(g, "127.0.0.2");
    s_table_del(g, "127.0.0.2");
    S_CHECK(s_table_count(g, "127.0.0.2") == 0 && g->size == 1);
    s_table_del(g, "10.0.0.1"); /* never counted: ignored */
    /* Many keys: every entry found again and freed with its last count. */
    char addr[48];
    for (int i = 0; i < 1000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.1", i / 256, i % 256);
        S_CHECK(s_table_add(g, addr, 1));
    }
    S_CHECK(g->size == 1001);
    for (int i = 0; i < 1000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.1", i / 256, i % 256);
        s_table_del(g, addr);
    }
    S_CHECK(g->size == 1);
    s_table_destroy(&g);
    s_table_destroy(&g); /* safe twice */
#undef S_CHECK
    if (verbose)
        printf("guard: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
