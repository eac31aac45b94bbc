/* keys.c: cache keys and invalidation prefixes (see keys.h). */
#include "actors/cache/keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

bool ain_key_part_ok(const char *part, size_t len)
{
    if (!part || len == 0 || len > AIN_KEY_PART_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (part[i] <= ' ' || part[i] >= 0x7f || part[i] == ':')
            return false;
    return true;
}

static bool s_ok(const char *part)
{
    return part && ain_key_part_ok(part, strlen(part));
}

/* The account part: the id, or "*" for every account. */
static void s_account(char out[24], uint64_t account)
{
    if (account)
        snprintf(out, 24, "%" PRIu64, account);
    else
        strcpy(out, "*");
}

static int s_emit(char *buf, int n)
{
    return n < 0 || n >= AIN_KEY_MAX ? -1 : n;
}

static int s_list(char *buf, const char *head, uint64_t account, const char *cursor, int limit)
{
    char acc[24];
    if (cursor && !s_ok(cursor))
        return -1;
    s_account(acc, account);
    return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "list:%s:%s:%s:%d", head, acc,
                                cursor ? cursor : "-", limit));
}

int ain_key_list_label(char *buf, const char *label, uint64_t account, const char *cursor,
                       int limit)
{
    char head[AIN_KEY_PART_MAX + 3];
    if (!s_ok(label))
        return -1;
    snprintf(head, sizeof head, "l:%s", label);
    return s_list(buf, head, account, cursor, limit);
}

int ain_key_list_role(char *buf, const char *role, uint64_t account, const char *cursor, int limit)
{
    char head[AIN_KEY_PART_MAX + 3];
    if (!s_ok(role))
        return -1;
    snprintf(head, sizeof head, "r:%s", role);
    return s_list(buf, head, account, cursor, limit);
}

int ain_key_list_archive(char *buf, uint64_t account, const char *cursor, int limit)
{
    return s_list(buf, "archive", account, cursor, limit);
}

int ain_key_thread(char *buf, const char *thread, uint64_t account, bool bodies)
{
    char acc[24];
    if (!s_ok(thread))
        return -1;
    s_account(acc, account);
    return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "thread:%s:%s:%d", thread, acc, bodies));
}

int ain_key_message(char *buf, const char *message, uint64_t account)
{
    char acc[24];
    if (!s_ok(message))
        return -1;
    s_account(acc, account);
    return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "msg:%s:%s", message, acc));
}

int ain_key_counts(char *buf, uint64_t account)
{
    char acc[24];
    s_account(acc, account);
    return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "counts:%s", acc));
}

int ain_key_prefix(char *buf, const char *kind, const char *ref)
{
    if (strcmp(kind, "counts") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "counts:"));
    if (strcmp(kind, "archive") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "%s", AIN_KEY_ARCHIVE_PREFIX));
    if (!s_ok(ref))
        return -1;
    if (strcmp(kind, "label") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "list:l:%s:", ref));
    if (strcmp(kind, "role") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "list:r:%s:", ref));
    if (strcmp(kind, "thread") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "thread:%s:", ref));
    if (strcmp(kind, "message") == 0)
        return s_emit(buf, snprintf(buf, AIN_KEY_MAX, "msg:%s:", ref));
    return -1;
}

/* ---------------------------------------------------------------- selftest */

static bool s_prefix_of(const char *prefix, const char *key)
{
    return strncmp(prefix, key, strlen(prefix)) == 0;
}

int ain_keys_test(bool verbose)
{
    char k[AIN_KEY_MAX], p[AIN_KEY_MAX], q[AIN_KEY_MAX];
    int rc = 0;
    rc |= ain_key_list_label(k, "INBOX", 0, NULL, 50) < 0 || strcmp(k, "list:l:INBOX:*:-:50");
    rc |= ain_key_prefix(p, "label", "INBOX") < 0 || !s_prefix_of(p, k);
    rc |= ain_key_list_label(k, "INBOX", 7, "1700.42", 20) < 0 || !s_prefix_of(p, k);
    /* A label whose id starts like another's is not caught by its prefix. */
    rc |= ain_key_list_label(k, "INBOXES", 0, NULL, 50) < 0 || s_prefix_of(p, k);
    rc |= ain_key_thread(k, "t1", 0, true) < 0 || ain_key_prefix(q, "thread", "t1") < 0 ||
          !s_prefix_of(q, k);
    rc |= ain_key_thread(k, "t10", 0, true) < 0 || s_prefix_of(q, k);
    rc |= ain_key_message(k, "m1", 3) < 0 || strcmp(k, "msg:m1:3");
    rc |= ain_key_counts(k, 0) < 0 || ain_key_prefix(q, "counts", "") < 0 || !s_prefix_of(q, k);
    rc |= ain_key_list_archive(k, 0, NULL, 50) < 0 || !s_prefix_of(AIN_KEY_ARCHIVE_PREFIX, k);
    rc |= ain_key_prefix(q, "archive", "") < 0 || strcmp(q, AIN_KEY_ARCHIVE_PREFIX) != 0;
    /* Refusals: separators, spaces, empty, unknown kinds. */
    rc |= ain_key_thread(k, "a:b", 0, false) != -1 || ain_key_message(k, "a b", 0) != -1 ||
          ain_key_list_label(k, "", 0, NULL, 1) != -1 || ain_key_prefix(k, "user", "x") != -1 ||
          ain_key_list_label(k, "L", 0, "c:d", 1) != -1 || ain_key_part_ok("x\n", 2);
    if (rc)
        return -1;
    if (verbose)
        printf("keys: views and prefixes\n");
    return 0;
}
