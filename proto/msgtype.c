/* msgtype.c: lookups in the message type table.
 *
 * The table is generated from proto/msgtypes.def twice: once as rows and
 * once as a switch, so a duplicate id is a compile error ("duplicate case").
 */
#include "proto/msgtype.h"

#include <stdio.h>
#include <string.h>

static const ain_msgtype_t s_types[] = {
#define AIN_MSG(ID, NAME, SERVICE, FLAGS, SUMMARY) {ID, #NAME, SERVICE, FLAGS, SUMMARY},
#include "proto/msgtypes.def"
#undef AIN_MSG
};

enum { S_TYPE_COUNT = sizeof s_types / sizeof s_types[0] };

/* Index of each id in s_types, by a switch the compiler checks for
 * duplicates. */
static int s_index(unsigned id)
{
    enum {
#define AIN_MSG(ID, NAME, SERVICE, FLAGS, SUMMARY) S_IDX_##NAME,
#include "proto/msgtypes.def"
#undef AIN_MSG
    };
    switch (id) {
#define AIN_MSG(ID, NAME, SERVICE, FLAGS, SUMMARY)                                                 \
    case ID:                                                                                       \
        return S_IDX_##NAME;
#include "proto/msgtypes.def"
#undef AIN_MSG
    default:
        return -1;
    }
}

const ain_msgtype_t *ain_msgtype_lookup(unsigned id)
{
    int i = s_index(id);
    return i < 0 ? NULL : &s_types[i];
}

const ain_msgtype_t *ain_msgtype_by_name(const char *name)
{
    for (int i = 0; i < S_TYPE_COUNT; i++)
        if (strcmp(s_types[i].name, name) == 0)
            return &s_types[i];
    return NULL;
}

bool ain_msgtype_served_by(const ain_msgtype_t *type, const char *service)
{
    if (!type || (type->flags & AIN_MSGF_EVENT))
        return false;
    return strcmp(type->service, "*") == 0 || strcmp(type->service, service) == 0;
}

void ain_msgtype_each(void (*fn)(const ain_msgtype_t *type, void *arg), void *arg)
{
    for (int i = 0; i < S_TYPE_COUNT; i++)
        fn(&s_types[i], arg);
}

int ain_msgtype_test(bool verbose)
{
    for (int i = 0; i < S_TYPE_COUNT; i++) {
        const ain_msgtype_t *t = ain_msgtype_lookup(s_types[i].id);
        if (t != &s_types[i] || ain_msgtype_by_name(t->name) != t)
            return -1;
        if (i > 0 && s_types[i - 1].id >= s_types[i].id) {
            fprintf(stderr, "msgtypes.def is not in id order at %s\n", s_types[i].name);
            return -1;
        }
    }
    const ain_msgtype_t *ping = ain_msgtype_lookup(AIN_MSG_PING);
    const ain_msgtype_t *stats = ain_msgtype_lookup(AIN_MSG_BROKER_STATS);
    const ain_msgtype_t *event = ain_msgtype_lookup(AIN_MSG_USER_EVENT);
    if (!ping || !ain_msgtype_served_by(ping, "echo") || !ain_msgtype_served_by(stats, "broker") ||
        ain_msgtype_served_by(stats, "echo") || ain_msgtype_served_by(event, "bus") ||
        ain_msgtype_lookup(0) || ain_msgtype_lookup(65535) || ain_msgtype_by_name("NOPE"))
        return -1;
    if (verbose)
        printf("msgtype: %d types\n", S_TYPE_COUNT);
    return 0;
}
