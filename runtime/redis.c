/* redis.c: hiredis async driven by an actor's loop (see redis.h).
 *
 * hiredis tells us, through five hooks, when it wants to read or write;
 * we translate that into the events of one actor watch. Every command
 * carries a small context on a FIFO, oldest first, so a timer can see a
 * command that waited too long and drop the connection; hiredis then
 * fails every pending command (callback with NULL) and calls our
 * disconnect hook, which schedules a reconnection.
 */
#include "runtime/redis.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <openssl/evp.h>

#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/crypto.h"

#define S_CHECK_MS       100
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 5000

typedef struct s_cmd_t {
    ain_redis_t *redis;
    ain_redis_fn *fn;
    void *arg;
    int64_t sent_ms;
    bool subscription; /* called per message; not timed */
    struct s_cmd_t *prev, *next;
} s_cmd_t;

struct _ain_redis_t {
    ain_actor_t *actor;
    ain_log_t *log;
    char *name;
    ain_redis_target_t target;
    redisAsyncContext *ac;
    bool connected, destroying;
    int watch;
    bool want_read, want_write;
    s_cmd_t *pending; /* oldest first */
    s_cmd_t *pending_tail;
    int check_timer, reconnect_timer;
    int64_t timeout_ms, backoff_ms;
    bool stalled; /* the last connection timed out and none has answered since */
    ain_redis_state_fn *on_state;
    void *state_arg;
    ain_redis_stats_t stats;
};

/* ------------------------------------------------------------ target */

static int s_parse_url(const char *url, ain_redis_target_t *t, const char **why)
{
    const char *rest;
    if (strncmp(url, "unix://", 7) == 0) {
        rest = url + 7;
        const char *q = strchr(rest, '?');
        size_t n = q ? (size_t)(q - rest) : strlen(rest);
        if (n == 0 || n >= sizeof t->path || rest[0] != '/') {
            *why = "unix:// needs an absolute socket path";
            return -1;
        }
        memcpy(t->path, rest, n);
        t->path[n] = '\0';
        if (q && strncmp(q, "?db=", 4) == 0)
            t->db = atoi(q + 4);
        return 0;
    }
    rest = url + strlen("redis://");
    const char *at = strchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *pw = colon ? colon + 1 : rest;
        snprintf(t->password, sizeof t->password, "%.*s", (int)(at - pw), pw);
        rest = at + 1;
    }
    const char *slash = strchr(rest, '/'), *colon = strchr(rest, ':');
    if (colon && slash && colon > slash)
        colon = NULL;
    size_t hlen = (size_t)((colon ? colon : slash ? slash : rest + strlen(rest)) - rest);
    if (hlen == 0 || hlen >= sizeof t->host) {
        *why = "REDIS_URL has no host";
        return -1;
    }
    snprintf(t->host, sizeof t->host, "%.*s", (int)hlen, rest);
    t->port = colon ? atoi(colon + 1) : 6379;
    t->db = slash && slash[1] ? atoi(slash + 1) : 0;
    if (t->port < 1 || t->port > 65535) {
        *why = "REDIS_URL has a bad port";
        return -1;
    }
    return 0;
}

int ain_redis_target(const ain_config_t *cfg, ain_redis_target_t *target, const char **why)
{
    memset(target, 0, sizeof *target);
    const char *url = ain_config_str(cfg, AIN_CFG_REDIS_URL);
    if (url && url[0])
        return s_parse_url(url, target, why);
    snprintf(target->host, sizeof target->host, "%s", ain_config_str(cfg, AIN_CFG_REDIS_HOST));
    target->port = (int)ain_config_int(cfg, AIN_CFG_REDIS_PORT);
    return 0;
}

/* ------------------------------------------------------------ hiredis hooks */

static void s_update_watch(ain_redis_t *self)
{
    int events = (self->want_read ? ZMQ_POLLIN : 0) | (self->want_write ? ZMQ_POLLOUT : 0);
    ain_actor_watch_set(self->actor, self->watch, self->ac ? self->ac->c.fd : -1, events);
}

