/* drive.h: the closed-loop client every configuration is measured with.
 *
 * One thread keeps `inflight` requests outstanding: it sends that many,
 * then sends one more for each reply until `n` were sent, and waits for all
 * replies. Each request body is AIN__BODY_LEN bytes whose first 8 bytes hold
 * the send time, so the reply itself says how long its round trip took; no
 * table of outstanding requests is needed, and the bare and our paths are
 * driven by exactly the same loop. The rest of the body is a fixed pattern
 * that each reply must carry back unchanged.
 */
#ifndef AIN_TOOLS_BENCH_DRIVE_H
#define AIN_TOOLS_BENCH_DRIVE_H

#include <stddef.h>
#include <stdint.h>

#define AIN__BODY_LEN 40

/* How one path sends a request and receives a reply. */
typedef struct {
    /* Sends `body` without blocking. Returns 0, or -1 with errno (EAGAIN:
     * try again shortly). */
    int (*send)(void *ctx, const void *body, size_t len);
    /* Waits up to `timeout_ms` for one reply and copies its body into
     * `body`. Returns the body length, or -1 (timeout, error, bad reply). */
    int (*recv)(void *ctx, void *body, size_t cap, int timeout_ms);
} ain__drive_ops_t;

/* The figures of one round. */
typedef struct {
    double rate;   /* round trips per second */
    double p50_us; /* round-trip time percentiles, microseconds */
    double p99_us;
} ain__round_t;

/* Figures over rounds: the median of each column and the spread of the
 * rate. */
typedef struct {
    int rounds;
    double rate, rate_min, rate_max;
    double p50_us, p99_us;
} ain__summary_t;

/* Runs one round of `n` requests with `inflight` outstanding. Returns 0
 * with `out` filled, or -1 (a reply did not come within 5 s, a send kept
 * failing, or a reply was wrong) with the reason written to stderr. May
 * block up to 5 s per reply. */
int ain__drive_round(const ain__drive_ops_t *ops, void *ctx, int n, int inflight,
                     ain__round_t *out);

/* Summarizes `count` rounds (count >= 1). */
void ain__drive_summarize(const ain__round_t *rounds, int count, ain__summary_t *out);

/* Sorts `v` and returns its median (count >= 1). */
double ain__drive_median(double *v, int count);

/* Monotonic time in nanoseconds. */
int64_t ain__drive_now_ns(void);

/* Sleeps about `ms` milliseconds. */
void ain__drive_sleep_ms(int ms);

#endif
