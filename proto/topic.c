/* topic.c: building and parsing bus topics. */
#include "proto/topic.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int ain_topic_user(char *buf, size_t size, uint64_t user)
{
    int n = snprintf(buf, size, AIN_TOPIC_USER "%" PRIu64 "/", user);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int ain_topic_metrics(char *buf, size_t size, const char *host, const char *role)
{
    if (strchr(host, '/') || strchr(role, '/'))
        return -1;
    int n = snprintf(buf, size, AIN_TOPIC_METRICS "%s/%s/", host, role);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int ain_topic_parse_user(const void *topic, size_t len, uint64_t *user)
{
    const char *p = topic;
    size_t pre = strlen(AIN_TOPIC_USER);
    if (len < pre + 2 || memcmp(p, AIN_TOPIC_USER, pre) != 0 || p[len - 1] != '/')
        return -1;
    uint64_t v = 0;
    for (size_t i = pre; i < len - 1; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *user = v;
    return 0;
}

int ain_topic_test(bool verbose)
{
    char buf[AIN_TOPIC_MAX];
    uint64_t u = 0;
    if (ain_topic_user(buf, sizeof buf, 42) != 5 || strcmp(buf, "u/42/") != 0)
        return -1;
    if (ain_topic_parse_user(buf, 5, &u) != 0 || u != 42)
        return -1;
    if (ain_topic_parse_user("u/4x/", 5, &u) == 0 || ain_topic_parse_user("u//", 3, &u) == 0 ||
        ain_topic_parse_user("u/42", 4, &u) == 0 || ain_topic_parse_user("m/42/", 5, &u) == 0)
        return -1;
    if (ain_topic_metrics(buf, sizeof buf, "h1", "broker") < 0 || strcmp(buf, "m/h1/broker/"))
        return -1;
    volatile size_t small = 4; /* too small on purpose; volatile keeps gcc from warning */
    if (ain_topic_metrics(buf, sizeof buf, "h/1", "x") != -1 ||
        ain_topic_user(buf, small, 42) != -1)
        return -1;
    if (verbose)
        printf("topic: user and metrics topics\n");
    return 0;
}
