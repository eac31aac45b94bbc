/* calls.c: the accounts actor's blocking calls on a small thread pool (see calls.h).
 *
 * Each pool thread owns one curl easy handle (so connections to a provider are reused) and,
 * for SESSION_OPEN, one MDP client of its own. A job runs start to end on one thread; the
 * actor's thread sees it only before submit and after the eventfd says it is back.
 */
#include "actors/accounts/calls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/client.h"
#include "runtime/clock.h"
#include "runtime/crypto.h"

#define S_BODY_MAX       (64 * 1024) /* a provider answer larger than this is refused */
#define S_FORM_MAX       (4 * AIN_ACCOUNTS_TOKEN_MAX)
#define S_MIN_BUDGET_MS  200 /* below this, a call is not started */
#define S_CONNECT_MAX_MS 5000

struct ain__pool {
    ain_actor_t *actor;
    const ain_proc_t *proc;
    ain__job_done_fn *done;
    void *arg;
    int64_t http_timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ain__job_t *in_head, *in_tail, *out_head, *out_tail;
    size_t queued, queue_max, pending;
    bool stopping;
    int efd, watch;
    pthread_t *threads;
    int nthreads;
};

/* ------------------------------------------------------------ jobs */

ain__job_t *ain__job_new(ain__job_kind_t kind)
{
    ain__job_t *job = AIN_NEW(ain__job_t);
    job->kind = kind;
    return job;
}

void ain__job_destroy(ain__job_t **job_p)
{
    ain__job_t *job = *job_p;
    if (!job)
        return;
    ain_crypto_free_secret(&job->code);
    ain_crypto_free_secret(&job->verifier);
    ain_crypto_free_secret(&job->refresh);
    free(job->redirect_uri);
    free(job->user_agent);
    free(job->ip);
    ain_accounts_tokens_clear(&job->tokens);
    if (job->session) {
        ain_crypto_wipe(job->session, job->session_len); /* it holds our tokens */
        free(job->session);
    }
    free(job);
    *job_p = NULL;
}

/* ------------------------------------------------------------ HTTP */

typedef struct {
    char *data;
    size_t len;
    bool overflow;
} s_buf_t;

static size_t s_write(char *ptr, size_t size, size_t n, void *arg)
{
    s_buf_t *b = arg;
    size_t add = size * n;
    if (b->len + add > S_BODY_MAX) {
        b->overflow = true;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    b->data = ain_realloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

static void s_buf_free(s_buf_t *b)
{
    if (b->data) {
        ain_crypto_wipe(b->data, b->len);
        free(b->data);
    }
    memset(b, 0, sizeof *b);
}

/* One HTTP call: POST `form` (or GET when NULL) with an optional bearer token. Returns the HTTP
 * status (> 0) with the body in *out, or 0 with the outcome (TIMEOUT, UNAVAILABLE, BAD_ANSWER)
 * in *fail and a reason in job->why. */
static long s_http(ain__pool_t *pool, CURL *h, ain__job_t *job, const char *url, const char *form,
                   const char *bearer, s_buf_t *out, ain_accounts_outcome_t *fail)
{
    int64_t left = job->deadline_ms - ain_clock_wall_ms();
    int64_t timeout = left < pool->http_timeout_ms ? left : pool->http_timeout_ms;
    if (timeout < S_MIN_BUDGET_MS) {
        snprintf(job->why, sizeof job->why, "no time left for the provider");
        *fail = AIN_ACCOUNTS_P_TIMEOUT;
        return 0;
    }
    char auth[AIN_ACCOUNTS_TOKEN_MAX + 32];
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        headers = curl_slist_append(headers, auth);
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout < S_CONNECT_MAX_MS ? timeout : S_CONNECT_MAX_MS));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ainbox/0.1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (form) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    ain_crypto_wipe(auth, sizeof auth);
    if (rc == CURLE_OK && status > 0)
        return status;
    *fail = rc == CURLE_OPERATION_TIMEDOUT ? AIN_ACCOUNTS_P_TIMEOUT
            : out->overflow                ? AIN_ACCOUNTS_P_BAD_ANSWER
                                           : AIN_ACCOUNTS_P_UNAVAILABLE;
    snprintf(job->why, sizeof job->why, "%s: %s", out->overflow ? "answer too large" : "no answer",
             curl_easy_strerror(rc));
    return 0;
}

