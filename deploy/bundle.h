/* bundle.h: the single-node bundle, every role as a thread of one process.
 *
 * Starts, in order, the broker (bound to inproc endpoints unique to this
 * bundle, plus the configured tcp endpoints so ainbox-admin and remote
 * actors can reach it), the actors, and the edge, under one supervisor;
 * stops them in reverse order, so the edge stops taking requests first and
 * the broker goes last. Two bundles may run in one process (tests).
 */
#ifndef AIN_DEPLOY_BUNDLE_H
#define AIN_DEPLOY_BUNDLE_H

#include <stdbool.h>

#include "runtime/config.h"
#include "runtime/proc.h"

typedef struct _ain_bundle_t ain_bundle_t;

typedef struct {
    bool edge;          /* run the HTTP edge */
    bool bind_tcp;      /* bind the configured tcp endpoints too */
    const char *actors; /* comma list; NULL = AINBOX_ACTORS */
} ain_bundle_opts_t;

/* Starts a bundle over `cfg` (borrowed). Returns it running, or NULL if a
 * role failed to start (logged). */
ain_bundle_t *ain_bundle_new(const ain_config_t *cfg, const ain_bundle_opts_t *opts);

/* The bundle's process context (its inproc endpoints). Borrowed. */
const ain_proc_t *ain_bundle_proc(const ain_bundle_t *self);

/* Supervises for up to `timeout_ms`. Returns 0, or -1 if the bundle cannot
 * go on (a permanent role failed, or actors keep failing). */
int ain_bundle_poll(ain_bundle_t *self, int timeout_ms);

/* Stops every role in order and frees the bundle. Safe twice. */
void ain_bundle_destroy(ain_bundle_t **self_p);

#endif
