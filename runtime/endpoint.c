/* endpoint.c: endpoint syntax and derivation. */
#include "runtime/endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

static bool s_prefix(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Port of a tcp endpoint, or -1. The host part must be non-empty. */
static long s_tcp_port(const char *text)
{
    const char *host = text + strlen("tcp://");
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host || strchr(host, '/'))
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
        return -1;
    return port;
}

bool ain_endpoint_valid(const char *text)
{
    if (s_prefix(text, "tcp://"))
        return s_tcp_port(text) > 0;
    if (s_prefix(text, "inproc://"))
        return text[strlen("inproc://")] != '\0';
    if (s_prefix(text, "ipc://"))
        return text[strlen("ipc://")] != '\0';
    return false;
}

bool ain_endpoint_loopback(const char *text)
{
    if (!ain_endpoint_valid(text))
        return false;
    if (!s_prefix(text, "tcp://"))
        return true;
    const char *host = text + strlen("tcp://");
    size_t len = (size_t)(strrchr(host, ':') - host);
    static const char *const names[] = {"localhost", "[::1]", "::1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == strlen(names[i]) && strncmp(host, names[i], len) == 0)
            return true;
    /* 127.0.0.0/8, written as a dotted quad of digits only. */
    if (len < 9 || len > 15 || strncmp(host, "127.", 4) != 0)
        return false;
    int dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (host[i] == '.')
            dots++;
        else if (host[i] < '0' || host[i] > '9')
            return false;
    }
    return dots == 3;
}

char *ain_endpoint_derive(const char *text, int port_offset, const char *suffix)
{
    if (!ain_endpoint_valid(text))
        return NULL;
    if (!s_prefix(text, "tcp://"))
        return ain_sprintf("%s%s", text, suffix);
    long port = s_tcp_port(text) + port_offset;
    if (port < 1 || port > 65535)
        return NULL;
    const char *colon = strrchr(text, ':');
    return ain_sprintf("%.*s:%ld", (int)(colon - text), text, port);
}

int ain_endpoint_test(bool verbose)
{
    const char *good[] = {"tcp://127.0.0.1:5555", "tcp://*:1", "tcp://broker.lan:65535",
                          "inproc://x", "ipc:///tmp/a.sock"};
    const char *bad[] = {"tcp://:5555", "tcp://h",   "tcp://h:0", "tcp://h:65536", "tcp://h:5x",
                         "udp://h:1",   "inproc://", "",          "tcp://h:"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!ain_endpoint_valid(good[i]))
            return -1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ain_endpoint_valid(bad[i]))
            return -1;
    const char *local[] = {"tcp://127.0.0.1:5555", "tcp://127.1.2.3:1", "tcp://localhost:9",
                           "tcp://[::1]:9",        "inproc://x",        "ipc:///tmp/a"};
    const char *remote[] = {"tcp://*:5555",
                            "tcp://0.0.0.0:1",
                            "tcp://10.0.0.1:1",
                            "tcp://127.0.0.1.evil:1",
                            "tcp://eth0:1",
                            "tcp://127.a.0.1:1",
                            "x"};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        if (!ain_endpoint_loopback(local[i]))
            return -1;
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++)
        if (ain_endpoint_loopback(remote[i]))
            return -1;
    char *a = ain_endpoint_derive("tcp://10.0.0.1:5555", 2, "-out");
    char *b = ain_endpoint_derive("inproc://ainbox", 2, "-out");
    char *c = ain_endpoint_derive("tcp://h:65535", 1, "");
    int rc = !a || strcmp(a, "tcp://10.0.0.1:5557") || !b || strcmp(b, "inproc://ainbox-out") || c;
    free(a);
    free(b);
    free(c);
    if (rc)
        return -1;
    if (verbose)
        printf("endpoint: syntax and derivation\n");
    return 0;
}
