/* config.c: loading, validating and printing the settings of settings.def.
 *
 * Order of precedence: default < file < environment < derived (derived
 * values only fill settings left empty). Validation happens once, after all
 * sources are applied, so the message names the variable and its value.
 */
#include "runtime/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "runtime/alloc.h"
#include "runtime/crypto.h"
#include "runtime/curve.h"
#include "runtime/endpoint.h"
#include "runtime/envfile.h"

typedef enum {
    S_STR,
    S_INT,
    S_BOOL,
    S_ENUM,
    S_ENDPOINT,
    S_ENDPOINTS,
    S_LIST,
    S_URL,
    S_KEY,
    S_KEYS,
    S_SECONDS
} s_kind_t;
typedef enum { S_DEFAULT, S_FILE, S_ENV, S_DERIVED } s_source_t;

typedef struct {
    const char *name;
    s_kind_t kind;
    const char *def;
    long min, max;
    unsigned flags;
    const char *help;
} s_setting_t;

static const s_setting_t s_settings[AIN_CFG_COUNT] = {
#define AIN_SETTING(ID, KIND, DEF, MIN, MAX, FLAGS, HELP)                                          \
    {#ID, S_##KIND, DEF, MIN, MAX, FLAGS, HELP},
#include "runtime/settings.def"
#undef AIN_SETTING
};

static const char *s_source_names[] = {"default", "file", "env", "derived"};

struct _ain_config_t {
    char *text[AIN_CFG_COUNT]; /* as given; NULL = unset */
    long num[AIN_CFG_COUNT];   /* INT value, BOOL as 0/1, SECONDS in milliseconds */
    char **items[AIN_CFG_COUNT];
    size_t nitems[AIN_CFG_COUNT];
    s_source_t source[AIN_CFG_COUNT];
};

static int s_find(const char *name)
{
    for (int i = 0; i < AIN_CFG_COUNT; i++)
        if (strcmp(s_settings[i].name, name) == 0)
            return i;
    return -1;
}

static void s_set_text(ain_config_t *self, int id, const char *value, s_source_t source)
{
    if (self->text[id] && (s_settings[id].flags & AIN_CFGF_SECRET))
        ain_crypto_wipe(self->text[id], strlen(self->text[id]));
    free(self->text[id]);
    self->text[id] = value ? ain_strdup(value) : NULL;
    self->source[id] = source;
}

static ain_config_t *s_new_defaults(void)
{
    ain_config_t *self = AIN_NEW(ain_config_t);
    for (int i = 0; i < AIN_CFG_COUNT; i++)
        s_set_text(self, i, s_settings[i].def, S_DEFAULT);
    return self;
}

/* ------------------------------------------------------------ parsing values */

static int s_parse_int(const s_setting_t *s, const char *text, long *out, char **error)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || !isdigit((unsigned char)text[text[0] == '-']) ||
        v < s->min || v > s->max) {
        *error =
            ain_sprintf("%s='%s' is not an integer in %ld..%ld", s->name, text, s->min, s->max);
        return -1;
    }
    *out = v;
    return 0;
}

/* A duration: a number with a unit (ms, s, m, h), or a bare number of seconds below
 * S_BARE_SECONDS_MAX. A bare number past it is refused rather than taken as hours of seconds:
 * the original's SCALING_GUIDE.md writes CACHE_TTL=30000 in its .env for its "L2 Cache: 30
 * seconds" (milliseconds), and users paste that file. Stored in milliseconds; min and max are
 * milliseconds too. */
#define S_BARE_SECONDS_MAX 1000

static int s_parse_seconds(const s_setting_t *s, const char *text, long *out, char **error)
{
    static const struct {
        const char *unit;
        long ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1000}};
    char *end;
    errno = 0;
    long v = isdigit((unsigned char)text[0]) ? strtol(text, &end, 10) : -1;
    long scale = 0;
    for (size_t i = 0; v >= 0 && !errno && i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0) {
            scale = units[i].ms;
            break;
        }
    if (scale == 0 || v > s->max / scale || v * scale < s->min) {
        *error = ain_sprintf("%s='%s' is not a duration in %ldms..%lds (a number with a unit: "
                             "ms, s, m, h; a bare number is seconds)",
                             s->name, text, s->min, s->max / 1000);
        return -1;
    }
    if (*end == '\0' && v >= S_BARE_SECONDS_MAX) {
        *error = ain_sprintf("%s='%s': a bare number is seconds, and %ld s cannot be what was "
                             "meant (SCALING_GUIDE.md's CACHE_TTL=30000 is milliseconds: 30 s); "
                             "write %ldms, or %lds if you do mean seconds",
                             s->name, text, v, v, v);
        return -1;
    }
    *out = v * scale;
    return 0;
}

