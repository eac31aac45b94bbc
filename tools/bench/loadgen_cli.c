/* loadgen_cli.c: ainbox-loadgen, asks the loadgen actor for one run and
 * prints its answer as one line of key=value (for tools/bench/edge-bench.sh).
 *
 *   ainbox-loadgen --users 10000 [--first 1] [--rate 1] --seconds 20
 *                  [--mode events|events1|bus] [--broker tcp://127.0.0.1:5555]
 *
 * A client of the public protocol only (LOADGEN_RUN to service "loadgen");
 * the broker endpoint comes from --broker or AINBOX_BROKER. It waits for the
 * answer until the run's length plus 30 s. Exit 0 with the figures, 1 if
 * no answer or an error came (said on stderr), 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/client.h"
#include "runtime/config.h"

extern char **environ;

static int s_usage(void)
{
    fprintf(stderr, "usage: ainbox-loadgen --users N [--first ID] [--rate R] --seconds S "
                    "[--mode events|events1|bus] [--broker ENDPOINT]\n");
    return 2;
}

static const char *const s_fields[] = {"scheduled", "sent",       "unsent",     "acked",
                                       "failed",    "elapsed_ms", "lag_max_ms", "lag_avg_us"};

static void s_print(const ain_reply_t *reply)
{
    ain_body_t body;
    if (ain_body_parse(&body, reply->env.body, reply->env.body_len) != AIN_STATUS_OK) {
        printf("tool=ainbox-loadgen error=malformed_answer\n");
        return;
    }
    const char *mode = "?";
    size_t mode_len = 1;
    ain_mp_get_str(body.root, "mode", &mode, &mode_len);
    printf("tool=ainbox-loadgen mode=%.*s", (int)mode_len, mode);
    for (size_t i = 0; i < sizeof s_fields / sizeof s_fields[0]; i++) {
        uint64_t v = 0;
        ain_mp_get_u64(body.root, s_fields[i], &v);
        printf(" %s=%llu", s_fields[i], (unsigned long long)v);
    }
    printf("\n");
    ain_body_release(&body);
}

int main(int argc, char **argv)
{
    unsigned long long users = 0, first = 1, rate = 1, seconds = 0;
    const char *mode = "events", *broker = NULL;
    for (int i = 1; i < argc; i += 2) { /* --name value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return s_usage();
        if (strcmp(a, "--users") == 0)
            users = strtoull(v, NULL, 10);
        else if (strcmp(a, "--first") == 0)
            first = strtoull(v, NULL, 10);
        else if (strcmp(a, "--rate") == 0)
            rate = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seconds") == 0)
            seconds = strtoull(v, NULL, 10);
        else if (strcmp(a, "--mode") == 0)
            mode = v;
        else if (strcmp(a, "--broker") == 0)
            broker = v;
        else
            return s_usage();
    }
    if (users == 0 || seconds == 0 || seconds > 600)
        return s_usage();
    char *error = NULL;
    ain_config_t *cfg = ain_config_load(environ, NULL, stderr, &error);
    if (!cfg) {
        fprintf(stderr, "ainbox-loadgen: configuration: %s\n", error ? error : "?");
        free(error);
        return 2;
    }
    const char *endpoint = broker ? broker : ain_config_str(cfg, AIN_CFG_AINBOX_BROKER);
    void *zmq = zmq_ctx_new();
    ain_client_t *client = zmq ? ain_client_new(zmq, endpoint, cfg) : NULL;
    int rc = 1;
    if (client) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 5);
        ain_mp_pack_kv_u64(&pk, "users", users);
        ain_mp_pack_kv_u64(&pk, "first_user", first);
        ain_mp_pack_kv_u64(&pk, "rate", rate);
        ain_mp_pack_kv_u64(&pk, "seconds", seconds);
        ain_mp_pack_kv_str(&pk, "mode", mode);
        ain_reply_t reply;
        ain_status_t st = ain_client_call(client, "loadgen", AIN_MSG_LOADGEN_RUN, 0, sb.data,
                                          sb.size, (int)(seconds + 30) * 1000, &reply);
        msgpack_sbuffer_destroy(&sb);
        if (st == AIN_STATUS_OK) {
            s_print(&reply);
            rc = 0;
        } else {
            fprintf(stderr, "ainbox-loadgen: no run: %s\n", ain_status_name(st));
        }
        ain_reply_close(&reply);
    } else {
        fprintf(stderr, "ainbox-loadgen: cannot connect to %s\n", endpoint ? endpoint : "?");
    }
    ain_client_destroy(&client);
    if (zmq)
        zmq_ctx_term(zmq);
    ain_config_destroy(&cfg);
    return rc;
}
