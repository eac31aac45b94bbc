/* broker_bench.c: ainbox-bench-broker, figures for the broker's request path.
 *
 * Measures, in one run so the figures are comparable: the bare libzmq
 * ceiling (bare.c) and our full envelope path (ours.c), over inproc and
 * tcp, with 1 and 100 requests in flight, each configuration for R rounds
 * (bare and ours alternate within a round, in alternating order), and the
 * re-dispatch time after a worker process is killed (redispatch.c). Prints
 * a table; it is not a test and has no pass/fail exit code beyond "a
 * measurement could not be made" (1) and "bad usage" (2). See README.md.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "tools/bench/bare.h"
#include "tools/bench/drive.h"
#include "tools/bench/ours.h"
#include "tools/bench/redispatch.h"

#define S_MAX_ROUNDS    99
#define S_REDISPATCH_MS 50 /* the acceptance target */
#define S_LEVELS        2  /* 1 and 100 in flight */

enum { S_BARE, S_OURS, S_PATHS };

typedef struct {
    int rounds, n1, n100, reps;
    bool inproc, tcp, redispatch;
} s_opts_t;

static const int s_inflight[S_LEVELS] = {1, 100};

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: ainbox-bench-broker [--rounds R] [--quick] [--only inproc|tcp|redispatch]\n"
            "                           [--n1 N] [--n100 N] [--reps K]\n"
            "  --rounds R   rounds per configuration, median reported (default 5)\n"
            "  --quick      a tenth of the requests, 3 re-dispatch repetitions\n"
            "  --only WHAT  run only the inproc, tcp or re-dispatch part\n"
            "  --n1 N       requests per round with 1 in flight (default 20000)\n"
            "  --n100 N     requests per round with 100 in flight (default 200000)\n"
            "  --reps K     re-dispatch repetitions (default 10)\n"
            "Prints round trips/s, p50/p99 round-trip microseconds and ours/bare for\n"
            "a bare libzmq proxy and for our broker + echo actor, then how long the\n"
            "broker takes to re-dispatch the request of a killed worker process.\n");
}

/* Reads a positive integer option value. Returns 0 or -1. */
static int s_int_arg(const char *text, int min, int max, int *out)
{
    char *end = NULL;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || !end || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int s_only(const char *what, s_opts_t *o)
{
    if (!what)
        return -1;
    o->inproc = strcmp(what, "inproc") == 0;
    o->tcp = strcmp(what, "tcp") == 0;
    o->redispatch = strcmp(what, "redispatch") == 0;
    return o->inproc || o->tcp || o->redispatch ? 0 : -1;
}

/* Parses argv into `o`. Returns 0, 1 (help shown) or -1 (bad usage). */
static int s_parse(int argc, char **argv, s_opts_t *o)
{
    *o = (s_opts_t){5, 20000, 200000, 10, true, true, true};
    bool quick = false;
    int n1 = 0, n100 = 0, reps = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--quick") == 0)
            quick = true;
        else if (strcmp(a, "--rounds") == 0 && ++i)
            rc = s_int_arg(v, 1, S_MAX_ROUNDS, &o->rounds);
        else if (strcmp(a, "--only") == 0 && ++i)
            rc = s_only(v, o);
        else if (strcmp(a, "--n1") == 0 && ++i)
            rc = s_int_arg(v, 100, 10000000, &n1);
        else if (strcmp(a, "--n100") == 0 && ++i)
            rc = s_int_arg(v, 1000, 100000000, &n100);
        else if (strcmp(a, "--reps") == 0 && ++i)
            rc = s_int_arg(v, 1, AIN__REDISPATCH_MAX_REPS, &reps);
        else
            rc = -1;
    }
    if (quick) {
        o->n1 /= 10;
        o->n100 /= 10;
        o->reps = 3;
    }
    o->n1 = n1 ? n1 : o->n1;
    o->n100 = n100 ? n100 : o->n100;
    o->reps = reps ? reps : o->reps;
    return rc;
}

/* ------------------------------------------------------------ printing */