/* The token endpoint: the job's grant, with PKCE for a code. Fills job->tokens. */
static ain_accounts_outcome_t s_token(ain__pool_t *pool, CURL *h, ain__job_t *job)
{
    const ain_provider_t *p = job->provider;
    char *form = ain_malloc(S_FORM_MAX);
    size_t n = 0;
    int bad = 0;
    form[0] = '\0';
    if (job->kind == AIN__JOB_EXCHANGE) {
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "grant_type", "authorization_code");
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "code", job->code);
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "redirect_uri", job->redirect_uri);
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "code_verifier", job->verifier);
    } else {
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "grant_type", "refresh_token");
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "refresh_token", job->refresh);
    }
    bad |= ain_provider_param(form, S_FORM_MAX, &n, "client_id", p->client_id);
    bad |= ain_provider_param(form, S_FORM_MAX, &n, "client_secret", p->secret ? p->secret : "");
    if (p->scope_on_token) /* space-separated: commas break work accounts (§2.6) */
        bad |= ain_provider_param(form, S_FORM_MAX, &n, "scope", p->scopes);
    ain_accounts_outcome_t outcome = AIN_ACCOUNTS_P_BAD_ANSWER;
    if (bad) {
        snprintf(job->why, sizeof job->why, "the token request does not fit");
    } else {
        s_buf_t body = {0};
        long status = s_http(pool, h, job, p->token_url, form, NULL, &body, &outcome);
        if (status > 0)
            outcome = ain_accounts_tokens_parse(status, body.data, body.len, &job->tokens, job->why,
                                                sizeof job->why);
        s_buf_free(&body);
    }
    ain_crypto_wipe(form, S_FORM_MAX);
    free(form);
    return outcome;
}

static ain_accounts_outcome_t s_identity(ain__pool_t *pool, CURL *h, ain__job_t *job)
{
    s_buf_t body = {0};
    ain_accounts_outcome_t outcome = AIN_ACCOUNTS_P_BAD_ANSWER;
    long status = s_http(pool, h, job, job->provider->identity_url, NULL, job->tokens.access_token,
                         &body, &outcome);
    if (status > 0)
        outcome = ain_accounts_identity_parse(job->provider->id, status, body.data, body.len,
                                              &job->identity, job->why, sizeof job->why);
    s_buf_free(&body);
    return outcome;
}

/* ------------------------------------------------------------ SESSION_OPEN */

static void s_session_open(ain__pool_t *pool, ain_client_t **client, ain__job_t *job)
{
    if (!*client)
        *client = ain_client_new(ain_proc_zmq(pool->proc), ain_proc_broker(pool->proc),
                                 ain_proc_config(pool->proc));
    int64_t left = job->deadline_ms - ain_clock_wall_ms();
    if (!*client) {
        job->session_status = AIN_STATUS_ERROR;
        snprintf(job->why, sizeof job->why, "no broker client to open a session with");
        return;
    }
    if (left < S_MIN_BUDGET_MS) {
        job->session_status = AIN_STATUS_TIMEOUT;
        snprintf(job->why, sizeof job->why, "no time left to open a session");
        return;
    }
    const ain_accounts_identity_t *id = &job->identity;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (id->name[0] != 0) + (id->picture[0] != 0) +
                              (job->user_agent != NULL) + (job->ip != NULL));
    ain_mp_pack_kv_str(&pk, "email", id->email);
    if (id->name[0])
        ain_mp_pack_kv_str(&pk, "name", id->name);
    if (id->picture[0])
        ain_mp_pack_kv_str(&pk, "picture", id->picture);
    if (job->user_agent)
        ain_mp_pack_kv_str(&pk, "user_agent", job->user_agent);
    if (job->ip)
        ain_mp_pack_kv_str(&pk, "ip", job->ip);
    ain_reply_t reply;
    ain_status_t st = ain_client_call(*client, "session", AIN_MSG_SESSION_OPEN, 0, buf.data,
                                      buf.size, (int)left, &reply);
    msgpack_sbuffer_destroy(&buf);
    job->session_status = st;
    if (reply.env.body_len) {
        job->session = ain_malloc(reply.env.body_len);
        memcpy(job->session, reply.env.body, reply.env.body_len);
        job->session_len = reply.env.body_len;
    }
    if (st != AIN_STATUS_OK)
        snprintf(job->why, sizeof job->why, "the session service answered %s", ain_status_name(st));
    ain_reply_close(&reply);
}

/* ------------------------------------------------------------ threads */

static void s_run(ain__pool_t *pool, CURL *h, ain_client_t **client, ain__job_t *job)
{
    job->outcome = s_token(pool, h, job);
    if (job->outcome != AIN_ACCOUNTS_P_OK || job->kind != AIN__JOB_EXCHANGE)
        return;
    job->outcome = s_identity(pool, h, job);
    if (job->outcome == AIN_ACCOUNTS_P_OK)
        s_session_open(pool, client, job);
}

