/* access.c: who may use the broker: the ZAP handler for CurveZMQ, the
 * directory of allowed keys, and what each key may do.
 *
 * With AINBOX_CURVE_SECRET set, every endpoint of the broker that leaves the
 * process (tcp, ipc) is a CURVE server: a peer without a key, or with a key
 * that is not in AINBOX_CURVE_ALLOW_DIR, never completes the handshake and
 * gets nothing. The handler (ZeroMQ RFC 27) runs in the broker's own thread
 * and loop, on inproc://zeromq.zap.01 of the process's context, so one
 * CURVE broker per process. It answers with the peer's public key as the
 * User-Id, which libzmq then stamps on every message of that connection;
 * the broker looks the key up per message to decide what the peer may do.
 *
 * A key's powers are in its certificate's metadata (written by `ainbox
 * keygen`): role = a comma list of edge, worker, admin, publisher,
 * subscriber; services = what a worker may serve; calls = services a
 * worker may call as a client. Which socket a role may reach is decided at
 * the handshake (ZAP domains "mdp", "bus-in", "bus-out"); which requests,
 * per message (ain__access_may_*). A message without a User-Id came over
 * inproc (this process's own roles) and is trusted.
 *
 * The directory is looked at every second (names, sizes, times) and re-read
 * when anything changed: a key added is accepted within a second, a key
 * removed is refused for new connections and for every further request of
 * the ones it has (a subscriber it already has keeps its subscriptions
 * until it disconnects: libzmq checks keys only at the handshake).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker/internal.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/curve.h"
#include "runtime/frames.h"

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_SCAN_MS      1000
#define S_KEYS_MAX     10000
#define S_ZAP_BATCH    64
#define S_LIST_MAX     1024 /* bytes of a services or calls list */

enum {
    S_ROLE_EDGE = 1 << 0,
    S_ROLE_WORKER = 1 << 1,
    S_ROLE_ADMIN = 1 << 2,
    S_ROLE_PUBLISHER = 1 << 3,
    S_ROLE_SUBSCRIBER = 1 << 4,
};

static const struct {
    const char *name;
    unsigned bit;
} s_roles[] = {{"edge", S_ROLE_EDGE},
               {"worker", S_ROLE_WORKER},
               {"admin", S_ROLE_ADMIN},
               {"publisher", S_ROLE_PUBLISHER},
               {"subscriber", S_ROLE_SUBSCRIBER}};

/* Which roles may complete a handshake on which socket. */
static const struct {
    const char *domain;
    unsigned roles;
} s_domains[] = {
    {AIN__ACCESS_DOMAIN_MDP, S_ROLE_EDGE | S_ROLE_WORKER | S_ROLE_ADMIN},
    {AIN__ACCESS_DOMAIN_BUS_IN, S_ROLE_PUBLISHER | S_ROLE_EDGE | S_ROLE_WORKER},
    {AIN__ACCESS_DOMAIN_BUS_OUT, S_ROLE_SUBSCRIBER | S_ROLE_EDGE | S_ROLE_WORKER | S_ROLE_ADMIN},
};

struct ain__key {
    char name[64];
    unsigned roles;
    char *services; /* ",a,b," or "*" or NULL */
    char *calls;    /* ",a,b," or NULL */
};

static void s_key_destroy(void **item)
{
    ain__key_t *key = *item;
    if (!key)
        return;
    free(key->services);
    free(key->calls);
    free(key);
    *item = NULL;
}

/* ",a,b," from "a, b" (spaces dropped), or NULL if empty or too long. */
static char *s_list(const char *text)
{
    if (!text || !text[0] || strlen(text) > S_LIST_MAX)
        return NULL;
    char *out = ain_calloc(1, strlen(text) + 3), *o = out;
    *o++ = ',';
    for (const char *p = text; *p; p++)
        if (*p != ' ' && *p != '\t' && !(*p == ',' && o[-1] == ','))
            *o++ = *p;
    if (o[-1] != ',')
        *o++ = ',';
    return out;
}

/* True if a list names anything at all. */
static bool s_names_any(const char *text)
{
    return text && strlen(text) <= S_LIST_MAX && strspn(text, ", \t") < strlen(text);
}

/* True if `list` (",a,b," or ",*,") names `name`. A service name may hold a comma (MDP allows
 * any printable character), which no list item can: such a name is never listed. */
static bool s_listed(const char *list, const char *name)
{
    if (!list || !name[0] || strchr(name, ','))
        return false;
    if (strcmp(list, ",*,") == 0)
        return true;
    size_t len = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if (p > list && p[-1] == ',' && p[len] == ',')
            return true;
    return false;
}

