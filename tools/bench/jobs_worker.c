/* jobs_worker.c: ainbox-bench-jobs-worker, the fastest honest job service for jobs-bench.py.
 *
 *   ainbox-bench-jobs-worker LOGFILE        (AINBOX_BROKER etc. from the environment)
 *
 * Registers as service "sync" on the actor skeleton and answers every JOB_RUN {result: done}
 * at once, after appending the job's id to LOGFILE with one write(2) (no user-space buffer, so a
 * kill -9 loses no id it already answered for). The bench counts a job complete when its id is
 * in some worker's log and the queue is empty; an id logged twice is a job run again after its
 * worker was killed (at least once, never lost). Not a test; built with the benchmarks.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/actor.h"
#include "runtime/config.h"
#include "runtime/signal.h"

extern char **environ;

static int s_fd = -1;

static int s_run(ain_actor_t *actor, ain_request_t *req)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t id = 0;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        ain_mp_get_u64(body.root, "id", &id);
    ain_body_release(&body);
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)id);
    if (write(s_fd, line, (size_t)n) != n)
        return -1;
    msgpack_packer *pk = ain_actor_body(actor);
    msgpack_pack_map(pk, 1);
    ain_mp_pack_kv_str(pk, "result", "done");
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

static const ain_handler_t s_handlers[] = {{AIN_MSG_JOB_RUN, s_run}, {0, NULL}};

static const ain_actor_def_t s_def = {
    .service = "sync",
    .handlers = s_handlers,
    .credit = 256,
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ainbox-bench-jobs-worker LOGFILE\n");
        return 2;
    }
    s_fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s_fd < 0) {
        perror(argv[1]);
        return 1;
    }
    char *error = NULL;
    ain_config_t *cfg = ain_config_load(environ, NULL, stderr, &error);
    if (!cfg) {
        fprintf(stderr, "configuration error: %s\n", error);
        free(error);
        return 2;
    }
    ain_signal_install();
    ain_proc_t *proc = ain_proc_new(cfg);
    int rc = ain_actor_run(&s_def, proc, NULL);
    ain_proc_destroy(&proc);
    ain_config_destroy(&cfg);
    close(s_fd);
    return rc == 0 ? 0 : 1;
}
