/* migrate.c: the schema migration runner (see migrate.h). */
#include "runtime/migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "runtime/alloc.h"

#define S_MAX_FILE (8 * 1024 * 1024)
/* Any constant works as long as every runner uses the same one. */
#define S_LOCK_KEY "7403391520164417"

typedef struct {
    int version;
    char *name; /* file name */
    char *sql;
    char checksum[17];
} s_migration_t;

typedef struct {
    s_migration_t *items;
    int count;
} s_list_t;

static void s_list_free(s_list_t *list)
{
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].name);
        free(list->items[i].sql);
    }
    free(list->items);
}

/* FNV-1a, 64 bits: enough to notice an edited file; not a security hash. */
static void s_checksum(const char *text, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    snprintf(out, 17, "%016" PRIx64, h);
}

static char *s_read_file(const char *path, char **error)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *error = ain_sprintf("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = ain_malloc(S_MAX_FILE + 1);
    size_t n = fread(text, 1, S_MAX_FILE + 1, f);
    fclose(f);
    if (n > S_MAX_FILE) {
        *error = ain_sprintf("%s is larger than 8 MiB", path);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

static int s_by_version(const void *a, const void *b)
{
    return ((const s_migration_t *)a)->version - ((const s_migration_t *)b)->version;
}

/* Version of "NNNN_name.sql", or -1 if the name is not a migration. */
static int s_version_of(const char *name)
{
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 4, ".sql") != 0 || !isdigit((unsigned char)name[0]))
        return -1;
    char *end;
    long v = strtol(name, &end, 10);
    return *end == '_' && v > 0 && v < 1000000 ? (int)v : -1;
}

/* Reads every migration of `dir`, sorted; checks numbering. */
static int s_load(const char *dir, s_list_t *list, char **error)
{
    DIR *d = opendir(dir);
    if (!d) {
        *error = ain_sprintf("cannot open migrations folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        int version = s_version_of(e->d_name);
        if (version < 0)
            continue;
        char *path = ain_sprintf("%s/%s", dir, e->d_name);
        char *sql = s_read_file(path, error);
        free(path);
        if (!sql) {
            rc = -1;
            break;
        }
        list->items = ain_realloc(list->items, (size_t)(list->count + 1) * sizeof *list->items);
        s_migration_t *m = &list->items[list->count++];
        m->version = version;
        m->name = ain_strdup(e->d_name);
        m->sql = sql;
        s_checksum(sql, m->checksum);
    }
    closedir(d);
    if (rc < 0)
        return -1;
    qsort(list->items, (size_t)list->count, sizeof *list->items, s_by_version);
    for (int i = 0; i < list->count; i++) {
        if (list->items[i].version != i + 1) {
            *error = ain_sprintf("migrations must be numbered 1, 2, 3... without gaps or "
                                 "duplicates: found %s where version %d belongs",
                                 list->items[i].name, i + 1);
            return -1;
        }
    }
    return 0;
}

/* Runs a command; returns 0, or -1 with the server's message in *error. */
static int s_exec(PGconn *pg, const char *sql, char **error)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc < 0)
        *error = ain_sprintf("%s", PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/* Compares applied migrations with the files; returns how many are
 * applied, or -1 (a file changed, or the database is ahead of the files). */
static int s_applied(PGconn *pg, const s_list_t *list, char **error)
{
    PGresult *res = PQexec(pg, "select version, checksum from schema_migrations order by version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        *error = ain_sprintf("reading schema_migrations: %s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res), rc = n;
    for (int i = 0; i < n && rc >= 0; i++) {
        int version = atoi(PQgetvalue(res, i, 0));
        if (version != i + 1 || i >= list->count) {
            *error = ain_sprintf("the database has migration %d, which the files do not: it is "
                                 "newer than this build",
                                 version);
            rc = -1;
        } else if (strcmp(PQgetvalue(res, i, 1), list->items[i].checksum) != 0) {
            *error = ain_sprintf("%s changed after it was applied; write a new migration "
                                 "instead of editing an applied one",
                                 list->items[i].name);
            rc = -1;
        }
    }
    PQclear(res);
    return rc;
}

/* Rolls back; its own failure changes nothing for the caller. */
static void s_rollback(PGconn *pg)
{
    char *ignored = NULL;
    s_exec(pg, "rollback", &ignored);
    free(ignored);
}

static int s_apply(PGconn *pg, const s_migration_t *m, ain_log_t *log, char **error)
{
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name, m->checksum};
    char *inner = NULL;
    if (s_exec(pg, "begin", error) < 0)
        return -1;
    if (s_exec(pg, m->sql, &inner) < 0) {
        *error = ain_sprintf("%s failed: %s", m->name, inner);
        s_rollback(pg);
        free(inner);
        return -1;
    }
    PGresult *res = PQexecParams(pg,
                                 "insert into schema_migrations(version, name, checksum) "
                                 "values ($1::int, $2, $3)",
                                 3, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        *error = ain_sprintf("recording %s: %s", m->name, PQresultErrorMessage(res));
    PQclear(res);
    if (!ok || s_exec(pg, "commit", error) < 0) {
        s_rollback(pg);
        return -1;
    }
    ain_info(log, "applied %s", m->name);
    return 0;
}

static int s_run(PGconn *pg, const s_list_t *list, bool status_only, ain_log_t *log,
                 ain_migrate_result_t *result, char **error)
{
    if (s_exec(pg, "set client_min_messages = warning", error) < 0 ||
        s_exec(pg,
               "create table if not exists schema_migrations ("
               " version int primary key, name text not null, checksum text not null,"
               " applied_at timestamptz not null default now())",
               error) < 0)
        return -1;
    int applied = s_applied(pg, list, error);
    if (applied < 0)
        return -1;
    result->applied_before = applied;
    if (status_only) {
        result->pending = list->count - applied;
        return 0;
    }
    for (int i = applied; i < list->count; i++) {
        if (s_apply(pg, &list->items[i], log, error) < 0)
            return -1;
        result->applied_now++;
    }
    return 0;
}

int ain_migrate(const char *conninfo, const char *dir, bool status_only, ain_log_t *log,
                ain_migrate_result_t *result, char **error)
{
    s_list_t list = {NULL, 0};
    memset(result, 0, sizeof *result);
    if (s_load(dir, &list, error) < 0) {
        s_list_free(&list);
        return -1;
    }
    PGconn *pg = PQconnectdb(conninfo);
    int rc = -1;
    if (PQstatus(pg) != CONNECTION_OK) {
        *error = ain_sprintf("cannot connect to the database: %s", PQerrorMessage(pg));
    } else if (s_exec(pg, "select pg_advisory_lock(" S_LOCK_KEY ")", error) == 0) {
        rc = s_run(pg, &list, status_only, log, result, error);
        char *ignored = NULL;
        s_exec(pg, "select pg_advisory_unlock(" S_LOCK_KEY ")", &ignored);
        free(ignored); /* the lock also ends with the session */
    }
    PQfinish(pg);
    s_list_free(&list);
    return rc;
}