/* Reads the roles of a comma list; -1 names an unknown role. */
static int s_parse_roles(const char *text, unsigned *roles)
{
    *roles = 0;
    char *list = s_list(text);
    if (!list)
        return -1;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < sizeof s_roles / sizeof s_roles[0] && strcmp(s_roles[i].name, tok) != 0)
            i++;
        if (i == sizeof s_roles / sizeof s_roles[0])
            rc = -1;
        else
            *roles |= s_roles[i].bit;
    }
    free(list);
    return rc;
}

/* ------------------------------------------------------------ the directory */

static bool s_skipped(const char *name)
{
    size_t len = strlen(name);
    return name[0] == '.' || (len > 7 && strcmp(name + len - 7, "_secret") == 0);
}

/* A cheap fingerprint of the directory: names, sizes, times and inodes of
 * its files. Returns 0 and sets *sig, or -1 if it cannot be read. */
static int s_fingerprint(const char *dir, uint64_t *sig, size_t *secrets)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, over each file's facts */
    size_t n = 0;
    *secrets = 0;
    for (struct dirent *e; (e = readdir(d)) && n < S_KEYS_MAX * 2;) {
        if (e->d_name[0] == '.')
            continue;
        if (s_skipped(e->d_name)) {
            (*secrets)++;
            continue;
        }
        char *path = ain_sprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            uint64_t facts[] = {(uint64_t)st.st_ino, (uint64_t)st.st_size,
                                (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
            /* Order-independent: readdir's order may change between scans. */
            uint64_t f = 1469598103934665603ULL;
            for (const char *c = e->d_name; *c; c++)
                f = (f ^ (uint8_t)*c) * 1099511628211ULL;
            for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
                f = (f ^ facts[i]) * 1099511628211ULL;
            h += f;
            n++;
        }
        free(path);
    }
    closedir(d);
    *sig = h ^ n;
    return 0;
}

/* One certificate file into `keys`, or a warning saying why not. */
static void s_load_file(ain_broker_t *self, zhashx_t *keys, const char *dir, const char *file)
{
    char *path = ain_sprintf("%s/%s", dir, file);
    zcert_t *cert = zcert_load(path);
    const char *why = NULL;
    char pub[AIN_CURVE_KEY_TXT];
    unsigned roles = 0;
    if (!cert || ain_curve_public_key(zcert_public_txt(cert), pub) < 0)
        why = "not a certificate";
    else if (s_parse_roles(zcert_meta(cert, "role"), &roles) < 0)
        why = "its role is missing or names an unknown role (edge, worker, admin, publisher, "
              "subscriber)";
    else if ((roles & S_ROLE_WORKER) && !s_names_any(zcert_meta(cert, "services")))
        why = "a worker key names no services";
    else if (zhashx_lookup(keys, pub))
        why = "the same key is in another file";
    if (why) {
        ain_warn(self->log, "allowed keys: %s ignored: %s", path, why);
    } else {
        ain__key_t *key = AIN_NEW(ain__key_t);
        const char *name = zcert_meta(cert, "name");
        /* A name for logs only: a long one is cut. */
        snprintf(key->name, sizeof key->name, "%.*s", (int)sizeof key->name - 1,
                 name && name[0] ? name : file);
        key->roles = roles;
        key->services = s_list(zcert_meta(cert, "services"));
        key->calls = s_list(zcert_meta(cert, "calls"));
        zhashx_insert(keys, pub, key);
    }
    zcert_destroy(&cert);
    free(path);
}

/* Re-reads the directory into a new table. Returns 0, or -1 (the table in
 * use stays) if the directory cannot be read. */
static int s_reload(ain_broker_t *self)
{
    ain__access_t *a = &self->access;
    DIR *d = opendir(a->dir);
    if (!d)
        return -1;
    zhashx_t *keys = zhashx_new();
    zhashx_set_destructor(keys, s_key_destroy);
    for (struct dirent *e; (e = readdir(d)) && zhashx_size(keys) < S_KEYS_MAX;)
        if (!s_skipped(e->d_name) && e->d_type != DT_DIR)
            s_load_file(self, keys, a->dir, e->d_name);
    closedir(d);
    zhashx_destroy(&a->keys);
    a->keys = keys;
    ain_metric_set(self->m.auth_keys, (int64_t)zhashx_size(keys));
    ain_metric_inc(self->m.auth_reloads);
    if (zhashx_size(keys) == 0)
        ain_warn(self->log, "no allowed keys in %s: every peer over tcp is refused", a->dir);
    else
        ain_info(self->log, "allowed keys: %zu from %s", zhashx_size(keys), a->dir);
    return 0;
}

