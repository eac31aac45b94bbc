/* connect.h: what every actor benchmark does first: the configuration from
 * the environment, a client on the broker, and a check that the service it
 * drives has workers.
 */
#ifndef AIN_TOOLS_BENCH_CONNECT_H
#define AIN_TOOLS_BENCH_CONNECT_H

#include "runtime/client.h"
#include "runtime/config.h"

typedef struct {
    ain_config_t *cfg;
    void *zmq;
    ain_client_t *client;
    const char *broker; /* borrowed from the caller or the configuration */
} ain_bench_conn_t;

/* Connects `conn` for the program `name` to `broker` (NULL: AINBOX_BROKER)
 * and checks that `service` has workers. Returns 0; 2 for a configuration
 * error, 1 if the broker or the service cannot be reached, after saying why
 * on stderr. Call ain_bench_disconnect in every case. */
int ain_bench_connect(ain_bench_conn_t *conn, const char *name, const char *broker,
                      const char *service);
void ain_bench_disconnect(ain_bench_conn_t *conn);

#endif
