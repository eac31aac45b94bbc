/* policy.c: the default policies, AINBOX_RATELIMITS, Gmail's method costs.
 */
#include "actors/ratelimit/policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_LIMIT  1000000000LL /* units per window */
#define S_MAX_WINDOW 86400000LL   /* one day, in ms */
#define S_MIN_WINDOW 1LL          /* ms */
#define S_MAX_EMIT   (1LL << 40)  /* µs per unit: about 12 days */

/* T and the tolerance are derived (s_derive). */
// clang-format off
#define POLICY(name, kind, unit, per_subject, limit, window_ms, burst) \
    {name, kind, unit, per_subject, limit, window_ms, burst, 0, 0}
// clang-format on

/* Bursts: a fifth of a provider quota (so 80 % of it stays the sustained
 * rate, the provider guide's advice), half of the user API limit. */
static const ain_rl_policy_t s_defaults[AIN_RL_POLICY_COUNT] = {
    [AIN_RL_GMAIL_USER] = POLICY("gmail.user", AIN_RL_RATE, "units", true, 15000, 60000, 3000),
    [AIN_RL_GMAIL_USER_REQUESTS] =
        POLICY("gmail.user.requests", AIN_RL_RATE, "requests", true, 250, 100000, 50),
    [AIN_RL_GMAIL_PROJECT] =
        POLICY("gmail.project", AIN_RL_RATE, "units", false, 1200000, 60000, 240000),
    [AIN_RL_GMAIL_CONCURRENT] =
        POLICY("gmail.concurrent", AIN_RL_LEASE, "concurrent-requests", true, 8, 30000, 0),
    [AIN_RL_OUTLOOK_MAILBOX] =
        POLICY("outlook.mailbox", AIN_RL_RATE, "requests", true, 10000, 600000, 2000),
    [AIN_RL_OUTLOOK_APP] =
        POLICY("outlook.app", AIN_RL_RATE, "requests", false, 130000, 10000, 26000),
    [AIN_RL_OUTLOOK_CONCURRENT] =
        POLICY("outlook.concurrent", AIN_RL_LEASE, "concurrent-requests", true, 4, 30000, 0),
    [AIN_RL_API_USER] = POLICY("api.user", AIN_RL_RATE, "requests", true, 1000, 3600000, 500),
};

__attribute__((format(printf, 3, 4))) static int s_fail(char *why, size_t size, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return -1;
}

/* Derives T and the tolerance; checks the numbers. */
static int s_derive(ain_rl_policy_t *p, char *why, size_t size)
{
    if (p->limit < 1 || p->limit > S_MAX_LIMIT)
        return s_fail(why, size, "%s: limit must be 1..%lld", p->name, S_MAX_LIMIT);
    if (p->window_ms < S_MIN_WINDOW || p->window_ms > S_MAX_WINDOW)
        return s_fail(why, size, "%s: window must be 1 ms..1 day", p->name);
    if (p->kind == AIN_RL_LEASE) {
        p->burst = 0;
        p->emission_us = 0;
        p->tolerance_us = 0;
        return 0;
    }
    if (p->burst < 1 || p->burst >= p->limit)
        return s_fail(why, size, "%s: burst must be 1..limit-1 (burst + rate x window <= limit)",
                      p->name);
    int64_t window_us = p->window_ms * 1000;
    int64_t per = p->limit - p->burst;
    p->emission_us = (window_us + per - 1) / per; /* ceil: never faster than allowed */
    if (p->emission_us > S_MAX_EMIT)
        return s_fail(why, size, "%s: rate too slow", p->name);
    p->tolerance_us = p->burst * p->emission_us;
    return 0;
}

int ain_rl_policy_find(const ain_rl_policies_t *set, const char *name, size_t len)
{
    for (int i = 0; i < AIN_RL_POLICY_COUNT; i++)
        if (strlen(set->p[i].name) == len && memcmp(set->p[i].name, name, len) == 0)
            return i;
    return -1;
}