static void s_add_read(void *data)
{
    ain_redis_t *self = data;
    self->want_read = true;
    s_update_watch(self);
}

static void s_del_read(void *data)
{
    ain_redis_t *self = data;
    self->want_read = false;
    s_update_watch(self);
}

static void s_add_write(void *data)
{
    ain_redis_t *self = data;
    self->want_write = true;
    s_update_watch(self);
}

static void s_del_write(void *data)
{
    ain_redis_t *self = data;
    self->want_write = false;
    s_update_watch(self);
}

static void s_cleanup(void *data)
{
    ain_redis_t *self = data;
    self->want_read = self->want_write = false;
    ain_actor_watch_set(self->actor, self->watch, -1, 0);
}

static void s_on_io(ain_actor_t *actor, int fd, int revents, void *arg)
{
    ain_redis_t *self = arg;
    /* Either call may free the context (a disconnect): check in between. */
    if (self->ac && (revents & ZMQ_POLLIN))
        redisAsyncHandleRead(self->ac);
    if (self->ac && (revents & ZMQ_POLLOUT))
        redisAsyncHandleWrite(self->ac);
}

/* ------------------------------------------------------------ commands */

static void s_unlink(ain_redis_t *self, s_cmd_t *cmd)
{
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        self->pending = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    else
        self->pending_tail = cmd->prev;
    cmd->prev = cmd->next = NULL;
}

static void s_append(ain_redis_t *self, s_cmd_t *cmd)
{
    cmd->prev = self->pending_tail;
    if (self->pending_tail)
        self->pending_tail->next = cmd;
    else
        self->pending = cmd;
    self->pending_tail = cmd;
}

static void s_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    s_cmd_t *cmd = privdata;
    ain_redis_t *self = cmd->redis;
    redisReply *r = reply;
    if (cmd->subscription) {
        cmd->fn(self, r, cmd->arg); /* the confirmation, each message, then NULL */
        if (!r)
            free(cmd);
        return;
    }
    s_unlink(self, cmd);
    if (!r)
        self->stats.failed++;
    else if (self->stalled) { /* answering again: back-off and warnings start over */
        self->stalled = false;
        self->backoff_ms = S_BACKOFF_MIN_MS;
        ain_info(self->log, "redis %s: answering again", self->name);
    }
    cmd->fn(self, r, cmd->arg);
    free(cmd);
}

int ain_redis_command(ain_redis_t *self, ain_redis_fn *fn, void *arg, int argc, const char **argv,
                      const size_t *argvlen)
{
    if (!self->connected || !self->ac)
        return -1;
    s_cmd_t *cmd = AIN_NEW(s_cmd_t);
    *cmd = (s_cmd_t){self, fn, arg, ain_clock_mono_ms(), false, NULL, NULL};
    if (redisAsyncCommandArgv(self->ac, s_on_reply, cmd, argc, argv, argvlen) != REDIS_OK) {
        free(cmd);
        return -1;
    }
    s_append(self, cmd);
    self->stats.sent++;
    return 0;
}

