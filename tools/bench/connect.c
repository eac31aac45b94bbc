/* connect.c: see connect.h. */
#include "tools/bench/connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

int ain_bench_connect(ain_bench_conn_t *conn, const char *name, const char *broker,
                      const char *service)
{
    memset(conn, 0, sizeof *conn);
    extern char **environ;
    char *error = NULL;
    conn->cfg = ain_config_load(environ, NULL, stderr, &error);
    if (!conn->cfg) {
        fprintf(stderr, "%s: configuration: %s\n", name, error ? error : "?");
        free(error);
        return 2;
    }
    conn->broker = broker ? broker : ain_config_str(conn->cfg, AIN_CFG_AINBOX_BROKER);
    conn->zmq = zmq_ctx_new();
    conn->client = ain_client_new(conn->zmq, conn->broker, conn->cfg);
    if (!conn->client) {
        fprintf(stderr, "%s: cannot connect to %s\n", name, conn->broker);
        return 1;
    }
    if (ain_client_mmi_service(conn->client, service, 5000) != 200) {
        fprintf(stderr, "%s: no %s actor behind %s\n", name, service, conn->broker);
        return 1;
    }
    return 0;
}

void ain_bench_disconnect(ain_bench_conn_t *conn)
{
    ain_client_destroy(&conn->client);
    if (conn->zmq)
        zmq_ctx_term(conn->zmq);
    ain_config_destroy(&conn->cfg);
    conn->zmq = NULL;
}
