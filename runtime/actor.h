/* actor.h: the one skeleton every actor runs on.
 *
 * An actor is a service: a table of handlers by message type, optional
 * start/stop hooks and a bus-event hook. The skeleton owns everything else:
 * the MDP worker registration (runtime/worker.h) with heartbeats and
 * re-registration after a broker restart; strict decoding of each request
 * (malformed -> INVALID, past its deadline -> TIMEOUT, unknown type ->
 * INVALID, all counted); the built-in PING and STATS answers; a metrics
 * registry published on the bus every AINBOX_METRICS_INTERVAL_MS; timers;
 * logging with request context; and an orderly stop (credit 0, finish what
 * is in flight within AINBOX_SHUTDOWN_TIMEOUT_MS, DISCONNECT).
 *
 * Lifetime of a request: the skeleton creates it and hands it to the
 * handler, which then owns it. The handler answers it now or later
 * (deferred, e.g. after a timer or a database reply) with exactly one
 * ain_request_reply* call, which frees it; nothing else frees it. The
 * skeleton may answer on the handler's behalf, while the handler still
 * holds it: TIMEOUT once its deadline is well past (logged as an error:
 * the work it waits for ignored the deadline), UNAVAILABLE when the actor
 * breaks or stops. The request then stays valid (its envelope too), and
 * ain_request_answered says so; the handler's late reply sends nothing,
 * is counted (requests.late) and frees it. So a completion that arrives
 * after its caller stopped waiting always finds its request, never a freed
 * pointer. Work a request starts should end by its deadline
 * (ain_request_envelope(req)->deadline_ms; runtime/pg.h takes it).
 *
 * A handler returning -1 means the actor is broken: the skeleton answers
 * what it holds with UNAVAILABLE, leaves the broker and returns -1 from
 * ain_actor_run (in the bundle, the supervisor then restarts it).
 */
#ifndef AIN_RUNTIME_ACTOR_H
#define AIN_RUNTIME_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include <czmq.h>
#include <msgpack.h>

#include "proto/envelope.h"
#include "runtime/bus.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/proc.h"

typedef struct _ain_actor_t ain_actor_t;
typedef struct _ain_request_t ain_request_t;

/* Handles one request. Returns 0, or -1 if the actor cannot go on. */
typedef int(ain_handler_fn)(ain_actor_t *actor, ain_request_t *req);

typedef struct {
    uint16_t type;
    ain_handler_fn *fn;
} ain_handler_t;

typedef struct {
    const char *service;           /* the service name it registers */
    const ain_handler_t *handlers; /* ends with {0, NULL} */
    /* Called once sockets exist, before READY. Sets up state with
     * ain_actor_set_state. Returns 0, or -1 to refuse to start. */
    int (*start)(ain_actor_t *actor);
    /* Called once after the last request was answered; frees state. */
    void (*stop)(ain_actor_t *actor);
    /* A bus message on a subscribed topic. Returns 0, or -1 (broken). */
    int (*on_event)(ain_actor_t *actor, const ain_bus_msg_t *msg);
    unsigned credit; /* requests held at once; 0 = AINBOX_WORKER_CREDIT */
} ain_actor_def_t;

/* Runs the actor in the calling thread until it is stopped: by "$TERM" on
 * `pipe` (in the bundle) or, without a pipe, by SIGTERM or SIGINT. On
 * `pipe` it signals 0 once registered; if it cannot start it returns -1
 * without signalling. Returns 0 after an orderly stop, -1 if it failed to
 * start or broke. */
int ain_actor_run(const ain_actor_def_t *def, const ain_proc_t *proc, zsock_t *pipe);

/* Accessors. Everything returned is borrowed from the actor. */
void *ain_actor_state(const ain_actor_t *self);
void ain_actor_set_state(ain_actor_t *self, void *state);
ain_log_t *ain_actor_log(const ain_actor_t *self);
ain_metrics_t *ain_actor_metrics(const ain_actor_t *self);
const ain_proc_t *ain_actor_proc(const ain_actor_t *self);
const char *ain_actor_service(const ain_actor_t *self);

/* Subscribes to bus topics starting with `prefix`; events arrive at
 * def->on_event. Returns 0 or -1. */
int ain_actor_subscribe(ain_actor_t *self, const char *prefix);

