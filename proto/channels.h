/* channels.h: the Redis pub/sub channels that processes share, and what
 * their messages hold. A new channel gets its name here, nowhere else.
 *
 *   ain:cache:inval  a write's invalidation, published by the cache actor
 *                    that made it (actors/cache/l2.c) in the same Lua
 *                    script that bumps the user's generation. A msgpack
 *                    map: {origin, sent_ms, user, prefixes: [key prefix,
 *                    ...]}, or {origin, sent_ms, everything: true} after a
 *                    clear of everything. Followed by every cache actor
 *                    (its L1) and every edge (the answers it serves
 *                    without asking, edge/inval.c).
 *   ain:rl:reset     a user's rate-limit reset (actors/ratelimit/redis.c),
 *                    so that every limiter drops its caches of that user.
 */
#ifndef AIN_PROTO_CHANNELS_H
#define AIN_PROTO_CHANNELS_H

#define AIN_CHANNEL_CACHE_INVAL     "ain:cache:inval"
#define AIN_CHANNEL_RATELIMIT_RESET "ain:rl:reset"

#endif
