/* log.h: leveled logging with context.
 *
 * One ain_log_t per component (an actor, the broker, the edge). Each line
 * goes to stderr in one write(2), so lines from threads never interleave:
 *
 *   2026-11-28T10:33:30.123Z WARN  echo: handler failed corr=7 user=42 trace=1f
 *
 * Warnings and errors are rate-limited per logger (a flood of hostile input
 * must not become a flood of log lines); what is suppressed is counted and
 * reported on the next line that gets through. Counts of warnings and errors
 * are kept for the metrics registry. Thread-safe.
 */
#ifndef AIN_RUNTIME_LOG_H
#define AIN_RUNTIME_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    AIN_LOG_ERROR = 0,
    AIN_LOG_WARN = 1,
    AIN_LOG_INFO = 2,
    AIN_LOG_DEBUG = 3,
} ain_log_level_t;

typedef struct _ain_log_t ain_log_t;

/* Request context printed after the message; zero fields are left out. */
typedef struct {
    uint64_t corr;
    uint64_t user;
    uint64_t trace;
} ain_log_ctx_t;

/* Creates a logger for `component` (copied). Caller owns it. */
ain_log_t *ain_log_new(const char *component, ain_log_level_t level);
void ain_log_destroy(ain_log_t **self_p);

/* Parses "error", "warn", "info" or "debug". Returns 0 or -1. */
int ain_log_level_parse(const char *text, ain_log_level_t *level);
const char *ain_log_level_name(ain_log_level_t level);

bool ain_log_enabled(const ain_log_t *self, ain_log_level_t level);
const char *ain_log_component(const ain_log_t *self);

/* Writes one line if `level` is enabled. `ctx` may be NULL. */
void ain_log_write(ain_log_t *self, ain_log_level_t level, const ain_log_ctx_t *ctx,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Lines written at ERROR and WARN since the logger was created. */
uint64_t ain_log_errors(const ain_log_t *self);
uint64_t ain_log_warnings(const ain_log_t *self);

#define AIN_LOG_AT(log, level, ...)                                                                \
    do {                                                                                           \
        if (ain_log_enabled((log), (level)))                                                       \
            ain_log_write((log), (level), NULL, __VA_ARGS__);                                      \
    } while (0)
#define ain_error(log, ...) AIN_LOG_AT(log, AIN_LOG_ERROR, __VA_ARGS__)
#define ain_warn(log, ...)  AIN_LOG_AT(log, AIN_LOG_WARN, __VA_ARGS__)
#define ain_info(log, ...)  AIN_LOG_AT(log, AIN_LOG_INFO, __VA_ARGS__)
#define ain_debug(log, ...) AIN_LOG_AT(log, AIN_LOG_DEBUG, __VA_ARGS__)

int ain_log_test(bool verbose);

#endif
