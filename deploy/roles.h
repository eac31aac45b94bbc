/* roles.h: the roles an ainbox process can play, and the one table of
 * actors.
 *
 * The same code runs a role in the bundle (a supervised thread, inproc://)
 * and as its own process (`ainbox broker|edge|actor NAME`, tcp://); only
 * the endpoints in the ain_proc_t differ. This file is the only place that
 * knows every actor: adding one means one line in roles.c.
 */
#ifndef AIN_DEPLOY_ROLES_H
#define AIN_DEPLOY_ROLES_H

#include <stdbool.h>
#include <stdio.h>

#include <czmq.h>

#include "runtime/actor.h"
#include "runtime/proc.h"

/* The actor called `name`, or NULL. Borrowed, static. */
const ain_actor_def_t *ain_roles_actor(const char *name);

/* Writes the actor names, one per line with a summary, to `out`. */
void ain_roles_list_actors(FILE *out);

/* Arguments of the role runners below; borrowed by the running role. */
typedef struct {
    const ain_proc_t *proc;
    const ain_actor_def_t *def;
} ain_actor_role_t;

typedef struct {
    const ain_proc_t *proc;
    bool bind_config;          /* bind AINBOX_BROKER_BIND and the bus binds */
    const char *inproc_router; /* extra inproc endpoints (bundle), or NULL */
    const char *inproc_bus_in;
    const char *inproc_bus_out;
} ain_broker_role_t;

typedef struct {
    const ain_proc_t *proc;
} ain_edge_role_t;

/* Role bodies in the supervisor's shape (deploy/supervisor.h): signal
 * ready on `pipe`, run until "$TERM" (or a signal when `pipe` is NULL).
 * Return 0, or -1 on failure. */
int ain_role_broker(void *arg, zsock_t *pipe);
int ain_role_actor(void *arg, zsock_t *pipe);
int ain_role_edge(void *arg, zsock_t *pipe);

#endif
