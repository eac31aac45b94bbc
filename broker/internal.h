/* internal.h: the broker's data structures, shared by the files of broker/
 * and by nothing outside it (names use the ain__ internal tier).
 *
 *   requests.c  the request table: every request the broker holds, queued
 *               or in flight, in a slot named by an 8-byte token
 *   services.c  services, their bounded queues, their workers and the
 *               round-robin choice of a worker with credit left
 *   broker.c    sockets and the poll loop: MDP client and worker frames
 *   liveness.c  heartbeats, expiry, and the socket monitor that catches a
 *               dead worker process in milliseconds
 *   admin.c     the broker's own service, MMI, metrics
 *   bus.c       the XSUB/XPUB event bus
 */
#ifndef AIN_BROKER_INTERNAL_H
#define AIN_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <czmq.h>
#include <zmq.h>

#include "broker/broker.h"
#include "proto/mdp.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

typedef struct ain__service ain__service_t;
typedef struct ain__worker ain__worker_t;

/* ------------------------------------------------------------ requests */

enum { AIN__REQ_FREE = 0, AIN__REQ_QUEUED, AIN__REQ_INFLIGHT };

typedef struct {
    uint32_t gen; /* bumped on every free: stale tokens stop matching */
    uint8_t state;
    uint8_t dispatches; /* times sent to a worker */
    bool idempotent;
    bool has_envelope; /* the body decoded as our envelope */
    uint16_t type;
    uint32_t next_free;
    uint32_t wprev, wnext; /* the worker's in-flight list, while in flight */
    uint64_t corr, user, trace;
    int64_t deadline_ms; /* wall clock */
    size_t bytes;        /* body bytes held, for the memory budget */
    ain__service_t *service;
    ain__worker_t *worker; /* while in flight */
    zmq_msg_t client;      /* the client's routing id */
    zmq_msg_t header;      /* a compact client's header, echoed in the reply;
                              empty for an MDP client */
    int nbody;
    zmq_msg_t body;   /* the first (usually only) body frame */
    zmq_msg_t *extra; /* body frames 2.. (plain MDP clients only) */
} ain__request_t;

typedef struct {
    ain__request_t **chunks;
    uint32_t nchunks, capacity, max;
    uint32_t used;
    uint32_t free_head; /* UINT32_MAX = none */
} ain__requests_t;

#define AIN__NO_SLOT UINT32_MAX

void ain__requests_init(ain__requests_t *t, uint32_t max);
void ain__requests_fini(ain__requests_t *t);
/* A free slot (zeroed, messages initialised) and its index, or NULL when
 * `max` slots are in use. */
ain__request_t *ain__requests_alloc(ain__requests_t *t, uint32_t *index);
/* Closes the slot's messages and returns it to the free list. */
void ain__requests_free(ain__requests_t *t, uint32_t index);
ain__request_t *ain__requests_get(const ain__requests_t *t, uint32_t index);
/* The token that names slot `index` in its current generation. */
void ain__requests_token(const ain__requests_t *t, uint32_t index,
                         uint8_t token[AIN_MDP_TOKEN_BYTES]);
/* The in-flight slot a token names, or NULL if it names none (garbage,
 * freed, or reused since). */
ain__request_t *ain__requests_by_token(const ain__requests_t *t, const void *token, size_t len,
                                       uint32_t *index);

/* ------------------------------------------------------------ services */

enum { AIN__KIND_UNKNOWN = 0, AIN__KIND_NATIVE, AIN__KIND_PLAIN };

struct ain__worker {
    char key[2 * 255 + 1]; /* routing id in hex: the registry key */
    uint8_t id[255];
    uint8_t id_len;
    ain__service_t *service;
    bool native;
    uint32_t credit, inflight;
    uint32_t inflight_head;                         /* first slot of its in-flight list */
    int fd;                                         /* tcp peer fd (ZMQ_SRCFD), -1 if unknown */
    char peer[48];                                  /* peer address for admin tables */
    uint64_t instance;                              /* the worker process's instance id (native) */
    int64_t since_ms, expiry_ms, next_heartbeat_ms; /* monotonic */
    int64_t heard_ms;                               /* its last message (monotonic) */
    /* Its heartbeat interval: stated at READY (native) or the longest gap
     * seen before one of its HEARTBEATs (plain); 0 while unknown. */
    int64_t rhythm_ms;
    int64_t suspect_until_ms; /* probing after a socket-monitor disconnect */
    uint64_t requests, replies;
    ain__worker_t *prev, *next; /* all workers of the service */
    bool available;
    ain__worker_t *aprev, *anext; /* workers with credit left */
};

