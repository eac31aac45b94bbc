/* stats.c: GET /stats, the monitor's overview of every process.
 *
 * Keeps the original server's top-level keys where they still mean
 * something (uptime, memory, timestamp, connections) and adds `processes`:
 * the latest metrics of each broker, edge and actor, as collected by the
 * monitor actor from the bus. The cache, job and rate-limit sections join
 * when those actors exist.
 */
#include "edge/internal.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"

int ain__stats(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (!ain_config_bool(ain_proc_config(edge->proc), AIN_CFG_ENABLE_MONITORING))
        return ain__http_fail(http, AIN_STATUS_UNAVAILABLE,
                              "monitoring is disabled (ENABLE_MONITORING=false)");
    int status;
    json_t *overview =
        ain__http_call_json(http, "monitor", AIN_MSG_MONITOR_OVERVIEW, 0, NULL, 0, &status);
    if (!overview)
        return status;
    json_t *processes = json_incref(json_object_get(overview, "processes"));
    json_decref(overview);
    char now[40];
    ain__http_iso_time(ain_clock_wall_ms(), now, sizeof now);
    json_t *body =
        json_pack("{s:I,s:{s:I},s:s,s:{s:i,s:i},s:o}", "uptime",
                  (json_int_t)(ain_proc_uptime_ms(edge->proc) / 1000), "memory", "rss",
                  (json_int_t)ain_proc_rss_bytes(), "timestamp", now, "connections",
                  "activeConnections", (int)ain_metric_get(edge->m.streams), "maxConnections",
                  edge->max_streams, "processes", processes ? processes : json_array());
    return ain__http_json(http, 200, body);
}
