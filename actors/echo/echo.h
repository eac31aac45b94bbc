/* echo.h: the echo actor (service "echo"): answers with what it was sent,
 * now or after a delay. Used by health checks, benchmarks and the fault
 * tests (kill a worker holding a delayed request). */
#ifndef AIN_ACTORS_ECHO_H
#define AIN_ACTORS_ECHO_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_echo_actor;

#endif
