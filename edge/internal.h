/* internal.h: what the files of edge/ share, and nothing outside it.
 *
 *   edge.c    civetweb life cycle and options, dispatch
 *   clients.c the broker clients, lent to one request at a time
 *   guard.c   the watch over connections (per address, in all), refusals before routing
 *   routes.c  the route table: path, method, handler, authentication
 *   http.c    responses: JSON bodies, errors, status mapping
 *   health.c  GET /health;  stats.c  GET /stats
 *   sse.c     GET /api/v1/emails/stream: caps, head, hand-off to the pump
 *   handoff.c taking a connection's socket away from civetweb
 *   pump.c    the stream pump thread: bus subscriber, epoll, commands,
 *             and the edge's metrics reports
 *   streams.c the pump's streams: per-user index, buffers, heartbeats
 *   limits.c  the user API limit (ratelimit actor) and GET /api/v1/limits
 *   cors.c    cross-origin requests: allowed origins, preflight
 *   auth.c    who is asking: access tokens (JWT), the development token
 *   session.c sign-in sessions and terms: cookies, refresh, logout
 *   oauth.c   sign-in with Google and Microsoft: login redirects, callbacks
 *   call.c    the one translation path of the message routes: query and path
 *             into a message, the actor's answer back into JSON
 *   rendered.c the message routes' JSON answers, kept by user, path and query with their ETag
 *   inval.c   follows the cache's invalidations (Redis), so kept answers are served without asking
 *   mail.c    the mail routes' answers: the neutral /api/v1 shapes, and the
 *             original frontend's Gmail and Outlook shapes
 */
#ifndef AIN_EDGE_INTERNAL_H
#define AIN_EDGE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <civetweb.h>
#include <jansson.h>
#include <msgpack.h>

#include "edge/edge.h"
#include "runtime/client.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

typedef struct ain__pump ain__pump_t;
typedef struct ain__cors ain__cors_t;
typedef struct ain__rendered ain__rendered_t;
typedef struct ain__inval ain__inval_t;
typedef struct ain__grants ain__grants_t;
typedef struct ain__clients ain__clients_t;
typedef struct ain__guard ain__guard_t;

typedef struct {
    ain_metric_t *requests, *status_2xx, *status_4xx, *status_5xx, *not_found;
    /* SSE, gauges: streams open (pending hand-offs included), users with
     * a stream (= bus subscriptions), and the two caps. */
    ain_metric_t *streams, *users, *max_streams, *max_per_user;
    /* SSE, counters. */
    ain_metric_t *opened, *closed, *cut_slow, *refused_full, *refused_user, *handoff_failed;
    ain_metric_t *events_delivered, *bytes_written;
    ain_metric_t *events_unordered; /* sent without their `id:` line: below the stream's top */
    ain_metric_t *limited, *limits_unchecked, *limits_away; /* limits.c */
    /* limits.c: RATE_CHECK round trips, requests admitted from a local grant, units granted,
     * units lost (a grant expired, or a colliding user took its slot), grants refused and
     * asked again for one unit; the grant table's slots (gauge). */
    ain_metric_t *limits_grants, *limits_local, *limits_grant_units, *limits_grant_lost;
    ain_metric_t *limits_grant_retries, *limits_grant_slots;
    ain_metric_t *http_errors;  /* requests civetweb refused */
    ain_metric_t *auth_refused; /* auth.c: 401s */
    /* Resume (sse.c): streams opened with a Last-Event-ID, events replayed,
     * resets sent, replays cut short for the client to come back for more,
     * replays the events service could not answer. */
    ain_metric_t *resumed, *replayed, *resets, *replay_more, *replay_failed;
    /* Message routes (call.c): answers copied from rendered.c, answers built, bytes kept. */
    ain_metric_t *rendered_hits, *rendered_builds, *rendered_bytes;
    /* ...answers served with no round trip (inval.c said they are current); inval.c: the
     * subscription's state, invalidations applied, unreadable ones. */
    ain_metric_t *rendered_fresh, *inval_up, *inval_received, *inval_bad;
    /* sse.c: streams an admin opened for another user (?user=), and
     * non-admins refused (403) for asking. */
    ain_metric_t *foreign_streams, *foreign_refused;
    /* guard.c: connections on the edge's port at the last look (each holds a worker thread),
     * connections shut for their address's cap, and for the bound on all; clients.c: requests
     * refused because no broker client came free in time, and the pool's size (gauge). */
    ain_metric_t *connections, *conn_refused, *conn_shed, *handlers_refused, *handlers_max;
} ain__edge_metrics_t;

