/* main.c: ainbox-admin, the operator's view of a running Ainbox.
 *
 * A client of the public protocol and nothing more, as curl is of libcurl:
 * it sends MDP requests with our envelope to the broker's admin service
 * ("broker") or to a service itself, and prints the answers as tables or
 * JSON. It never reads a server's memory, files or logs, so what it shows
 * is what any client could see. Commands are declared as data (s_commands);
 * `types` reads the compiled-in message table and needs no broker.
 *
 * Exit status: 0 success; 1 failure (broker unreachable, an error or a
 * malformed reply, no workers); 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#include "proto/body.h"
#include "proto/envelope.h"
#include "proto/mdp.h"
#include "proto/msgtype.h"
#include "proto/status.h"
#include "runtime/client.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/endpoint.h"
#include "runtime/mpjson.h"
#include "runtime/signal.h"
#include "tools/admin/table.h"

#ifndef AIN_VERSION
#define AIN_VERSION "unknown"
#endif

#define S_PROG              "ainbox-admin"
#define S_TIMEOUT_MS        3000
#define S_TIMEOUT_MAX_MS    600000
#define S_PING_COUNT_MAX    1000000
#define S_PING_INTERVAL_MS  1000
#define S_PING_INTERVAL_MAX 3600000
#define S_JSON_FLAGS        (JSON_INDENT(2) | JSON_SORT_KEYS)
#define S_USAGE_HINT        "Try '" S_PROG " --help' for usage."

extern char **environ;

enum { S_EXIT_OK = 0, S_EXIT_FAIL = 1, S_EXIT_USAGE = 2, S_GO_ON = -1 };

typedef struct {
    const char *broker;     /* --broker, or NULL: AINBOX_BROKER */
    const char *key;        /* --key, or NULL: AINBOX_CURVE_SECRET */
    const char *broker_key; /* --broker-key, or NULL: AINBOX_CURVE_BROKER_KEY */
    int timeout_ms;
    bool json;
    bool help, version;
    long count;       /* ping -n */
    long interval_ms; /* ping -i */
    bool ping_options;
    ain_config_t *cfg;
    void *zmq;
    ain_client_t *client;
    const char *endpoint; /* the one connected to; borrowed */
} s_admin_t;

/* ------------------------------------------------------------ messages */

static void s_vsay(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void s_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void s_vsay(const char *fmt, va_list ap)
{
    fputs(S_PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* Says what went wrong, on stderr. */
static void s_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vsay(fmt, ap);
    va_end(ap);
}

/* Says what went wrong; returns S_EXIT_FAIL. */
static int s_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vsay(fmt, ap);
    va_end(ap);
    return S_EXIT_FAIL;
}

/* Says what is wrong with the command line, and where help is; returns
 * S_EXIT_USAGE. */
static int s_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vsay(fmt, ap);
    va_end(ap);
    fputs(S_USAGE_HINT "\n", stderr);
    return S_EXIT_USAGE;
}

/* ---------------------------------------------------------- formatting */

