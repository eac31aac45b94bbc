/* main.c: the `ainbox` command: one binary, every role.
 *
 *   ainbox [--config FILE] COMMAND [ARGS]
 *
 * `run` is the single-node bundle (every role as a thread over inproc://);
 * `broker`, `edge` and `actor NAME` run one role as its own process over
 * tcp://, on this host or another. The rest are operator tools. Exit
 * status: 0 done, 1 failed while running, 2 bad usage or configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deploy/bundle.h"
#include "deploy/roles.h"
#include "deploy/supervisor.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/curve.h"
#include "runtime/migrate.h"
#include "runtime/proc.h"
#include "runtime/sdnotify.h"
#include "runtime/signal.h"

extern char **environ;

#define S_VERSION "0.1.0"

typedef struct {
    const ain_config_t *cfg;
    int argc;
    char **argv; /* the command's own arguments */
} s_ctx_t;

static int s_usage(void);

/* Applies migrations if DATABASE_URL is set (and, for `run`, if
 * AINBOX_AUTO_MIGRATE allows). Returns 0 or -1. */
static int s_migrate(const ain_config_t *cfg, bool status_only)
{
    const char *url = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    ain_log_level_t level = AIN_LOG_INFO;
    ain_log_level_parse(ain_config_str(cfg, AIN_CFG_LOG_LEVEL), &level);
    ain_log_t *log = ain_log_new("migrate", level);
    ain_migrate_result_t result;
    char *error = NULL;
    int rc = ain_migrate(url, ain_config_str(cfg, AIN_CFG_AINBOX_MIGRATIONS_DIR), status_only, log,
                         &result, &error);
    if (rc < 0)
        ain_error(log, "%s", error);
    else if (status_only)
        printf("%d applied, %d pending\n", result.applied_before, result.pending);
    else
        ain_info(log, "schema up to date: %d applied before, %d now", result.applied_before,
                 result.applied_now);
    free(error);
    ain_log_destroy(&log);
    return rc;
}

/* The main thread's loop while role threads run, until SIGTERM/SIGINT or a failure of what
 * `poll` watches. Under systemd (deploy/systemd, Type=notify) it tells the manager READY=1 (every
 * role started), WATCHDOG=1 every half WatchdogSec from this loop, which also reaps and restarts
 * role threads (a process whose supervision is stuck is killed and restarted), and STOPPING=1. */
static int s_supervise(int (*poll)(void *arg, int timeout_ms), void *arg)
{
    ain_sd_notify("READY=1");
    int64_t watchdog_ms = ain_sd_watchdog_ms(), next_watchdog = 0;
    int rc = 0;
    while (rc == 0 && ain_signal_wait(0) == 0) {
        if (poll(arg, 100) < 0)
            rc = 1;
        int64_t now = ain_clock_mono_ms();
        if (watchdog_ms && now >= next_watchdog) {
            ain_sd_notify("WATCHDOG=1");
            next_watchdog = now + watchdog_ms;
        }
    }
    ain_sd_notify("STOPPING=1");
    return rc;
}

static int s_poll_bundle(void *bundle, int timeout_ms)
{
    return ain_bundle_poll(bundle, timeout_ms);
}

static int s_poll_supervisor(void *sup, int timeout_ms)
{
    return ain_supervisor_poll(sup, timeout_ms);
}

static int s_cmd_run(s_ctx_t *ctx)
{
    if (ain_config_str(ctx->cfg, AIN_CFG_DATABASE_URL) &&
        ain_config_bool(ctx->cfg, AIN_CFG_AINBOX_AUTO_MIGRATE) && s_migrate(ctx->cfg, false) < 0)
        return 1;
    /* Signals go to this thread only; every role thread inherits the mask. */
    ain_signal_block();
    ain_bundle_opts_t opts = {true, true, NULL};
    ain_bundle_t *bundle = ain_bundle_new(ctx->cfg, &opts);
    if (!bundle)
        return 1;
    int rc = s_supervise(s_poll_bundle, bundle);
    ain_bundle_destroy(&bundle);
    return rc;
}

/* Runs one role until SIGTERM/SIGINT: in this thread; or, under a service manager
 * ($NOTIFY_SOCKET), as the one thread of a supervisor (no restarts: the manager restarts the
 * process) while this thread notifies the manager and feeds its watchdog, as `run` does. */
