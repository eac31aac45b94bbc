/* sync.h: the sync actor (service "sync"): provider mail into the store. See README.md. */
#ifndef AIN_ACTORS_SYNC_SYNC_H
#define AIN_ACTORS_SYNC_SYNC_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_sync_actor;

#endif