struct _ain_edge_t {
    const ain_proc_t *proc;
    ain_log_t *log;
    ain_metrics_t *metrics;
    ain__edge_metrics_t m;
    struct mg_context *mg;
    ain__pump_t *pump;
    atomic_bool stopping;
    int max_streams;  /* MAX_CONNECTIONS, within the descriptor limit */
    int max_per_user; /* AINBOX_SSE_PER_USER_MAX */
    int64_t heartbeat_ms;
    int call_timeout_ms;
    bool api_limit;                         /* AINBOX_API_RATELIMIT */
    bool production;                        /* NODE_ENV=production */
    atomic_int_fast64_t limits_warned_ms;   /* limits.c: last "not checked" warning */
    atomic_int_fast64_t limits_probe_ms;    /* limits.c: when to ask MMI again */
    atomic_bool limiter_present;            /* limits.c: the ratelimit service has workers */
    atomic_bool limiter_known;              /* limits.c: the broker answered a probe once */
    atomic_int_fast64_t limiter_away_ms;    /* limits.c: no RATE_CHECK before this (0: not away) */
    atomic_int_fast64_t limiter_backoff_ms; /* limits.c: the next away period */
    atomic_bool broker_down; /* link.c: the broker does not answer; gates the clients */
    int limits_timeout_ms;   /* limits.c: AINBOX_EDGE_LIMIT_TIMEOUT_MS */
    ain__grants_t *grants;   /* limits.c: NULL when AINBOX_EDGE_API_GRANT_MAX=1 */
    ain__cors_t *cors;       /* cors.c: allowed origins */
    struct _ain_jwt_t *jwt;  /* auth.c: access token verifier, or NULL */
    atomic_int_fast64_t replay_warned_ms; /* sse.c: last "replay failed" warning */
    struct ain__oauth *oauth;             /* oauth.c: providers and the state key */
    ain__rendered_t *rendered;            /* rendered.c: NULL when AINBOX_EDGE_RENDER_BYTES=0 */
    int64_t fresh_ms;                     /* AINBOX_EDGE_FRESH_MS: 0 = always ask */
    ain__inval_t *inval;                  /* inval.c: NULL when fresh_ms is 0 */
    ain__clients_t *clients;              /* clients.c: AINBOX_EDGE_THREADS broker clients */
    ain__guard_t *guard;                  /* guard.c: connections per client address */
    int64_t body_timeout_ms;              /* AINBOX_EDGE_BODY_TIMEOUT_MS */
};

/* One HTTP request being served. */
typedef struct {
    ain_edge_t *edge;
    struct mg_connection *conn;
    const struct mg_request_info *info;
    ain_client_t *client;           /* lent by clients.c for this request: borrowed */
    uint64_t user;                  /* authenticated user, 0 = none */
    uint64_t session;               /* the access token's session, 0 = development token */
    bool admin;                     /* the access token's role */
    char headers[768];              /* extra header lines for every answer: CORS, RateLimit */
    const struct ain__route *route; /* the route being served */
    char capture[256];              /* the path segment a route's ":name" matched */
    char path[2048];                /* the path, %-decoded by guard.c (civetweb's is not) */
    char *body;                     /* the request body, read before the handler; owned */
    size_t body_len;
} ain__http_t;

typedef int(ain__handler_fn)(ain__http_t *http);

/* AIN__AUTH_USER: a signed-in user (auth.c), else 401. AIN__AUTH_ADMIN: a signed-in user whose
 * token carries the admin role, else 401 or 403. AIN__AUTH_OPS: operational routes: as ADMIN in
 * production, open elsewhere (development, tests). */
enum { AIN__AUTH_NONE, AIN__AUTH_USER, AIN__AUTH_ADMIN, AIN__AUTH_OPS };

/* Whether a route's requests count against the user API limit. */
enum { AIN__LIMIT_NONE, AIN__LIMIT_API };

