/* drive.c: the closed-loop client and the round statistics (see drive.h). */
#include "tools/bench/drive.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/alloc.h"

#define S_REPLY_TIMEOUT_MS 5000
#define S_SEND_RETRY_NS    (5 * 1000000000LL)

int64_t ain__drive_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ain__drive_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Stamps `body` with the send time and sends it; retries EAGAIN for up to
 * 5 s. Returns 0 or -1. */
static int s_send(const ain__drive_ops_t *ops, void *ctx, uint8_t *body)
{
    int64_t give_up = ain__drive_now_ns() + S_SEND_RETRY_NS;
    for (;;) {
        int64_t now = ain__drive_now_ns();
        memcpy(body, &now, sizeof now);
        if (ops->send(ctx, body, AIN__BODY_LEN) == 0)
            return 0;
        if (errno != EAGAIN || now > give_up) {
            fprintf(stderr, "bench: send failed: %s\n", strerror(errno));
            return -1;
        }
        ain__drive_sleep_ms(1);
    }
}

/* Receives one reply and returns its round-trip time in ns, or -1. */
static int64_t s_recv(const ain__drive_ops_t *ops, void *ctx, const uint8_t *sent)
{
    uint8_t back[AIN__BODY_LEN + 16];
    int len = ops->recv(ctx, back, sizeof back, S_REPLY_TIMEOUT_MS);
    if (len < 0) {
        fprintf(stderr, "bench: no reply within %d ms\n", S_REPLY_TIMEOUT_MS);
        return -1;
    }
    if (len != AIN__BODY_LEN || memcmp(back + 8, sent + 8, AIN__BODY_LEN - 8) != 0) {
        fprintf(stderr, "bench: a reply did not carry the request's body back\n");
        return -1;
    }
    int64_t then;
    memcpy(&then, back, sizeof then);
    return ain__drive_now_ns() - then;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void s_figures(int64_t *lat, int n, int64_t elapsed_ns, ain__round_t *out)
{
    qsort(lat, (size_t)n, sizeof *lat, s_cmp_i64);
    int i99 = (int)((int64_t)n * 99 / 100);
    out->rate = (double)n * 1e9 / (double)(elapsed_ns > 0 ? elapsed_ns : 1);
    out->p50_us = (double)lat[n / 2] / 1e3;
    out->p99_us = (double)lat[i99 < n ? i99 : n - 1] / 1e3;
}

int ain__drive_round(const ain__drive_ops_t *ops, void *ctx, int n, int inflight, ain__round_t *out)
{
    uint8_t body[AIN__BODY_LEN];
    for (int i = 8; i < AIN__BODY_LEN; i++)
        body[i] = (uint8_t)('a' + i % 26);
    int64_t *lat = ain_calloc((size_t)n, sizeof *lat);
    int sent = 0, got = 0, rc = 0;
    int64_t start = ain__drive_now_ns();
    while (rc == 0 && sent < n && sent < inflight) {
        rc = s_send(ops, ctx, body);
        sent++;
    }
    while (rc == 0 && got < n) {
        int64_t rtt = s_recv(ops, ctx, body);
        if (rtt < 0) {
            rc = -1;
            break;
        }
        lat[got++] = rtt;
        if (sent < n) {
            rc = s_send(ops, ctx, body);
            sent++;
        }
    }
    if (rc == 0)
        s_figures(lat, n, ain__drive_now_ns() - start, out);
    else
        fprintf(stderr, "bench: round failed after %d of %d replies\n", got, n);
    free(lat);
    return rc;
}

double ain__drive_median(double *v, int count)
{
    qsort(v, (size_t)count, sizeof *v, s_cmp_double);
    return count % 2 ? v[count / 2] : (v[count / 2 - 1] + v[count / 2]) / 2;
}

void ain__drive_summarize(const ain__round_t *rounds, int count, ain__summary_t *out)
{
    double *v = ain_calloc((size_t)count, sizeof *v);
    out->rounds = count;
    for (int i = 0; i < count; i++)
        v[i] = rounds[i].rate;
    out->rate = ain__drive_median(v, count);
    out->rate_min = v[0];
    out->rate_max = v[count - 1];
    for (int i = 0; i < count; i++)
        v[i] = rounds[i].p50_us;
    out->p50_us = ain__drive_median(v, count);
    for (int i = 0; i < count; i++)
        v[i] = rounds[i].p99_us;
    out->p99_us = ain__drive_median(v, count);
    free(v);
}
