/* monitor.c: the monitor actor (see monitor.h).
 *
 * It keeps only the latest report per process (reports.c), so its memory
 * is bounded by the number of processes, not by time. A process whose last
 * report is older than three intervals is shown as stale; after twenty it
 * is forgotten.
 */
#include "actors/monitor/monitor.h"

#include <stdlib.h>

#include "actors/monitor/reports.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_MAX_PROCESSES 1024

typedef struct {
    ain_reports_t *reports;
    int64_t interval_ms;
    ain_metric_t *received, *rejected, *processes;
} s_state_t;

static int s_overview(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    int64_t now = ain_clock_mono_ms();
    ain_reports_expire(st->reports, now, 20 * st->interval_ms);
    msgpack_packer *pk = ain_actor_body(actor);
    msgpack_pack_map(pk, 4);
    ain_mp_pack_kv_i64(pk, "uptime_ms", ain_proc_uptime_ms(ain_actor_proc(actor)));
    ain_mp_pack_kv_i64(pk, "timestamp_ms", ain_clock_wall_ms());
    ain_mp_pack_kv_i64(pk, "interval_ms", st->interval_ms);
    ain_mp_pack_str(pk, "processes");
    ain_reports_pack(st->reports, pk, now, 3 * st->interval_ms);
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

static int s_on_event(ain_actor_t *actor, const ain_bus_msg_t *msg)
{
    s_state_t *st = ain_actor_state(actor);
    if (msg->env.type != AIN_MSG_METRICS_REPORT ||
        ain_reports_put(st->reports, msg->env.body, msg->env.body_len, ain_clock_mono_ms()) < 0) {
        ain_metric_inc(st->rejected);
        ain_warn(ain_actor_log(actor), "malformed metrics report ignored");
        return 0;
    }
    ain_metric_inc(st->received);
    ain_metric_set(st->processes, (int64_t)ain_reports_size(st->reports));
    return 0;
}

static int s_start(ain_actor_t *actor)
{
    s_state_t *st = AIN_NEW(s_state_t);
    ain_metrics_t *m = ain_actor_metrics(actor);
    st->reports = ain_reports_new(S_MAX_PROCESSES);
    st->interval_ms =
        ain_config_int(ain_proc_config(ain_actor_proc(actor)), AIN_CFG_AINBOX_METRICS_INTERVAL_MS);
    st->received = ain_metrics_counter(m, "reports.received");
    st->rejected = ain_metrics_counter(m, "reports.rejected");
    st->processes = ain_metrics_gauge(m, "processes");
    if (ain_actor_subscribe(actor, AIN_TOPIC_METRICS) < 0) {
        ain_reports_destroy(&st->reports);
        free(st);
        return -1;
    }
    ain_actor_set_state(actor, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    ain_reports_destroy(&st->reports);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_MONITOR_OVERVIEW, s_overview},
    {0, NULL},
};

const ain_actor_def_t ain_monitor_actor = {
    .service = "monitor",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    .on_event = s_on_event,
};