/* A message route's request field: taken from the query string or the path, checked, and put
 * into the message body. */
enum {
    AIN__P_STR,            /* a string, as given */
    AIN__P_UINT,           /* a decimal integer; `dflt` if absent (0: none), clamped to `max` */
    AIN__P_BOOL,           /* true/false/1/0 */
    AIN__P_GMAIL_Q,        /* Gmail's `q` folder operators (in:trash, is:starred...) */
    AIN__P_OUTLOOK_FOLDER, /* Graph's folder names (inbox, deleteditems...) */
};
typedef struct {
    const char *name;  /* the query parameter, or ":" for the path's captured segment */
    const char *field; /* the message body's field */
    int kind;
    uint32_t dflt, max;
} ain__param_t;

/* The answer's shape: a new JSON body from the actor's `data` (borrowed), or NULL for a `data`
 * the shape cannot read (answered 502). mail.c. */
typedef json_t *(ain__shape_fn)(ain__http_t *http, json_t *data);

/* A route answered by one message to one actor (call.c): the message, the fields the request
 * gives it, one fixed field, and the shape of the answer. */
typedef struct {
    const char *service;
    uint16_t type;
    const char *fixed_field, *fixed_value; /* NULL: none */
    ain__param_t params[6];                /* until one with no name */
    ain__shape_fn *shape;
} ain__call_t;

/* A route: a method and a path ("/threads/:id" captures one segment), the handler, the
 * authentication and limit it needs, and for a message route the message (handler ain__call). */
typedef struct ain__route {
    const char *method;
    const char *path;
    ain__handler_fn *handler;
    int auth;
    int limit;
    const ain__call_t *call;
} ain__route_t;

/* http.c: why a call got no answer, into buf: the broker is unreachable
 * (link.c), or `service` did not answer. Returns buf. */
const char *ain__http_no_answer(const ain__http_t *http, const char *service, char *buf,
                                size_t size);

/* routes.c: the route for `path` and `method` (a captured segment into `capture`, which may be
 * NULL); NULL with *path_known set if the path exists with other methods (405), or not (404). */
const ain__route_t *ain__routes_find(const char *method, const char *path, bool *path_known,
                                     char *capture, size_t capture_size);
/* Allowed methods of `path`, comma-separated, into buf. */
void ain__routes_allow(const char *path, char *buf, size_t size);

/* call.c: serves a message route (http->route->call). */
int ain__call(ain__http_t *http);

/* rendered.c: answers kept by (user, key = "path?query") with the ETag of their data. NULL
 * (budget 0) keeps nothing; every call accepts NULL. Thread-safe. */
ain__rendered_t *ain__rendered_new(size_t budget);
void ain__rendered_destroy(ain__rendered_t **self_p);
/* The tag of the answer kept for the key into etag; false if none. */
bool ain__rendered_etag(ain__rendered_t *self, uint64_t user, const char *key, char etag[17]);
/* A copy (caller frees, NUL-terminated) of the answer kept for the key if its tag is `etag`. */
char *ain__rendered_get(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                        size_t *len);
/* Keeps an answer (replacing what held its slot), unless too big or over the budget; `stamp`
 * (inval.c, taken before the actor was asked; 0 for none) and `now` say when it was current. */
void ain__rendered_put(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                       const char *body, size_t len, uint64_t stamp, int64_t now);
/* The actor said `etag` is current: if it is the kept answer's, it was so at `stamp` and `now`. */
void ain__rendered_confirm(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                           uint64_t stamp, int64_t now);
/* A copy (caller frees) of the answer kept for the key if it was confirmed less than `lease_ms`
 * before `now`, with its tag and stamp, for the caller to check with ain__inval_current. */
char *ain__rendered_fresh(ain__rendered_t *self, uint64_t user, const char *key, int64_t now,
                          int64_t lease_ms, uint64_t *stamp, char etag[17], size_t *len);
size_t ain__rendered_bytes(const ain__rendered_t *self);

/* inval.c: follows the cache's invalidation channel on a thread of its own; NULL if Redis's
 * address is malformed or the thread cannot start (logged). While Redis cannot be reached it
 * retries with back-off, and nothing is current. Thread-safe. */
