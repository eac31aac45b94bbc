/* envfile.h: parsing .env files (KEY=VALUE lines), as dotenv reads them.
 *
 * Supported: blank lines, '#' comments (whole-line, or after an unquoted
 * value following whitespace), an optional `export ` prefix, unquoted
 * values (trimmed), 'single-quoted' (literal) and "double-quoted" values
 * (with \n, \t, \" and \\ escapes). A line that is none of these is an
 * error with its line number; nothing is guessed.
 */
#ifndef AIN_RUNTIME_ENVFILE_H
#define AIN_RUNTIME_ENVFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Called for each KEY=VALUE; key and value are NUL-terminated and borrowed
 * for the call only. Return 0 to go on, -1 to stop (parse returns -1). */
typedef int(ain_envfile_fn)(const char *key, const char *value, int line, void *arg);

/* Parses `text` (`len` bytes). Returns 0, or -1 with a message in *error
 * (caller frees) naming the line. */
int ain_envfile_parse(const char *text, size_t len, ain_envfile_fn *fn, void *arg, char **error);

/* Reads and parses the file at `path` (at most 1 MiB). */
int ain_envfile_load(const char *path, ain_envfile_fn *fn, void *arg, char **error);

int ain_envfile_test(bool verbose);

#endif
