/* alloc.c: allocation that aborts with a message on out-of-memory. */
#include "runtime/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *s_check(void *p, size_t size)
{
    if (!p && size) {
        fprintf(stderr, "ainbox: out of memory allocating %zu bytes\n", size);
        abort();
    }
    return p;
}

void *ain_malloc(size_t size)
{
    return s_check(malloc(size ? size : 1), size ? size : 1);
}

void *ain_calloc(size_t count, size_t size)
{
    return s_check(calloc(count ? count : 1, size ? size : 1), count * size + 1);
}

void *ain_realloc(void *ptr, size_t size)
{
    return s_check(realloc(ptr, size ? size : 1), size ? size : 1);
}

char *ain_strdup(const char *s)
{
    return ain_strndup(s, strlen(s));
}

char *ain_strndup(const char *s, size_t n)
{
    char *p = ain_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ain_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = ain_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