static void s_header(const s_opts_t *o)
{
    double load[3] = {0, 0, 0};
    char host[64] = "?";
    gethostname(host, sizeof host);
    if (getloadavg(load, 3) < 3)
        load[0] = load[1] = load[2] = -1;
    printf("ainbox-bench-broker on %s: %ld CPUs online, load average %.2f %.2f %.2f at start\n",
           host, sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    if (!o->inproc && !o->tcp)
        return;
    printf("%d rounds per configuration (bare and ours alternate); figures: the median over\n"
           "rounds of each column, [min - max] of round trips/s; body %d bytes; requests per\n"
           "round: %d with 1 in flight, %d with 100 in flight\n\n",
           o->rounds, AIN__BODY_LEN, o->n1, o->n100);
    printf("%-9s %9s %-5s %12s  %-21s %9s %9s %10s\n", "transport", "in flight", "path",
           "round trip/s", "[min - max]", "p50 us", "p99 us", "ours/bare");
    fflush(stdout);
}

static void s_row(const char *transport, int inflight, const char *path, const ain__summary_t *s,
                  double ratio)
{
    char spread[40], r[16] = "";
    snprintf(spread, sizeof spread, "[%.0f - %.0f]", s->rate_min, s->rate_max);
    if (ratio > 0)
        snprintf(r, sizeof r, "%.2f", ratio);
    printf("%-9s %9d %-5s %12.0f  %-21s %9.1f %9.1f %10s\n", transport, inflight, path, s->rate,
           spread, s->p50_us, s->p99_us, r);
}

static void s_failed_row(const char *transport, int inflight, const char *path)
{
    printf("%-9s %9d %-5s %12s\n", transport, inflight, path, "FAILED");
}

/* ------------------------------------------------------------ measuring */

typedef struct {
    ain__round_t round[S_LEVELS][S_PATHS][S_MAX_ROUNDS];
    bool failed[S_LEVELS][S_PATHS];
} s_results_t;

static const ain__drive_ops_t *s_ops(int path)
{
    return path == S_BARE ? &ain__bare_ops : &ain__ours_ops;
}

/* A short unmeasured run of each path and level: connections, caches and
 * allocator pools warm up. Returns 0 or -1. */
static int s_warm_up(void *ctx[S_PATHS], const s_opts_t *o)
{
    ain__round_t ignored;
    for (int p = 0; p < S_PATHS; p++)
        for (int l = 0; l < S_LEVELS; l++)
            if (ain__drive_round(s_ops(p), ctx[p], l ? o->n100 / 20 : o->n1 / 20, s_inflight[l],
                                 &ignored) < 0)
                return -1;
    return 0;
}

static void s_rounds(void *ctx[S_PATHS], const s_opts_t *o, s_results_t *res)
{
    for (int r = 0; r < o->rounds; r++)
        for (int l = 0; l < S_LEVELS; l++)
            for (int k = 0; k < S_PATHS; k++) {
                int p = (k + r) % S_PATHS; /* who goes first alternates */
                if (res->failed[l][p])
                    continue;
                int n = l ? o->n100 : o->n1;
                if (ain__drive_round(s_ops(p), ctx[p], n, s_inflight[l], &res->round[l][p][r]) < 0)
                    res->failed[l][p] = true; /* its socket may hold stale replies now */
            }
}

static int s_report(const char *name, const s_opts_t *o, const s_results_t *res)
{
    int rc = 0;
    for (int l = 0; l < S_LEVELS; l++) {
        ain__summary_t s[S_PATHS];
        for (int p = 0; p < S_PATHS; p++) {
            if (res->failed[l][p]) {
                s_failed_row(name, s_inflight[l], p == S_BARE ? "bare" : "ours");
                rc = -1;
                continue;
            }
            ain__drive_summarize(res->round[l][p], o->rounds, &s[p]);
            bool ratio = p == S_OURS && !res->failed[l][S_BARE];
            s_row(name, s_inflight[l], p == S_BARE ? "bare" : "ours", &s[p],
                  ratio ? s[S_OURS].rate / s[S_BARE].rate : 0);
        }
    }
    fflush(stdout);
    return rc;
}

static int s_transport(const s_opts_t *o, bool tcp)
{
    const char *name = tcp ? "tcp" : "inproc";
    ain__bare_t *bare = ain__bare_new(tcp);
    ain__ours_t *ours = bare ? ain__ours_new(tcp, true) : NULL;
    s_results_t *res = calloc(1, sizeof *res);
    int rc = -1;
    void *ctx[S_PATHS] = {bare, ours};
    if (!ours || !res)
        fprintf(stderr, "bench: %s: setup failed\n", name);
    else if (s_warm_up(ctx, o) < 0)
        fprintf(stderr, "bench: %s: warm-up failed\n", name);
    else {
        s_rounds(ctx, o, res);
        rc = s_report(name, o, res);
    }
    if (rc < 0 && !(ours && res))
        printf("%-9s %s\n", name, "FAILED (setup; see stderr)");
    free(res);
    ain__ours_destroy(&ours);
    ain__bare_destroy(&bare);
    return rc;
}

static void s_redispatch_all(const ain__redispatch_t *r)
{
    printf("re-dispatch ms, each (sorted):");
    for (int i = 0; i < r->reps; i++)
        printf(" %.1f", r->ms[i]);
    printf("\n");
}

static int s_redispatch(const s_opts_t *o)
{
    ain__redispatch_t *r = AIN_NEW(ain__redispatch_t); /* large: holds every figure */
    int rc = -1;
    printf("\nre-dispatch: broker on tcp, 2 echo worker processes, kill -9 the one holding an\n"
           "ECHO_DELAY request; time from kill() until BROKER_WORKERS shows the survivor\n"
           "holding it (polled every 1 ms), %d repetitions\n",
           o->reps);
    fflush(stdout);
    if (ain__redispatch_run(o->reps, r) < 0) {
        printf("re-dispatch: FAILED (see stderr)\n");
    } else {
        s_redispatch_all(r);
        printf("re-dispatch ms: median %.1f  min %.1f  max %.1f  (%d measured, %d failed); "
               "target <= %d ms: %s\n",
               r->median_ms, r->min_ms, r->max_ms, r->reps, r->failed, S_REDISPATCH_MS,
               r->max_ms <= S_REDISPATCH_MS ? "met" : "NOT met");
        rc = r->failed ? -1 : 0;
    }
    free(r);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child-worker") == 0)
        return ain__redispatch_child(argv[2], argv[3]);
    s_opts_t o;
    int rc = s_parse(argc, argv, &o);
    if (rc != 0) {
        s_usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    s_header(&o);
    if (o.inproc)
        rc |= s_transport(&o, false);
    if (o.tcp)
        rc |= s_transport(&o, true);
    if (o.redispatch)
        rc |= s_redispatch(&o);
    return rc < 0 ? 1 : 0;
}