/* A positive integer of at most 18 digits; advances *s. */
static int s_number(const char **s, int64_t *out)
{
    const char *p = *s;
    int64_t v = 0;
    int digits = 0;
    while (isdigit((unsigned char)*p) && digits < 18) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || isdigit((unsigned char)*p))
        return -1;
    *s = p;
    *out = v;
    return 0;
}

/* "500ms", "10s", "1m", "1h", "1d" (a bare number is seconds). */
static int s_duration(const char **s, int64_t *ms)
{
    int64_t n;
    if (s_number(s, &n) < 0)
        return -1;
    const char *p = *s;
    int64_t mul = 1000;
    if (strncmp(p, "ms", 2) == 0) {
        mul = 1;
        p += 2;
    } else if (*p == 's' || *p == 'm' || *p == 'h' || *p == 'd') {
        mul = *p == 's' ? 1000 : *p == 'm' ? 60000 : *p == 'h' ? 3600000 : 86400000;
        p++;
    }
    if (n > S_MAX_WINDOW)
        return -1;
    *ms = n * mul;
    *s = p;
    return 0;
}

/* One NAME=LIMIT/WINDOW[/BURST] item of `len` bytes. */
static int s_override(ain_rl_policies_t *set, const char *item, size_t len, char *why, size_t size)
{
    char buf[128];
    if (len >= sizeof buf)
        return s_fail(why, size, "AINBOX_RATELIMITS: item too long: %.40s...", item);
    memcpy(buf, item, len);
    buf[len] = '\0';
    const char *eq = strchr(buf, '=');
    if (!eq)
        return s_fail(why, size, "AINBOX_RATELIMITS: '%s' is not NAME=LIMIT/WINDOW[/BURST]", buf);
    int id = ain_rl_policy_find(set, buf, (size_t)(eq - buf));
    if (id < 0)
        return s_fail(why, size, "AINBOX_RATELIMITS: unknown policy in '%s'", buf);
    ain_rl_policy_t *p = &set->p[id];
    const char *s = eq + 1;
    int64_t limit, window, burst = -1;
    if (s_number(&s, &limit) < 0 || *s++ != '/' || s_duration(&s, &window) < 0)
        return s_fail(why, size, "AINBOX_RATELIMITS: '%s' is not NAME=LIMIT/WINDOW[/BURST]", buf);
    if (*s == '/') {
        s++;
        if (p->kind == AIN_RL_LEASE || s_number(&s, &burst) < 0)
            return s_fail(why, size, "AINBOX_RATELIMITS: bad burst in '%s'", buf);
    }
    if (*s != '\0')
        return s_fail(why, size, "AINBOX_RATELIMITS: trailing characters in '%s'", buf);
    p->limit = limit;
    p->window_ms = window;
    if (p->kind == AIN_RL_RATE)
        p->burst = burst >= 0 ? burst : (limit >= 5 ? limit / 5 : 1);
    char inner[160];
    if (s_derive(p, inner, sizeof inner) < 0)
        return s_fail(why, size, "AINBOX_RATELIMITS: %s", inner);
    return 0;
}

int ain_rl_policies_load(ain_rl_policies_t *out, ain_rl_gmail_gen_t gen, const char *overrides,
                         char *why, size_t why_size)
{
    memcpy(out->p, s_defaults, sizeof s_defaults);
    if (gen == AIN_RL_GMAIL_NEW) { /* 6,000 units/user/min, the same fifth as burst */
        out->p[AIN_RL_GMAIL_USER].limit = 6000;
        out->p[AIN_RL_GMAIL_USER].burst = 1200;
    }
    for (int i = 0; i < AIN_RL_POLICY_COUNT; i++)
        if (s_derive(&out->p[i], why, why_size) < 0)
            return -1;
    const char *s = overrides ? overrides : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s)
            break;
        size_t len = strcspn(s, ", ");
        if (s_override(out, s, len, why, why_size) < 0)
            return -1;
        s += len;
    }
    return 0;
}