static int s_parse_bool(const s_setting_t *s, const char *text, long *out, char **error)
{
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    *error = ain_sprintf("%s='%s' is not a boolean (true/false)", s->name, text);
    return -1;
}

static int s_parse_enum(const s_setting_t *s, const char *text, char **error)
{
    const char *colon = strchr(s->help, ':');
    size_t len = colon ? (size_t)(colon - s->help) : strlen(s->help);
    const char *p = s->help, *end = s->help + len;
    while (p < end) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        size_t n = (size_t)((bar ? bar : end) - p);
        if (strlen(text) == n && memcmp(text, p, n) == 0)
            return 0;
        p = bar ? bar + 1 : end;
    }
    *error = ain_sprintf("%s='%s' must be one of %.*s", s->name, text, (int)len, s->help);
    return -1;
}

/* A comma list into items; each item is checked by `ok`. */
static int s_parse_list(ain_config_t *self, int id, bool (*ok)(const char *), const char *what,
                        char **error)
{
    const char *text = self->text[id];
    char *copy = ain_strdup(text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        if (n == 0)
            continue;
        if (!ok(tok)) {
            *error = ain_sprintf("%s='%s': '%s' is not %s", s_settings[id].name, text, tok, what);
            free(copy);
            return -1;
        }
        self->items[id] = ain_realloc(self->items[id], (self->nitems[id] + 1) * sizeof(char *));
        self->items[id][self->nitems[id]++] = ain_strdup(tok);
    }
    free(copy);
    return 0;
}

static bool s_name_ok(const char *s)
{
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("._-", *s)))
            return false;
    return true;
}

static int s_parse_url(const s_setting_t *s, const char *text, char **error)
{
    if (strcmp(s->name, "REDIS_URL") == 0) {
        if (strncmp(text, "redis://", 8) == 0 || strncmp(text, "unix://", 7) == 0)
            return 0;
        *error = ain_sprintf("REDIS_URL must start with redis:// or unix:// (TLS, rediss://, "
                             "is not supported by hiredis 0.14)");
        return -1;
    }
    const char *scheme = strstr(text, "://");
    if (scheme && strncmp(text, "postgres://", 11) != 0 &&
        strncmp(text, "postgresql://", 13) != 0) {
        *error = ain_sprintf("%s must be a postgres:// or postgresql:// URI (or a libpq "
                             "conninfo string)",
                             s->name);
        return -1;
    }
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(text, &pqerr);
    if (!opts) {
        *error = ain_sprintf("%s is not a valid PostgreSQL URI or conninfo: %s", s->name,
                             pqerr ? pqerr : "out of memory");
        PQfreemem(pqerr);
        return -1;
    }
    PQconninfoFree(opts);
    return 0;
}

/* A key: the message names the variable and what is wrong, never the value. */
static int s_parse_key(const s_setting_t *s, const char *text, char **error)
{
    uint8_t key[AIN_CRYPTO_KEY_LEN];
    const char *why = NULL;
    int rc = ain_crypto_key_parse(text, key, &why);
    ain_crypto_wipe(key, sizeof key);
    if (rc < 0)
        *error = ain_sprintf("%s is not a usable 32-byte key: %s (value not shown)", s->name, why);
    return rc;
}

/* ID:KEY items, ids distinct; like s_parse_key, never shows a value. */
static int s_parse_keys(ain_config_t *self, int id, char **error)
{
    char *copy = ain_strdup(self->text[id]), *save = NULL;
    bool seen[256] = {false};
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        if (n == 0)
            continue;
        unsigned kid = 0;
        uint8_t key[AIN_CRYPTO_KEY_LEN];
        const char *why = NULL;
        rc = ain_crypto_key_item_parse(tok, &kid, key, &why);
        ain_crypto_wipe(key, sizeof key);
        if (rc == 0 && seen[kid]) {
            why = "a key id appears twice";
            rc = -1;
        }
        if (rc < 0) {
            *error = ain_sprintf("%s: item %zu: %s (value not shown)", s_settings[id].name,
                                 self->nitems[id] + 1, why);
            break;
        }
        seen[kid] = true;
        self->items[id] = ain_realloc(self->items[id], (self->nitems[id] + 1) * sizeof(char *));
        self->items[id][self->nitems[id]++] = ain_strdup(tok);
    }
    ain_crypto_wipe(copy, strlen(self->text[id]));
    free(copy);
    return rc;
}

