/* envfile.c: a strict .env parser (see envfile.h for the accepted syntax). */
#include "runtime/envfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

#define S_MAX_FILE (1024 * 1024)

static const char *s_skip_blank(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Double-quoted value: unescapes into out; returns the end quote or NULL. */
static const char *s_double_quoted(const char *p, const char *end, char *out)
{
    size_t n = 0;
    for (; p < end && *p != '"'; p++) {
        if (*p == '\\' && p + 1 < end) {
            p++;
            out[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return p < end ? p : NULL;
}

/* Parses the value part of one line into `out` (room for end-p+1 bytes).
 * Returns 0 or -1 with a static reason. */
static int s_value(const char *p, const char *end, char *out, const char **why)
{
    p = s_skip_blank(p, end);
    const char *rest;
    if (p < end && (*p == '"' || *p == '\'')) {
        char quote = *p++;
        if (quote == '"') {
            rest = s_double_quoted(p, end, out);
        } else {
            rest = memchr(p, '\'', (size_t)(end - p));
            if (rest) {
                memcpy(out, p, (size_t)(rest - p));
                out[rest - p] = '\0';
            }
        }
        if (!rest) {
            *why = "unterminated quote";
            return -1;
        }
        rest = s_skip_blank(rest + 1, end);
        if (rest < end && *rest != '#') {
            *why = "text after the closing quote";
            return -1;
        }
        return 0;
    }
    /* Unquoted: up to a " #" comment, trailing blanks trimmed. */
    const char *stop = p;
    while (stop < end && !(*stop == '#' && (stop == p || isblank((unsigned char)stop[-1]))))
        stop++;
    while (stop > p && isblank((unsigned char)stop[-1]))
        stop--;
    memcpy(out, p, (size_t)(stop - p));
    out[stop - p] = '\0';
    return 0;
}

/* One line: returns 0 (including blank/comment), or -1 with *why. */
static int s_line(const char *p, const char *end, int line, ain_envfile_fn *fn, void *arg,
                  char *key, char *value, const char **why)
{
    if (end > p && end[-1] == '\r')
        end--;
    p = s_skip_blank(p, end);
    if (p == end || *p == '#')
        return 0;
    if ((size_t)(end - p) > 7 && memcmp(p, "export ", 7) == 0)
        p = s_skip_blank(p + 7, end);
    const char *k = p;
    while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
        p++;
    if (p == k || isdigit((unsigned char)*k)) {
        *why = "expected KEY=VALUE";
        return -1;
    }
    memcpy(key, k, (size_t)(p - k));
    key[p - k] = '\0';
    p = s_skip_blank(p, end);
    if (p == end || *p != '=') {
        *why = "expected '=' after the key";
        return -1;
    }
    if (s_value(p + 1, end, value, why) < 0)
        return -1;
    if (fn(key, value, line, arg) < 0) {
        *why = NULL; /* the callback has its own message */
        return -1;
    }
    return 0;
}

int ain_envfile_parse(const char *text, size_t len, ain_envfile_fn *fn, void *arg, char **error)
{
    const char *p = text, *end = text + len;
    char *key = ain_malloc(len + 1), *value = ain_malloc(len + 1);
    int line = 0, rc = 0;
    while (p < end && rc == 0) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *why = NULL;
        line++;
        if (memchr(p, '\0', (size_t)(eol - p))) {
            why = "NUL byte in line";
            rc = -1;
        } else {
            rc = s_line(p, eol, line, fn, arg, key, value, &why);
        }
        if (rc < 0 && why && error)
            *error = ain_sprintf("line %d: %s", line, why);
        p = eol + 1;
    }
    free(key);
    free(value);
    return rc;
}

int ain_envfile_load(const char *path, ain_envfile_fn *fn, void *arg, char **error)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *error = ain_sprintf("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *text = ain_malloc(S_MAX_FILE + 1);
    size_t len = fread(text, 1, S_MAX_FILE + 1, f);
    int failed = ferror(f);
    fclose(f);
    int rc = -1;
    char *inner = NULL;
    if (failed)
        *error = ain_sprintf("cannot read %s", path);
    else if (len > S_MAX_FILE)
        *error = ain_sprintf("%s is larger than 1 MiB", path);
    else if ((rc = ain_envfile_parse(text, len, fn, arg, &inner)) < 0 && inner)
        *error = ain_sprintf("%s: %s", path, inner);
    free(inner);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- selftest */

typedef struct {
    char out[512];
} s_collect_t;

static int s_collect(const char *key, const char *value, int line, void *arg)
{
    s_collect_t *c = arg;
    size_t n = strlen(c->out);
    snprintf(c->out + n, sizeof c->out - n, "%s=[%s];", key, value);
    return 0;
}

int ain_envfile_test(bool verbose)
{
    const char *good = "# comment\n"
                       "\n"
                       "A=1\n"
                       "export B = two words  # trailing\n"
                       "C='lit #eral'\n"
                       "D=\"esc\\\"aped\\nx\"\r\n"
                       "E=\n"
                       "F=a#b\n";
    s_collect_t c = {{0}};
    char *err = NULL;
    if (ain_envfile_parse(good, strlen(good), s_collect, &c, &err) != 0 ||
        strcmp(c.out, "A=[1];B=[two words];C=[lit #eral];D=[esc\"aped\nx];E=[];F=[a#b];") != 0) {
        fprintf(stderr, "envfile: got %s (%s)\n", c.out, err ? err : "");
        free(err);
        return -1;
    }
    const char *bad[] = {"=1\n", "A 1\n", "A='open\n", "1A=x\n", "A=\"x\" y\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        if (ain_envfile_parse(bad[i], strlen(bad[i]), s_collect, &c, &err) == 0 || !err ||
            strncmp(err, "line 1:", 7) != 0) {
            fprintf(stderr, "envfile: accepted %s\n", bad[i]);
            free(err);
            return -1;
        }
        free(err);
    }
    if (verbose)
        printf("envfile: dotenv syntax\n");
    return 0;
}