ain__inval_t *ain__inval_new(ain_edge_t *edge, const ain_config_t *cfg);
void ain__inval_destroy(ain__inval_t **self_p);
/* The stamp of `user`'s answers now; 0 (never current) while the channel is not followed. Take
 * it before asking the actor. */
uint64_t ain__inval_stamp(ain__inval_t *self, uint64_t user);
/* True if no invalidation of `user` (or of everything) has arrived since `stamp` was taken and
 * none waits unread: an answer confirmed at `stamp` is still current. */
bool ain__inval_current(ain__inval_t *self, uint64_t user, uint64_t stamp);

/* limits.c: the users' local grants of the API limit: at most `max` units a grant (NULL, no
 * grants, when max <= 1), spendable for `lifetime_ms`. Thread-safe; bounded (a fixed table). */
ain__grants_t *ain__grants_new(uint32_t max, int64_t lifetime_ms);
void ain__grants_destroy(ain__grants_t **self_p);
int ain__grants_slots(const ain__grants_t *self);

/* mail.c: the shapes of the mail routes' answers (see the file). */
ain__shape_fn ain__shape_envelope, ain__shape_gmail_threads, ain__shape_gmail_sent,
    ain__shape_gmail_drafts, ain__shape_gmail_thread, ain__shape_spam_stats,
    ain__shape_email_content, ain__shape_outlook_messages, ain__shape_outlook_thread;
/* GET /api/notifications/count: there is no notification source yet. */
int ain__notifications_count(ain__http_t *http);
/* Gmail `q` and Graph folder names into message fields (mail.c): 0, or -1 with a reason. */
int ain__mail_gmail_q(const char *q, json_t *fields, const char **why);
int ain__mail_outlook_folder(const char *folder, json_t *fields, const char **why);

/* http.c: responses. Each returns the HTTP status sent, for civetweb. */
/* The status line and headers (CRLF-terminated lines in `headers`). */
void ain__http_head(struct mg_connection *conn, int status, const char *headers);
int ain__http_json(ain__http_t *http, int status, json_t *body); /* steals body */
/* As ain__http_json, with extra header lines ("Name: value\r\n"). */
int ain__http_json_extra(ain__http_t *http, int status, json_t *body, const char *extra);
int ain__http_error(ain__http_t *http, int status, const char *code, const char *message);
/* As ain__http_error, with extra header lines ("Name: value\r\n"). */
int ain__http_error_extra(ain__http_t *http, int status, const char *code, const char *message,
                          const char *extra);
/* 200 with the JSON `text` (borrowed) that caches may keep but must revalidate: ETag `etag`
 * (quoted here), Cache-Control: private, no-cache. */
int ain__http_text_etag(ain__http_t *http, const char *text, size_t len, const char *etag);
/* 304 for a request whose If-None-Match named the current `etag`. */
int ain__http_not_modified(ain__http_t *http, const char *etag);
/* 405 with the route's allowed methods in `Allow`. */
int ain__http_error_allow(ain__http_t *http, const char *allow);
/* An error for a status of ours, mapped with ain_status_http. */
int ain__http_fail(ain__http_t *http, int status, const char *message);
/* Asks `service` for `type` on behalf of `user` (0 = the edge itself) and
 * returns the reply body as a JSON object (caller owns), or NULL having
 * answered the request: the actor's error with its status, that it did
 * not answer, or 502 for a body that is not a map. *status is the HTTP
 * status sent then. */
json_t *ain__http_call_json(ain__http_t *http, const char *service, uint16_t type, uint64_t user,
                            const void *body, size_t len, int *status);
/* Calls `service` waiting up to `timeout_ms` and returns its status, with its answer body as JSON
 * in *reply (caller owns; NULL if it sent none). A 2xx whose body is not a map is ERROR. Answers
 * nothing: for routes that shape the refusal themselves. `body` is borrowed. */
ain_status_t ain__http_call_reply(ain__http_t *http, const char *service, uint16_t type,
                                  uint64_t user, const void *body, size_t len, int timeout_ms,
                                  json_t **reply);
/* Reads the request body, if it has one, into http->body, before the handler runs and before
 * a broker client is lent (a slow body holds no client): at most AIN__BODY_MAX bytes within
 * AINBOX_EDGE_BODY_TIMEOUT_MS. Returns 0, or the status it answered (408, 413; the connection
 * is closed after). Blocks. */