static int s_validate_one(ain_config_t *self, int id, char **error)
{
    const s_setting_t *s = &s_settings[id];
    const char *text = self->text[id];
    if (!text || (text[0] == '\0' && s->kind != S_STR && s->kind != S_LIST))
        return 0; /* unset optional, or an empty derived setting */
    switch (s->kind) {
    case S_STR:
        return 0;
    case S_INT:
        return s_parse_int(s, text, &self->num[id], error);
    case S_BOOL:
        return s_parse_bool(s, text, &self->num[id], error);
    case S_SECONDS:
        return s_parse_seconds(s, text, &self->num[id], error);
    case S_ENUM:
        return s_parse_enum(s, text, error);
    case S_ENDPOINT:
        if (ain_endpoint_valid(text))
            return 0;
        *error = ain_sprintf("%s='%s' is not an endpoint (tcp://host:port, inproc://name, "
                             "ipc://path)",
                             s->name, text);
        return -1;
    case S_ENDPOINTS:
        return s_parse_list(self, id, ain_endpoint_valid, "an endpoint", error);
    case S_LIST:
        return s_parse_list(self, id, s_name_ok, "a name (a-z 0-9 . _ -)", error);
    case S_URL:
        return s_parse_url(s, text, error);
    case S_KEY:
        return s_parse_key(s, text, error);
    case S_KEYS:
        return s_parse_keys(self, id, error);
    }
    return 0;
}

/* ---------------------------------------------------------------- sources */

typedef struct {
    ain_config_t *self;
    char **error;
} s_file_ctx_t;

static int s_from_file(const char *key, const char *value, int line, void *arg)
{
    s_file_ctx_t *ctx = arg;
    int id = s_find(key);
    if (id >= 0) {
        s_set_text(ctx->self, id, value, S_FILE);
        return 0;
    }
    if (strncmp(key, "AINBOX_", 7) == 0 && strcmp(key, "AINBOX_CONFIG") != 0) {
        *ctx->error = ain_sprintf("line %d: unknown setting %s (misspelt?)", line, key);
        return -1;
    }
    return 0; /* somebody else's setting: an existing .env has many */
}

static void s_from_env(ain_config_t *self, char *const *envp, FILE *warn)
{
    for (char *const *e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char *key = ain_strndup(*e, (size_t)(eq - *e));
        int id = s_find(key);
        if (id >= 0)
            s_set_text(self, id, eq + 1, S_ENV);
        else if (warn && strncmp(key, "AINBOX_", 7) == 0 && strcmp(key, "AINBOX_CONFIG") != 0)
            fprintf(warn, "config: warning: %s is not a setting (misspelt?); ignored\n", key);
        free(key);
    }
}

static const char *s_env_lookup(char *const *envp, const char *key)
{
    size_t n = strlen(key);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* Fills derived settings left empty. Runs after validation of the rest. */
static int s_derive(ain_config_t *self, char **error)
{
    if (!self->text[AIN_CFG_AINBOX_HOST] || !self->text[AIN_CFG_AINBOX_HOST][0]) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        s_set_text(self, AIN_CFG_AINBOX_HOST, host, S_DERIVED);
    }
    struct {
        int target, from, offset;
        const char *suffix;
    } rules[] = {
        {AIN_CFG_AINBOX_BUS_IN, AIN_CFG_AINBOX_BROKER, 1, "-bus-in"},
        {AIN_CFG_AINBOX_BUS_OUT, AIN_CFG_AINBOX_BROKER, 2, "-bus-out"},
        {AIN_CFG_AINBOX_BUS_IN_BIND, AIN_CFG_AINBOX_BROKER_BIND, 1, "-bus-in"},
        {AIN_CFG_AINBOX_BUS_OUT_BIND, AIN_CFG_AINBOX_BROKER_BIND, 2, "-bus-out"},
    };
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        int t = rules[r].target, f = rules[r].from;
        if (self->text[t] && self->text[t][0])
            continue;
        size_t count = s_settings[f].kind == S_ENDPOINTS ? self->nitems[f] : 1;
        char *joined = ain_strdup("");
        for (size_t i = 0; i < count; i++) {
            const char *src = s_settings[f].kind == S_ENDPOINTS ? self->items[f][i] : self->text[f];
            char *d = ain_endpoint_derive(src, rules[r].offset, rules[r].suffix);
            if (!d) {
                *error = ain_sprintf("cannot derive %s from %s='%s'; set it explicitly",
                                     s_settings[t].name, s_settings[f].name, self->text[f]);
                free(joined);
                return -1;
            }
            char *next = ain_sprintf("%s%s%s", joined, i ? "," : "", d);
            free(d);
            free(joined);
            joined = next;
        }
        s_set_text(self, t, joined, S_DERIVED);
        free(joined);
        if (s_validate_one(self, t, error) < 0)
            return -1;
    }
    return 0;
}

