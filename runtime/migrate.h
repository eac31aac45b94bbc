/* migrate.h: applying the schema migrations in deploy/migrations/.
 *
 * A migration is a file NNNN_name.sql (version NNNN, at least one digit,
 * numbered without gaps from 1). Each pending one runs in its own
 * transaction together with its row in schema_migrations(version, name,
 * checksum, applied_at), so a failing migration leaves nothing behind.
 * A session advisory lock serialises runners on several hosts. An applied
 * migration whose file has changed since (checksum) is an error: the
 * schema must never silently differ from the files.
 *
 * Synchronous (libpq); used at start-up and by `ainbox migrate`, never on
 * a request path.
 */
#ifndef AIN_RUNTIME_MIGRATE_H
#define AIN_RUNTIME_MIGRATE_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/log.h"

typedef struct {
    int applied_before; /* migrations already applied when we started */
    int applied_now;    /* migrations this run applied */
    int pending;        /* left to apply (only with status_only) */
} ain_migrate_result_t;

/* Applies the pending migrations of `dir` to the database at `conninfo`
 * (a URI or libpq conninfo). With `status_only`, applies nothing and
 * reports. Progress is logged to `log`. Returns 0, or -1 with a message in
 * *error (caller frees). */
int ain_migrate(const char *conninfo, const char *dir, bool status_only, ain_log_t *log,
                ain_migrate_result_t *result, char **error);

#endif
