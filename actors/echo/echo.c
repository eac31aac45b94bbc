/* echo.c: the echo actor.
 *
 *   ECHO         body -> the same body, at once
 *   ECHO_DELAY   {delay_ms, data} -> data after delay_ms (idempotent)
 *   ECHO_ONCE    the same, but not idempotent: the broker never re-sends it
 *   ECHO_FAULT   the actor fails as if it had crashed; refused (DENIED)
 *                unless AINBOX_ECHO_FAULTS=true (supervisor tests)
 *
 * A delayed answer is deferred with a timer, so one echo worker holds many
 * delayed requests at once (up to its credit) without blocking.
 */
#include "actors/echo/echo.h"

#include "proto/body.h"
#include "proto/msgtype.h"

#define S_MAX_DELAY_MS 600000

static int s_echo(ain_actor_t *actor, ain_request_t *req)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_request_reply(req, AIN_STATUS_OK, env->body, env->body_len);
    return 0;
}

/* Parses {delay_ms, data}; returns 0, or -1 (the body is invalid). */
static int s_parse_delay(const ain_envelope_t *env, ain_body_t *body, uint64_t *delay,
                         const uint8_t **data, size_t *len)
{
    *delay = 0;
    *data = NULL;
    *len = 0;
    if (ain_body_parse(body, env->body, env->body_len) != AIN_STATUS_OK ||
        ain_mp_get_u64(body->root, "delay_ms", delay) < 0 || *delay > S_MAX_DELAY_MS ||
        ain_mp_get_bin(body->root, "data", data, len) < 0)
        return -1;
    return 0;
}

static void s_answer_delayed(ain_actor_t *actor, void *arg)
{
    ain_request_t *req = arg;
    ain_body_t body;
    uint64_t delay;
    const uint8_t *data;
    size_t len;
    s_parse_delay(ain_request_envelope(req), &body, &delay, &data, &len);
    ain_request_reply(req, AIN_STATUS_OK, data, len);
    ain_body_release(&body);
}

static int s_delay(ain_actor_t *actor, ain_request_t *req)
{
    ain_body_t body;
    uint64_t delay;
    const uint8_t *data;
    size_t len;
    int rc = s_parse_delay(ain_request_envelope(req), &body, &delay, &data, &len);
    ain_body_release(&body);
    if (rc < 0)
        ain_request_fail(req, AIN_STATUS_INVALID, "body must be {delay_ms <= 600000, data: bin}");
    else
        ain_actor_timer(actor, (int)delay, false, s_answer_delayed, req);
    return 0;
}

static int s_fault(ain_actor_t *actor, ain_request_t *req)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    if (!ain_config_bool(cfg, AIN_CFG_AINBOX_ECHO_FAULTS)) {
        ain_request_fail(req, AIN_STATUS_DENIED, "faults are disabled (AINBOX_ECHO_FAULTS)");
        return 0;
    }
    ain_warn(ain_actor_log(actor), "ECHO_FAULT: failing on purpose");
    return -1;
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_ECHO, s_echo},
    {AIN_MSG_ECHO_DELAY, s_delay},
    {AIN_MSG_ECHO_ONCE, s_delay},
    {AIN_MSG_ECHO_FAULT, s_fault},
    {0, NULL},
};

const ain_actor_def_t ain_echo_actor = {
    .service = "echo",
    .handlers = s_handlers,
};