static bool s_set(const ain_config_t *self, int id)
{
    return self->text[id] && self->text[id][0];
}

/* One secret for two purposes would let a token of one kind pass for another, or let whoever
 * reads one secret forge both (the original used the JWT secret inside its encryption key). */
static int s_check_secrets_distinct(const ain_config_t *self, char **error)
{
    static const int ids[] = {AIN_CFG_JWT_ACCESS_SECRET, AIN_CFG_JWT_REFRESH_SECRET,
                              AIN_CFG_AINBOX_JWT_ACCESS_SECRET_OLD,
                              AIN_CFG_AINBOX_JWT_REFRESH_SECRET_OLD, AIN_CFG_AINBOX_TOKEN_KEY};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        for (size_t j = i + 1; j < sizeof ids / sizeof ids[0]; j++)
            if (s_set(self, ids[i]) && s_set(self, ids[j]) &&
                strcmp(self->text[ids[i]], self->text[ids[j]]) == 0) {
                *error = ain_sprintf("%s and %s must be different secrets", s_settings[ids[i]].name,
                                     s_settings[ids[j]].name);
                return -1;
            }
    return 0;
}

static int s_check_token_keys(const ain_config_t *self, char **error)
{
    if (!s_set(self, AIN_CFG_AINBOX_TOKEN_KEYS_OLD))
        return 0;
    if (!s_set(self, AIN_CFG_AINBOX_TOKEN_KEY)) {
        *error = ain_sprintf("AINBOX_TOKEN_KEYS_OLD is set but AINBOX_TOKEN_KEY is not: a "
                             "rotation needs the new key");
        return -1;
    }
    long current = self->num[AIN_CFG_AINBOX_TOKEN_KEY_ID];
    for (size_t i = 0; i < self->nitems[AIN_CFG_AINBOX_TOKEN_KEYS_OLD]; i++) {
        if (strtol(self->items[AIN_CFG_AINBOX_TOKEN_KEYS_OLD][i], NULL, 10) == current) {
            *error = ain_sprintf("AINBOX_TOKEN_KEYS_OLD: item %zu has key id %ld, which is "
                                 "AINBOX_TOKEN_KEY_ID's; a new key needs a new id",
                                 i + 1, current);
            return -1;
        }
    }
    return 0;
}

/* A rotation of the broker's key: the next pair, and the endpoints that serve it, together, on a
 * broker (AINBOX_CURVE_SECRET and AINBOX_CURVE_ALLOW_DIR, checked by the caller). */
static int s_check_curve_next(const ain_config_t *self, char **error)
{
    const char *next = self->text[AIN_CFG_AINBOX_CURVE_SECRET_NEXT];
    bool binds = self->nitems[AIN_CFG_AINBOX_BROKER_BIND_NEXT] > 0;
    char pub[AIN_CURVE_KEY_TXT], sec[AIN_CURVE_KEY_TXT];
    if (!next && !binds)
        return 0;
    if (!next || !binds || !self->text[AIN_CFG_AINBOX_CURVE_ALLOW_DIR]) {
        *error = ain_sprintf("AINBOX_CURVE_SECRET_NEXT and AINBOX_BROKER_BIND_NEXT go together, "
                             "on a broker with AINBOX_CURVE_ALLOW_DIR");
        return -1;
    }
    int rc = ain_curve_load_secret(next, pub, sec);
    memset(sec, 0, sizeof sec);
    if (rc < 0) {
        *error = ain_sprintf("AINBOX_CURVE_SECRET_NEXT: no key pair in '%s'", next);
        return -1;
    }
    return 0;
}

/* CURVE needs this process's key pair, and either the broker's public key (a client) or a
 * directory of allowed keys (the broker); the files must be readable now, not at the first
 * connection. Messages name the variable and the path, never a key. */