static void s_hand_back(ain__pool_t *pool, ain__job_t *job)
{
    pthread_mutex_lock(&pool->lock);
    job->next = NULL;
    if (pool->out_tail)
        pool->out_tail->next = job;
    else
        pool->out_head = job;
    pool->out_tail = job;
    pthread_mutex_unlock(&pool->lock);
    uint64_t one = 1;
    ssize_t w = write(pool->efd, &one, sizeof one);
    (void)w; /* only fails when the counter is saturated: it is then readable anyway */
}

static void *s_thread(void *arg)
{
    ain__pool_t *pool = arg;
    CURL *h = curl_easy_init();
    ain_client_t *client = NULL;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (!pool->in_head && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->lock);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->lock);
            break;
        }
        ain__job_t *job = pool->in_head;
        pool->in_head = job->next;
        if (!pool->in_head)
            pool->in_tail = NULL;
        pool->queued--;
        pthread_mutex_unlock(&pool->lock);
        if (h) {
            s_run(pool, h, &client, job);
        } else {
            job->outcome = AIN_ACCOUNTS_P_UNAVAILABLE;
            snprintf(job->why, sizeof job->why, "no HTTP client");
        }
        s_hand_back(pool, job);
    }
    ain_client_destroy(&client);
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

/* The actor's side of the eventfd: every job that came back goes to `done`. */
static void s_on_back(ain_actor_t *actor, int fd, int revents, void *arg)
{
    ain__pool_t *pool = arg;
    (void)actor;
    (void)revents;
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof count);
    (void)r;
    pthread_mutex_lock(&pool->lock);
    ain__job_t *job = pool->out_head;
    pool->out_head = pool->out_tail = NULL;
    pthread_mutex_unlock(&pool->lock);
    while (job) {
        ain__job_t *next = job->next;
        pool->pending--;
        pool->done(job, pool->arg);
        job = next;
    }
}

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static void s_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

ain__pool_t *ain__pool_new(ain_actor_t *actor, int threads, size_t queue_max,
                           int64_t http_timeout_ms, ain__job_done_fn *done, void *arg)
{
    pthread_once(&s_curl_once, s_curl_init);
    ain__pool_t *pool = AIN_NEW(ain__pool_t);
    pool->actor = actor;
    pool->proc = ain_actor_proc(actor);
    pool->done = done;
    pool->arg = arg;
    pool->http_timeout_ms = http_timeout_ms;
    pool->queue_max = queue_max;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pool->watch =
        pool->efd >= 0 ? ain_actor_watch(actor, pool->efd, ZMQ_POLLIN, s_on_back, pool) : -1;
    pool->threads = ain_calloc((size_t)threads, sizeof(pthread_t));
    if (pool->watch > 0)
        for (; pool->nthreads < threads; pool->nthreads++)
            if (pthread_create(&pool->threads[pool->nthreads], NULL, s_thread, pool) != 0)
                break;
    if (pool->nthreads == 0) {
        ain__pool_destroy(&pool);
        return NULL;
    }
    return pool;
}

int ain__pool_submit(ain__pool_t *self, ain__job_t *job)
{
    pthread_mutex_lock(&self->lock);
    if (self->queued >= self->queue_max || self->stopping) {
        pthread_mutex_unlock(&self->lock);
        return -1;
    }
    job->next = NULL;
    if (self->in_tail)
        self->in_tail->next = job;
    else
        self->in_head = job;
    self->in_tail = job;
    self->queued++;
    self->pending++;
    pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

size_t ain__pool_pending(const ain__pool_t *self)
{
    return self->pending;
}

void ain__pool_destroy(ain__pool_t **self_p)
{
    ain__pool_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
    for (int i = 0; i < self->nthreads; i++)
        pthread_join(self->threads[i], NULL);
    /* The threads are gone: what came back, then what never ran. */
    if (self->efd >= 0 && self->watch > 0)
        s_on_back(self->actor, self->efd, ZMQ_POLLIN, self);
    while (self->in_head) {
        ain__job_t *job = self->in_head;
        self->in_head = job->next;
        job->outcome = AIN_ACCOUNTS_P_UNAVAILABLE;
        snprintf(job->why, sizeof job->why, "shutting down");
        self->pending--;
        self->done(job, self->arg);
    }
    if (self->watch > 0)
        ain_actor_unwatch(self->actor, self->watch);
    if (self->efd >= 0)
        close(self->efd);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    free(self->threads);
    free(self);
    *self_p = NULL;
}
