/* input.c: checks of the session actor's request fields (see input.h). */
#include "actors/session/input.h"

#include <stdio.h>
#include <string.h>

#include "proto/body.h"

bool ain_session_email_norm(char *email)
{
    const char *at = strchr(email, '@');
    if (!at || at == email || !at[1] || strchr(at + 1, '@') || !strchr(at + 1, '.'))
        return false;
    const char *dot = strrchr(at + 1, '.');
    if (dot == at + 1 || !dot[1])
        return false;
    for (char *p = email; *p; p++) {
        if (*p <= ' ' || *p > '~')
            return false;
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return true;
}

/* ------------------------------------------------------------ selftest */

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "input: %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int s_test_email(void)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"Ann@Example.COM", "ann@example.com"},
        {"a.b+c@d.e", "a.b+c@d.e"},
        {"", NULL},
        {"nobody", NULL},
        {"@example.com", NULL},
        {"a@", NULL},
        {"a@b", NULL},
        {"a@.b", NULL},
        {"a@b.", NULL},
        {"a@b@c.d", NULL},
        {"a b@c.d", NULL},
        {"a\t@c.d", NULL},
        {"\xc3\xa9@c.d", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        bool ok = ain_session_email_norm(buf);
        S_CHECK(ok == (cases[i].out != NULL));
        S_CHECK(!ok || strcmp(buf, cases[i].out) == 0);
    }
    return 0;
}

static int s_test_field(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    ain_mp_pack_kv_str(&pk, "ok", "hello");
    ain_mp_pack_kv_str(&pk, "long", "0123456789");
    ain_mp_pack_kv_str(&pk, "ctl", "a\nb");
    ain_mp_pack_kv_u64(&pk, "num", 7);
    ain_mp_pack_str(&pk, "nil");
    msgpack_pack_nil(&pk);
    ain_body_t body;
    int rc = ain_body_parse(&body, sb.data, sb.size) == AIN_STATUS_OK ? 0 : 1;
    char out[8];
    if (rc == 0) {
        rc |= ain_mp_get_text(body.root, "ok", out, sizeof out) != 1 || strcmp(out, "hello");
        rc |= ain_mp_get_text(body.root, "long", out, sizeof out) != -1;
        rc |= ain_mp_get_text(body.root, "ctl", out, sizeof out) != -1;
        rc |= ain_mp_get_text(body.root, "num", out, sizeof out) != -1;
        rc |= ain_mp_get_text(body.root, "nil", out, sizeof out) != 0 || out[0] != '\0';
        rc |= ain_mp_get_text(body.root, "absent", out, sizeof out) != 0;
    }
    ain_body_release(&body);
    msgpack_sbuffer_destroy(&sb);
    S_CHECK(rc == 0);
    return 0;
}

int ain_session_input_test(bool verbose)
{
    if (s_test_email() || s_test_field())
        return 1;
    if (verbose)
        printf("session input: ok\n");
    return 0;
}
