/* policy.c: the jobs actor's pure decisions (see policy.h). */
#include "actors/jobs/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/body.h"
#include "runtime/mpjson.h"

static const char *const s_prio_names[AIN_JOBS_PRIOS] = {"high", "medium", "low"};

int ain_jobs_prio(const char *name, size_t len)
{
    for (int i = 0; i < AIN_JOBS_PRIOS; i++)
        if (strlen(s_prio_names[i]) == len && memcmp(s_prio_names[i], name, len) == 0)
            return i;
    return -1;
}

const char *ain_jobs_prio_name(int prio)
{
    return prio >= 0 && prio < AIN_JOBS_PRIOS ? s_prio_names[prio] : "?";
}

int ain_jobs_pools_parse(const char *text, int out[AIN_JOBS_PRIOS])
{
    int got[AIN_JOBS_PRIOS], sum = 0;
    const char *p = text;
    for (int i = 0; i < AIN_JOBS_PRIOS; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return -1;
        long v = strtol(p, &end, 10);
        if (v > AIN_JOBS_POOL_MAX || end - p > 4)
            return -1;
        got[i] = (int)v;
        sum += got[i];
        p = end;
        if (i < AIN_JOBS_PRIOS - 1 && *p++ != '/')
            return -1;
    }
    if (*p || sum == 0)
        return -1;
    memcpy(out, got, sizeof got);
    return 0;
}

int64_t ain_jobs_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double unit)
{
    int64_t d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    if (unit < 0 || unit >= 1)
        unit = 0;
    return d / 2 + (int64_t)((double)(d - d / 2) * unit);
}

/* The result word of a reply body; -1 when absent or unknown. */
static int s_result(const msgpack_object *body)
{
    static const struct {
        const char *name;
        ain_jobs_result_t r;
    } names[] = {{"done", AIN_JOBS_R_DONE},
                 {"retry", AIN_JOBS_R_RETRY},
                 {"delay", AIN_JOBS_R_DELAY},
                 {"continue", AIN_JOBS_R_CONTINUE},
                 {"fail", AIN_JOBS_R_FAIL}};
    const char *s;
    size_t n;
    if (ain_mp_get_str(body, "result", &s, &n) != 1)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0)
            return (int)names[i].r;
    return -1;
}

void ain_jobs_read_reply(ain_status_t status, const msgpack_object *body, ain_jobs_result_t *result,
                         int64_t *delay_ms, const msgpack_object **payload, char *error,
                         size_t error_size)
{
    *result = AIN_JOBS_R_LOST;
    *delay_ms = -1;
    *payload = NULL;
    if (status != AIN_STATUS_OK) {
        snprintf(error, error_size, "run answered %s", ain_status_name(status));
        return;
    }
    int r = body ? s_result(body) : -1;
    if (r < 0) {
        snprintf(error, error_size, "run answered without a known result");
        return;
    }
    int64_t d;
    if (ain_mp_get_i64(body, "delay_ms", &d) == 1)
        *delay_ms = d < 0 ? 0 : d > AIN_JOBS_DELAY_MAX ? AIN_JOBS_DELAY_MAX : d;
    const msgpack_object *p = ain_mp_get(body, "payload");
    if (p && p->type == MSGPACK_OBJECT_MAP)
        *payload = p;
    *result = (ain_jobs_result_t)r;
    const char *e;
    size_t n;
    if (ain_mp_get_str(body, "error", &e, &n) == 1) {
        /* Stored and shown to operators: printable ASCII only, whatever the worker sent. */
        size_t k = n < error_size - 1 ? n : error_size - 1;
        for (size_t i = 0; i < k; i++)
            error[i] = e[i] >= 0x20 && e[i] < 0x7f ? e[i] : '?';
        error[k] = '\0';
    } else {
        snprintf(error, error_size, "%s", r == AIN_JOBS_R_FAIL ? "the worker failed it" : "");
    }
}

ain_jobs_decision_t ain_jobs_decide(ain_jobs_result_t result, int attempt, int max_attempts,
                                    int64_t delay_ms, int64_t base_ms, int64_t max_ms, double unit)
{
    ain_jobs_decision_t d = {AIN_JOBS_DONE, AIN_JOBS_KEEP, 0};
    switch (result) {
    case AIN_JOBS_R_DONE:
        break;
    case AIN_JOBS_R_FAIL:
        d.op = AIN_JOBS_DEAD;
        break;
    case AIN_JOBS_R_DELAY:
        /* Over quota is not a failure: the attempt is given back. */
        d.op = AIN_JOBS_AGAIN;
        d.count = AIN_JOBS_UNCOUNT;
        d.delay_ms = delay_ms >= 0 ? delay_ms : base_ms;
        break;
    case AIN_JOBS_R_CONTINUE:
        d.op = AIN_JOBS_AGAIN;
        d.count = AIN_JOBS_RESET;
        break;
    case AIN_JOBS_R_RETRY:
    case AIN_JOBS_R_LOST:
    default:
        if (attempt >= max_attempts) {
            d.op = AIN_JOBS_DEAD;
        } else {
            d.op = AIN_JOBS_AGAIN;
            d.delay_ms = ain_jobs_backoff_ms(attempt, base_ms, max_ms, unit);
            /* A worker asking for a later retry gets at least that. */
            if (result == AIN_JOBS_R_RETRY && delay_ms > d.delay_ms)
                d.delay_ms = delay_ms;
        }
    }
    return d;
}