/* ------------------------------------------------------------ Gmail costs */

/* The old table; the new one differs only where s_gmail_new_costs says. */
static const struct {
    const char *method;
    int units;
} s_gmail_new_costs[] =
    {
        {"messages.get", 20},
        {"threads.get", 40},
},
  s_gmail_costs[] = {
      {"getProfile", 1},
      {"labels.get", 1},
      {"labels.list", 1},
      {"labels.create", 5},
      {"labels.update", 5},
      {"labels.patch", 5},
      {"labels.delete", 5},
      {"history.list", 2},
      {"messages.list", 5},
      {"messages.get", 5},
      {"messages.attachments.get", 5},
      {"messages.modify", 5},
      {"messages.trash", 5},
      {"messages.untrash", 5},
      {"messages.delete", 10},
      {"messages.batchModify", 50},
      {"messages.batchDelete", 50},
      {"messages.import", 25},
      {"messages.insert", 25},
      {"messages.send", 100},
      {"drafts.get", 5},
      {"drafts.list", 5},
      {"drafts.create", 10},
      {"drafts.update", 15},
      {"drafts.delete", 10},
      {"drafts.send", 100},
      {"threads.get", 10},
      {"threads.list", 10},
      {"threads.modify", 10},
      {"threads.trash", 10},
      {"threads.untrash", 10},
      {"threads.delete", 20},
      {"watch", 100},
      {"stop", 50},
};

static bool s_ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int ain_rl_gmail_cost(ain_rl_gmail_gen_t gen, const char *method, size_t len)
{
    for (size_t i = 0;
         gen == AIN_RL_GMAIL_NEW && i < sizeof s_gmail_new_costs / sizeof s_gmail_new_costs[0]; i++)
        if (strlen(s_gmail_new_costs[i].method) == len &&
            memcmp(s_gmail_new_costs[i].method, method, len) == 0)
            return s_gmail_new_costs[i].units;
    for (size_t i = 0; i < sizeof s_gmail_costs / sizeof s_gmail_costs[0]; i++)
        if (strlen(s_gmail_costs[i].method) == len &&
            memcmp(s_gmail_costs[i].method, method, len) == 0)
            return s_gmail_costs[i].units;
    /* settings.*.get and settings.*.list cost 1 (settings.filters.list...) */
    if (len > 9 && len < 64 && memcmp(method, "settings.", 9) == 0 &&
        (s_ends_with(method, len, ".get") || s_ends_with(method, len, ".list"))) {
        for (size_t i = 9; i < len; i++)
            if (!isalpha((unsigned char)method[i]) && method[i] != '.')
                return -1;
        return 1;
    }
    return -1;
}