/* Writes a duration as people read it: 250ms, 12s, 3m4s, 2h5m, 3d4h. */
static void s_duration(json_int_t ms, char *buf, size_t size)
{
    long long s = (long long)(ms < 0 ? 0 : ms) / 1000;
    if (ms < 1000)
        snprintf(buf, size, "%lldms", (long long)(ms < 0 ? 0 : ms));
    else if (s < 60)
        snprintf(buf, size, "%llds", s);
    else if (s < 3600)
        snprintf(buf, size, "%lldm%llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, size, "%lldd%lldh", s / 86400, s % 86400 / 3600);
}

/* Adds `value` (borrowed, may be NULL) as the next cell: whatever type
 * arrived is shown as it is, so a field of an unexpected type reads as
 * what it is instead of failing the whole table. */
static void s_cell(ain__table_t *table, const json_t *value, bool duration)
{
    char buf[64];
    if (!value || json_is_null(value))
        ain__table_cell(table, "-");
    else if (json_is_string(value))
        ain__table_cell(table, json_string_value(value));
    else if (json_is_integer(value) && duration) {
        s_duration(json_integer_value(value), buf, sizeof buf);
        ain__table_cell(table, buf);
    } else if (json_is_integer(value))
        ain__table_cellf(table, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    else if (json_is_boolean(value))
        ain__table_cell(table, json_is_true(value) ? "true" : "false");
    else if (json_is_real(value))
        ain__table_cellf(table, "%g", json_real_value(value));
    else
        ain__table_cell(table, "?");
}

/* Prints `value` as indented JSON with sorted keys. */
static int s_print_json(const json_t *value)
{
    char *text = json_dumps(value, S_JSON_FLAGS);
    if (!text)
        return s_fail("the reply cannot be written as JSON (a string is not UTF-8)");
    puts(text);
    free(text);
    return S_EXIT_OK;
}

/* -------------------------------------------------------------- broker */

/* Loads the configuration and connects to the broker. */
static int s_connect(s_admin_t *self)
{
    char *error = NULL;
    /* The options are the settings a client of a CURVE broker reads; the
     * configuration checks them like any other value. */
    if (self->key)
        setenv("AINBOX_CURVE_SECRET", self->key, 1);
    if (self->broker_key)
        setenv("AINBOX_CURVE_BROKER_KEY", self->broker_key, 1);
    self->cfg = ain_config_load(environ, NULL, stderr, &error);
    if (!self->cfg) {
        s_say("configuration: %s", error ? error : "cannot be loaded");
        free(error);
        return S_EXIT_USAGE;
    }
    self->endpoint = self->broker ? self->broker : ain_config_str(self->cfg, AIN_CFG_AINBOX_BROKER);
    if (!self->endpoint || !ain_endpoint_valid(self->endpoint))
        return s_usage_error("'%s' is not a broker endpoint (tcp://HOST:PORT, ipc://PATH)",
                             self->endpoint ? self->endpoint : "");
    self->zmq = zmq_ctx_new();
    if (self->zmq)
        self->client = ain_client_new(self->zmq, self->endpoint, self->cfg);
    if (!self->client)
        return s_fail("cannot connect to %s: %s", self->endpoint, zmq_strerror(zmq_errno()));
    return S_EXIT_OK;
}

static void s_disconnect(s_admin_t *self)
{
    ain_client_destroy(&self->client);
    if (self->zmq)
        zmq_ctx_term(self->zmq);
    self->zmq = NULL;
    ain_config_destroy(&self->cfg);
}

/* Says why a call came back without a reply. */
static void s_no_reply(const s_admin_t *self, const char *service, ain_status_t status)
{
    if (status == AIN_STATUS_UNAVAILABLE || strcmp(service, AIN_BROKER_SERVICE) == 0)
        s_say("cannot reach the broker at %s (timeout after %d ms)", self->endpoint,
              self->timeout_ms);
    else
        s_say("no reply from %s within %d ms", service, self->timeout_ms);
}

/* Says which error status a reply carries, and its {message}. */
static void s_error_reply(const char *service, const ain_envelope_t *env)
{
    json_t *body = ain_mpjson_from_body(env->body, env->body_len);
    const char *text = json_string_value(json_object_get(body, "message"));
    char *message = ain__table_printable(text ? text : "(no message)");
    s_say("%s answered %s: %s", service, ain_status_name((int)env->status), message);
    free(message);
    json_decref(body);
}

/* The body of a successful reply to a `type` request, as a JSON object,
 * or NULL after saying what is wrong with it. */
static json_t *s_reply_body(const char *service, uint16_t type, const ain_envelope_t *env)
{
    if (env->type != type) {
        s_say("unexpected reply from %s: a type %u reply to a type %u request", service,
              (unsigned)env->type, (unsigned)type);
        return NULL;
    }
    json_t *body = ain_mpjson_from_body(env->body, env->body_len);
    if (!json_is_object(body)) {
        s_say("malformed reply from %s: the body is not a msgpack map", service);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Asks `service` for `type` with a msgpack `body`. Returns the reply body
 * as a JSON object the caller owns (json_decref), or NULL after saying on
 * stderr why there is none. Blocks up to the timeout. */
static json_t *s_request_body(s_admin_t *self, const char *service, uint16_t type,
                              const void *body_data, size_t body_len)
{
    ain_reply_t reply;
    memset(&reply, 0, sizeof reply);
    ain_status_t status = ain_client_call(self->client, service, type, 0, body_data, body_len,
                                          self->timeout_ms, &reply);
    json_t *body = NULL;
    if (zmq_msg_size(&reply.frame) == 0) /* an envelope is never empty: no reply */
        s_no_reply(self, service, status);
    else if (status != AIN_STATUS_OK)
        s_error_reply(service, &reply.env);
    else
        body = s_reply_body(service, type, &reply.env);
    ain_reply_close(&reply);
    return body;
}

/* As s_request_body, with an empty body. */
static json_t *s_request(s_admin_t *self, const char *service, uint16_t type)
{
    return s_request_body(self, service, type, "", 0);
}

/* Checks through MMI that `service` has workers (the broker itself is
 * always there: asking proves only that it answers, and opens the
 * connection, so a first ping does not time the connect). Returns
 * S_EXIT_OK, or the exit status after saying why not. */
static int s_check_workers(s_admin_t *self, const char *service)
{
    bool broker = strcmp(service, AIN_BROKER_SERVICE) == 0;
    if (!ain_mdp_service_valid(service, strlen(service)))
        return s_usage_error("'%s' is not a valid service name", service);
    int code = ain_client_mmi_service(self->client, service, self->timeout_ms);
    if (code < 0)
        return s_fail("cannot reach the broker at %s (timeout after %d ms)", self->endpoint,
                      self->timeout_ms);
    if (code == 403)
        return s_fail("the broker refused this key (AINBOX_CURVE_SECRET) the right to ask; an "
                      "operator needs a key with role admin");
    if (broker)
        return S_EXIT_OK;
    if (code == 404)
        return s_fail("no workers registered for %s", service);
    if (code != 200)
        return s_fail("the broker answered %d when asked about %s", code, service);
    return S_EXIT_OK;
}

/* ------------------------------------------------- services and workers */

/* A broker listing: an array of maps in the reply, one table row each. */
typedef struct {
    uint16_t type;
    const char *field;       /* the array's key in the reply body */
    const char *headers;     /* one per key */
    const char *const *keys; /* NULL-terminated; "*_ms" keys are durations */
    size_t sort_col;
} s_listing_t;

static bool s_is_duration(const char *key)
{
    size_t n = strlen(key);
    return n > 3 && strcmp(key + n - 3, "_ms") == 0;
}

/* Checks that every row is a map. Returns S_EXIT_OK, or S_EXIT_FAIL after
 * saying which is not. */
static int s_check_rows(const s_listing_t *listing, const json_t *rows)
{
    for (size_t i = 0; i < json_array_size(rows); i++)
        if (!json_is_object(json_array_get(rows, i)))
            return s_fail("malformed reply from broker: %s[%zu] is not a map", listing->field, i);
    return S_EXIT_OK;
}

static void s_print_listing(const s_listing_t *listing, const json_t *rows)
{
    ain__table_t *table = ain__table_new(listing->headers);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const json_t *row = json_array_get(rows, i);
        ain__table_row(table);
        for (const char *const *key = listing->keys; *key; key++)
            s_cell(table, json_object_get(row, *key), s_is_duration(*key));
    }
    ain__table_sort(table, listing->sort_col);
    ain__table_print(table, stdout);
    ain__table_destroy(&table);
}

static int s_list(s_admin_t *self, const s_listing_t *listing)
{
    json_t *body = s_request(self, AIN_BROKER_SERVICE, listing->type);
    if (!body)
        return S_EXIT_FAIL;
    int rc;
    const json_t *rows = json_object_get(body, listing->field);
    if (!json_is_array(rows))
        rc = s_fail("malformed reply from broker: no \"%s\" array", listing->field);
    else
        rc = s_check_rows(listing, rows);
    if (rc == S_EXIT_OK && self->json)
        rc = s_print_json(body);
    else if (rc == S_EXIT_OK)
        s_print_listing(listing, rows);
    json_decref(body);
    return rc;
}

static int s_cmd_services(s_admin_t *self, char **args, int nargs)
{
    static const char *const keys[] = {"name",         "kind",     "workers", "credit", "inflight",
                                       "queued",       "requests", "replies", "busy",   "expired",
                                       "redispatched", "lost",     NULL};
    static const s_listing_t listing = {
        AIN_MSG_BROKER_SERVICES, "services",
        "NAME KIND WORKERS CREDIT INFLIGHT QUEUED REQUESTS REPLIES BUSY EXPIRED REDISPATCHED LOST",
        keys, 0};
    return s_list(self, &listing);
}

static int s_cmd_workers(s_admin_t *self, char **args, int nargs)
{
    static const char *const keys[] = {"id",       "service", "kind",   "credit",
                                       "inflight", "peer",    "age_ms", "idle_ms",
                                       "requests", "replies", NULL};
    static const s_listing_t listing = {
        AIN_MSG_BROKER_WORKERS, "workers",
        "ID SERVICE KIND CREDIT INFLIGHT PEER AGE IDLE REQUESTS REPLIES", keys, 1};
    return s_list(self, &listing);
}

/* --------------------------------------------------------------- stats */

static void s_print_stats(const json_t *body, json_t *metrics)
{
    ain__table_t *table = ain__table_new("SERVICE HOST PID UPTIME");
    ain__table_row(table);
    s_cell(table, json_object_get(body, "service"), false);
    s_cell(table, json_object_get(body, "host"), false);
    s_cell(table, json_object_get(body, "pid"), false);
    s_cell(table, json_object_get(body, "uptime_ms"), true);
    ain__table_print(table, stdout);
    ain__table_destroy(&table);
    putchar('\n');
    table = ain__table_new("METRIC VALUE");
    for (void *it = json_object_iter(metrics); it; it = json_object_iter_next(metrics, it)) {
        ain__table_row(table);
        ain__table_cell(table, json_object_iter_key(it));
        s_cell(table, json_object_iter_value(it), false);
    }
    ain__table_sort(table, 0);
    ain__table_print(table, stdout);
    ain__table_destroy(&table);
}

static int s_cmd_stats(s_admin_t *self, char **args, int nargs)
{
    const char *service = nargs > 0 ? args[0] : AIN_BROKER_SERVICE;
    int rc = s_check_workers(self, service);
    if (rc != S_EXIT_OK)
        return rc;
    json_t *body = s_request(self, service, nargs > 0 ? AIN_MSG_STATS : AIN_MSG_BROKER_STATS);
    if (!body)
        return S_EXIT_FAIL;
    json_t *metrics = json_object_get(body, "metrics");
    if (!json_is_object(metrics))
        rc = s_fail("malformed reply from %s: no \"metrics\" map", service);
    else if (self->json)
        rc = s_print_json(body);
    else
        s_print_stats(body, metrics);
    json_decref(body);
    return rc;
}

/* ---------------------------------------------------------------- ping */

typedef struct {
    long sent, received;
    int64_t min_us, max_us, sum_us;
    json_t *replies; /* --json: each reply body with its time */
} s_tally_t;

/* Checks a PING reply and reports it. Returns true if it counts. */
static bool s_ping_answered(s_admin_t *self, const char *service, json_t *body, int64_t us,
                            s_tally_t *tally)
{
    const json_t *host = json_object_get(body, "host"), *pid = json_object_get(body, "pid");
    if (!json_is_string(host) || !json_is_integer(pid)) {
        s_say("malformed reply from %s: no host or pid", service);
        return false;
    }
    if (self->json) {
        json_object_set_new(body, "time_us", json_integer(us));
        json_array_append(tally->replies, body);
        return true;
    }
    char *name = ain__table_printable(json_string_value(host));
    printf("reply from %s (host %s pid %" JSON_INTEGER_FORMAT "): time=%.3f ms\n", service, name,
           json_integer_value(pid), (double)us / 1000.0);
    fflush(stdout);
    free(name);
    return true;
}

static void s_ping_once(s_admin_t *self, const char *service, s_tally_t *tally)
{
    int64_t start = ain_clock_mono_us();
    json_t *body = s_request(self, service, AIN_MSG_PING);
    int64_t us = ain_clock_mono_us() - start;
    tally->sent++;
    if (body && s_ping_answered(self, service, body, us, tally)) {
        tally->min_us = tally->received == 0 || us < tally->min_us ? us : tally->min_us;
        tally->max_us = us > tally->max_us ? us : tally->max_us;
        tally->sum_us += us;
        tally->received++;
    }
    json_decref(body);
}

/* Sleeps `ms`, or less if SIGINT/SIGTERM arrives. */
static void s_pause(long ms)
{
    int64_t until = ain_clock_mono_ms() + ms;
    for (int64_t left = ms; left > 0 && !ain_signal_stop_requested();
         left = until - ain_clock_mono_ms())
        zmq_poll(NULL, 0, (long)left);
}

/* Prints the series' summary; returns S_EXIT_OK only if every ping was
 * answered (and could be shown). */
static int s_ping_summary(const s_admin_t *self, const char *service, const s_tally_t *t)
{
    int rc = t->sent > 0 && t->received == t->sent ? S_EXIT_OK : S_EXIT_FAIL;
    int64_t avg = t->received ? t->sum_us / t->received : 0;
    if (self->json) {
        json_t *out =
            json_pack("{s:s, s:I, s:I, s:O}", "service", service, "sent", (json_int_t)t->sent,
                      "received", (json_int_t)t->received, "replies", t->replies);
        if (t->received) {
            json_object_set_new(out, "min_us", json_integer(t->min_us));
            json_object_set_new(out, "avg_us", json_integer(avg));
            json_object_set_new(out, "max_us", json_integer(t->max_us));
        }
        rc = s_print_json(out) == S_EXIT_OK ? rc : S_EXIT_FAIL;
        json_decref(out);
    } else if (t->received) {
        printf("--- %s: %ld sent, %ld received, min/avg/max = %.3f/%.3f/%.3f ms\n", service,
               t->sent, t->received, (double)t->min_us / 1000.0, (double)avg / 1000.0,
               (double)t->max_us / 1000.0);
    } else {
        printf("--- %s: %ld sent, 0 received\n", service, t->sent);
    }
    return rc;
}

static int s_cmd_ping(s_admin_t *self, char **args, int nargs)
{
    const char *service = args[0];
    int rc = s_check_workers(self, service);
    if (rc != S_EXIT_OK)
        return rc;
    s_tally_t tally = {0};
    tally.replies = json_array();
    ain_signal_install(); /* Ctrl-C ends the series with its summary */
    for (long i = 0; i < self->count && !ain_signal_stop_requested(); i++) {
        if (i > 0)
            s_pause(self->interval_ms);
        if (!ain_signal_stop_requested())
            s_ping_once(self, service, &tally);
    }
    rc = s_ping_summary(self, service, &tally);
    json_decref(tally.replies);
    return rc;
}

/* --------------------------------------------------------------- types */

typedef struct {
    ain__table_t *table;
    json_t *list;
} s_types_t;

static void s_add_type(const ain_msgtype_t *type, void *arg)
{
    s_types_t *out = arg;
    bool idem = type->flags & AIN_MSGF_IDEMPOTENT, event = type->flags & AIN_MSGF_EVENT;
    json_t *flags = json_array();
    if (idem)
        json_array_append_new(flags, json_string("idempotent"));
    if (event)
        json_array_append_new(flags, json_string("event"));
    if (type->flags & AIN_MSGF_OPERATOR)
        json_array_append_new(flags, json_string("operator"));
    json_array_append_new(out->list,
                          json_pack("{s:I, s:s, s:s, s:o, s:s}", "id", (json_int_t)type->id, "name",
                                    type->name, "service", type->service, "flags", flags, "summary",
                                    type->summary));
    ain__table_row(out->table);
    ain__table_cellf(out->table, "%u", (unsigned)type->id);
    ain__table_cell(out->table, type->name);
    ain__table_cell(out->table, type->service[0] ? type->service : "-");
    ain__table_cell(out->table, idem && event ? "idempotent,event"
                                : idem        ? "idempotent"
                                : event       ? "event"
                                              : "-");
    ain__table_cell(out->table, type->summary);
}

static int s_cmd_types(s_admin_t *self, char **args, int nargs)
{
    s_types_t out = {ain__table_new("ID NAME SERVICE FLAGS SUMMARY"), json_array()};
    ain_msgtype_each(s_add_type, &out);
    int rc = S_EXIT_OK;
    if (self->json)
        rc = s_print_json(out.list);
    else
        ain__table_print(out.table, stdout); /* in id order, as declared */
    ain__table_destroy(&out.table);
    json_decref(out.list);
    return rc;
}

/* --------------------------------------------------------- cache-clear */

/* cache-clear all | USER [PREFIX...]: asks a cache actor to drop cached
 * views (it tells every other cache actor itself). Prefixes are key
 * prefixes, matched literally within that user's keys only. */
static int s_parse_long(const char *text, long min, long max, long *out);

static int s_cmd_cache_clear(s_admin_t *self, char **args, int nargs)
{
    long user = 0;
    bool all = strcmp(args[0], "all") == 0;
    if (!all && s_parse_long(args[0], 1, LONG_MAX, &user) < 0)
        return s_usage_error("cache-clear: '%s' is neither \"all\" nor a user id", args[0]);
    if (all && nargs > 1)
        return s_usage_error("cache-clear: prefixes only go with a user id");
    int rc = s_check_workers(self, "cache");
    if (rc != S_EXIT_OK)
        return rc;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, all ? 0 : nargs > 1 ? 2 : 1);
    if (!all) {
        ain_mp_pack_kv_u64(&pk, "user", (uint64_t)user);
        if (nargs > 1) {
            ain_mp_pack_str(&pk, "prefixes");
            msgpack_pack_array(&pk, (uint32_t)(nargs - 1));
            for (int i = 1; i < nargs; i++)
                ain_mp_pack_str(&pk, args[i]);
        }
    }
    json_t *body = s_request_body(self, "cache", AIN_MSG_CACHE_CLEAR, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    if (!body)
        return S_EXIT_FAIL;
    if (self->json) {
        rc = s_print_json(body);
    } else {
        json_t *dropped = json_object_get(body, "l1_dropped");
        const char *l2 = json_string_value(json_object_get(body, "l2"));
        printf("cleared %s: %lld entries dropped from this cache's L1; L2: %s\n",
               all ? "everything" : args[0], (long long)json_integer_value(dropped), l2 ? l2 : "?");
    }
    json_decref(body);
    return rc;
}

/* ------------------------------------------------------- rate limits */

/* Packs {user: id} into `buf` (caller destroys). */
static void s_pack_user(msgpack_sbuffer *buf, long user)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_u64(&pk, "user", (uint64_t)user);
}

/* Sends a ratelimit request about `user_text`; prints the reply body's
 * array `field` as a table (or the body as JSON). */
static int s_limits_request(s_admin_t *self, const char *cmd, const char *user_text, uint16_t type,
                            const char *field, const s_listing_t *listing)
{
    long user = 0;
    if (user_text && s_parse_long(user_text, 1, LONG_MAX, &user) < 0)
        return s_usage_error("%s: '%s' is not a user id", cmd, user_text);
    int rc = s_check_workers(self, "ratelimit");
    if (rc != S_EXIT_OK)
        return rc;
    msgpack_sbuffer buf;
    s_pack_user(&buf, user);
    json_t *body = user_text ? s_request_body(self, "ratelimit", type, buf.data, buf.size)
                             : s_request(self, "ratelimit", type);
    msgpack_sbuffer_destroy(&buf);
    if (!body)
        return S_EXIT_FAIL;
    const json_t *rows = field ? json_object_get(body, field) : NULL;
    if (self->json)
        rc = s_print_json(body);
    else if (!field)
        printf("reset user %s: %lld keys deleted\n", user_text,
               (long long)json_integer_value(json_object_get(body, "deleted")));
    else if (!json_is_array(rows) || (rc = s_check_rows(listing, rows)) != S_EXIT_OK)
        rc = rc != S_EXIT_OK ? rc : s_fail("malformed reply: no \"%s\" array", field);
    else {
        s_print_listing(listing, rows);
        if (json_is_true(json_object_get(body, "degraded")))
            printf("(Redis is down: shared usage is unknown)\n");
    }
    json_decref(body);
    return rc;
}

static int s_cmd_limits(s_admin_t *self, char **args, int nargs)
{
    static const char *const keys[] = {"policy", "subject",   "limit",    "window_s", "unit",
                                       "used",   "remaining", "reset_ms", "permille", NULL};
    static const s_listing_t listing = {
        AIN_MSG_RATE_USAGE, "usage",
        "POLICY SUBJECT LIMIT WINDOW_S UNIT USED REMAINING RESET PERMILLE", keys, 0};
    return s_limits_request(self, "limits", args[0], AIN_MSG_RATE_USAGE, "usage", &listing);
}

static int s_cmd_limits_reset(s_admin_t *self, char **args, int nargs)
{
    return s_limits_request(self, "limits-reset", args[0], AIN_MSG_RATE_RESET, NULL, NULL);
}

static int s_cmd_limits_policies(s_admin_t *self, char **args, int nargs)
{
    static const char *const keys[] = {"name", "kind",        "limit",  "window_ms", "burst",
                                       "unit", "emission_us", "active", NULL};
    static const s_listing_t listing = {AIN_MSG_RATE_POLICIES, "policies",
                                        "NAME KIND LIMIT WINDOW BURST UNIT EMISSION_US ACTIVE",
                                        keys, 0};
    return s_limits_request(self, "limits-policies", NULL, AIN_MSG_RATE_POLICIES, "policies",
                            &listing);
}

/* ------------------------------------------------------- jobs, dlq */

/* jobs: the queue's depth per priority, this jobs actor's pools and counters. */
static int s_cmd_jobs(s_admin_t *self, char **args, int nargs)
{
    int rc = s_check_workers(self, "jobs");
    if (rc != S_EXIT_OK)
        return rc;
    json_t *body = s_request(self, "jobs", AIN_MSG_JOBS_STATS);
    if (!body)
        return S_EXIT_FAIL;
    const json_t *pending = json_object_get(body, "pending");
    json_t *counters = json_object_get(body, "counters");
    if (self->json) {
        rc = s_print_json(body);
    } else if (!json_is_object(pending) || !json_is_object(counters)) {
        rc = s_fail("malformed reply from jobs: no \"pending\" or \"counters\" map");
    } else {
        static const char *const prios[] = {"high", "medium", "low"};
        ain__table_t *table = ain__table_new("PRIORITY PENDING WORKERS BUSY");
        for (size_t i = 0; i < 3; i++) {
            ain__table_row(table);
            ain__table_cell(table, prios[i]);
            s_cell(table, json_object_get(pending, prios[i]), false);
            s_cell(table, json_object_get(json_object_get(body, "workers"), prios[i]), false);
            s_cell(table, json_object_get(json_object_get(body, "busy"), prios[i]), false);
        }
        ain__table_print(table, stdout);
        ain__table_destroy(&table);
        char oldest[64];
        s_duration(json_integer_value(json_object_get(body, "oldest_ms")), oldest, sizeof oldest);
        printf("running %" JSON_INTEGER_FORMAT ", delayed %" JSON_INTEGER_FORMAT
               ", oldest pending %s, dead letters %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(body, "running")),
               json_integer_value(json_object_get(body, "delayed")), oldest,
               json_integer_value(json_object_get(body, "dead")));
        const char *owner = json_string_value(json_object_get(body, "owner"));
        char *shown = ain__table_printable(owner);
        printf("counters of the jobs actor %s:", shown);
        free(shown);
        const char *key;
        json_t *value;
        json_object_foreach(counters, key, value)
        {
            char *k = ain__table_printable(key);
            printf(" %s=%" JSON_INTEGER_FORMAT, k, json_integer_value(value));
            free(k);
        }
        printf("\n");
    }
    json_decref(body);
    return rc;
}

/* Packs {key: value} or {all: true} (value 0) into `buf` (caller destroys). */
static void s_pack_one(msgpack_sbuffer *buf, const char *key, long value)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    if (value > 0) {
        ain_mp_pack_kv_u64(&pk, key, (uint64_t)value);
    } else {
        ain_mp_pack_str(&pk, "all");
        msgpack_pack_true(&pk);
    }
}

static int s_dlq_list(s_admin_t *self, char **args, int nargs)
{
    static const char *const keys[] = {"id",       "kind",         "user",  "account", "priority",
                                       "attempts", "max_attempts", "error", NULL};
    static const s_listing_t listing = {
        AIN_MSG_DLQ_LIST, "jobs", "ID KIND USER ACCOUNT PRIORITY ATTEMPTS MAX ERROR", keys, 0};
    long limit = 50;
    if (nargs > 1 && s_parse_long(args[1], 1, 1000, &limit) < 0)
        return s_usage_error("dlq list: '%s' is not a limit of 1..1000", args[1]);
    if (nargs > 2)
        return s_usage_error("dlq list takes at most a limit");
    msgpack_sbuffer buf;
    s_pack_one(&buf, "limit", limit);
    json_t *body = s_request_body(self, "jobs", AIN_MSG_DLQ_LIST, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    if (!body)
        return S_EXIT_FAIL;
    const json_t *rows = json_object_get(body, "jobs");
    int rc = S_EXIT_OK;
    if (self->json)
        rc = s_print_json(body);
    else if (!json_is_array(rows) || (rc = s_check_rows(&listing, rows)) != S_EXIT_OK)
        rc = rc != S_EXIT_OK ? rc : s_fail("malformed reply: no \"jobs\" array");
    else {
        s_print_listing(&listing, rows);
        printf("%" JSON_INTEGER_FORMAT " dead letters in all\n",
               json_integer_value(json_object_get(body, "total")));
    }
    json_decref(body);
    return rc;
}

/* dlq list [LIMIT] | retry ID|all | purge ID|all */
static int s_cmd_dlq(s_admin_t *self, char **args, int nargs)
{
    bool list = strcmp(args[0], "list") == 0, retry = strcmp(args[0], "retry") == 0,
         purge = strcmp(args[0], "purge") == 0;
    if (!list && !retry && !purge)
        return s_usage_error("dlq: '%s' is not list, retry or purge", args[0]);
    long id = 0;
    if (!list && (nargs != 2 ||
                  (strcmp(args[1], "all") != 0 && s_parse_long(args[1], 1, LONG_MAX, &id) < 0)))
        return s_usage_error("dlq %s: name one job id, or all", args[0]);
    int rc = s_check_workers(self, "jobs");
    if (rc != S_EXIT_OK)
        return rc;
    if (list)
        return s_dlq_list(self, args, nargs);
    msgpack_sbuffer buf;
    s_pack_one(&buf, "id", id);
    json_t *body = s_request_body(self, "jobs", retry ? AIN_MSG_DLQ_RETRY : AIN_MSG_DLQ_PURGE,
                                  buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    if (!body)
        return S_EXIT_FAIL;
    if (self->json)
        rc = s_print_json(body);
    else if (retry)
        printf("%" JSON_INTEGER_FORMAT " jobs back in the queue, %" JSON_INTEGER_FORMAT
               " merged into a pending job with the same unique key\n",
               json_integer_value(json_object_get(body, "retried")),
               json_integer_value(json_object_get(body, "merged")));
    else
        printf("%" JSON_INTEGER_FORMAT " dead letters purged\n",
               json_integer_value(json_object_get(body, "purged")));
    json_decref(body);
    return rc;
}

/* ------------------------------------------------------- command table */

typedef int(s_command_fn)(s_admin_t *self, char **args, int nargs);

typedef struct {
    const char *name;
    const char *args; /* for --help */
    int min_args, max_args;
    bool broker; /* needs a connection */
    s_command_fn *fn;
    const char *help;
} s_command_t;

static const s_command_t s_commands[] = {
    {"services", "", 0, 0, true, s_cmd_services,
     "services the broker knows: workers, credit, queues, traffic"},
    {"workers", "", 0, 0, true, s_cmd_workers,
     "workers registered with the broker: credit, load, age, idle time"},
    {"stats", "[SERVICE]", 0, 1, true, s_cmd_stats,
     "metrics of the broker, or of a worker of SERVICE"},
    {"ping", "SERVICE [-n N] [-i MS]", 1, 1, true, s_cmd_ping,
     "round-trip time to SERVICE (\"broker\" too)"},
    {"cache-clear", "all | USER [PREFIX...]", 1, 9, true, s_cmd_cache_clear,
     "drop cached mail views: everyone's, or one user's (optionally by key prefix)"},
    {"limits", "USER", 1, 1, true, s_cmd_limits,
     "a user's rate-limit usage: the API limit and the user's provider accounts"},
    {"limits-reset", "USER", 1, 1, true, s_cmd_limits_reset,
     "forget a user's rate-limit usage (every policy, every process)"},
    {"limits-policies", "", 0, 0, true, s_cmd_limits_policies, "the rate-limit policies in force"},
    {"jobs", "", 0, 0, true, s_cmd_jobs, "the job queue: depth per priority, workers, counters"},
    {"dlq", "list [LIMIT] | retry ID|all | purge ID|all", 1, 3, true, s_cmd_dlq,
     "the jobs' dead-letter queue: newest first; back to the queue; delete"},
    {"types", "", 0, 0, false, s_cmd_types, "the protocol's message types (needs no broker)"},
};

enum { S_COMMAND_COUNT = sizeof s_commands / sizeof s_commands[0] };

static const char *const s_option_help[][2] = {
    {"--broker ENDPOINT", "broker to ask (default: AINBOX_BROKER from environment/config)"},
    {"--key FILE",
     "CurveZMQ: this operator's key pair, an admin key (default: AINBOX_CURVE_SECRET)"},
    {"--broker-key KEY", "CurveZMQ: the broker's public key or its .cert file (default: "
                         "AINBOX_CURVE_BROKER_KEY)"},
    {"--json", "print replies as JSON instead of tables"},
    {"--timeout MS", "how long to wait for each answer (default 3000)"},
    {"-n N", "ping: how many pings to send (default 1)"},
    {"-i MS", "ping: milliseconds between pings (default 1000)"},
    {"-h, --help", "print this help and exit"},
    {"--version", "print the version and exit"},
};

/* "name args", without a trailing space when there are no args. */
static void s_synopsis(const s_command_t *cmd, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", cmd->name, cmd->args[0] ? " " : "", cmd->args);
}

static void s_print_help(FILE *out)
{
    fputs("usage: " S_PROG " [OPTIONS] COMMAND [ARGS]\n\n"
          "Inspects a running Ainbox through its broker, using only the public protocol.\n\n"
          "commands:\n",
          out);
    for (int i = 0; i < S_COMMAND_COUNT; i++) {
        char synopsis[64];
        s_synopsis(&s_commands[i], synopsis, sizeof synopsis);
        fprintf(out, "  %-28s %s\n", synopsis, s_commands[i].help);
    }
    fputs("\noptions:\n", out);
    for (size_t i = 0; i < sizeof s_option_help / sizeof s_option_help[0]; i++)
        fprintf(out, "  %-28s %s\n", s_option_help[i][0], s_option_help[i][1]);
    fputs("\nexit status: 0 success, 1 failure, 2 usage or configuration error\n", out);
}

static const s_command_t *s_find_command(const char *name)
{
    for (int i = 0; i < S_COMMAND_COUNT; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

/* ------------------------------------------------------------- options */

/* Long-only options get values above any character, so an error about
 * one (getopt puts its value in optopt) is told from one about a short
 * option. */
enum {
    S_OPT_BROKER = 256,
    S_OPT_JSON,
    S_OPT_TIMEOUT,
    S_OPT_HELP,
    S_OPT_VERSION,
    S_OPT_KEY,
    S_OPT_BROKER_KEY
};

static const struct option s_options[] = {
    {"broker", required_argument, NULL, S_OPT_BROKER},
    {"json", no_argument, NULL, S_OPT_JSON},
    {"timeout", required_argument, NULL, S_OPT_TIMEOUT},
    {"help", no_argument, NULL, S_OPT_HELP},
    {"version", no_argument, NULL, S_OPT_VERSION},
    {"key", required_argument, NULL, S_OPT_KEY},
    {"broker-key", required_argument, NULL, S_OPT_BROKER_KEY},
    {NULL, 0, NULL, 0},
};

/* Says what is wrong with an option getopt refused. `given` is the
 * argument it was reading: it names a long option, but not always a short
 * one (in "-xj" getopt may still be on the previous argument). */
static int s_option_error(int opt, const char *given)
{
    bool is_long = optopt == 0 || optopt >= S_OPT_BROKER;
    if (opt == ':' && is_long)
        return s_usage_error("option '%s' needs an argument", given);
    if (opt == ':')
        return s_usage_error("option '-%c' needs an argument", optopt);
    if (optopt >= S_OPT_BROKER)
        return s_usage_error("option '%s' takes no value", given);
    if (is_long)
        return s_usage_error("unknown option '%s'", given);
    return s_usage_error("unknown option '-%c'", optopt);
}

/* Parses a decimal integer in [min, max]. Returns 0, or -1. */
static int s_parse_long(const char *text, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* Applies one option. Returns S_GO_ON, or the exit status. */
static int s_option(s_admin_t *self, int opt, const char *arg, const char *given)
{
    long n = 0;
    switch (opt) {
    case S_OPT_BROKER:
        self->broker = arg;
        break;
    case S_OPT_KEY:
        self->key = arg;
        break;
    case S_OPT_BROKER_KEY:
        self->broker_key = arg;
        break;
    case S_OPT_JSON:
        self->json = true;
        break;
    case S_OPT_TIMEOUT:
        if (s_parse_long(arg, 1, S_TIMEOUT_MAX_MS, &n) < 0)
            return s_usage_error("--timeout wants milliseconds, 1 to %d", S_TIMEOUT_MAX_MS);
        self->timeout_ms = (int)n;
        break;
    case 'n':
        if (s_parse_long(arg, 1, S_PING_COUNT_MAX, &self->count) < 0)
            return s_usage_error("-n wants a count, 1 to %d", S_PING_COUNT_MAX);
        self->ping_options = true;
        break;
    case 'i':
        if (s_parse_long(arg, 0, S_PING_INTERVAL_MAX, &self->interval_ms) < 0)
            return s_usage_error("-i wants milliseconds, 0 to %d", S_PING_INTERVAL_MAX);
        self->ping_options = true;
        break;
    case 'h':
    case S_OPT_HELP:
        self->help = true;
        break;
    case S_OPT_VERSION:
        self->version = true;
        break;
    default:
        return s_option_error(opt, given);
    }
    return S_GO_ON;
}

/* Parses every option, wherever it stands (GNU getopt moves the
 * arguments after them). Returns S_GO_ON, or the exit status. */
static int s_parse_options(s_admin_t *self, int argc, char **argv)
{
    opterr = 0; /* we word the errors ourselves */
    int opt, rc = S_GO_ON;
    while (rc == S_GO_ON && (opt = getopt_long(argc, argv, ":hn:i:", s_options, NULL)) != -1)
        rc = s_option(self, opt, optarg, argv[optind - 1]);
    return rc;
}

/* Finds the command `args[0]` and checks its arguments. Returns S_GO_ON
 * with *cmd set, or the exit status after saying what is wrong. */
static int s_check_command(const s_admin_t *self, int nargs, char **args, const s_command_t **cmd)
{
    if (nargs < 1)
        return s_usage_error("no command given");
    *cmd = s_find_command(args[0]);
    if (!*cmd)
        return s_usage_error("unknown command '%s'", args[0]);
    char synopsis[64];
    s_synopsis(*cmd, synopsis, sizeof synopsis);
    if (nargs - 1 < (*cmd)->min_args)
        return s_usage_error("missing argument (usage: %s)", synopsis);
    if (nargs - 1 > (*cmd)->max_args)
        return s_usage_error("too many arguments (usage: %s)", synopsis);
    if (self->ping_options && (*cmd)->fn != s_cmd_ping)
        return s_usage_error("-n and -i apply to ping only");
    return S_GO_ON;
}

int main(int argc, char **argv)
{
    s_admin_t self = {.timeout_ms = S_TIMEOUT_MS, .count = 1, .interval_ms = S_PING_INTERVAL_MS};
    int rc = s_parse_options(&self, argc, argv);
    if (rc != S_GO_ON)
        return rc;
    if (self.help || self.version) {
        if (self.help)
            s_print_help(stdout);
        else
            printf("%s %s (protocol %d)\n", S_PROG, AIN_VERSION, AIN_PROTO_VERSION);
        return S_EXIT_OK;
    }
    const s_command_t *cmd = NULL;
    rc = s_check_command(&self, argc - optind, argv + optind, &cmd);
    if (rc != S_GO_ON)
        return rc;
    rc = cmd->broker ? s_connect(&self) : S_EXIT_OK;
    if (rc == S_EXIT_OK)
        rc = cmd->fn(&self, argv + optind + 1, argc - optind - 1);
    s_disconnect(&self);
    return rc;
}
