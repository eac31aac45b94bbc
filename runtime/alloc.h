/* alloc.h: the one allocation wrapper.
 *
 * Out of memory is not a condition the process can handle sensibly, so these
 * print what failed and abort instead of returning NULL. Every allocation in
 * our code goes through them; memory is freed with plain free().
 */
#ifndef AIN_RUNTIME_ALLOC_H
#define AIN_RUNTIME_ALLOC_H

#include <stddef.h>

/* Each returns memory the caller owns; none returns NULL. */
void *ain_malloc(size_t size);
void *ain_calloc(size_t count, size_t size);
void *ain_realloc(void *ptr, size_t size);
char *ain_strdup(const char *s);
char *ain_strndup(const char *s, size_t n);
/* A printf-formatted string the caller frees. */
char *ain_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define AIN_NEW(type) ((type *)ain_calloc(1, sizeof(type)))

#endif
