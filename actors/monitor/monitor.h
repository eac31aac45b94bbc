/* monitor.h: the monitor actor (service "monitor"): collects the metrics
 * every process publishes on the bus (topics m/<host>/<role>/) and answers
 * MONITOR_OVERVIEW, which the edge serves as GET /stats. Alert rules come
 * with the monitoring issue. */
#ifndef AIN_ACTORS_MONITOR_H
#define AIN_ACTORS_MONITOR_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_monitor_actor;

#endif
