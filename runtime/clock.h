/* clock.h: the two clocks we use.
 *
 * Monotonic time for intervals, timers and liveness (never jumps); wall
 * time (Unix epoch) only for deadlines that cross processes and for
 * timestamps shown to people.
 */
#ifndef AIN_RUNTIME_CLOCK_H
#define AIN_RUNTIME_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ain_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t ain_clock_mono_ms(void)
{
    return ain_clock_mono_us() / 1000;
}

static inline int64_t ain_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