int ain__http_read_body(ain__http_t *http);
/* The request body (read by ain__http_read_body) as a JSON object (caller owns), parsed
 * strictly (duplicate members refused) from at most `max` bytes; or NULL having answered 413 or
 * 400 INVALID_JSON naming the problem. *status is the HTTP status sent then. */
json_t *ain__http_read_json(ain__http_t *http, size_t max, int *status);
/* The message of an error reply body {message}, or a default. */
const char *ain__reply_message(const ain_reply_t *reply, char *buf, size_t size);
/* Query parameter `name` into buf; returns its length, or -1 if absent. */
int ain__http_query(ain__http_t *http, const char *name, char *buf, size_t size);
/* A decimal number without sign, spaces or leading junk (at most 18 digits), or -1. */
long long ain__http_uint(const char *text);
void ain__http_count(ain_edge_t *edge, int status);
/* `ms` (Unix epoch) as ISO 8601 UTC with milliseconds. */
void ain__http_iso_time(int64_t ms, char *buf, size_t size);

/* Handlers. */
int ain__health(ain__http_t *http);
int ain__stats(ain__http_t *http);
int ain__sse_stream(ain__http_t *http);
int ain__limits_usage(ain__http_t *http);
/* session.c: sessions and terms (the session actor). */
int ain__session_get(ain__http_t *http);
int ain__session_refresh(ain__http_t *http);
int ain__session_logout(ain__http_t *http);
int ain__session_dev_open(ain__http_t *http);
int ain__terms_get(ain__http_t *http);
int ain__terms_accept(ain__http_t *http);
/* session.c: a Set-Cookie line, httpOnly, SameSite=Lax, Path=/, Secure as AINBOX_COOKIE_SECURE
 * says (caller frees); an empty value with max_age 0 clears the cookie. */
char *ain__session_cookie(ain__http_t *http, const char *name, const char *value,
                          long long max_age);
/* session.c: packs two map members, the browser's user_agent (bounded, control characters as
 * '?') and ip, as SESSION_OPEN and ACCOUNT_OAUTH_COMPLETE take them. */
void ain__session_pack_client(ain__http_t *http, msgpack_packer *pk);
/* session.c: both session cookies from a SESSION_OPEN-shaped answer (caller frees); NULL if the
 * answer lacks them. */
char *ain__session_set_cookies(ain__http_t *http, json_t *reply);
/* oauth.c: provider sign-in (Google, Microsoft): login redirects and callbacks. */
int ain__oauth_login(ain__http_t *http);
int ain__oauth_callback(ain__http_t *http);
/* oauth.c: the providers' settings and the state key, from the configuration; 0, or -1 having
 * logged a malformed setting. Without AINBOX_TOKEN_KEY the routes answer 503. */
int ain__oauth_init(ain_edge_t *edge, const ain_config_t *cfg);
void ain__oauth_destroy(ain_edge_t *edge);

/* limits.c: takes one unit of the user's API limit, from the user's local grant or from the
 * ratelimit actor (blocking for one round trip, two when a grant is refused). Returns 0 (go on;
 * the RateLimit headers are added to http->headers), or -1 having answered 429. */
int ain__limits_check(ain__http_t *http);

/* auth.c: the access token verifier from the configuration (required in
 * production); 0, or -1 having logged why. */
int ain__auth_init(ain_edge_t *edge, const ain_config_t *cfg);
/* Sets http->user (and session, admin) or answers 401: returns 0 or -1. */
int ain__auth_user(ain__http_t *http);
/* Sets http->user and session from a valid access token (Bearer or cookie) if there is one,
 * answering nothing either way; returns 0 if it did, -1 if not. */
int ain__auth_peek(ain__http_t *http);

/* cors.c: cross-origin requests from the configured origins. */
/* From AINBOX_CORS_ORIGINS and FRONTEND_BASE_URL; NULL with a reason in
 * *why (static) if an origin is malformed. An empty set allows none. */
