/* evlog.h: the per-user event log in Redis, internal to the events actor.
 *
 * One capped Redis stream per user, `ain:ev:<user>`, entries {d: event
 * JSON}. The entry id Redis gives (`<ms>-<seq>`, unique and ordered per
 * stream even with several events actors appending) is the event's SSE
 * id. A stream keeps at least AIN__EVLOG_KEEP events or AIN__EVLOG_WINDOW_MS
 * of them, whichever is more, never more than about AIN__EVLOG_CAP, and
 * expires AIN__EVLOG_IDLE_MS after its last append.
 *
 * Only the Lua scripts, the key and the id check live here; the actor
 * (events.c) sends them with runtime/redis.h and reads the answers.
 */
#ifndef AIN_ACTORS_EVENTS_EVLOG_H
#define AIN_ACTORS_EVENTS_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIN__EVLOG_KEEP      1000
#define AIN__EVLOG_WINDOW_MS (10 * 60 * 1000)
#define AIN__EVLOG_CAP       10000
#define AIN__EVLOG_IDLE_MS   (24 * 60 * 60 * 1000)
/* Longest id accepted from a client ("<20 digits>-<20 digits>"). */
#define AIN__EVLOG_ID_MAX 41
/* Longest event key (EVENT_PUBLISH_BATCH's `key`). */
#define AIN__EVLOG_EVENT_KEY_MAX 64

/* Appends, for each i in 1..#KEYS in order, ARGV[4 + i] (event JSON) to
 * KEYS[i] (a key may repeat: one user's events in a batch); ARGV[1..4] =
 * keep, window ms, cap, idle ms; ARGV[4 + N + i] the event's key, "" for
 * none. Returns the new entries' ids, in KEYS order; an event whose key
 * was appended to KEYS[i] within the window (`<stream>:k:<key>`, a string
 * that expires with the window) is not appended again, and its answer is
 * "=" followed by the first append's id. One event or a batch: one
 * script, one round trip. */
extern const char ain__evlog_append_lua[];

/* Replays KEYS[1] after ARGV[1] (an id that must still be in the stream),
 * at most ARGV[2] events and about ARGV[3] bytes of data (at least one
 * event). Returns {0} when ARGV[1] is not in the stream (reset), else
 * {1 (complete) | 2 (more after these), id1, data1, id2, data2, ...}. */
extern const char ain__evlog_replay_lua[];

/* The stream key of `user` into buf. */
void ain__evlog_key(uint64_t user, char *buf, size_t size);

/* True if `id` (len bytes, not NUL-terminated) is a well-formed stream id
 * "<ms>-<seq>", each part decimal, without sign or overflow. */
bool ain__evlog_id_valid(const char *id, size_t len);

/* True if `key` (len bytes) may be an event key: 1..64 of [A-Za-z0-9._-]. */
bool ain__evlog_event_key_valid(const char *key, size_t len);

int ain_evlog_test(bool verbose);

#endif