struct ain__service {
    char name[AIN_SERVICE_NAME_MAX + 1];
    int kind;
    uint32_t *queue; /* ring of request slot indexes */
    uint32_t qcap, qhead, qlen, qmax;
    ain__worker_t *workers;
    uint32_t nworkers;
    ain__worker_t *ahead, *atail;
    int64_t idle_since_ms;
    uint64_t requests, replies, busy, expired, redispatched, lost, invalid;
};

typedef struct {
    zhashx_t *services; /* name -> ain__service_t */
    zhashx_t *workers;  /* hex routing id -> ain__worker_t */
    uint32_t max_services, queue_max;
} ain__services_t;

void ain__services_init(ain__services_t *s, uint32_t max_services, uint32_t queue_max);
void ain__services_fini(ain__services_t *s);
/* The service named by `name` (`len` bytes); created if `create` and the
 * service limit allows. NULL otherwise. */
ain__service_t *ain__services_get(ain__services_t *s, const void *name, size_t len, bool create);
/* Drops services that have had no workers and no queue for `idle_ms`. */
void ain__services_gc(ain__services_t *s, int64_t now_ms, int64_t idle_ms);

/* Queue: returns 0, or -1 if the service's queue is full. */
int ain__queue_push(ain__service_t *svc, uint32_t index);
int ain__queue_push_front(ain__service_t *svc, uint32_t index);
uint32_t ain__queue_pop(ain__service_t *svc); /* AIN__NO_SLOT if empty */
/* Keeps only the entries for which keep(index, arg) is true. */
void ain__queue_filter(ain__service_t *svc, bool (*keep)(uint32_t index, void *arg), void *arg);

ain__worker_t *ain__workers_find(ain__services_t *s, const void *id, size_t len);
/* Registers a worker of `svc`; NULL if that routing id is registered. */
ain__worker_t *ain__workers_add(ain__services_t *s, ain__service_t *svc, const void *id, size_t len,
                                bool native, uint32_t credit, int64_t now_ms);
/* Unregisters and frees `w` (its requests must be dealt with first). */
void ain__workers_remove(ain__services_t *s, ain__worker_t *w, int64_t now_ms);
/* Call after credit or inflight changed: keeps the available ring true. */
void ain__worker_update(ain__worker_t *w);
/* The next worker of `svc` with credit left (round robin), or NULL. */
ain__worker_t *ain__service_pick(ain__service_t *svc);

/* ------------------------------------------------------------ access */

/* ZAP domains of the broker's three sockets (access.c). */
#define AIN__ACCESS_DOMAIN_MDP     "mdp"
#define AIN__ACCESS_DOMAIN_BUS_IN  "bus-in"
#define AIN__ACCESS_DOMAIN_BUS_OUT "bus-out"

typedef struct ain__key ain__key_t;

typedef struct {
    const char *secret, *dir; /* AINBOX_CURVE_SECRET, _ALLOW_DIR; borrowed, NULL if unset */
    bool on;                  /* the ZAP handler is bound and the sockets are CURVE servers */
    void *zap;                /* REP on inproc://zeromq.zap.01 */
    zhashx_t *keys;           /* Z85 public key -> ain__key_t */
    uint64_t signature;       /* of the directory, when it was last read */
    int64_t next_scan_ms;
} ain__access_t;

/* ------------------------------------------------------------ broker */

typedef struct {
    ain_metric_t *msgs_in, *msgs_out, *requests, *replies, *busy, *expired, *invalid;
    ain_metric_t *dropped, *redispatched, *lost, *late_replies, *mmi, *admin;
    ain_metric_t *workers_joined, *workers_left, *workers_dead_fast, *workers_expired;
    ain_metric_t *send_failed, *too_large;
    ain_metric_t *services, *workers, *queued, *inflight, *held_bytes;
    ain_metric_t *bus_in, *bus_out, *bus_dropped, *bus_subscriptions;
    ain_metric_t *auth_handshakes_refused, *auth_requests_refused, *auth_registers_refused;
    ain_metric_t *auth_publishes_refused, *auth_keys, *auth_reloads;
} ain__broker_metrics_t;

struct _ain_broker_t {
    const ain_proc_t *proc;
    ain_log_t *log;
    ain_metrics_t *metrics;
    ain__broker_metrics_t m;
    void *router, *monitor, *xsub, *xpub;
    char monitor_endpoint[64];
    ain__requests_t requests;
    ain__services_t services;
    ain__access_t access;
    int64_t heartbeat_ms;
    int liveness;
    int64_t default_timeout_ms;
    size_t max_bytes, memory_max, held_bytes;
    int64_t next_tick_ms, next_report_ms, report_interval_ms, next_gc_ms;
    bool monitoring;
    msgpack_sbuffer sbuf, body;
    bool stopping;
    int64_t now_ms, wall_ms;       /* clocks read once per batch of messages */
    ain__service_t *last_service;  /* the last one looked up: a cache, may be NULL */
    uint64_t beat_epoch, beat_seq; /* BUS_BEAT: this run's random epoch, the last seq */
    int64_t next_beat_ms;
};