void ain__access_tick(ain_broker_t *self, int64_t now_ms)
{
    ain__access_t *a = &self->access;
    if (!a->on || now_ms < a->next_scan_ms)
        return;
    a->next_scan_ms = now_ms + S_SCAN_MS;
    uint64_t sig;
    size_t secrets;
    if (s_fingerprint(a->dir, &sig, &secrets) < 0) {
        ain_error(self->log,
                  "cannot read AINBOX_CURVE_ALLOW_DIR %s: %s; the keys read before "
                  "stay in force",
                  a->dir, strerror(errno));
        return;
    }
    if (sig == a->signature)
        return;
    if (secrets)
        ain_warn(self->log,
                 "%zu secret key file(s) in %s, ignored: only public NAME.cert files "
                 "belong there",
                 secrets, a->dir);
    if (s_reload(self) == 0)
        a->signature = sig;
}

/* ------------------------------------------------------------ life cycle */

void ain__access_init(ain_broker_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    self->access.secret = ain_config_str(cfg, AIN_CFG_AINBOX_CURVE_SECRET);
    self->access.dir = ain_config_str(cfg, AIN_CFG_AINBOX_CURVE_ALLOW_DIR);
}

bool ain__access_configured(const ain_broker_t *self)
{
    return self->access.secret && self->access.dir;
}

int ain__access_start(ain_broker_t *self)
{
    ain__access_t *a = &self->access;
    if (a->on || !ain__access_configured(self))
        return 0;
    /* The handler is bound before any CURVE endpoint: libzmq lets every
     * client in when no handler answers. */
    a->zap = zmq_socket(ain_proc_zmq(self->proc), ZMQ_REP);
    if (!a->zap || zmq_bind(a->zap, S_ZAP_ENDPOINT) < 0) {
        ain_error(self->log, "cannot start the ZAP handler (%s): one CURVE broker per process",
                  zmq_strerror(errno));
        return -1;
    }
    if (ain__access_rekey(self, a->secret) < 0)
        return -1;
    a->on = true;
    a->next_scan_ms = 0;
    ain__access_tick(self, 0);
    if (!a->keys) {
        ain_error(self->log, "cannot read AINBOX_CURVE_ALLOW_DIR %s", a->dir);
        return -1;
    }
    ain_info(self->log, "CurveZMQ on every tcp and ipc endpoint; allowed keys in %s", a->dir);
    return 0;
}

int ain__access_rekey(ain_broker_t *self, const char *secret_path)
{
    if (ain_curve_server(self->router, secret_path, AIN__ACCESS_DOMAIN_MDP) < 0 ||
        ain_curve_server(self->xsub, secret_path, AIN__ACCESS_DOMAIN_BUS_IN) < 0 ||
        ain_curve_server(self->xpub, secret_path, AIN__ACCESS_DOMAIN_BUS_OUT) < 0) {
        ain_error(self->log, "cannot use the key pair in %s", secret_path);
        return -1;
    }
    return 0;
}

void ain__access_fini(ain_broker_t *self)
{
    if (self->access.zap)
        zmq_close(self->access.zap);
    self->access.zap = NULL;
    zhashx_destroy(&self->access.keys);
}

/* ------------------------------------------------------------ ZAP */

static bool s_domain_allows(const char *domain, size_t len, unsigned roles)
{
    for (size_t i = 0; i < sizeof s_domains / sizeof s_domains[0]; i++)
        if (strlen(s_domains[i].domain) == len && memcmp(s_domains[i].domain, domain, len) == 0)
            return (roles & s_domains[i].roles) != 0;
    return false;
}

/* Decides one ZAP request: [version][id][domain][address][identity]
 * [mechanism][credentials...]. Fills the User-Id; returns true to allow. */
static bool s_zap_decide(ain_broker_t *self, ain_frames_t *f, char uid[AIN_CURVE_KEY_TXT])
{
    uid[0] = '\0';
    if (f->count != 7 || !ain_frame_is_str(&f->part[5], "CURVE") ||
        ain_frame_size(&f->part[6]) != 32)
        return false; /* only CURVE reaches here: the sockets are CURVE servers */
    zmq_z85_encode(uid, ain_frame_data(&f->part[6]), 32);
    const ain__key_t *key = self->access.keys ? zhashx_lookup(self->access.keys, uid) : NULL;
    const char *domain = ain_frame_data(&f->part[2]);
    size_t dlen = ain_frame_size(&f->part[2]);
    int alen = ain_frame_size(&f->part[3]) < 64 ? (int)ain_frame_size(&f->part[3]) : 64;
    if (key && s_domain_allows(domain, dlen, key->roles))
        return true;
    ain_metric_inc(self->m.auth_handshakes_refused);
    ain_warn(self->log, "refused a CURVE handshake on %.*s from %.*s: key %.8s... %s",
             (int)(dlen < 16 ? dlen : 16), domain, alen, (const char *)ain_frame_data(&f->part[3]),
             uid, key ? "has no role for this socket" : "is not in AINBOX_CURVE_ALLOW_DIR");
    return false;
}

