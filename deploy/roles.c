/* roles.c: the actor table and the role runners (see roles.h). */
#include "deploy/roles.h"

#include <string.h>

#include "actors/accounts/accounts.h"
#include "actors/cache/cache.h"
#include "actors/echo/echo.h"
#include "actors/events/events.h"
#include "actors/jobs/jobs.h"
#include "actors/loadgen/loadgen.h"
#include "actors/monitor/monitor.h"
#include "actors/ratelimit/ratelimit.h"
#include "actors/session/session.h"
#include "actors/sync/sync.h"
#include "broker/broker.h"
#include "edge/edge.h"

static const struct {
    const char *name;
    const ain_actor_def_t *def;
    const char *summary;
} s_actors[] = {
    {"monitor", &ain_monitor_actor, "collects every process's metrics; answers GET /stats"},
    {"events", &ain_events_actor,
     "the one writer of user events: log in Redis, bus u/<user>/, replay"},
    {"cache", &ain_cache_actor,
     "the mail store's read side (L1, L2 Redis, L3 PostgreSQL), its writes"},
    {"ratelimit", &ain_ratelimit_actor,
     "provider quotas and the user API limit, shared across hosts (Redis)"},
    {"session", &ain_session_actor,
     "users and sign-in sessions (PostgreSQL): open, refresh, revoke, profile, terms"},
    {"accounts", &ain_accounts_actor,
     "provider accounts (PostgreSQL): OAuth sign-in completion, sealed refresh tokens"},
    {"jobs", &ain_jobs_actor,
     "the durable job queue (PostgreSQL): priorities, leases, retries, dead letters"},
    {"sync", &ain_sync_actor,
     "provider mail into the store: Gmail backfill and history (JOB_RUN), push, poll"},
    {"echo", &ain_echo_actor, "answers with what it is sent (diagnostics, benchmarks)"},
    {"loadgen", &ain_loadgen_actor, "benchmarks only: publishes timed events for N users"},
};

const ain_actor_def_t *ain_roles_actor(const char *name)
{
    for (size_t i = 0; i < sizeof s_actors / sizeof s_actors[0]; i++)
        if (strcmp(s_actors[i].name, name) == 0)
            return s_actors[i].def;
    return NULL;
}

void ain_roles_list_actors(FILE *out)
{
    for (size_t i = 0; i < sizeof s_actors / sizeof s_actors[0]; i++)
        fprintf(out, "  %-10s %s\n", s_actors[i].name, s_actors[i].summary);
}

int ain_role_broker(void *arg, zsock_t *pipe)
{
    ain_broker_role_t *role = arg;
    ain_broker_t *broker = ain_broker_new(role->proc);
    int rc = 0;
    if (role->inproc_router)
        rc |= ain_broker_bind(broker, AIN_BROKER_ROUTER, role->inproc_router) |
              ain_broker_bind(broker, AIN_BROKER_BUS_IN, role->inproc_bus_in) |
              ain_broker_bind(broker, AIN_BROKER_BUS_OUT, role->inproc_bus_out);
    if (rc == 0 && role->bind_config)
        rc = ain_broker_bind_config(broker);
    if (rc == 0)
        rc = ain_broker_run(broker, pipe);
    ain_broker_destroy(&broker);
    return rc;
}

int ain_role_actor(void *arg, zsock_t *pipe)
{
    ain_actor_role_t *role = arg;
    return ain_actor_run(role->def, role->proc, pipe);
}

int ain_role_edge(void *arg, zsock_t *pipe)
{
    ain_edge_role_t *role = arg;
    ain_edge_t *edge = ain_edge_new(role->proc);
    if (!edge)
        return -1;
    int rc = ain_edge_run(edge, pipe);
    ain_edge_destroy(&edge);
    return rc;
}