ain__cors_t *ain__cors_new(const ain_config_t *cfg, const char **why);
void ain__cors_destroy(ain__cors_t **self_p);
/* Adds the CORS lines for this request's Origin to http->headers. */
void ain__cors_headers(ain__http_t *http);
/* True if the request is a CORS preflight (OPTIONS with an Origin and
 * Access-Control-Request-Method); then answers it and returns the status
 * in *status. */
bool ain__cors_preflight(ain__http_t *http, int *status);

/* handoff.c: the descriptors the pump owns, as a bitmap any thread may
 * read and update (atomics). Sized by the process's descriptor limit at
 * creation; numbers beyond it are never "owned". */
typedef struct ain__fdset ain__fdset_t;
ain__fdset_t *ain__fdset_new(void);
void ain__fdset_destroy(ain__fdset_t **self_p);
int ain__fdset_size(const ain__fdset_t *self);
void ain__fdset_add(ain__fdset_t *self, int fd);
void ain__fdset_del(ain__fdset_t *self, int fd);
bool ain__fdset_has(const ain__fdset_t *self, int fd);

/* Takes the socket of `conn` from civetweb (see handoff.c for how and its
 * limits): returns a non-blocking descriptor of the connection, owned by
 * the caller and added to `owned`, with an unconnected socket left in
 * civetweb's place; or -1 (TLS connection, socket not found, out of
 * descriptors), with civetweb's connection untouched. Call it after the
 * response head is written, then return from the handler. Does not block. */
int ain__handoff_take(struct mg_connection *conn, ain__fdset_t *owned);

/* clients.c: a fixed pool of broker clients, lent to one request at a time (thread-safe). */
/* Makes `size` clients connected to the process's broker, gated by *gate (ain_client_set_gate);
 * NULL if one cannot be made. */
ain__clients_t *ain__clients_new(const ain_proc_t *proc, int size, const atomic_bool *gate);
/* Safe twice. Every client must have been given back. */
void ain__clients_destroy(ain__clients_t **self_p);
/* A free client, waiting at most `wait_ms` for one (blocks); NULL if none came free. Give it
 * back with ain__clients_give, from any thread. */
ain_client_t *ain__clients_take(ain__clients_t *self, int wait_ms);
void ain__clients_give(ain__clients_t *self, ain_client_t *client);
/* Clients lent out now. */
int ain__clients_busy(ain__clients_t *self);

/* guard.c: the caps on connections (a watch thread), and the checks every request passes
 * before routing. Thread-safe. */
/* The largest request body the edge reads (bodies are small JSON; session.c takes 4 KiB). */
#define AIN__BODY_MAX (16 * 1024)
/* Starts the watch thread over the connections on `server_port` (borrows `edge`, whose pump
 * must exist): at most `per_addr_max` per client address, at most `max_connections` minus a
 * reserve in all. NULL if the thread cannot start. */
ain__guard_t *ain__guard_new(ain_edge_t *edge, int server_port, int max_connections,
                             int per_addr_max);
/* Stops the thread (within one watch interval). Safe twice. */
void ain__guard_destroy(ain__guard_t **self_p);
/* Marks the request's connection as being answered (never shed) until ain__guard_leave. */
void ain__guard_enter(ain__guard_t *self, const struct mg_request_info *info);
void ain__guard_leave(ain__guard_t *self, const struct mg_request_info *info);
/* 0 if the request may be routed; else the status of the refusal it answered (413, 431, 400). */
int ain__guard_request(ain__http_t *http);

/* Answers of ain__pump_open / ain__streams_open. */
enum { AIN__OPEN_OK, AIN__OPEN_FULL, AIN__OPEN_USER_FULL, AIN__OPEN_STOPPING };

/* pump.c: the stream pump thread. Every call is thread-safe; each waits
 * for the pump thread's answer (a queue and an eventfd), which comes
 * within one turn of its loop. */
typedef struct ain__stream ain__stream_t;
/* Starts the thread (bus subscriber and publisher, epoll set); NULL if it
 * cannot (logged). Reads edge->max_streams, max_per_user, heartbeat_ms. */
ain__pump_t *ain__pump_new(ain_edge_t *edge);
/* Ends every stream (pending bytes offered once, then closed), stops and
 * joins the thread. Call after civetweb has stopped. Safe twice. */