void ain__access_on_zap(ain_broker_t *self)
{
    for (int n = 0; n < S_ZAP_BATCH; n++) {
        ain_frames_t f;
        if (ain_frames_recv(&f, self->access.zap, ZMQ_DONTWAIT) < 0)
            return;
        char uid[AIN_CURVE_KEY_TXT];
        bool ok = !f.truncated && f.count >= 2 && ain_frame_is_str(&f.part[0], "1.0") &&
                  s_zap_decide(self, &f, uid);
        /* REP must answer every request; libzmq is the only peer here. */
        ain_send_str(self->access.zap, "1.0", ZMQ_SNDMORE);
        if (f.count >= 2)
            ain_send_frame(self->access.zap, &f.part[1], ZMQ_SNDMORE);
        else
            ain_send_bytes(self->access.zap, "", 0, ZMQ_SNDMORE);
        ain_send_str(self->access.zap, ok ? "200" : "400", ZMQ_SNDMORE);
        ain_send_str(self->access.zap, ok ? "OK" : "not allowed", ZMQ_SNDMORE);
        ain_send_str(self->access.zap, ok ? uid : "", ZMQ_SNDMORE);
        ain_send_bytes(self->access.zap, "", 0, 0);
        ain_frames_close(&f);
    }
}

/* ------------------------------------------------------------ per message */

/* The key a message came with. Returns 1 with *key set, 0 for a message
 * from inside the process (no User-Id: trusted), -1 for a key no longer in
 * the directory. */
static int s_peer(ain_broker_t *self, zmq_msg_t *frame, const ain__key_t **key, const char **uid)
{
    *key = NULL;
    *uid = self->access.on ? zmq_msg_gets(frame, "User-Id") : NULL;
    if (!*uid)
        return 0;
    *key = self->access.keys ? zhashx_lookup(self->access.keys, *uid) : NULL;
    return *key ? 1 : -1;
}

static void s_refused(ain_broker_t *self, ain_metric_t *counter, const ain__key_t *key,
                      const char *uid, const char *what, const char *service, const char *why)
{
    ain_metric_inc(counter);
    ain_warn(self->log, "refused %s %s from key %s (%.8s...): %s", what, service,
             key ? key->name : "?", uid, why);
}

bool ain__access_may_serve(ain_broker_t *self, zmq_msg_t *frame, const void *name, size_t len)
{
    const ain__key_t *key;
    const char *uid;
    char service[AIN_SERVICE_NAME_MAX + 1]; /* the caller checked the name's length */
    snprintf(service, sizeof service, "%.*s", (int)len, (const char *)name);
    int peer = s_peer(self, frame, &key, &uid);
    if (peer == 0 ||
        (peer == 1 && (key->roles & S_ROLE_WORKER) && s_listed(key->services, service)))
        return true;
    s_refused(self, self->m.auth_registers_refused, key, uid, "READY for", service,
              peer < 0 ? "key no longer allowed" : "key may not serve it");
    return false;
}

const char *ain__access_may_request(ain_broker_t *self, zmq_msg_t *frame, const char *service,
                                    bool has_envelope, unsigned type, uint64_t user)
{
    const ain__key_t *key;
    const char *uid;
    int peer = s_peer(self, frame, &key, &uid);
    if (peer == 0 || (peer == 1 && (key->roles & S_ROLE_ADMIN)))
        return NULL;
    const ain_msgtype_t *t = has_envelope ? ain_msgtype_lookup(type) : NULL;
    const char *why = NULL;
    if (peer < 0)
        why = "key no longer allowed";
    else if (t && (t->flags & AIN_MSGF_OPERATOR))
        why = "an operator request needs an admin key";
    else if (key->roles & S_ROLE_EDGE)
        return NULL;
    else if (has_envelope && user != 0)
        why = "a request for a user needs an edge key";
    else if (!(key->roles & S_ROLE_WORKER) || !s_listed(key->calls, service))
        why = "key may not call this service";
    else
        return NULL;
    s_refused(self, self->m.auth_requests_refused, key, uid, "a request to", service, why);
    return why;
}

bool ain__access_may_publish(ain_broker_t *self, zmq_msg_t *frame)
{
    const ain__key_t *key;
    const char *uid;
    int peer = s_peer(self, frame, &key, &uid);
    if (peer == 0 || (peer == 1 && s_domain_allows(AIN__ACCESS_DOMAIN_BUS_IN,
                                                   strlen(AIN__ACCESS_DOMAIN_BUS_IN), key->roles)))
        return true;
    s_refused(self, self->m.auth_publishes_refused, key, uid, "an event", "on the bus",
              "key no longer allowed");
    return false;
}