/* broker.c */
/* Sends a reply to a client in its own framing: with `header` (a compact
 * client's, moved) as [client][header][body], else as MDP
 * [client][""][MDPC01][service][body...]. Moves the client and body frames;
 * a client that is gone is counted, not an error. */
void ain__broker_send_client(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header,
                             const char *service, zmq_msg_t *body, int nbody);
void ain__broker_dispatch(ain_broker_t *self, ain__service_t *svc);
void ain__broker_reply_status(ain_broker_t *self, uint32_t index, int status, const char *why);
void ain__broker_send_command(ain_broker_t *self, ain__worker_t *w, int command);
/* Removes a dead or departed worker; its in-flight requests are
 * re-dispatched once (idempotent ones) or answered UNAVAILABLE. */
void ain__broker_worker_gone(ain_broker_t *self, ain__worker_t *w, const char *why);

/* liveness.c */
int ain__liveness_start(ain_broker_t *self);
void ain__liveness_stop(ain_broker_t *self);
void ain__liveness_on_monitor(ain_broker_t *self);
/* Heartbeats, expiry, probes of suspects, deadline sweeps. Returns the ms
 * until it must run again if sooner than the regular tick, else 0. */
int ain__liveness_tick(ain_broker_t *self, int64_t now_ms);
/* A message came from `w` (a HEARTBEAT if `heartbeat`): pushes its expiry
 * back by its liveness window, learning a plain worker's rhythm. */
void ain__liveness_heard(ain_broker_t *self, ain__worker_t *w, bool heartbeat);
/* How long `w` may stay silent before it counts as dead, in ms. */
int64_t ain__liveness_window(const ain_broker_t *self, const ain__worker_t *w);

/* admin.c */
/* `meta` is any frame of the request: whose key sent it (access.c). */
void ain__admin_request(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header, zmq_msg_t *meta,
                        const void *env, size_t len);
void ain__admin_mmi(ain_broker_t *self, zmq_msg_t *client, const char *service, size_t slen,
                    zmq_msg_t *body, int nbody, bool denied);
void ain__admin_register_metrics(ain_broker_t *self);
void ain__admin_report(ain_broker_t *self);

/* access.c */
void ain__access_init(ain_broker_t *self);
/* True if AINBOX_CURVE_SECRET and AINBOX_CURVE_ALLOW_DIR are set. */
bool ain__access_configured(const ain_broker_t *self);
/* Binds the ZAP handler, makes the three sockets CURVE servers and reads
 * the allowed keys; call before binding an endpoint that leaves the
 * process. Does nothing if not configured or already on. Returns 0 or -1
 * (logged). */
int ain__access_start(ain_broker_t *self);
/* Makes the endpoints bound from now on serve the key pair at `secret_path` (those bound before
 * keep theirs). Returns 0 or -1 (logged). */
int ain__access_rekey(ain_broker_t *self, const char *secret_path);
void ain__access_fini(ain_broker_t *self);
/* Answers the ZAP requests waiting on self->access.zap. */
void ain__access_on_zap(ain_broker_t *self);
/* Re-reads the allowed keys if the directory changed (looked at once a second). */
void ain__access_tick(ain_broker_t *self, int64_t now_ms);
/* Per message, `frame` being any frame of it (its connection's User-Id):
 * may this peer register as `service`, send this request, publish? A
 * refusal is counted and logged here. ain__access_may_request returns NULL,
 * or why not. */
bool ain__access_may_serve(ain_broker_t *self, zmq_msg_t *frame, const void *service, size_t len);
const char *ain__access_may_request(ain_broker_t *self, zmq_msg_t *frame, const char *service,
                                    bool has_envelope, unsigned type, uint64_t user);
bool ain__access_may_publish(ain_broker_t *self, zmq_msg_t *frame);

/* bus.c */
int ain__bus_bind(ain_broker_t *self, int which, const char *endpoint);
/* Each forwards a batch and returns how many messages it moved. */
int ain__bus_forward_up(ain_broker_t *self);   /* XSUB -> XPUB: events */
int ain__bus_forward_down(ain_broker_t *self); /* XPUB -> XSUB: subscriptions */
/* Publishes BUS_BEAT on h/ when one is due (every heartbeat interval). */
void ain__bus_beat(ain_broker_t *self, int64_t now);

#endif
