/* redispatch.h: how fast the broker re-dispatches the request of a worker
 * process that died.
 *
 * The broker runs in this process on a 127.0.0.1 tcp port; two echo
 * workers run as child processes (this same binary, exec'ed in its
 * --child-worker mode, so no ZeroMQ state crosses a fork). A client sends
 * one ECHO_DELAY request (10 s delay) that lands on one of them; the
 * broker's admin service (BROKER_WORKERS) says which worker holds it, each
 * child having reported its instance id through a pipe. That child gets
 * SIGKILL; the clock runs from kill() until BROKER_WORKERS shows the
 * request held by the survivor, polled every millisecond. The survivor
 * would answer only after the 10 s delay, so the client's reply cannot be
 * the stop signal; the broker's own table is.
 */
#ifndef AIN_TOOLS_BENCH_REDISPATCH_H
#define AIN_TOOLS_BENCH_REDISPATCH_H

#define AIN__REDISPATCH_MAX_REPS 1000

typedef struct {
    int reps;   /* repetitions that produced a figure */
    int failed; /* repetitions that did not */
    double median_ms, min_ms, max_ms;
    double ms[AIN__REDISPATCH_MAX_REPS]; /* each figure, sorted */
} ain__redispatch_t;

/* Runs `reps` (<= AIN__REDISPATCH_MAX_REPS) repetitions (each with two fresh worker processes).
 * Returns 0 with `out` filled if at least one repetition worked, or -1. Children are killed and
 * reaped on every path; they also die with this process (PR_SET_PDEATHSIG). Blocks up to about 15 s
 * per repetition at worst. */
int ain__redispatch_run(int reps, ain__redispatch_t *out);

/* The body of `ainbox-bench-broker --child-worker ENDPOINT FD`: runs the
 * echo actor against the broker at ENDPOINT after writing its instance id
 * and a newline to file descriptor FD. Returns the process exit code. */
int ain__redispatch_child(const char *endpoint, const char *fd);

#endif