/* ------------------------------------------------------------ selftest */

static int s_fail(const char *what)
{
    fprintf(stderr, "jobs_policy: %s\n", what);
    return 1;
}

int ain_jobs_policy_test(bool verbose)
{
    int bad = 0;
    int pools[3] = {0, 0, 0};
    bad +=
        ain_jobs_pools_parse("3/5/2", pools) != 0 || pools[0] != 3 || pools[1] != 5 || pools[2] != 2
            ? s_fail("3/5/2")
            : 0;
    const char *refused[] = {"",      "3/5",    "3/5/2/1", "0/0/0", "1001/1/1",
                             "a/1/1", "-1/2/3", "3/5/2 ",  "1//2"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        bad += ain_jobs_pools_parse(refused[i], pools) == 0 ? s_fail(refused[i]) : 0;
    bad += ain_jobs_pools_parse("0/1/0", pools) != 0 ? s_fail("0/1/0") : 0;

    /* Back-off: doubles from the base, capped, jittered within [d/2, d]. */
    bad += ain_jobs_backoff_ms(1, 1000, 600000, 0) != 500 ? s_fail("backoff 1 low") : 0;
    bad += ain_jobs_backoff_ms(1, 1000, 600000, 0.999999) != 999 ? s_fail("backoff 1 high") : 0;
    bad += ain_jobs_backoff_ms(3, 1000, 600000, 0) != 2000 ? s_fail("backoff 3") : 0;
    bad += ain_jobs_backoff_ms(40, 1000, 600000, 0) != 300000 ? s_fail("backoff cap") : 0;
    bad += ain_jobs_backoff_ms(2, 1000, 600000, 7.0) != 1000 ? s_fail("backoff bad unit") : 0;

    /* Decisions. */
    ain_jobs_decision_t d = ain_jobs_decide(AIN_JOBS_R_DONE, 1, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_DONE ? s_fail("done") : 0;
    d = ain_jobs_decide(AIN_JOBS_R_RETRY, 2, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_AGAIN || d.count != AIN_JOBS_KEEP || d.delay_ms != 1000
               ? s_fail("retry")
               : 0;
    d = ain_jobs_decide(AIN_JOBS_R_RETRY, 5, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_DEAD ? s_fail("retry past max") : 0;
    d = ain_jobs_decide(AIN_JOBS_R_LOST, 1, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_AGAIN ? s_fail("lost") : 0;
    d = ain_jobs_decide(AIN_JOBS_R_DELAY, 5, 5, 7000, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_AGAIN || d.count != AIN_JOBS_UNCOUNT || d.delay_ms != 7000
               ? s_fail("delay at max attempts")
               : 0;
    d = ain_jobs_decide(AIN_JOBS_R_CONTINUE, 3, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_AGAIN || d.count != AIN_JOBS_RESET || d.delay_ms != 0
               ? s_fail("continue")
               : 0;
    d = ain_jobs_decide(AIN_JOBS_R_FAIL, 1, 5, -1, 1000, 60000, 0);
    bad += d.op != AIN_JOBS_DEAD ? s_fail("fail") : 0;

    /* Replies. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ain_mp_pack_kv_str(&pk, "result", "continue");
    ain_mp_pack_kv_i64(&pk, "delay_ms", -5);
    ain_mp_pack_kv_str(&pk, "error", "bad\n\xc3");
    ain_mp_pack_str(&pk, "payload");
    msgpack_pack_map(&pk, 0);
    ain_body_t body;
    ain_jobs_result_t r;
    int64_t delay;
    const msgpack_object *payload;
    char err[64];
    if (ain_body_parse(&body, sb.data, sb.size) != AIN_STATUS_OK) {
        bad += s_fail("parse");
    } else {
        ain_jobs_read_reply(AIN_STATUS_OK, body.root, &r, &delay, &payload, err, sizeof err);
        bad += r != AIN_JOBS_R_CONTINUE || delay != 0 || !payload || strcmp(err, "bad??") != 0
                   ? s_fail("reply read")
                   : 0;
        ain_jobs_read_reply(AIN_STATUS_TIMEOUT, body.root, &r, &delay, &payload, err, sizeof err);
        bad += r != AIN_JOBS_R_LOST ? s_fail("timeout is lost") : 0;
    }
    ain_body_release(&body);
    msgpack_sbuffer_destroy(&sb);

    /* JSON payloads come back as the same msgpack. */
    json_t *j = json_loads("{\"a\":[1,-2,2.5,\"x\",true,null],\"b\":{}}", 0, NULL);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ain_mpjson_pack(&pk, j);
    if (ain_body_parse(&body, sb.data, sb.size) != AIN_STATUS_OK) {
        bad += s_fail("json pack");
    } else {
        const msgpack_object *a = ain_mp_get(body.root, "a");
        bad += !a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 6 ||
                       a->via.array.ptr[1].type != MSGPACK_OBJECT_NEGATIVE_INTEGER
                   ? s_fail("json shape")
                   : 0;
    }
    ain_body_release(&body);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    if (verbose)
        fprintf(stderr, "jobs_policy: %s\n", bad ? "FAILED" : "ok");
    return bad ? -1 : 0;
}