/* Publishes an event on the bus. Returns 0, or -1 if dropped (counted). */
int ain_actor_publish(ain_actor_t *self, const char *topic, const ain_envelope_t *env);

/* Calls fn(actor, arg) after `delay_ms`, and every `delay_ms` after that if
 * `repeat`. Returns a timer id (> 0) for ain_actor_timer_cancel. */
typedef void(ain_timer_fn)(ain_actor_t *actor, void *arg);
int ain_actor_timer(ain_actor_t *self, int delay_ms, bool repeat, ain_timer_fn *fn, void *arg);
void ain_actor_timer_cancel(ain_actor_t *self, int timer_id);

/* Watches a file descriptor in the actor's loop (how the Redis and
 * PostgreSQL clients are driven): fn(actor, fd, revents, arg) runs when
 * `fd` is readable (ZMQ_POLLIN) or writable (ZMQ_POLLOUT), as `events`
 * asks; events 0 pauses the watch. Returns a watch id (> 0), or -1 when
 * the actor already watches AIN_ACTOR_MAX_WATCHES descriptors. */
#define AIN_ACTOR_MAX_WATCHES 32
typedef void(ain_fd_fn)(ain_actor_t *actor, int fd, int revents, void *arg);
int ain_actor_watch(ain_actor_t *self, int fd, int events, ain_fd_fn *fn, void *arg);

/* Watches a ZeroMQ socket for input (ZMQ_POLLIN) in the actor's loop:
 * fn(actor, -1, ZMQ_POLLIN, arg) runs while it has messages. Returns a
 * watch id, or -1. Not for ain_actor_watch_set or urgent watches. */
int ain_actor_watch_socket(ain_actor_t *self, void *socket, ain_fd_fn *fn, void *arg);

/* Changes what watch `id` looks at (the descriptor may change when a
 * client reconnects). */
void ain_actor_watch_set(ain_actor_t *self, int id, int fd, int events);

/* Marks watch `id` urgent: it is polled again before each request is
 * taken, so an event that reached it before a request reached the actor
 * is handled first (one poll(2) per request; for ordering-critical
 * descriptors only, e.g. an invalidation channel). */
void ain_actor_watch_urgent(ain_actor_t *self, int id, bool urgent);
/* Stops watch `id`. Safe from inside its own callback. */
void ain_actor_unwatch(ain_actor_t *self, int id);

/* A packer over the actor's reply-body buffer, emptied by this call. Pack
 * one value, then answer with ain_request_reply_packed. */
msgpack_packer *ain_actor_body(ain_actor_t *self);

/* For an actor missing something it needs (`why`: a setting, a key): in production it must not
 * start (logged as an error, returns -1); elsewhere it runs disabled, answering UNAVAILABLE, so a
 * bundle without it (most tests) still runs (logged as a warning, returns 0). */
int ain_actor_unconfigured(ain_actor_t *self, const char *why);
/* Marks the actor as unable to do its work, `why` (copied; NULL or "" clears it): PING and STATS
 * answers carry it as "disabled", which GET /health reports. ain_actor_unconfigured does it. */
void ain_actor_set_disabled(ain_actor_t *self, const char *why);

/* The request's envelope. Borrowed; valid until the request is answered. */
const ain_envelope_t *ain_request_envelope(const ain_request_t *req);

/* The request's context for log lines (corr, user, trace). */
ain_log_ctx_t ain_request_log_ctx(const ain_request_t *req);

/* True if the skeleton already answered `req` on the handler's behalf (see
 * above): the caller has stopped waiting, so its work may be skipped; it
 * must still be released with one ain_request_reply* call. */
bool ain_request_answered(const ain_request_t *req);

/* Answers and frees `req`. `body` is copied. If the skeleton answered it
 * already, sends nothing and only frees it. */
void ain_request_reply(ain_request_t *req, ain_status_t status, const void *body, size_t len);

/* Answers with what was packed into ain_actor_body. */
void ain_request_reply_packed(ain_request_t *req, ain_status_t status);

/* Answers with a body {message} and logs nothing (the caller decides). */
void ain_request_fail(ain_request_t *req, ain_status_t status, const char *message);

/* Answers with a body {code, message}: a refusal whose `code` (e.g. "REFRESH_TOKEN_REUSED")
 * the edge passes on to the client. Logs nothing. */
void ain_request_refuse(ain_request_t *req, ain_status_t status, const char *code,
                        const char *message);

#endif
