/* http.c: libcurl's multi interface on an actor's loop (see http.h).
 *
 * curl tells us which sockets to watch and when to wake it; we forward
 * readiness with curl_multi_socket_action and read finished transfers with
 * curl_multi_info_read. Callbacks run only from s_drain, outside any curl
 * callback, so they may start or cancel requests.
 */
#include "actors/sync/http.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "runtime/alloc.h"

#define S_CONNECT_MAX_MS 5000

typedef struct s_req {
    uint64_t id;
    CURL *easy;
    struct curl_slist *headers;
    char *data;
    size_t len, cap, max;
    bool overflow;
    ain__http_fn *cb;
    void *arg;
    struct s_req *prev, *next;
} s_req_t;

struct _ain__http_t {
    ain_actor_t *actor;
    CURLM *multi;
    int timer; /* actor timer id, 0: none */
    uint64_t next_id;
    size_t pending;
    s_req_t *head;
    bool draining;
};

static void s_req_free(ain__http_t *self, s_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        self->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    curl_multi_remove_handle(self->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->data);
    free(r);
    self->pending--;
}

/* Finished transfers: one callback each. */
static void s_drain(ain__http_t *self)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        s_req_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r)
            continue;
        ain__http_result_t res = {0};
        CURLcode rc = msg->data.result;
        if (rc == CURLE_OK) {
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
            curl_off_t ra = 0;
            if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
                res.retry_after_ms = (int64_t)ra * 1000;
        } else {
            res.error = r->overflow ? "answer too large" : curl_easy_strerror(rc);
            res.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
            res.too_large = r->overflow;
        }
        res.body = r->data ? r->data : "";
        res.len = r->len;
        ain__http_fn *cb = r->cb;
        void *arg = r->arg;
        /* The body must outlive the callback: detach it first. */
        char *data = r->data;
        r->data = NULL;
        s_req_free(self, r);
        cb(&res, arg);
        free(data);
    }
}

static void s_on_fd(ain_actor_t *actor, int fd, int revents, void *arg)
{
    (void)actor;
    ain__http_t *self = arg;
    int ev = 0;
    if (revents & ZMQ_POLLIN)
        ev |= CURL_CSELECT_IN;
    if (revents & ZMQ_POLLOUT)
        ev |= CURL_CSELECT_OUT;
    if (revents & ZMQ_POLLERR)
        ev |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(self->multi, fd, ev, &running);
    s_drain(self);
}

static void s_on_timer(ain_actor_t *actor, void *arg)
{
    (void)actor;
    ain__http_t *self = arg;
    self->timer = 0;
    int running;
    curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    s_drain(self);
}

static int s_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    ain__http_t *self = userp;
    int id = (int)(intptr_t)socketp;
    if (what == CURL_POLL_REMOVE) {
        if (id > 0)
            ain_actor_unwatch(self->actor, id);
        curl_multi_assign(self->multi, s, NULL);
        return 0;
    }
    int events = (what & CURL_POLL_IN ? ZMQ_POLLIN : 0) | (what & CURL_POLL_OUT ? ZMQ_POLLOUT : 0);
    if (id > 0) {
        ain_actor_watch_set(self->actor, id, s, events);
        return 0;
    }
    id = ain_actor_watch(self->actor, s, events, s_on_fd, self);
    if (id < 0)
        return -1; /* no watch left: curl fails this transfer */
    curl_multi_assign(self->multi, s, (void *)(intptr_t)id);
    return 0;
}

static int s_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ain__http_t *self = userp;
    if (self->timer)
        ain_actor_timer_cancel(self->actor, self->timer);
    self->timer = 0;
    if (timeout_ms >= 0)
        self->timer = ain_actor_timer(self->actor, (int)timeout_ms, false, s_on_timer, self);
    return 0;
}

static size_t s_write(char *ptr, size_t size, size_t n, void *arg)
{
    s_req_t *r = arg;
    size_t add = size * n;
    if (r->len + add > r->max) {
        r->overflow = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + add + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + add + 1)
            cap *= 2;
        r->data = ain_realloc(r->data, cap);
        r->cap = cap;
    }
    memcpy(r->data + r->len, ptr, add);
    r->len += add;
    r->data[r->len] = '\0';
    return add;
}

ain__http_t *ain__http_new(ain_actor_t *actor, int max_conns)
{
    CURLM *multi = curl_multi_init();
    if (!multi)
        return NULL;
    ain__http_t *self = AIN_NEW(ain__http_t);
    self->actor = actor;
    self->multi = multi;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, s_socket_cb);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, s_timer_cb);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, self);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Each connection is an actor watch, and the actor has few. */
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_conns);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)max_conns);
    return self;
}

void ain__http_destroy(ain__http_t **self_p)
{
    ain__http_t *self = *self_p;
    if (!self)
        return;
    while (self->head)
        s_req_free(self, self->head);
    if (self->timer)
        ain_actor_timer_cancel(self->actor, self->timer);
    curl_multi_cleanup(self->multi); /* removes the sockets: s_socket_cb unwatches */
    free(self);
    *self_p = NULL;
}

uint64_t ain__http_get(ain__http_t *self, const char *url, const char *bearer, const char *json,
                       int64_t timeout_ms, size_t max_body, ain__http_fn *cb, void *arg)
{
    CURL *easy = curl_easy_init();
    if (!easy)
        return 0;
    s_req_t *r = AIN_NEW(s_req_t);
    r->id = ++self->next_id;
    r->easy = easy;
    r->max = max_body;
    r->cb = cb;
    r->arg = arg;
    if (bearer) {
        char *h = ain_sprintf("Authorization: Bearer %s", bearer);
        r->headers = curl_slist_append(r->headers, h);
        memset(h, 0, strlen(h)); /* it held a token */
        free(h);
    }
    r->headers = curl_slist_append(r->headers, "Accept: application/json");
    if (json) {
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, json);
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 1 ? timeout_ms : 1));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout_ms < S_CONNECT_MAX_MS ? timeout_ms : S_CONNECT_MAX_MS));
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L); /* wait for a multiplexed connection */
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    r->next = self->head;
    if (self->head)
        self->head->prev = r;
    self->head = r;
    self->pending++;
    if (curl_multi_add_handle(self->multi, easy) != CURLM_OK) {
        s_req_free(self, r);
        return 0;
    }
    return r->id;
}

void ain__http_cancel(ain__http_t *self, uint64_t id)
{
    for (s_req_t *r = self->head; r; r = r->next)
        if (r->id == id) {
            s_req_free(self, r);
            return;
        }
}

size_t ain__http_pending(const ain__http_t *self)
{
    return self->pending;
}
