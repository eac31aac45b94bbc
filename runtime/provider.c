/* provider.c: the sign-in providers' settings and form encoding (see provider.h). */
#include "runtime/provider.h"

#include <stdio.h>
#include <string.h>

static bool s_http_url(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* Copies `url` into out, or the fallback `head` `arg` `tail` when url is unset or empty. */
static int s_url(char out[AIN_PROVIDER_URL_MAX], const char *url, const char *head, const char *arg,
                 const char *tail, const char **why)
{
    int n = url && url[0] ? snprintf(out, AIN_PROVIDER_URL_MAX, "%s", url)
                          : snprintf(out, AIN_PROVIDER_URL_MAX, "%s%s%s", head, arg, tail);
    if (n < 0 || n >= AIN_PROVIDER_URL_MAX) {
        *why = "a provider URL is too long";
        return -1;
    }
    if (!s_http_url(out)) {
        *why = "a provider URL does not start with http:// or https://";
        return -1;
    }
    return 0;
}

int ain_provider_load(const ain_config_t *cfg, ain_oauth_provider_t id, ain_provider_t *out,
                      const char **why)
{
    memset(out, 0, sizeof *out);
    char port[16];
    snprintf(port, sizeof port, "%ld", ain_config_int(cfg, AIN_CFG_HTTP_PORT));
    out->id = id;
    if (id == AIN_OAUTH_GOOGLE) {
        out->name = "google", out->account = "gmail", out->scopes = AIN_PROVIDER_GOOGLE_SCOPES;
        out->client_id = ain_config_str(cfg, AIN_CFG_GOOGLE_CLIENT_ID);
        if (out->client_id && !out->client_id[0])
            out->client_id = NULL;
        out->secret = ain_config_str(cfg, AIN_CFG_GOOGLE_CLIENT_SECRET);
        return s_url(out->redirect_uri, ain_config_str(cfg, AIN_CFG_GOOGLE_CALLBACK_URL),
                     "http://localhost:", port, "/google/callback", why) |
               s_url(out->auth_url, ain_config_str(cfg, AIN_CFG_AINBOX_GOOGLE_AUTH_URL), "", "", "",
                     why) |
               s_url(out->token_url, ain_config_str(cfg, AIN_CFG_AINBOX_GOOGLE_TOKEN_URL), "", "",
                     "", why) |
               s_url(out->identity_url, ain_config_str(cfg, AIN_CFG_AINBOX_GOOGLE_USERINFO_URL), "",
                     "", "", why);
    }
    if (id != AIN_OAUTH_MICROSOFT) {
        *why = "unknown provider";
        return -1;
    }
    out->name = "microsoft", out->account = "outlook", out->scopes = AIN_PROVIDER_MS_SCOPES;
    out->scope_on_token = true;
    out->client_id = ain_config_str(cfg, AIN_CFG_MICROSOFT_CLIENT_ID);
    if (out->client_id && !out->client_id[0])
        out->client_id = NULL;
    out->secret = ain_config_str(cfg, AIN_CFG_MICROSOFT_CLIENT_SECRET);
    const char *tenant = ain_config_str(cfg, AIN_CFG_MICROSOFT_TENANT_ID);
    size_t tlen = strlen(tenant);
    if (tlen == 0 || tlen > 64 ||
        strspn(tenant, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
            tlen) {
        *why = "MICROSOFT_TENANT_ID is not a tenant name or id";
        return -1;
    }
    const char *graph = ain_config_str(cfg, AIN_CFG_AINBOX_MS_GRAPH_URL);
    size_t glen = strlen(graph);
    while (glen > 0 && graph[glen - 1] == '/') /* "https://graph.microsoft.com/" is a base too */
        glen--;
    char me[AIN_PROVIDER_URL_MAX];
    int n = snprintf(me, sizeof me, "%.*s/v1.0/me", (int)glen, graph);
    if (n < 0 || (size_t)n >= sizeof me) {
        *why = "AINBOX_MS_GRAPH_URL is too long";
        return -1;
    }
    return s_url(out->redirect_uri, ain_config_str(cfg, AIN_CFG_MICROSOFT_REDIRECT_URI),
                 "http://localhost:", port, "/auth/outlook/callback", why) |
           s_url(out->auth_url, ain_config_str(cfg, AIN_CFG_AINBOX_MS_AUTH_URL),
                 "https://login.microsoftonline.com/", tenant, "/oauth2/v2.0/authorize", why) |
           s_url(out->token_url, ain_config_str(cfg, AIN_CFG_AINBOX_MS_TOKEN_URL),
                 "https://login.microsoftonline.com/", tenant, "/oauth2/v2.0/token", why) |
           s_url(out->identity_url, me, "", "", "", why);
}

ain_oauth_provider_t ain_provider_by_name(const char *name)
{
    if (strcmp(name, "google") == 0 || strcmp(name, "gmail") == 0)
        return AIN_OAUTH_GOOGLE;
    if (strcmp(name, "microsoft") == 0 || strcmp(name, "outlook") == 0)
        return AIN_OAUTH_MICROSOFT;
    return 0;
}

int ain_provider_escape(char *out, size_t size, size_t *len, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = *len;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (n + (plain ? 1 : 3) >= size) {
            if (size > *len)
                out[*len] = '\0';
            return -1;
        }
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    *len = n;
    return 0;
}

int ain_provider_param(char *out, size_t size, size_t *len, const char *name, const char *value)
{
    size_t start = *len;
    int w = snprintf(out + start, size - start, "%s%s=", start ? "&" : "", name);
    if (w < 0 || (size_t)w >= size - start) {
        out[start] = '\0';
        return -1;
    }
    *len = start + (size_t)w;
    if (ain_provider_escape(out, size, len, value) < 0) {
        *len = start;
        out[start] = '\0';
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- selftest */

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "provider: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static int s_test_escape(void)
{
    char buf[64];
    size_t len = 0;
    S_CHECK(ain_provider_param(buf, sizeof buf, &len, "scope", "openid email") == 0);
    S_CHECK(ain_provider_param(buf, sizeof buf, &len, "r", "http://a/b?c=d&e") == 0);
    S_CHECK(strcmp(buf, "scope=openid%20email&r=http%3A%2F%2Fa%2Fb%3Fc%3Dd%26e") == 0);
    S_CHECK(len == strlen(buf));
    /* What does not fit leaves the buffer as it was. */
    char small[16];
    len = 0;
    S_CHECK(ain_provider_param(small, sizeof small, &len, "a", "bc") == 0);
    S_CHECK(ain_provider_param(small, sizeof small, &len, "code", "4/0AX//==") < 0);
    S_CHECK(strcmp(small, "a=bc") == 0 && len == 4);
    len = 0;
    S_CHECK(ain_provider_escape(small, sizeof small, &len, "~-._ü") == 0);
    S_CHECK(strcmp(small, "~-._%C3%BC") == 0);
    return 0;
}

static int s_test_load(void)
{
    char *error = NULL;
    char *const env[] = {
        "GOOGLE_CLIENT_ID=g-id",      "GOOGLE_CLIENT_SECRET=g-secret",           "HTTP_PORT=3100",
        "MICROSOFT_TENANT_ID=common", "AINBOX_MS_GRAPH_URL=http://127.0.0.1:9/", NULL};
    ain_config_t *cfg = ain_config_load(env, NULL, NULL, &error);
    S_CHECK(cfg);
    ain_provider_t g, m;
    const char *why = NULL;
    S_CHECK(ain_provider_load(cfg, AIN_OAUTH_GOOGLE, &g, &why) == 0);
    S_CHECK(strcmp(g.client_id, "g-id") == 0 && strcmp(g.account, "gmail") == 0);
    S_CHECK(strcmp(g.redirect_uri, "http://localhost:3100/google/callback") == 0);
    S_CHECK(strcmp(g.token_url, "https://oauth2.googleapis.com/token") == 0);
    S_CHECK(!g.scope_on_token);
    S_CHECK(ain_provider_load(cfg, AIN_OAUTH_MICROSOFT, &m, &why) == 0);
    S_CHECK(m.client_id == NULL && m.scope_on_token);
    S_CHECK(strcmp(m.auth_url, "https://login.microsoftonline.com/common/oauth2/v2.0/authorize") ==
            0);
    S_CHECK(strcmp(m.identity_url, "http://127.0.0.1:9/v1.0/me") == 0);
    S_CHECK(strcmp(m.redirect_uri, "http://localhost:3100/auth/outlook/callback") == 0);
    ain_config_destroy(&cfg);
    char *const bad[] = {"AINBOX_GOOGLE_TOKEN_URL=ftp://x/token", NULL};
    cfg = ain_config_load(bad, NULL, NULL, &error);
    S_CHECK(cfg);
    S_CHECK(ain_provider_load(cfg, AIN_OAUTH_GOOGLE, &g, &why) < 0 && strstr(why, "http"));
    ain_config_destroy(&cfg);
    char *const tenant[] = {"MICROSOFT_TENANT_ID=a/b", NULL};
    cfg = ain_config_load(tenant, NULL, NULL, &error);
    S_CHECK(cfg);
    S_CHECK(ain_provider_load(cfg, AIN_OAUTH_MICROSOFT, &m, &why) < 0);
    ain_config_destroy(&cfg);
    S_CHECK(ain_provider_by_name("outlook") == AIN_OAUTH_MICROSOFT);
    S_CHECK(ain_provider_by_name("yahoo") == 0);
    return 0;
}

int ain_provider_test(bool verbose)
{
    if (s_test_escape() || s_test_load())
        return -1;
    if (verbose)
        printf("provider: form encoding, settings with defaults, bad URLs and tenants refused\n");
    return 0;
}