static int s_check_curve(const ain_config_t *self, char **error)
{
    const char *secret = self->text[AIN_CFG_AINBOX_CURVE_SECRET];
    const char *server = self->text[AIN_CFG_AINBOX_CURVE_BROKER_KEY];
    const char *dir = self->text[AIN_CFG_AINBOX_CURVE_ALLOW_DIR];
    char pub[AIN_CURVE_KEY_TXT], sec[AIN_CURVE_KEY_TXT];
    struct stat st;
    if (!secret && (server || dir || self->text[AIN_CFG_AINBOX_CURVE_SECRET_NEXT])) {
        *error = ain_sprintf("%s is set but AINBOX_CURVE_SECRET (this process's own key pair) is "
                             "not",
                             server ? "AINBOX_CURVE_BROKER_KEY"
                             : dir  ? "AINBOX_CURVE_ALLOW_DIR"
                                    : "AINBOX_CURVE_SECRET_NEXT");
        return -1;
    }
    if (!secret)
        return 0;
    if (!server && !dir) {
        *error = ain_sprintf("AINBOX_CURVE_SECRET is set but neither AINBOX_CURVE_BROKER_KEY (a "
                             "client of the broker) nor AINBOX_CURVE_ALLOW_DIR (the broker)");
        return -1;
    }
    int rc = ain_curve_load_secret(secret, pub, sec);
    memset(sec, 0, sizeof sec);
    if (rc < 0) {
        *error = ain_sprintf("AINBOX_CURVE_SECRET: no key pair in '%s' (a NAME.cert_secret file "
                             "from `ainbox keygen`)",
                             secret);
        return -1;
    }
    if (server && ain_curve_public_key(server, pub) < 0) {
        *error = ain_sprintf("AINBOX_CURVE_BROKER_KEY: neither 40 Z85 characters nor a readable "
                             "certificate file");
        return -1;
    }
    if (dir && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))) {
        *error = ain_sprintf("AINBOX_CURVE_ALLOW_DIR: '%s' is not a directory", dir);
        return -1;
    }
    return s_check_curve_next(self, error);
}

/* In production the providers' endpoints are https: a plain-http one is the fake of tools/fakes
 * (the demo's provider) or a mistake, and either would carry users' codes and tokens in clear. */
static int s_check_provider_urls(const ain_config_t *self, char **error)
{
    static const ain_cfg_id_t urls[] = {
        AIN_CFG_AINBOX_GOOGLE_AUTH_URL,     AIN_CFG_AINBOX_GOOGLE_TOKEN_URL,
        AIN_CFG_AINBOX_GOOGLE_USERINFO_URL, AIN_CFG_AINBOX_MS_AUTH_URL,
        AIN_CFG_AINBOX_MS_TOKEN_URL,        AIN_CFG_AINBOX_MS_GRAPH_URL};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        const char *url = self->text[urls[i]];
        if (url && url[0] && strncmp(url, "https://", 8) != 0) {
            *error = ain_sprintf("%s: a provider endpoint must be https:// with "
                                 "NODE_ENV=production (a plain-http one is a fake, or a mistake)",
                                 s_settings[urls[i]].name);
            return -1;
        }
    }
    return 0;
}

static int s_cross_check(const ain_config_t *self, char **error)
{
    bool production = strcmp(self->text[AIN_CFG_NODE_ENV], "production") == 0;
    if (production && self->text[AIN_CFG_AINBOX_DEV_TOKEN]) {
        *error = ain_sprintf("AINBOX_DEV_TOKEN is a development shortcut and is refused with "
                             "NODE_ENV=production");
        return -1;
    }
    if (production && s_check_provider_urls(self, error) < 0)
        return -1;
    return s_check_secrets_distinct(self, error) < 0 || s_check_token_keys(self, error) < 0 ||
                   s_check_curve(self, error) < 0
               ? -1
               : 0;
}

ain_config_t *ain_config_load(char *const *envp, const char *file, FILE *warn, char **error)
{
    ain_config_t *self = s_new_defaults();
    char *err = NULL;
    if (!file)
        file = s_env_lookup(envp, "AINBOX_CONFIG");
    if (file && file[0]) {
        s_file_ctx_t ctx = {self, &err};
        if (ain_envfile_load(file, s_from_file, &ctx, &err) < 0)
            goto fail;
    }
    s_from_env(self, envp, warn);
    for (int i = 0; i < AIN_CFG_COUNT; i++)
        if (s_validate_one(self, i, &err) < 0)
            goto fail;
    if (s_derive(self, &err) < 0 || s_cross_check(self, &err) < 0)
        goto fail;
    return self;
fail:
    *error = err ? err : ain_strdup("invalid configuration");
    ain_config_destroy(&self);
    return NULL;
}

ain_config_t *ain_config_defaults(void)
{
    char *err = NULL;
    char *const empty[] = {NULL};
    ain_config_t *self = ain_config_load(empty, "", NULL, &err);
    assert(self); /* the built-in defaults are valid, or settings.def is wrong */
    free(err);
    return self;
}