void ain__pump_destroy(ain__pump_t **self_p);
/* The descriptors the pump owns, for ain__handoff_take. Borrowed. */
ain__fdset_t *ain__pump_owned(ain__pump_t *pump);
/* Reserves a stream for `user`: checks both caps, subscribes the user's
 * topic if this is its first stream, queues the `connected` frame. On
 * AIN__OPEN_OK, *stream is a token for exactly one later attach or abort
 * (never dereferenced outside the pump); events for the user are kept
 * for it from now on. With `resume`, no `connected` frame is queued (the
 * handler writes it, then the replay) and live events are held with their
 * ids until attach. */
int ain__pump_open(ain__pump_t *pump, uint64_t user, bool resume, ain__stream_t **stream);
/* Gives the reserved stream its socket (`fd` is taken over in every
 * case); a resumed stream sends its held events above `after` (NULL: all
 * of them). Returns 0, or -1 if the stream ended at once (peer gone, or it
 * fell behind before it had a socket, or the pump is stopping). */
int ain__pump_attach(ain__pump_t *pump, ain__stream_t *stream, int fd, const char *after);
/* The `connected` frame (with the `retry:` line) into buf; its length. */
int ain__pump_hello(char *buf, size_t size);
/* Releases a reserved stream that will get no socket. */
void ain__pump_abort(ain__pump_t *pump, ain__stream_t *stream);

/* Compares two event ids "<ms>-<seq>" (decimal) numerically: *out is -1,
 * 0 or 1 as a is below, equal to or above b. Returns 0, or -1 (and *out
 * untouched) if either is not an id. */
int ain__event_id_cmp(const char *a, size_t a_len, const char *b, size_t b_len, int *out);

/* streams.c: the pump thread's streams; see the file for the design.
 * Single-threaded: only the pump thread calls these. */
typedef struct ain__streams ain__streams_t;
/* Called when `user`'s first stream opens (first) or its last ends. */
typedef void(ain__streams_user_fn)(void *arg, uint64_t user, bool first);
typedef struct {
    ain__fdset_t *owned;                /* borrowed: closed sockets leave it */
    size_t max_total, max_user;         /* the caps */
    int64_t heartbeat_ms;               /* a comment after this much silence */
    int sndbuf;                         /* SO_SNDBUF of each socket; 0 = the kernel's */
    const ain__edge_metrics_t *metrics; /* borrowed */
    ain__streams_user_fn *on_user;
    void *arg;
} ain__streams_config_t;
/* NULL if no epoll set can be made. */
ain__streams_t *ain__streams_new(const ain__streams_config_t *config);
/* Ends every stream (pending bytes offered once, then closed). */
void ain__streams_destroy(ain__streams_t **self_p);
/* The epoll descriptor: readable when a stream socket is ready. */
int ain__streams_fd(const ain__streams_t *self);
size_t ain__streams_count(const ain__streams_t *self);
/* A pending stream with `hello` queued (none if len is 0); AIN__OPEN_OK
 * with *stream, or AIN__OPEN_FULL / AIN__OPEN_USER_FULL (counted). With
 * `hold`, live events are held apart (bounded) until attach. */
int ain__streams_open(ain__streams_t *self, uint64_t user, const char *hello, size_t len, bool hold,
                      int64_t now, ain__stream_t **stream);
/* Takes `fd` for a pending stream and writes what waits. A holding stream
 * first queues its held events whose ids are above `after` (every one if
 * `after` is NULL; borrowed). Returns 0, or -1 if the stream ended (fd
 * closed). */
int ain__streams_attach(ain__streams_t *self, ain__stream_t *stream, int fd, const char *after,
                        int64_t now);
void ain__streams_abort(ain__streams_t *self, ain__stream_t *stream);
/* Sends `text` (the SSE frame of event `id`) to each stream of `user`; a
 * stream that would pass its buffer cap is cut; a holding stream holds it.
 * Returns how many streams sent or queued it (held ones not counted). */
size_t ain__streams_deliver(ain__streams_t *self, uint64_t user, const char *id, size_t id_len,
                            const char *text, size_t len, int64_t now);
/* Handles ready sockets (closed peers, writable again) without blocking.
 * Returns how many events it handled. */