int ain_redis_subscribe(ain_redis_t *self, const char *channel, ain_redis_fn *fn, void *arg)
{
    if (!self->connected || !self->ac)
        return -1;
    s_cmd_t *cmd = AIN_NEW(s_cmd_t);
    *cmd = (s_cmd_t){self, fn, arg, 0, true, NULL, NULL};
    if (redisAsyncCommand(self->ac, s_on_reply, cmd, "SUBSCRIBE %s", channel) != REDIS_OK) {
        free(cmd);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ scripts */

int ain_redis_script_init(ain_redis_script_t *script, const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    script->text = text;
    script->sha[0] = '\0';
    if (EVP_Digest(text, strlen(text), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        return -1;
    return ain_crypto_hex_encode(md, len, script->sha, sizeof script->sha);
}

static void s_on_script_loaded(ain_redis_t *self, redisReply *r, void *arg)
{
    const ain_redis_script_t *script = arg;
    if (r && (r->type != REDIS_REPLY_STRING || strcmp(r->str, script->sha) != 0))
        ain_error(self->log, "redis %s: SCRIPT LOAD %s: %s", self->name, script->sha,
                  r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected answer");
}

int ain_redis_script_load(ain_redis_t *self, const ain_redis_script_t *script)
{
    const char *argv[] = {"SCRIPT", "LOAD", script->text};
    return ain_redis_command(self, s_on_script_loaded, (void *)(uintptr_t)script, 3, argv, NULL);
}

/* An ain_redis_eval in flight: its arguments (copied into one blob), kept
 * for a resend as EVAL. argv[0] is "EVALSHA" or "EVAL", argv[1] the sha or
 * the text (both borrowed from the script). */
typedef struct {
    const ain_redis_script_t *script;
    ain_redis_fn *fn;
    void *arg;
    int argc;
    const char **argv;
    size_t *argvlen;
    char *blob;
} s_eval_t;

static void s_eval_free(s_eval_t *ev)
{
    free(ev->blob);
    free(ev->argv);
    free(ev->argvlen);
    free(ev);
}

static void s_on_eval(ain_redis_t *self, redisReply *r, void *arg)
{
    s_eval_t *ev = arg;
    bool noscript = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
    /* Nothing pending behind it (the list is oldest first and it was just
     * unlinked): an EVAL now runs right where the EVALSHA would have. */
    if (noscript && ev->argv[1] == ev->script->sha && !self->pending && self->connected) {
        ev->argv[0] = "EVAL";
        ev->argv[1] = ev->script->text;
        ev->argvlen[0] = 4;
        ev->argvlen[1] = strlen(ev->script->text);
        if (ain_redis_command(self, s_on_eval, ev, ev->argc, ev->argv, ev->argvlen) == 0) {
            self->stats.noscript_resent++;
            return;
        }
    }
    if (noscript) {
        /* Load it again, or under a pipeline that never empties every
         * EVALSHA would meet NOSCRIPT for ever: what is sent from now on
         * finds it. (One per failed command: bounded by what was in flight.) */
        self->stats.noscript_failed++;
        ain_redis_script_load(self, ev->script);
    }
    ev->fn(self, r, ev->arg);
    s_eval_free(ev);
}

int ain_redis_eval(ain_redis_t *self, const ain_redis_script_t *script, int numkeys, int argc,
                   const char **argv, const size_t *argvlen, ain_redis_fn *fn, void *arg)
{
    if (!self->connected || !self->ac || numkeys < 0 || numkeys > argc)
        return -1;
    s_eval_t *ev = AIN_NEW(s_eval_t);
    *ev = (s_eval_t){script, fn, arg, argc + 3, NULL, NULL, NULL};
    ev->argv = ain_calloc((size_t)ev->argc, sizeof *ev->argv);
    ev->argvlen = ain_calloc((size_t)ev->argc, sizeof *ev->argvlen);
    size_t total = 16;
    for (int i = 0; i < argc; i++)
        total += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    char *p = ev->blob = ain_malloc(total);
    ev->argv[0] = "EVALSHA";
    ev->argvlen[0] = 7;
    ev->argv[1] = script->sha;
    ev->argvlen[1] = 40;
    ev->argvlen[2] = (size_t)snprintf(p, 16, "%d", numkeys);
    ev->argv[2] = p;
    p += 16;
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        p[len] = '\0';
        ev->argv[3 + i] = p;
        ev->argvlen[3 + i] = len;
        p += len + 1;
    }
    if (ain_redis_command(self, s_on_eval, ev, ev->argc, ev->argv, ev->argvlen) < 0) {
        s_eval_free(ev);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ connection */

static void s_connect(ain_redis_t *self);

static void s_reconnect_now(ain_actor_t *actor, void *arg)
{
    ain_redis_t *self = arg;
    self->reconnect_timer = 0;
    s_connect(self);
}

static void s_schedule_reconnect(ain_redis_t *self)
{
    if (self->destroying || self->reconnect_timer)
        return;
    self->reconnect_timer =
        ain_actor_timer(self->actor, (int)self->backoff_ms, false, s_reconnect_now, self);
    self->backoff_ms =
        self->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : self->backoff_ms * 2;
}

static void s_set_state(ain_redis_t *self, bool connected)
{
    self->connected = connected;
    if (self->on_state && !self->destroying)
        self->on_state(self, connected, self->state_arg);
}

static void s_on_disconnect(const redisAsyncContext *ac, int status)
{
    ain_redis_t *self = ac->data;
    bool was = self->connected;
    self->ac = NULL; /* hiredis frees the context after this returns */
    ain_actor_watch_set(self->actor, self->watch, -1, 0);
    if (was && !self->stalled)
        ain_warn(self->log, "redis %s: connection lost", self->name);
    s_set_state(self, false);
    s_schedule_reconnect(self);
}

static void s_on_auth(ain_redis_t *redis, redisReply *reply, void *arg)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ain_error(redis->log, "redis %s: %s", redis->name, reply->str);
        if (redis->ac)
            redisAsyncDisconnect(redis->ac);
    }
}

/* Sends AUTH and SELECT, if configured, ahead of every other command. */
static void s_handshake(ain_redis_t *self)
{
    char db[16];
    if (self->target.password[0]) {
        const char *argv[] = {"AUTH", self->target.password};
        ain_redis_command(self, s_on_auth, NULL, 2, argv, NULL);
    }
    if (self->target.db) {
        snprintf(db, sizeof db, "%d", self->target.db);
        const char *argv[] = {"SELECT", db};
        ain_redis_command(self, s_on_auth, NULL, 2, argv, NULL);
    }
}

static void s_on_connect(const redisAsyncContext *ac, int status)
{
    ain_redis_t *self = ac->data;
    if (status != REDIS_OK) {
        ain_debug(self->log, "redis %s: connect failed: %s", self->name, ac->errstr);
        self->ac = NULL; /* hiredis frees it */
        s_set_state(self, false);
        s_schedule_reconnect(self);
        return;
    }
    int on = 1, idle = 5, intvl = 2, cnt = 3; /* a silent host is noticed in ~11 s */
    setsockopt(ac->c.fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(ac->c.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(ac->c.fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(ac->c.fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    /* A frozen server still completes TCP connects (the kernel does): after
     * a timeout, the back-off starts over only once Redis answers. */
    if (!self->stalled)
        self->backoff_ms = S_BACKOFF_MIN_MS;
    self->connected = true;
    s_handshake(self);
    if (self->stalled)
        ain_debug(self->log, "redis %s: connected, waiting for an answer", self->name);
    else
        ain_info(self->log, "redis %s: connected", self->name);
    s_set_state(self, true);
}

static void s_connect(ain_redis_t *self)
{
    const ain_redis_target_t *t = &self->target;
    redisAsyncContext *ac =
        t->path[0] ? redisAsyncConnectUnix(t->path) : redisAsyncConnect(t->host, t->port);
    if (!ac || ac->err) {
        ain_debug(self->log, "redis %s: cannot connect: %s", self->name,
                  ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        s_schedule_reconnect(self);
        return;
    }
    self->stats.reconnects++;
    self->ac = ac;
    ac->data = self;
    ac->ev.data = self;
    ac->ev.addRead = s_add_read;
    ac->ev.delRead = s_del_read;
    ac->ev.addWrite = s_add_write;
    ac->ev.delWrite = s_del_write;
    ac->ev.cleanup = s_cleanup;
    redisAsyncSetConnectCallback(ac, s_on_connect);
    redisAsyncSetDisconnectCallback(ac, s_on_disconnect);
    /* The connect is in progress: hiredis waits for writability. */
    self->want_write = true;
    s_update_watch(self);
}

/* Drops a connection whose oldest command waited too long. */
static void s_check(ain_actor_t *actor, void *arg)
{
    ain_redis_t *self = arg;
    if (!self->ac || !self->pending ||
        ain_clock_mono_ms() - self->pending->sent_ms <= self->timeout_ms)
        return;
    self->stats.timeouts++;
    if (self->stalled) /* said once per stall; the count is in the stats */
        ain_debug(self->log, "redis %s: still no answer; reconnecting", self->name);
    else
        ain_warn(self->log, "redis %s: no answer in %ld ms; reconnecting", self->name,
                 (long)self->timeout_ms);
    self->stalled = true;
    redisAsyncDisconnect(self->ac);
}

ain_redis_t *ain_redis_new(ain_actor_t *actor, const char *name, ain_redis_state_fn *on_state,
                           void *arg)
{
    ain_redis_t *self = AIN_NEW(ain_redis_t);
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    const char *why = NULL;
    self->actor = actor;
    self->log = ain_actor_log(actor);
    self->name = ain_strdup(name);
    self->on_state = on_state;
    self->state_arg = arg;
    self->timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_REDIS_TIMEOUT_MS);
    self->backoff_ms = S_BACKOFF_MIN_MS;
    if (ain_redis_target(cfg, &self->target, &why) < 0)
        ain_error(self->log, "redis %s: %s", name, why); /* config validated it: unlikely */
    self->watch = ain_actor_watch(actor, -1, 0, s_on_io, self);
    self->check_timer = ain_actor_timer(actor, S_CHECK_MS, true, s_check, self);
    s_connect(self);
    return self;
}

void ain_redis_destroy(ain_redis_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_redis_t *self = *self_p;
    self->destroying = true;
    if (self->ac)
        redisAsyncFree(self->ac); /* fails pending commands, calls s_on_disconnect */
    ain_actor_timer_cancel(self->actor, self->check_timer);
    if (self->reconnect_timer)
        ain_actor_timer_cancel(self->actor, self->reconnect_timer);
    ain_actor_unwatch(self->actor, self->watch);
    free(self->name);
    free(self);
    *self_p = NULL;
}

void ain_redis_set_urgent(ain_redis_t *self)
{
    ain_actor_watch_urgent(self->actor, self->watch, true);
}

bool ain_redis_connected(const ain_redis_t *self)
{
    return self->connected;
}

void ain_redis_stats(const ain_redis_t *self, ain_redis_stats_t *out)
{
    *out = self->stats;
}

int ain_redis_test(bool verbose)
{
    ain_redis_target_t t;
    const char *why;
    struct {
        const char *url, *host, *path, *password;
        int port, db, ok;
    } cases[] = {
        {"redis://h.lan", "h.lan", "", "", 6379, 0, 0},
        {"redis://:s3cret@10.0.0.2:6380/3", "10.0.0.2", "", "s3cret", 6380, 3, 0},
        {"redis://user:pw@h:7000", "h", "", "pw", 7000, 0, 0},
        {"unix:///run/redis.sock?db=2", "", "/run/redis.sock", "", 0, 2, 0},
        {"redis://", "", "", "", 0, 0, -1},
        {"redis://h:99999", "", "", "", 0, 0, -1},
        {"unix://relative", "", "", "", 0, 0, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&t, 0, sizeof t);
        int rc = s_parse_url(cases[i].url, &t, &why);
        if (rc != cases[i].ok ||
            (rc == 0 && (strcmp(t.host, cases[i].host) || strcmp(t.path, cases[i].path) ||
                         strcmp(t.password, cases[i].password) || t.port != cases[i].port ||
                         t.db != cases[i].db))) {
            fprintf(stderr, "redis: %s parsed wrong\n", cases[i].url);
            return -1;
        }
    }
    ain_redis_script_t script; /* Redis's SCRIPT LOAD gives the same */
    if (ain_redis_script_init(&script, "return 1") < 0 ||
        strcmp(script.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db") != 0) {
        fprintf(stderr, "redis: script sha1 wrong: %s\n", script.sha);
        return -1;
    }
    if (verbose)
        printf("redis: target URLs, script sha1\n");
    return 0;
}
