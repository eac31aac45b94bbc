/* bundle.c: assembling the roles into one process (see bundle.h). */
#include "deploy/bundle.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy/roles.h"
#include "deploy/supervisor.h"
#include "runtime/alloc.h"

#define S_MAX_ACTORS 32

struct _ain_bundle_t {
    ain_proc_t *proc;
    ain_log_t *log;
    ain_supervisor_t *sup;
    char router[96], bus_in[96], bus_out[96];
    ain_broker_role_t broker;
    ain_actor_role_t actors[S_MAX_ACTORS];
    ain_edge_role_t edge;
};

/* Starts each actor of the comma list. Returns 0 or -1. */
static int s_start_actors(ain_bundle_t *self, const char *list)
{
    char *copy = ain_strdup(list), *save = NULL;
    int n = 0, rc = 0;
    for (char *name = strtok_r(copy, ", ", &save); name && rc == 0;
         name = strtok_r(NULL, ", ", &save)) {
        const ain_actor_def_t *def = ain_roles_actor(name);
        if (!def || n >= S_MAX_ACTORS) {
            ain_error(self->log, "unknown actor '%s' (see `ainbox actors`)", name);
            rc = -1;
            break;
        }
        self->actors[n] = (ain_actor_role_t){self->proc, def};
        rc = ain_supervisor_start(self->sup, name, ain_role_actor, &self->actors[n], AIN_RESTART);
        n++;
    }
    free(copy);
    return rc;
}

static char *s_join_actors(const ain_config_t *cfg)
{
    char *out = ain_strdup("");
    for (size_t i = 0; i < ain_config_count(cfg, AIN_CFG_AINBOX_ACTORS); i++) {
        const char *name = ain_config_item(cfg, AIN_CFG_AINBOX_ACTORS, i);
        if (strcmp(name, "monitor") == 0 && !ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING))
            continue;
        char *next = ain_sprintf("%s%s%s", out, *out ? "," : "", name);
        free(out);
        out = next;
    }
    return out;
}

ain_bundle_t *ain_bundle_new(const ain_config_t *cfg, const ain_bundle_opts_t *opts)
{
    ain_bundle_t *self = AIN_NEW(ain_bundle_t);
    self->proc = ain_proc_new(cfg);
    self->log = ain_proc_logger(self->proc, "bundle");
    uint64_t id = ain_proc_instance(self->proc);
    snprintf(self->router, sizeof self->router, "inproc://ainbox-%016" PRIx64, id);
    snprintf(self->bus_in, sizeof self->bus_in, "inproc://ainbox-%016" PRIx64 "-bus-in", id);
    snprintf(self->bus_out, sizeof self->bus_out, "inproc://ainbox-%016" PRIx64 "-bus-out", id);
    ain_proc_set_endpoints(self->proc, self->router, self->bus_in, self->bus_out);
    self->sup =
        ain_supervisor_new((int)ain_config_int(cfg, AIN_CFG_AINBOX_RESTART_MAX),
                           ain_config_int(cfg, AIN_CFG_AINBOX_RESTART_WINDOW_MS), self->log);
    self->broker =
        (ain_broker_role_t){self->proc, opts->bind_tcp, self->router, self->bus_in, self->bus_out};
    self->edge.proc = self->proc;
    char *actors = opts->actors ? ain_strdup(opts->actors) : s_join_actors(cfg);
    int rc =
        ain_supervisor_start(self->sup, "broker", ain_role_broker, &self->broker, AIN_PERMANENT);
    if (rc == 0)
        rc = s_start_actors(self, actors);
    if (rc == 0 && opts->edge)
        rc = ain_supervisor_start(self->sup, "edge", ain_role_edge, &self->edge, AIN_PERMANENT);
    free(actors);
    if (rc < 0) {
        ain_bundle_destroy(&self);
        return NULL;
    }
    ain_info(self->log, "bundle running");
    return self;
}

const ain_proc_t *ain_bundle_proc(const ain_bundle_t *self)
{
    return self->proc;
}

int ain_bundle_poll(ain_bundle_t *self, int timeout_ms)
{
    return ain_supervisor_poll(self->sup, timeout_ms);
}

void ain_bundle_destroy(ain_bundle_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_bundle_t *self = *self_p;
    ain_supervisor_destroy(&self->sup);
    ain_info(self->log, "bundle stopped");
    ain_log_destroy(&self->log);
    ain_proc_destroy(&self->proc);
    free(self);
    *self_p = NULL;
}
