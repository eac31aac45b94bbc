/* endpoint.h: checking and deriving ZeroMQ endpoints.
 *
 * We accept tcp://HOST:PORT (HOST may be '*' for binding), inproc://NAME
 * and ipc://PATH. The bus endpoints are derived from the broker's: the same
 * host with the port moved (tcp), or the name with a suffix (inproc, ipc).
 */
#ifndef AIN_RUNTIME_ENDPOINT_H
#define AIN_RUNTIME_ENDPOINT_H

#include <stdbool.h>

/* True if `text` is an endpoint we accept. */
bool ain_endpoint_valid(const char *text);

/* True if a peer must be on this host to reach `text`: inproc and ipc, or
 * a tcp endpoint on 127.0.0.0/8, ::1 or "localhost". False for '*', an
 * interface name or any other address. */
bool ain_endpoint_loopback(const char *text);

/* A new string (caller frees): tcp endpoints get `port_offset` added to
 * their port; inproc and ipc endpoints get `suffix` appended. Returns NULL
 * if the endpoint is invalid or the port leaves 1..65535. */
char *ain_endpoint_derive(const char *text, int port_offset, const char *suffix);

int ain_endpoint_test(bool verbose);

#endif