static int s_run_role(const ain_proc_t *proc, const char *name, ain_child_fn *fn, void *arg)
{
    if (!getenv("NOTIFY_SOCKET"))
        return fn(arg, NULL) == 0 ? 0 : 1;
    ain_signal_block();
    ain_log_t *log = ain_proc_logger(proc, "main");
    ain_supervisor_t *sup = ain_supervisor_new(0, 60000, log);
    int rc = ain_supervisor_start(sup, name, fn, arg, AIN_PERMANENT) == 0
                 ? s_supervise(s_poll_supervisor, sup)
                 : 1;
    ain_supervisor_destroy(&sup);
    ain_log_destroy(&log);
    return rc;
}

static int s_cmd_broker(s_ctx_t *ctx)
{
    ain_proc_t *proc = ain_proc_new(ctx->cfg);
    ain_broker_role_t role = {proc, true, NULL, NULL, NULL};
    int rc = s_run_role(proc, "broker", ain_role_broker, &role);
    ain_proc_destroy(&proc);
    return rc;
}

static int s_cmd_edge(s_ctx_t *ctx)
{
    ain_proc_t *proc = ain_proc_new(ctx->cfg);
    ain_edge_role_t role = {proc};
    int rc = s_run_role(proc, "edge", ain_role_edge, &role);
    ain_proc_destroy(&proc);
    return rc;
}

static int s_cmd_actor(s_ctx_t *ctx)
{
    const ain_actor_def_t *def = ctx->argc == 1 ? ain_roles_actor(ctx->argv[0]) : NULL;
    if (!def) {
        fprintf(stderr, "ainbox actor: name one actor of:\n");
        ain_roles_list_actors(stderr);
        return 2;
    }
    ain_proc_t *proc = ain_proc_new(ctx->cfg);
    ain_actor_role_t role = {proc, def};
    int rc = s_run_role(proc, def->service, ain_role_actor, &role);
    ain_proc_destroy(&proc);
    return rc;
}

static int s_cmd_actors(s_ctx_t *ctx)
{
    ain_roles_list_actors(stdout);
    return 0;
}

static int s_cmd_config(s_ctx_t *ctx)
{
    bool json = ctx->argc == 1 && strcmp(ctx->argv[0], "--json") == 0;
    if (ctx->argc > (json ? 1 : 0))
        return s_usage();
    ain_config_print(ctx->cfg, stdout, json);
    return 0;
}

static int s_cmd_migrate(s_ctx_t *ctx)
{
    bool status = ctx->argc == 1 && strcmp(ctx->argv[0], "--status") == 0;
    if (ctx->argc > (status ? 1 : 0))
        return s_usage();
    if (!ain_config_str(ctx->cfg, AIN_CFG_DATABASE_URL)) {
        fprintf(stderr, "ainbox migrate: DATABASE_URL is not set\n");
        return 2;
    }
    return s_migrate(ctx->cfg, status) == 0 ? 0 : 1;
}

/* True if every item of the comma list `roles` is a role the broker knows. */
static bool s_roles_valid(const char *roles)
{
    static const char *const known[] = {"edge",      "worker",     "admin",
                                        "publisher", "subscriber", "broker"};
    char *copy = strdup(roles), *save = NULL;
    bool ok = copy && roles[0];
    for (char *tok = copy ? strtok_r(copy, ", ", &save) : NULL; tok && ok;
         tok = strtok_r(NULL, ", ", &save)) {
        ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok = ok || strcmp(tok, known[i]) == 0;
    }
    free(copy);
    return ok;
}