bool ain_rl_subject_ok(const char *s, size_t len)
{
    if (len < 1 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && !strchr("@._+-=", c))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ selftest */

/* The most a policy admits in any window of its length: a full burst at
 * the start, then one unit per T (a unit exactly at the end included). */
static int64_t s_worst_window(const ain_rl_policy_t *p)
{
    return p->burst + (p->window_ms * 1000) / p->emission_us;
}

int ain_rl_policy_test(bool verbose)
{
    ain_rl_policies_t set;
    char why[200];
    if (ain_rl_policies_load(&set, AIN_RL_GMAIL_OLD, NULL, why, sizeof why) < 0)
        return fprintf(stderr, "defaults: %s\n", why), -1;
    for (int i = 0; i < AIN_RL_POLICY_COUNT; i++) {
        const ain_rl_policy_t *p = &set.p[i];
        if (p->kind == AIN_RL_RATE && s_worst_window(p) > p->limit)
            return fprintf(stderr, "%s admits %lld > %lld\n", p->name, (long long)s_worst_window(p),
                           (long long)p->limit),
                   -1;
        if (verbose)
            printf("  %-20s %8lld / %7lld ms, burst %6lld, T %lld us\n", p->name,
                   (long long)p->limit, (long long)p->window_ms, (long long)p->burst,
                   (long long)p->emission_us);
    }
    /* The guide's example: 250 / 100 s with burst 50 is 2 per second. */
    if (set.p[AIN_RL_GMAIL_USER_REQUESTS].emission_us != 500000)
        return fprintf(stderr, "gmail.user.requests T\n"), -1;
    if (set.p[AIN_RL_GMAIL_USER].emission_us != 5000)
        return fprintf(stderr, "gmail.user T\n"), -1;
    /* The 2026 generation: 6,000 units a minute, a fifth of it as burst. */
    if (ain_rl_policies_load(&set, AIN_RL_GMAIL_NEW, NULL, why, sizeof why) < 0 ||
        set.p[AIN_RL_GMAIL_USER].limit != 6000 || set.p[AIN_RL_GMAIL_USER].emission_us != 12500 ||
        s_worst_window(&set.p[AIN_RL_GMAIL_USER]) > 6000)
        return fprintf(stderr, "gmail.user new\n"), -1;
    /* Rounding up keeps the bound where the division is not exact. */
    if (ain_rl_policies_load(&set, AIN_RL_GMAIL_NEW, "gmail.user=1000/7s/3, api.user=10/1h", why,
                             sizeof why) < 0)
        return fprintf(stderr, "override: %s\n", why), -1;
    const ain_rl_policy_t *g = &set.p[AIN_RL_GMAIL_USER];
    if (g->limit != 1000 || g->window_ms != 7000 || g->burst != 3 || s_worst_window(g) > 1000 ||
        g->emission_us != 7022)
        return fprintf(stderr, "override values %lld\n", (long long)g->emission_us), -1;
    if (set.p[AIN_RL_API_USER].burst != 2 || set.p[AIN_RL_API_USER].window_ms != 3600000)
        return fprintf(stderr, "default burst of an override\n"), -1;
    if (ain_rl_policies_load(&set, AIN_RL_GMAIL_NEW, "outlook.concurrent=2/500ms", why,
                             sizeof why) < 0 ||
        set.p[AIN_RL_OUTLOOK_CONCURRENT].limit != 2 ||
        set.p[AIN_RL_OUTLOOK_CONCURRENT].window_ms != 500)
        return fprintf(stderr, "lease override\n"), -1;
    /* Every bad form is refused with a reason, never half-applied. */
    const char *bad[] = {"gmail.user",
                         "nope=1/1s",
                         "gmail.user=10/1s/10",
                         "gmail.user=0/1s",
                         "gmail.user=10/0s",
                         "gmail.user=10/2x",
                         "gmail.user=10/1s/",
                         "api.user=-1/1s",
                         "outlook.concurrent=4/1s/2",
                         "api.user=99999999999999999999/1s",
                         "api.user=10/2d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (ain_rl_policies_load(&set, AIN_RL_GMAIL_NEW, bad[i], why, sizeof why) == 0 || !why[0])
            return fprintf(stderr, "accepted '%s'\n", bad[i]), -1;
        if (verbose)
            printf("  refused %-28s %s\n", bad[i], why);
    }
    /* Costs and subjects. */
    if (ain_rl_gmail_cost(AIN_RL_GMAIL_OLD, "messages.get", 12) != 5 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "messages.get", 12) != 20 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_OLD, "threads.get", 11) != 10 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "threads.get", 11) != 40 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "messages.send", 13) != 100 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "history.list", 12) != 2 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "settings.filters.list", 21) != 1 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_NEW, "messages.getx", 13) != -1 ||
        ain_rl_gmail_cost(AIN_RL_GMAIL_OLD, "settings..get;", 14) != -1)
        return fprintf(stderr, "gmail costs\n"), -1;
    if (!ain_rl_subject_ok("ann@example.com", 15) || ain_rl_subject_ok("a b", 3) ||
        ain_rl_subject_ok("a/b", 3) || ain_rl_subject_ok("", 0) || ain_rl_subject_ok("a:b", 3))
        return fprintf(stderr, "subjects\n"), -1;
    return 0;
}
