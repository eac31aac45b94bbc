/* proc.c: the per-process context (see proc.h). */
#include "runtime/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include <czmq.h>

#include "runtime/alloc.h"
#include "runtime/clock.h"

struct _ain_proc_t {
    void *zmq;
    const ain_config_t *cfg;
    uint64_t instance;
    int64_t started_ms;
    char *broker, *bus_in, *bus_out;
    ain_log_level_t level;
};

uint64_t ain_random_u64(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
            v = (uint64_t)ain_clock_mono_us() ^ ((uint64_t)getpid() << 32);
    }
    return v;
}

ain_proc_t *ain_proc_new(const ain_config_t *cfg)
{
    ain_proc_t *self = AIN_NEW(ain_proc_t);
    /* CZMQ must not install its own SIGINT handler: signal.c owns signals. */
    zsys_handler_set(NULL);
    self->zmq = zsys_init();
    self->cfg = cfg;
    /* 63 bits: instance ids travel through JSON, whose integers are signed. */
    self->instance = (ain_random_u64() >> 1) | 1;
    self->started_ms = ain_clock_mono_ms();
    if (ain_log_level_parse(ain_config_str(cfg, AIN_CFG_LOG_LEVEL), &self->level) < 0)
        self->level = AIN_LOG_INFO;
    ain_proc_set_endpoints(self, ain_config_str(cfg, AIN_CFG_AINBOX_BROKER),
                           ain_config_str(cfg, AIN_CFG_AINBOX_BUS_IN),
                           ain_config_str(cfg, AIN_CFG_AINBOX_BUS_OUT));
    return self;
}

void ain_proc_destroy(ain_proc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_proc_t *self = *self_p;
    free(self->broker);
    free(self->bus_in);
    free(self->bus_out);
    free(self);
    *self_p = NULL;
}

void ain_proc_set_endpoints(ain_proc_t *self, const char *broker, const char *bus_in,
                            const char *bus_out)
{
    free(self->broker);
    free(self->bus_in);
    free(self->bus_out);
    self->broker = ain_strdup(broker);
    self->bus_in = ain_strdup(bus_in);
    self->bus_out = ain_strdup(bus_out);
}

void *ain_proc_zmq(const ain_proc_t *self)
{
    return self->zmq;
}

const ain_config_t *ain_proc_config(const ain_proc_t *self)
{
    return self->cfg;
}

const char *ain_proc_host(const ain_proc_t *self)
{
    return ain_config_str(self->cfg, AIN_CFG_AINBOX_HOST);
}

uint64_t ain_proc_instance(const ain_proc_t *self)
{
    return self->instance;
}

int64_t ain_proc_uptime_ms(const ain_proc_t *self)
{
    return ain_clock_mono_ms() - self->started_ms;
}

const char *ain_proc_broker(const ain_proc_t *self)
{
    return self->broker;
}

const char *ain_proc_bus_in(const ain_proc_t *self)
{
    return self->bus_in;
}

const char *ain_proc_bus_out(const ain_proc_t *self)
{
    return self->bus_out;
}

ain_log_t *ain_proc_logger(const ain_proc_t *self, const char *component)
{
    return ain_log_new(component, self->level);
}

int64_t ain_proc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f)
        return 0;
    int n = fscanf(f, "%ld %ld", &pages, &resident);
    fclose(f);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : 0;
}