/* ainbox keygen NAME --role ROLES [--services LIST] [--calls LIST] [--dir DIR] */
static int s_cmd_keygen(s_ctx_t *ctx)
{
    const char *name = NULL, *role = NULL, *services = NULL, *calls = NULL, *dir = ".";
    for (int i = 0; i < ctx->argc; i++) {
        const char **opt = strcmp(ctx->argv[i], "--role") == 0       ? &role
                           : strcmp(ctx->argv[i], "--services") == 0 ? &services
                           : strcmp(ctx->argv[i], "--calls") == 0    ? &calls
                           : strcmp(ctx->argv[i], "--dir") == 0      ? &dir
                                                                     : NULL;
        if (opt && i + 1 < ctx->argc)
            *opt = ctx->argv[++i];
        else if (!opt && !name && ctx->argv[i][0] != '-')
            name = ctx->argv[i];
        else
            return s_usage();
    }
    if (!name || !role || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(name) ||
        name[0] == '.') {
        fprintf(stderr, "ainbox keygen NAME --role ROLES: NAME of [a-z0-9._-], ROLES a comma list "
                        "of edge, worker, admin, publisher, subscriber (or broker: the broker's "
                        "own key)\n");
        return 2;
    }
    if (!s_roles_valid(role) || (strstr(role, "worker") && !services)) {
        fprintf(stderr, "ainbox keygen: unknown role in '%s', or a worker without --services\n",
                role);
        return 2;
    }
    const char *meta[] = {
        "name", name, "role", role, services ? "services" : NULL, services, calls ? "calls" : NULL,
        calls,  NULL};
    /* Skip the pairs that were not given. */
    const char *given[9];
    size_t n = 0;
    for (size_t i = 0; i + 1 < sizeof meta / sizeof meta[0]; i += 2)
        if (meta[i]) {
            given[n++] = meta[i];
            given[n++] = meta[i + 1];
        }
    given[n] = NULL;
    char pub[AIN_CURVE_KEY_TXT], *error = NULL;
    if (ain_curve_keygen(dir, name, given, pub, &error) < 0) {
        fprintf(stderr, "ainbox keygen: %s\n", error);
        free(error);
        return 1;
    }
    bool broker = strcmp(role, "broker") == 0;
    printf("%s/%s.cert         public key %s (role %s): %s\n"
           "%s/%s.cert_secret  this process's AINBOX_CURVE_SECRET; keep it on its host only\n",
           dir, name, pub, role,
           broker ? "every client's AINBOX_CURVE_BROKER_KEY"
                  : "copy it to the broker's AINBOX_CURVE_ALLOW_DIR",
           dir, name);
    return 0;
}

static int s_cmd_version(s_ctx_t *ctx)
{
    printf("ainbox %s\n", S_VERSION);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(s_ctx_t *ctx);
    const char *args, *help;
} s_commands[] = {
    {"run", s_cmd_run, "", "the single-node bundle: broker, edge and actors as threads"},
    {"broker", s_cmd_broker, "", "the broker alone (binds AINBOX_BROKER_BIND and the bus)"},
    {"edge", s_cmd_edge, "", "the HTTP edge alone (connects to AINBOX_BROKER)"},
    {"actor", s_cmd_actor, "NAME", "one actor alone (connects to AINBOX_BROKER)"},
    {"actors", s_cmd_actors, "", "list the actors"},
    {"config", s_cmd_config, "[--json]", "print the effective configuration, secrets masked"},
    {"migrate", s_cmd_migrate, "[--status]", "apply (or count) pending schema migrations"},
    {"keygen", s_cmd_keygen, "NAME --role R [...]",
     "write a CurveZMQ key pair: NAME.cert (public) and NAME.cert_secret"},
    {"version", s_cmd_version, "", "print the version"},
};

static int s_usage(void)
{
    fprintf(stderr, "usage: ainbox [--config FILE] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        char left[40];
        snprintf(left, sizeof left, "%s %s", s_commands[i].name, s_commands[i].args);
        fprintf(stderr, "  %-22s %s\n", left, s_commands[i].help);
    }
    fprintf(stderr, "\nConfiguration comes from the environment and an optional .env-style file\n"
                    "(--config FILE or AINBOX_CONFIG); `ainbox config` shows every setting.\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--config") == 0) {
        file = argv[i + 1];
        i += 2;
    }
    if (i >= argc || strcmp(argv[i], "help") == 0 || strcmp(argv[i], "--help") == 0 ||
        strcmp(argv[i], "-h") == 0)
        return s_usage();
    for (size_t c = 0; c < sizeof s_commands / sizeof s_commands[0]; c++) {
        if (strcmp(argv[i], s_commands[c].name) != 0)
            continue;
        char *error = NULL;
        ain_config_t *cfg = ain_config_load(environ, file, stderr, &error);
        if (!cfg) {
            fprintf(stderr, "ainbox: configuration error: %s\n", error);
            free(error);
            return 2;
        }
        ain_signal_install();
        s_ctx_t ctx = {cfg, argc - i - 1, argv + i + 1};
        int rc = s_commands[c].fn(&ctx);
        ain_config_destroy(&cfg);
        return rc;
    }
    fprintf(stderr, "ainbox: unknown command '%s'\n", argv[i]);
    return s_usage();
}
