/* redis.h: one asynchronous Redis connection, driven by an actor's loop.
 *
 * hiredis 0.14's asynchronous API with our own event hooks: the socket is
 * an actor watch (runtime/actor.h), so an actor waits on Redis, its broker
 * socket and its timers in one poll. What hiredis 0.14 lacks, this adds:
 * a timeout on every command (a connection that stops answering is
 * dropped, and every pending command fails), and reconnection with
 * back-off. While disconnected, commands fail at once: the caller decides
 * what that means (the cache bypasses L2; a rate limiter fails closed).
 *
 * The target comes from the configuration: REDIS_URL (redis://[:pass@]host
 * [:port][/db] or unix:///path[?db=N]) or else REDIS_HOST and REDIS_PORT.
 * A connection is either for commands or, once it subscribed, for pub/sub
 * messages only (Redis's own rule for RESP2).
 */
#ifndef AIN_RUNTIME_REDIS_H
#define AIN_RUNTIME_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "runtime/actor.h"
#include "runtime/config.h"

typedef struct _ain_redis_t ain_redis_t;

/* A command's answer. `reply` is NULL when the command failed (not sent,
 * connection lost, or timed out); it is borrowed for the call only. */
typedef void(ain_redis_fn)(ain_redis_t *redis, redisReply *reply, void *arg);

/* Connection state changes: connected, or lost (also called when a
 * connect attempt fails). */
typedef void(ain_redis_state_fn)(ain_redis_t *redis, bool connected, void *arg);

/* Where to connect, from the configuration. */
typedef struct {
    char host[256];
    int port;
    char path[256]; /* unix socket, or "" */
    char password[256];
    int db;
} ain_redis_target_t;

/* Fills `target` from REDIS_URL or REDIS_HOST/REDIS_PORT. Returns 0, or -1
 * with a reason in *why (static) if REDIS_URL is malformed. */
int ain_redis_target(const ain_config_t *cfg, ain_redis_target_t *target, const char **why);

/* A connection for `actor` (borrowed; must outlive it), named `name` in
 * logs. Starts connecting at once; `on_state` (may be NULL) hears about
 * every connect and loss. Caller owns it. */
ain_redis_t *ain_redis_new(ain_actor_t *actor, const char *name, ain_redis_state_fn *on_state,
                           void *arg);

/* Disconnects; every pending command fails (its callback runs with NULL,
 * before this returns). Safe twice. */
void ain_redis_destroy(ain_redis_t **self_p);

bool ain_redis_connected(const ain_redis_t *self);

/* Marks the connection's descriptor urgent in the actor's loop (see
 * ain_actor_watch_urgent): for a subscription whose messages must be
 * handled before any request that arrives after them. */
void ain_redis_set_urgent(ain_redis_t *self);

/* Sends a command (binary-safe arguments, copied). Returns 0 and calls
 * `fn` exactly once later, or returns -1 (not connected) and never calls
 * it. */
int ain_redis_command(ain_redis_t *self, ain_redis_fn *fn, void *arg, int argc, const char **argv,
                      const size_t *argvlen);

/* A Lua script for ain_redis_eval: its text (borrowed, usually a static
 * string) and the hex SHA1 Redis knows it by. */
typedef struct {
    const char *text;
    char sha[41];
} ain_redis_script_t;

/* Fills `script` for `text` (borrowed: must outlive the script); computes
 * the SHA1 locally (libcrypto), so nothing is sent. Returns 0 or -1. */
int ain_redis_script_init(ain_redis_script_t *script, const char *text);

/* Sends SCRIPT LOAD for `script` (borrowed until answered), so that the
 * EVALSHAs after it find the script. Call it from the state callback on
 * every connect: it then goes out before any other command, and a burst of
 * pipelined ain_redis_eval right after a (re)connect never meets NOSCRIPT.
 * An error is logged. Returns 0, or -1 (not connected). */
int ain_redis_script_load(ain_redis_t *self, const ain_redis_script_t *script);

/* Runs `script` with `numkeys` keys then the other arguments (argv[0 ..
 * argc-1], binary-safe, copied; argvlen may be NULL for C strings): sends
 * EVALSHA, and on a NOSCRIPT answer (Redis restarted, SCRIPT FLUSH) sends
 * EVAL with the same arguments, which also caches the script again. It
 * never reorders: the EVAL is resent only when no command went out on
 * this connection after the EVALSHA (the NOSCRIPT answer came back with
 * nothing pending behind it); otherwise `fn` gets the NOSCRIPT error, as
 * it would any error, because a resend would run after later commands,
 * and SCRIPT LOAD goes out, so that what is sent after it finds the script
 * even if the pipeline never empties.
 * With one command at a time a flush is thus invisible; a pipeline loses
 * (to the caller's error path) at most what was in flight when it met the
 * flush. Returns 0 and calls `fn` exactly once later, or -1 (not
 * connected) and never calls it. `script` is borrowed until `fn` ran. */
int ain_redis_eval(ain_redis_t *self, const ain_redis_script_t *script, int numkeys, int argc,
                   const char **argv, const size_t *argvlen, ain_redis_fn *fn, void *arg);

/* Subscribes to `channel`: fn(redis, reply, arg) runs with the
 * confirmation (["subscribe", channel, count]: from then on nothing
 * published is missed), with every message (["message", channel,
 * payload]), and once with NULL when the connection is lost (subscribe
 * again after reconnecting). Returns 0 or -1. */
int ain_redis_subscribe(ain_redis_t *self, const char *channel, ain_redis_fn *fn, void *arg);

/* Commands sent, failed, and timed-out disconnections so far. */
typedef struct {
    uint64_t sent, failed, timeouts, reconnects;
    uint64_t noscript_resent, noscript_failed; /* ain_redis_eval after a NOSCRIPT */
} ain_redis_stats_t;
void ain_redis_stats(const ain_redis_t *self, ain_redis_stats_t *out);

int ain_redis_test(bool verbose);

#endif