void ain_config_destroy(ain_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_config_t *self = *self_p;
    for (int i = 0; i < AIN_CFG_COUNT; i++) {
        bool secret = s_settings[i].flags & AIN_CFGF_SECRET;
        if (secret && self->text[i]) /* no secret left in freed memory */
            ain_crypto_wipe(self->text[i], strlen(self->text[i]));
        free(self->text[i]);
        for (size_t k = 0; k < self->nitems[i]; k++) {
            if (secret)
                ain_crypto_wipe(self->items[i][k], strlen(self->items[i][k]));
            free(self->items[i][k]);
        }
        free(self->items[i]);
    }
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------- getters */

const char *ain_config_str(const ain_config_t *self, ain_cfg_id_t id)
{
    return self->text[id];
}

long ain_config_int(const ain_config_t *self, ain_cfg_id_t id)
{
    assert(s_settings[id].kind == S_INT);
    return self->num[id];
}

long ain_config_ms(const ain_config_t *self, ain_cfg_id_t id)
{
    assert(s_settings[id].kind == S_SECONDS);
    return self->num[id];
}

bool ain_config_bool(const ain_config_t *self, ain_cfg_id_t id)
{
    assert(s_settings[id].kind == S_BOOL);
    return self->num[id] != 0;
}

size_t ain_config_count(const ain_config_t *self, ain_cfg_id_t id)
{
    assert(s_settings[id].kind == S_LIST || s_settings[id].kind == S_ENDPOINTS ||
           s_settings[id].kind == S_KEYS);
    return self->nitems[id];
}

const char *ain_config_item(const ain_config_t *self, ain_cfg_id_t id, size_t index)
{
    return index < ain_config_count(self, id) ? self->items[id][index] : NULL;
}

bool ain_config_contains(const ain_config_t *self, ain_cfg_id_t id, const char *item)
{
    for (size_t i = 0; i < ain_config_count(self, id); i++)
        if (strcmp(self->items[id][i], item) == 0)
            return true;
    return false;
}

const char *ain_config_name(ain_cfg_id_t id)
{
    return s_settings[id].name;
}

/* ---------------------------------------------------------------- printing */

/* The value as it may be shown: secrets masked, URL passwords hidden. */
static char *s_shown(const ain_config_t *self, int id)
{
    const char *text = self->text[id];
    if (!text)
        return ain_strdup("(unset)");
    if (s_settings[id].kind == S_URL) {
        const char *scheme = strstr(text, "://");
        const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
        const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
        if (colon)
            return ain_sprintf("%.*s:****%s", (int)(colon - text), text, at);
        if (!scheme && strstr(text, "password"))
            return ain_strdup("(conninfo with password, hidden)");
        return ain_strdup(text);
    }
    if (s_settings[id].flags & AIN_CFGF_SECRET)
        return ain_sprintf("(set, %zu characters)", strlen(text));
    return ain_strdup(text);
}

static void s_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

void ain_config_print(const ain_config_t *self, FILE *out, bool json)
{
    if (json)
        fputs("{", out);
    for (int i = 0; i < AIN_CFG_COUNT; i++) {
        char *shown = s_shown(self, i);
        if (json) {
            fprintf(out, "%s\n  ", i ? "," : "");
            s_json_string(out, s_settings[i].name);
            fputs(": {\"value\": ", out);
            s_json_string(out, shown);
            fprintf(out, ", \"source\": \"%s\", \"secret\": %s}", s_source_names[self->source[i]],
                    s_settings[i].flags & AIN_CFGF_SECRET ? "true" : "false");
        } else {
            fprintf(out, "%-28s %-40s %s\n", s_settings[i].name, shown,
                    s_source_names[self->source[i]]);
        }
        free(shown);
    }
    if (json)
        fputs("\n}\n", out);
}

/* ---------------------------------------------------------------- selftest */

static int s_expect_error(char *const *envp, const char *needle);

/* CACHE_TTL as a SECONDS setting: units, bare seconds, and the guide's bare milliseconds. */
static int s_test_seconds(void)
{
    static const struct {
        const char *text;
        long ms; /* -1: refused */
    } cases[] = {{"30", 30000},        {"30s", 30000},  {"30000ms", 30000}, {"5m", 300000},
                 {"1h", 3600000},      {"999", 999000}, {"1000s", 1000000}, {"30000", -1},
                 {"1000", -1},         {"999ms", -1},   {"25h", -1},        {"30 s", -1},
                 {"-5", -1},           {"s", -1},       {"30sec", -1},      {"", 30000},
                 {"99999999999h", -1}, {"3e4", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char env[64], *err = NULL;
        snprintf(env, sizeof env, "CACHE_TTL=%s", cases[i].text);
        char *const envp[] = {cases[i].text[0] ? env : "NODE_ENV=test", NULL};
        ain_config_t *cfg = ain_config_load(envp, "", NULL, &err);
        long got = cfg ? ain_config_ms(cfg, AIN_CFG_CACHE_TTL) : -1;
        bool ok = got == cases[i].ms && (cfg || strstr(err, "CACHE_TTL"));
        if (!ok)
            fprintf(stderr, "config: CACHE_TTL=%s gave %ld (%s), expected %ld\n", cases[i].text,
                    got, err ? err : "no error", cases[i].ms);
        ain_config_destroy(&cfg);
        free(err);
        if (!ok)
            return -1;
    }
    return 0;
}

static int s_expect_error(char *const *envp, const char *needle)
{
    char *err = NULL;
    ain_config_t *cfg = ain_config_load(envp, "", NULL, &err);
    int rc = cfg || !err || !strstr(err, needle) ? -1 : 0;
    if (rc)
        fprintf(stderr, "config: expected error with '%s', got '%s'\n", needle, err ? err : "none");
    ain_config_destroy(&cfg);
    free(err);
    return rc;
}

/* The error names `needle` and shows nothing of the secret `hidden`. */
static int s_expect_secret_error(char *const *envp, const char *needle, const char *hidden)
{
    char *err = NULL;
    ain_config_t *cfg = ain_config_load(envp, "", NULL, &err);
    int rc = cfg || !err || !strstr(err, needle) || (hidden && strstr(err, hidden)) ? -1 : 0;
    if (rc)
        fprintf(stderr, "config: expected error with '%s' and without the secret, got '%s'\n",
                needle, err ? err : "none");
    ain_config_destroy(&cfg);
    free(err);
    return rc;
}

/* Token keys and secrets: refused by name, never shown, never shared. */
static int s_test_secrets(void)
{
#define S_KEY1 "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
#define S_KEY2 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    char *const bad_key[] = {"AINBOX_TOKEN_KEY=hunter2-hunter2", NULL};
    char *const bad_hex[] = {"AINBOX_TOKEN_KEY=" S_KEY1 "0", NULL};
    char *const bad_old[] = {"AINBOX_TOKEN_KEY=" S_KEY1, "AINBOX_TOKEN_KEYS_OLD=2:hunter2", NULL};
    char *const dup_old[] = {"AINBOX_TOKEN_KEY=" S_KEY1,
                             "AINBOX_TOKEN_KEYS_OLD=2:" S_KEY2 ",2:" S_KEY2, NULL};
    char *const same_id[] = {"AINBOX_TOKEN_KEY=" S_KEY1, "AINBOX_TOKEN_KEYS_OLD=1:" S_KEY2, NULL};
    char *const old_only[] = {"AINBOX_TOKEN_KEYS_OLD=1:" S_KEY2, NULL};
    char *const zero_id[] = {"AINBOX_TOKEN_KEY_ID=0", NULL};
    char *const shared[] = {"JWT_ACCESS_SECRET=same-secret-for-both-of-them-0123456789",
                            "JWT_REFRESH_SECRET=same-secret-for-both-of-them-0123456789", NULL};
    char *const reused[] = {"JWT_ACCESS_SECRET=" S_KEY1, "AINBOX_TOKEN_KEY=" S_KEY1, NULL};
    if (s_expect_secret_error(bad_key, "AINBOX_TOKEN_KEY", "hunter2") ||
        s_expect_secret_error(bad_hex, "AINBOX_TOKEN_KEY", "1f1e1d") ||
        s_expect_secret_error(bad_old, "AINBOX_TOKEN_KEYS_OLD", "hunter2") ||
        s_expect_secret_error(dup_old, "AINBOX_TOKEN_KEYS_OLD", "0001020") ||
        s_expect_secret_error(same_id, "AINBOX_TOKEN_KEY_ID", "0001020") ||
        s_expect_secret_error(old_only, "AINBOX_TOKEN_KEY", "0001020") ||
        s_expect_secret_error(zero_id, "AINBOX_TOKEN_KEY_ID", NULL) ||
        s_expect_secret_error(shared, "JWT_REFRESH_SECRET", "same-secret") ||
        s_expect_secret_error(reused, "AINBOX_TOKEN_KEY", "1f1e1d"))
        return -1;
    char *const good[] = {"AINBOX_TOKEN_KEY=" S_KEY1, "AINBOX_TOKEN_KEYS_OLD= 7:" S_KEY2 " ", NULL};
    char *err = NULL;
    ain_config_t *cfg = ain_config_load(good, "", NULL, &err);
    int rc = !cfg || ain_config_count(cfg, AIN_CFG_AINBOX_TOKEN_KEYS_OLD) != 1;
    if (cfg) {
        char *shown = s_shown(cfg, AIN_CFG_AINBOX_TOKEN_KEY);
        rc |= strstr(shown, "1f1e1d") != NULL;
        free(shown);
    }
    ain_config_destroy(&cfg);
    free(err);
    return rc ? -1 : 0;
#undef S_KEY1
#undef S_KEY2
}

int ain_config_test(bool verbose)
{
    ain_config_t *cfg = ain_config_defaults();
    int rc =
        ain_config_int(cfg, AIN_CFG_HTTP_PORT) != 3000 ||
        !ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING) ||
        strcmp(ain_config_str(cfg, AIN_CFG_AINBOX_BUS_OUT), "tcp://127.0.0.1:5557") != 0 ||
        strcmp(ain_config_item(cfg, AIN_CFG_AINBOX_BUS_IN_BIND, 0), "tcp://127.0.0.1:5556") != 0 ||
        !ain_config_contains(cfg, AIN_CFG_AINBOX_ACTORS, "monitor") ||
        ain_config_str(cfg, AIN_CFG_DATABASE_URL) != NULL;
    ain_config_destroy(&cfg);

    char *const env[] = {"HTTP_PORT=8080",
                         "AINBOX_BROKER=tcp://10.1.2.3:7000",
                         "DATABASE_URL=postgres://u:sekrit@db/ainbox",
                         "ENABLE_MONITORING=no",
                         "AINBOX_ACTORS= echo , monitor ",
                         NULL};
    char *err = NULL;
    cfg = ain_config_load(env, "", NULL, &err);
    rc |= !cfg;
    if (cfg) {
        char *shown = s_shown(cfg, AIN_CFG_DATABASE_URL);
        rc |= ain_config_int(cfg, AIN_CFG_HTTP_PORT) != 8080 ||
              ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING) ||
              strcmp(ain_config_str(cfg, AIN_CFG_AINBOX_BUS_IN), "tcp://10.1.2.3:7001") != 0 ||
              ain_config_count(cfg, AIN_CFG_AINBOX_ACTORS) != 2 ||
              strcmp(ain_config_item(cfg, AIN_CFG_AINBOX_ACTORS, 0), "echo") != 0 ||
              strstr(shown, "sekrit") != NULL;
        free(shown);
    }
    ain_config_destroy(&cfg);
    free(err);
    if (rc)
        return -1;

    char *const bad_port[] = {"HTTP_PORT=80a", NULL};
    char *const big_port[] = {"HTTP_PORT=70000", NULL};
    char *const bad_bool[] = {"ENABLE_MONITORING=maybe", NULL};
    char *const bad_enum[] = {"LOG_LEVEL=loud", NULL};
    char *const bad_ep[] = {"AINBOX_BROKER=udp://x:1", NULL};
    char *const bad_db[] = {"DATABASE_URL=mysql://u@h/db", NULL};
    char *const bad_kv[] = {"DATABASE_URL=host=h nonsense=1", NULL};
    char *const dev_prod[] = {"NODE_ENV=production", "AINBOX_DEV_TOKEN=x", NULL};
    char *const no_derive[] = {"AINBOX_BROKER=tcp://h:65535", NULL};
    char *const curve_half[] = {"AINBOX_CURVE_ALLOW_DIR=/tmp", NULL};
    char *const curve_alone[] = {"AINBOX_CURVE_SECRET=/nonexistent/k.cert_secret", NULL};
    char *const curve_next[] = {"AINBOX_CURVE_SECRET_NEXT=/nonexistent/n.cert_secret", NULL};
    char *const curve_missing[] = {"AINBOX_CURVE_SECRET=/nonexistent/k.cert_secret",
                                   "AINBOX_CURVE_ALLOW_DIR=/tmp", NULL};
    if (s_expect_error(bad_port, "HTTP_PORT='80a'") || s_expect_error(big_port, "HTTP_PORT") ||
        s_expect_error(bad_bool, "ENABLE_MONITORING") || s_expect_error(bad_enum, "LOG_LEVEL") ||
        s_expect_error(bad_ep, "AINBOX_BROKER") || s_expect_error(bad_db, "DATABASE_URL") ||
        s_expect_error(bad_kv, "DATABASE_URL") || s_expect_error(dev_prod, "AINBOX_DEV_TOKEN") ||
        s_expect_error(no_derive, "AINBOX_BUS_IN") ||
        s_expect_error(curve_half, "AINBOX_CURVE_SECRET") ||
        s_expect_error(curve_alone, "AINBOX_CURVE_BROKER_KEY") ||
        s_expect_error(curve_missing, "/nonexistent/k.cert_secret") ||
        s_expect_error(curve_next, "AINBOX_CURVE_SECRET_NEXT") || s_test_secrets() ||
        s_test_seconds())
        return -1;
    if (verbose)
        printf("config: defaults, environment, derivation and refusals\n");
    return 0;
}
