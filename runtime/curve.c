/* curve.c: CurveZMQ keys and the client side of CURVE (see curve.h). */
#include "runtime/curve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <czmq.h>

#include "runtime/alloc.h"

/* Z85 of 32 zero bytes: what CZMQ reports as the secret key of a cert
 * loaded from a public file. */
#define S_ZERO_KEY "0000000000000000000000000000000000000000"

static bool s_prefix(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

bool ain_curve_applies(const char *endpoint)
{
    return endpoint && (s_prefix(endpoint, "tcp://") || s_prefix(endpoint, "ipc://"));
}

/* True if `text` is 40 characters of the Z85 alphabet decoding to 32 bytes. */
static bool s_z85_key(const char *text)
{
    uint8_t bin[32];
    return strlen(text) == 40 && zmq_z85_decode(bin, text) != NULL;
}

int ain_curve_load_secret(const char *path, char public_txt[AIN_CURVE_KEY_TXT],
                          char secret_txt[AIN_CURVE_KEY_TXT])
{
    /* zcert_load tries PATH_secret first, then PATH itself, which may be
     * the secret file: both spellings work. */
    zcert_t *cert = path && path[0] ? zcert_load(path) : NULL;
    int rc = -1;
    if (cert && s_z85_key(zcert_public_txt(cert)) && s_z85_key(zcert_secret_txt(cert)) &&
        strcmp(zcert_secret_txt(cert), S_ZERO_KEY) != 0) {
        snprintf(public_txt, AIN_CURVE_KEY_TXT, "%s", zcert_public_txt(cert));
        snprintf(secret_txt, AIN_CURVE_KEY_TXT, "%s", zcert_secret_txt(cert));
        rc = 0;
    }
    zcert_destroy(&cert);
    return rc;
}

int ain_curve_public_key(const char *text, char public_txt[AIN_CURVE_KEY_TXT])
{
    if (!text)
        return -1;
    if (s_z85_key(text)) {
        snprintf(public_txt, AIN_CURVE_KEY_TXT, "%s", text);
        return 0;
    }
    zcert_t *cert = zcert_load(text);
    int rc = -1;
    if (cert && s_z85_key(zcert_public_txt(cert)) &&
        strcmp(zcert_public_txt(cert), S_ZERO_KEY) != 0) {
        snprintf(public_txt, AIN_CURVE_KEY_TXT, "%s", zcert_public_txt(cert));
        rc = 0;
    }
    zcert_destroy(&cert);
    return rc;
}

int ain_curve_connect(void *socket, const char *endpoint, const ain_config_t *cfg)
{
    const char *secret = cfg ? ain_config_str(cfg, AIN_CFG_AINBOX_CURVE_SECRET) : NULL;
    if (secret && ain_curve_applies(endpoint)) {
        char pub[AIN_CURVE_KEY_TXT], sec[AIN_CURVE_KEY_TXT], server[AIN_CURVE_KEY_TXT];
        int rc = ain_curve_public_key(ain_config_str(cfg, AIN_CFG_AINBOX_CURVE_BROKER_KEY), server);
        if (rc == 0)
            rc = ain_curve_load_secret(secret, pub, sec);
        /* 40 bytes: libzmq reads a key of that length as Z85. */
        if (rc == 0 && (zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, server, 40) < 0 ||
                        zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, pub, 40) < 0 ||
                        zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, sec, 40) < 0))
            rc = -1;
        memset(sec, 0, sizeof sec);
        if (rc < 0) {
            errno = EINVAL;
            return -1;
        }
    }
    return zmq_connect(socket, endpoint);
}

int ain_curve_server(void *socket, const char *secret_path, const char *domain)
{
    char pub[AIN_CURVE_KEY_TXT], sec[AIN_CURVE_KEY_TXT];
    int on = 1;
    int rc = ain_curve_load_secret(secret_path, pub, sec);
    if (rc == 0 && (zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &on, sizeof on) < 0 ||
                    zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, sec, 40) < 0 ||
                    zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0))
        rc = -1;
    memset(sec, 0, sizeof sec);
    return rc;
}

int ain_curve_keygen(const char *dir, const char *name, const char *const *meta,
                     char public_txt[AIN_CURVE_KEY_TXT], char **error)
{
    char *path = ain_sprintf("%s/%s.cert", dir, name);
    char *secret = ain_sprintf("%s_secret", path);
    int rc = -1;
    zcert_t *cert = NULL;
    if (access(path, F_OK) == 0 || access(secret, F_OK) == 0) {
        *error = ain_sprintf("%s or its _secret file exists; not overwritten", path);
    } else if (!(cert = zcert_new())) {
        *error = ain_sprintf("cannot make a key pair (libzmq without CURVE?)");
    } else {
        for (size_t i = 0; meta && meta[i] && meta[i + 1]; i += 2)
            zcert_set_meta(cert, meta[i], "%s", meta[i + 1]);
        if (zcert_save(cert, path) < 0 || chmod(secret, 0600) < 0) {
            *error = ain_sprintf("cannot write %s: %s", path, strerror(errno));
        } else {
            snprintf(public_txt, AIN_CURVE_KEY_TXT, "%s", zcert_public_txt(cert));
            rc = 0;
        }
    }
    zcert_destroy(&cert);
    free(path);
    free(secret);
    return rc;
}

int ain_curve_test(bool verbose)
{
    char dir[] = "/tmp/ain-curve-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    const char *meta[] = {"role", "worker", "services", "cache", NULL};
    char pub[AIN_CURVE_KEY_TXT], pub2[AIN_CURVE_KEY_TXT], sec[AIN_CURVE_KEY_TXT];
    char *err = NULL, *cert = ain_sprintf("%s/w1.cert", dir);
    char *secret = ain_sprintf("%s_secret", cert);
    int rc = ain_curve_keygen(dir, "w1", meta, pub, &err);
    struct stat st;
    /* Both spellings of the secret file load; the public one has no secret. */
    if (rc == 0)
        rc = ain_curve_load_secret(cert, pub2, sec) | strcmp(pub, pub2);
    if (rc == 0)
        rc = ain_curve_load_secret(secret, pub2, sec) | strcmp(pub, pub2);
    if (rc == 0 && stat(secret, &st) == 0 && (st.st_mode & 077))
        rc = -1;
    if (rc == 0 && ain_curve_public_key(pub, pub2) < 0)
        rc = -1;
    if (rc == 0 && (ain_curve_public_key("not a key", pub2) == 0 ||
                    ain_curve_public_key("0123456789012345678901234567890123456789x", pub2) == 0))
        rc = -1;
    if (rc == 0 && ain_curve_keygen(dir, "w1", NULL, pub2, &err) == 0)
        rc = -1; /* never overwrites */
    free(err);
    err = NULL;
    unlink(secret);
    if (rc == 0 && ain_curve_load_secret(cert, pub2, sec) == 0)
        rc = -1; /* a public file alone holds no secret key */
    if (rc == 0 && (ain_curve_public_key(cert, pub2) < 0 || strcmp(pub, pub2) != 0))
        rc = -1;
    if (rc == 0 && (!ain_curve_applies("tcp://h:1") || !ain_curve_applies("ipc:///x") ||
                    ain_curve_applies("inproc://x")))
        rc = -1;
    unlink(cert);
    rmdir(dir);
    free(cert);
    free(secret);
    free(err);
    if (rc == 0 && verbose)
        printf("curve: keygen, key files, public keys\n");
    return rc == 0 ? 0 : -1;
}
