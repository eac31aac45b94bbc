/* envelope_fuzz.c: libFuzzer target for everything that reads outside bytes
 * in proto/: the envelope decoder, the bounded validator and body parsing
 * (validator + msgpack-c).
 *
 * Invariants checked: no crash or sanitizer report; whatever decodes
 * re-encodes to an envelope that decodes to the same fields.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/body.h"
#include "proto/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_same_or_die(const ain_envelope_t *a, const ain_envelope_t *b)
{
    if (a->type != b->type || a->corr != b->corr || a->user != b->user ||
        a->deadline_ms != b->deadline_ms || a->trace != b->trace || a->status != b->status ||
        a->body_len != b->body_len || memcmp(a->body, b->body, a->body_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ain_envelope_t env, again;
    const char *why = NULL;
    if (ain_envelope_decode(data, size, 1u << 20, &env, &why) == AIN_STATUS_OK) {
        (void)ain_envelope_check_request(&env, &why);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        ain_envelope_pack(&env, &sb);
        if (ain_envelope_decode(sb.data, sb.size, 1u << 20, &again, &why) != AIN_STATUS_OK)
            abort();
        s_same_or_die(&env, &again);
        msgpack_sbuffer_destroy(&sb);

        ain_body_t body;
        (void)ain_body_parse(&body, env.body, env.body_len);
        ain_body_release(&body);
    }
    /* The raw bytes as a body too: the validator guards msgpack-c. */
    ain_body_t body;
    if (ain_body_parse(&body, data, size) == AIN_STATUS_OK) {
        uint64_t u;
        const char *s;
        size_t n;
        (void)ain_mp_get_u64(body.root, "delay_ms", &u);
        (void)ain_mp_get_str(body.root, "data", &s, &n);
    }
    ain_body_release(&body);
    return 0;
}
