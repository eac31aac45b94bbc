/* selftest.c: runs the selftest of one class (or all), so ctest can give
 * each its own test, timeout and crash isolation.
 *
 *   ain_selftest NAME [-v]    ain_selftest all [-v]
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "actors/accounts/parse.h"
#include "actors/cache/keys.h"
#include "actors/cache/l1.h"
#include "actors/cache/sketch.h"
#include "actors/ratelimit/local.h"
#include "actors/ratelimit/policy.h"
#include "actors/session/input.h"
#include "actors/events/eventid.h"
#include "actors/events/evlog.h"
#include "actors/jobs/policy.h"
#include "actors/monitor/reports.h"
#include "edge/edge.h"
#include "mail/html.h"
#include "proto/body.h"
#include "proto/envelope.h"
#include "proto/mdp.h"
#include "proto/mpread.h"
#include "proto/msgtype.h"
#include "proto/status.h"
#include "proto/topic.h"
#include "runtime/config.h"
#include "runtime/crypto.h"
#include "runtime/curve.h"
#include "runtime/endpoint.h"
#include "runtime/envfile.h"
#include "runtime/jwt.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/mpjson.h"
#include "runtime/oauth.h"
#include "runtime/provider.h"
#include "actors/sync/mime.h"
#include "runtime/redis.h"
#include "runtime/sdnotify.h"

static const struct {
    const char *name;
    int (*test)(bool verbose);
} s_tests[] = {
    {"status", ain_status_test},
    {"msgtype", ain_msgtype_test},
    {"mpread", ain_mpread_test},
    {"envelope", ain_envelope_test},
    {"body", ain_body_test},
    {"mdp", ain_mdp_test},
    {"topic", ain_topic_test},
    {"log", ain_log_test},
    {"config", ain_config_test},
    {"sdnotify", ain_sdnotify_test},
    {"envfile", ain_envfile_test},
    {"endpoint", ain_endpoint_test},
    {"curve", ain_curve_test},
    {"metrics", ain_metrics_test},
    {"mpjson", ain_mpjson_test},
    {"sketch", ain_sketch_test},
    {"l1", ain_l1_test},
    {"keys", ain_keys_test},
    {"redis", ain_redis_test},
    {"reports", ain_reports_test},
    {"eventid", ain_eventid_test},
    {"evlog", ain_evlog_test},
    {"rl_policy", ain_rl_policy_test},
    {"rl_local", ain_rl_local_test},
    {"jobs_policy", ain_jobs_policy_test},
    {"crypto", ain_crypto_test},
    {"oauth", ain_oauth_test},
    {"jwt", ain_jwt_test},
    {"session_input", ain_session_input_test},
    {"provider", ain_provider_test},
    {"accounts_parse", ain_accounts_parse_test},
    {"sync_mime", ain__mime_test},
    {"handoff", ain_edge_handoff_test},
    {"guard", ain_edge_guard_test},
    {"streams", ain_edge_streams_test},
    {"html", ain_html_test},
};

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    bool verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    int ran = 0, failed = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++) {
        if (strcmp(which, "all") != 0 && strcmp(which, s_tests[i].name) != 0)
            continue;
        ran++;
        if (s_tests[i].test(verbose) != 0) {
            fprintf(stderr, "selftest %s: FAILED\n", s_tests[i].name);
            failed++;
        }
    }
    if (ran == 0) {
        fprintf(stderr, "selftest: no test named %s\n", which);
        return 2;
    }
    return failed ? 1 : 0;
}
