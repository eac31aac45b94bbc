/* cache.h: the cache actor (service "cache"): the read side of the mail
 * store behind three layers, and its one writer.
 *
 * MAIL_LIST, MAIL_THREAD, MAIL_MESSAGE and MAIL_COUNTS answer a view of
 * the envelope user's mail from L1 (this process's memory, W-TinyLFU,
 * bounded in bytes), L2 (Redis, shared by every cache actor) or L3 (the
 * PostgreSQL mail store), with an ETag. MAIL_APPLY writes changes to the
 * store and invalidates what they touch in L2 and in every L1. CACHE_CLEAR
 * is the operators' clear. See actors/cache/README.md.
 */
#ifndef AIN_ACTORS_CACHE_H
#define AIN_ACTORS_CACHE_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_cache_actor;

#endif