int ain__streams_io(ain__streams_t *self);
/* A heartbeat of the bus arrived in sequence: what was delivered before it
 * did not follow a loss. */
void ain__streams_beat(ain__streams_t *self);
/* A loss was just noticed (the bus connection closed, or went silent):
 * what each user was sent so far arrived whole; catching up starts after
 * it. The first call until the next catching up counts. */
void ain__streams_loss(ain__streams_t *self);
/* A user to catch up, and the id to replay after. */
typedef struct {
    uint64_t user;
    char after[48];
    bool since; /* `after` is a time ("<ms>-0"), not an id the user was sent */
} ain__catchup_user_t;
/* Makes every live stream hold, and lists their users with the id each must
 * be caught up after (`fallback_ms` for a user that was sent nothing yet:
 * "<fallback_ms>-0"). Returns a new array of *n (the caller frees it). */
ain__catchup_user_t *ain__streams_catchup_begin(ain__streams_t *self, uint64_t fallback_ms,
                                                size_t *n);
/* Sends a replayed event to the user's streams that are catching up. */
void ain__streams_catchup_event(ain__streams_t *self, uint64_t user, const char *id, size_t id_len,
                                const char *text, size_t len, int64_t now);
/* Ends the user's catching up: `reset` (a whole SSE frame, or NULL) is sent
 * first when the log could not fill the gap, then the held events (above
 * `after` unless reset); a stream whose held events overflowed is cut. */
void ain__streams_catchup_end(ain__streams_t *self, uint64_t user, const char *reset,
                              const char *after, int64_t now);
/* Pings the streams silent for a heartbeat interval; returns the ms until
 * the next one is due. */
int64_t ain__streams_tick(ain__streams_t *self, int64_t now);
/* Frees the streams that ended since the last call. */
void ain__streams_reap(ain__streams_t *self);

/* The pump's link and catch-up metrics (registered before its thread runs). */
typedef struct {
    ain_metric_t *link_up, *link_lost, *broker_up, *users, *events, *resets;
} ain__catchup_metrics_t;
void ain__catchup_register(ain_metrics_t *reg, ain__catchup_metrics_t *m);

/* catchup.c: catching the pump's streams up from the event log after the
 * bus lost events (link.c says when). Pump thread only. */
typedef struct ain__catchup ain__catchup_t;
/* Asks through `client` (borrowed: link.c's). */
ain__catchup_t *ain__catchup_new(ain_edge_t *edge, ain__streams_t *streams, ain_client_t *client,
                                 const ain__catchup_metrics_t *m);
void ain__catchup_destroy(ain__catchup_t **self_p);
/* Catches every live stream up (from "<fallback_ms>-0" for a user that was
 * sent nothing yet); after the pass under way if there is one. */
void ain__catchup_start(ain__catchup_t *self, uint64_t fallback_ms);
/* True if `reply` was one of its requests (then handled). */
bool ain__catchup_on_reply(ain__catchup_t *self, const ain_reply_t *reply, int64_t now);
/* Sends what is due, expires what is late; the ms until it must run again. */
int64_t ain__catchup_tick(ain__catchup_t *self, int64_t now);

/* link.c: the pump's watch on its links to the broker (MDP ping, bus
 * beat); sets edge->broker_down and starts catching up. Pump thread only. */
typedef struct ain__link ain__link_t;
/* Watches `sub` (the pump's bus socket, borrowed), with its own client. */
ain__link_t *ain__link_new(ain_edge_t *edge, ain__streams_t *streams, void *sub,
                           const ain__catchup_metrics_t *m);
void ain__link_destroy(ain__link_t **self_p, void *sub);
/* Sockets for the pump's poll (NULL if unavailable): replies, monitor events. */
void *ain__link_client_socket(const ain__link_t *self);
void *ain__link_monitor_socket(const ain__link_t *self);
/* A BUS_BEAT envelope from topic h/. */
void ain__link_on_beat(ain__link_t *self, const ain_envelope_t *env, int64_t now);
void ain__link_on_monitor(ain__link_t *self);
void ain__link_on_replies(ain__link_t *self, int64_t now);
/* Pings, notices silence, moves a catching up along; the ms until it must
 * run again. */
int64_t ain__link_tick(ain__link_t *self, int64_t now);

#endif
