/* mdp.c: small helpers for the Majordomo constants in mdp.h. */
#include "proto/mdp.h"

#include <stdio.h>

const char *ain_mdpw_command_name(int command)
{
    switch (command) {
    case AIN_MDPW_READY:
        return "READY";
    case AIN_MDPW_REQUEST:
        return "REQUEST";
    case AIN_MDPW_REPLY:
        return "REPLY";
    case AIN_MDPW_HEARTBEAT:
        return "HEARTBEAT";
    case AIN_MDPW_DISCONNECT:
        return "DISCONNECT";
    case AIN_MDPW_CREDIT:
        return "CREDIT";
    default:
        return "?";
    }
}

bool ain_mdp_service_valid(const void *name, size_t len)
{
    const unsigned char *p = name;
    if (len == 0 || len > AIN_SERVICE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return false;
    return true;
}

int ain_mdp_test(bool verbose)
{
    if (!ain_mdp_service_valid("cache", 5) || ain_mdp_service_valid("", 0) ||
        ain_mdp_service_valid("a b", 3) || ain_mdp_service_valid("x\n", 2) ||
        ain_mdp_service_valid("x", AIN_SERVICE_NAME_MAX + 1))
        return -1;
    if (verbose)
        printf("mdp: service names checked\n");
    return 0;
}
