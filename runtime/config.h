/* config.h: the effective configuration of a process.
 *
 * Settings are declared once, as data, in runtime/settings.def. A config is
 * built from the defaults there, then an optional .env-style file, then the
 * environment (the environment wins, as with dotenv). Every value is
 * validated at load: a bad value is an error naming the variable, never a
 * silent default. After loading, a config is immutable and may be shared by
 * every thread of the process.
 *
 * The file (AINBOX_CONFIG, or --config) uses .env syntax: KEY=VALUE lines,
 * `export ` allowed, '#' comments, single or double quotes. Keys that are
 * not ours (an existing .env has many) are ignored, except misspelt
 * AINBOX_* keys, which are an error in a file and a warning in the
 * environment.
 */
#ifndef AIN_RUNTIME_CONFIG_H
#define AIN_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifndef AIN_DEFAULT_MIGRATIONS_DIR
#define AIN_DEFAULT_MIGRATIONS_DIR "deploy/migrations"
#endif

enum {
    AIN_CFGF_SECRET = 1 << 0,
    AIN_CFGF_DERIVED = 1 << 1,
};

typedef enum {
#define AIN_SETTING(ID, KIND, DEF, MIN, MAX, FLAGS, HELP) AIN_CFG_##ID,
#include "runtime/settings.def"
#undef AIN_SETTING
    AIN_CFG_COUNT
} ain_cfg_id_t;

typedef struct _ain_config_t ain_config_t;

/* Builds a config from defaults, the file `file` (if NULL: the file named
 * by AINBOX_CONFIG in `envp`, if any) and `envp` (a NULL-terminated
 * "KEY=VALUE" array, normally `environ`). Returns a config the caller owns,
 * or NULL with a message in *error (caller frees). Warnings (unknown
 * AINBOX_* variables in the environment) are written to `warn` if not NULL. */
ain_config_t *ain_config_load(char *const *envp, const char *file, FILE *warn, char **error);

/* A config with defaults only (for tests and tools). */
ain_config_t *ain_config_defaults(void);

void ain_config_destroy(ain_config_t **self_p);

/* Typed getters. The kind of `id` must match (asserted: a mismatch is our
 * bug). ain_config_str returns NULL for an unset optional setting; strings
 * are borrowed from the config. */
const char *ain_config_str(const ain_config_t *self, ain_cfg_id_t id);
long ain_config_int(const ain_config_t *self, ain_cfg_id_t id);
/* A SECONDS setting (a duration with a unit, or bare seconds), in milliseconds. */
long ain_config_ms(const ain_config_t *self, ain_cfg_id_t id);
bool ain_config_bool(const ain_config_t *self, ain_cfg_id_t id);

/* Items of a LIST or ENDPOINTS setting. */
size_t ain_config_count(const ain_config_t *self, ain_cfg_id_t id);
const char *ain_config_item(const ain_config_t *self, ain_cfg_id_t id, size_t index);
bool ain_config_contains(const ain_config_t *self, ain_cfg_id_t id, const char *item);

/* The variable name of a setting ("HTTP_PORT"). */
const char *ain_config_name(ain_cfg_id_t id);

/* Prints every setting with its source (default, file, env, derived);
 * secrets are masked. As a table, or as one JSON object. */
void ain_config_print(const ain_config_t *self, FILE *out, bool json);

int ain_config_test(bool verbose);

#endif
