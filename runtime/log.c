/* log.c: one-write-per-line logging with a per-logger flood guard. */
#include "runtime/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/clock.h"

/* At most this many WARN/ERROR lines per second per logger. */
#define S_FLOOD_PER_SEC 50

struct _ain_log_t {
    char *component;
    ain_log_level_t level;
    atomic_uint_fast64_t errors;
    atomic_uint_fast64_t warnings;
    pthread_mutex_t flood_lock;
    int64_t flood_second;
    int flood_count;
    uint64_t suppressed;
};

static const char *s_names[] = {"error", "warn", "info", "debug"};
static const char *s_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

ain_log_t *ain_log_new(const char *component, ain_log_level_t level)
{
    ain_log_t *self = AIN_NEW(ain_log_t);
    self->component = ain_strdup(component);
    self->level = level;
    pthread_mutex_init(&self->flood_lock, NULL);
    return self;
}

void ain_log_destroy(ain_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_log_t *self = *self_p;
    pthread_mutex_destroy(&self->flood_lock);
    free(self->component);
    free(self);
    *self_p = NULL;
}

int ain_log_level_parse(const char *text, ain_log_level_t *level)
{
    for (int i = 0; i <= AIN_LOG_DEBUG; i++) {
        if (strcmp(text, s_names[i]) == 0) {
            *level = (ain_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *ain_log_level_name(ain_log_level_t level)
{
    return level <= AIN_LOG_DEBUG ? s_names[level] : "?";
}

bool ain_log_enabled(const ain_log_t *self, ain_log_level_t level)
{
    return self && level <= self->level;
}

const char *ain_log_component(const ain_log_t *self)
{
    return self->component;
}

uint64_t ain_log_errors(const ain_log_t *self)
{
    return atomic_load_explicit(&self->errors, memory_order_relaxed);
}

uint64_t ain_log_warnings(const ain_log_t *self)
{
    return atomic_load_explicit(&self->warnings, memory_order_relaxed);
}

/* Decides whether a WARN/ERROR line may be written now. Returns the number
 * of lines suppressed before it (to report), or -1 to suppress this one. */
static int64_t s_flood_gate(ain_log_t *self)
{
    int64_t now_s = ain_clock_mono_ms() / 1000;
    int64_t report = 0;
    pthread_mutex_lock(&self->flood_lock);
    if (now_s != self->flood_second) {
        self->flood_second = now_s;
        self->flood_count = 0;
    }
    if (self->flood_count >= S_FLOOD_PER_SEC) {
        self->suppressed++;
        report = -1;
    } else {
        self->flood_count++;
        report = (int64_t)self->suppressed;
        self->suppressed = 0;
    }
    pthread_mutex_unlock(&self->flood_lock);
    return report;
}

static size_t s_timestamp(char *buf, size_t size)
{
    int64_t ms = ain_clock_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
    return n + (m > 0 ? (size_t)m : 0);
}

/* Appends formatted text, truncating at the buffer's end. */
static size_t s_append(char *buf, size_t size, size_t used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t s_append(char *buf, size_t size, size_t used, const char *fmt, ...)
{
    if (used >= size)
        return used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return used;
    return used + (size_t)n < size ? used + (size_t)n : size - 1;
}

void ain_log_write(ain_log_t *self, ain_log_level_t level, const ain_log_ctx_t *ctx,
                   const char *fmt, ...)
{
    if (!ain_log_enabled(self, level))
        return;
    int64_t suppressed = 0;
    if (level <= AIN_LOG_WARN) {
        atomic_fetch_add_explicit(level == AIN_LOG_ERROR ? &self->errors : &self->warnings, 1,
                                  memory_order_relaxed);
        if ((suppressed = s_flood_gate(self)) < 0)
            return;
    }
    char line[2048];
    size_t n = s_timestamp(line, sizeof line);
    n = s_append(line, sizeof line, n, " %s %s: ", s_tags[level], self->component);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m > 0)
        n = n + (size_t)m < sizeof line ? n + (size_t)m : sizeof line - 1;
    if (ctx && ctx->corr)
        n = s_append(line, sizeof line, n, " corr=%" PRIu64, ctx->corr);
    if (ctx && ctx->user)
        n = s_append(line, sizeof line, n, " user=%" PRIu64, ctx->user);
    if (ctx && ctx->trace)
        n = s_append(line, sizeof line, n, " trace=%" PRIx64, ctx->trace);
    if (suppressed > 0)
        n = s_append(line, sizeof line, n, " (%" PRId64 " similar lines suppressed)", suppressed);
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, n);
    (void)rc;
}

int ain_log_test(bool verbose)
{
    ain_log_level_t level;
    if (ain_log_level_parse("warn", &level) != 0 || level != AIN_LOG_WARN ||
        ain_log_level_parse("loud", &level) == 0)
        return -1;
    ain_log_t *log = ain_log_new("logtest", AIN_LOG_ERROR);
    if (ain_log_enabled(log, AIN_LOG_INFO) || !ain_log_enabled(log, AIN_LOG_ERROR))
        return -1;
    /* Warnings below the level are not written and not counted. */
    ain_warn(log, "not shown");
    if (ain_log_warnings(log) != 0)
        return -1;
    ain_log_destroy(&log);
    ain_log_destroy(&log); /* safe twice */
    if (verbose)
        printf("log: levels\n");
    return 0;
}
