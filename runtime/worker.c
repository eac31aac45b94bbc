/* worker.c: MDP/Worker with the credit extension (see worker.h, mdp.h). */
#include "runtime/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "proto/body.h"
#include "proto/mdp.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/curve.h"
#include "runtime/frames.h"

/* How soon to retry READY while the broker is unreachable. */
#define S_READY_RETRY_MS 20

struct _ain_worker_t {
    const ain_proc_t *proc;
    ain_log_t *log;
    char *service;
    unsigned credit;
    void *socket;
    bool registered; /* READY went out on this socket */
    int64_t heartbeat_ms;
    int liveness;
    int64_t broker_expiry; /* when the broker counts as dead (mono ms) */
    int64_t next_heartbeat;
    bool heard, spoke; /* since the last tick: clocks are read there, not per message */
    uint64_t reconnects;
    uint64_t invalid;
};

static int s_send_command(ain_worker_t *self, int command, bool more)
{
    uint8_t cmd = (uint8_t)command;
    if (ain_send_bytes(self->socket, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    ain_send_bytes(self->socket, AIN_MDPW, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
    return ain_send_bytes(self->socket, &cmd, 1, more ? ZMQ_SNDMORE : 0);
}

/* READY [service] [{credit, instance, pid, host, v, heartbeat_ms}]: the
 * interval goes with it so the broker's silence window fits ours even if
 * its AINBOX_HEARTBEAT_MS differs. */
static int s_send_ready(ain_worker_t *self)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    ain_mp_pack_kv_u64(&pk, "v", 1);
    ain_mp_pack_kv_u64(&pk, "heartbeat_ms", (uint64_t)self->heartbeat_ms);
    ain_mp_pack_kv_u64(&pk, "credit", self->credit);
    ain_mp_pack_kv_u64(&pk, "instance", ain_proc_instance(self->proc));
    ain_mp_pack_kv_u64(&pk, "pid", (uint64_t)getpid());
    ain_mp_pack_kv_str(&pk, "host", ain_proc_host(self->proc));
    int rc = -1;
    if (s_send_command(self, AIN_MDPW_READY, true) == 0) {
        ain_send_str(self->socket, self->service, ZMQ_SNDMORE);
        rc = ain_send_bytes(self->socket, sb.data, sb.size, 0);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void s_try_register(ain_worker_t *self, int64_t now)
{
    if (self->registered || s_send_ready(self) < 0)
        return;
    self->registered = true;
    self->next_heartbeat = now + self->heartbeat_ms;
    self->broker_expiry = now + self->heartbeat_ms * self->liveness;
    ain_debug(self->log, "registered service %s with credit %u", self->service, self->credit);
}

static void s_close(ain_worker_t *self)
{
    if (!self->socket)
        return;
    if (self->registered)
        s_send_command(self, AIN_MDPW_DISCONNECT, false);
    zmq_close(self->socket);
    self->socket = NULL;
    self->registered = false;
}

static void s_connect(ain_worker_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    self->socket = ain_socket_new(ain_proc_zmq(self->proc), ZMQ_DEALER, cfg);
    /* Never queue for a broker we are not connected to: stale heartbeats
     * and READYs replayed after a reconnect confuse a new broker. */
    ain_socket_set(self->socket, ZMQ_IMMEDIATE, 1);
    int hwm = self->credit * 2 > 1000 ? (int)self->credit * 2 : 1000;
    ain_socket_set(self->socket, ZMQ_RCVHWM, hwm);
    ain_socket_set(self->socket, ZMQ_SNDHWM, hwm);
    if (ain_curve_connect(self->socket, ain_proc_broker(self->proc), cfg) < 0)
        ain_error(self->log, "cannot connect to %s: %s", ain_proc_broker(self->proc),
                  zmq_strerror(errno));
    int64_t now = ain_clock_mono_ms();
    self->broker_expiry = now + self->heartbeat_ms * self->liveness;
    s_try_register(self, now);
}

static void s_reconnect(ain_worker_t *self, const char *why)
{
    ain_info(self->log, "re-registering with the broker (%s)", why);
    s_close(self);
    s_connect(self);
    self->reconnects++;
}

ain_worker_t *ain_worker_new(const ain_proc_t *proc, const char *service, unsigned credit,
                             ain_log_t *log)
{
    ain_worker_t *self = AIN_NEW(ain_worker_t);
    const ain_config_t *cfg = ain_proc_config(proc);
    self->proc = proc;
    self->log = log;
    self->service = ain_strdup(service);
    self->credit = credit ? credit : 1;
    self->heartbeat_ms = ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS);
    self->liveness = (int)ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_LIVENESS);
    s_connect(self);
    return self;
}

void ain_worker_destroy(ain_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_worker_t *self = *self_p;
    s_close(self);
    free(self->service);
    free(self);
    *self_p = NULL;
}

void *ain_worker_socket(const ain_worker_t *self)
{
    return self->socket;
}

bool ain_worker_registered(const ain_worker_t *self)
{
    return self->registered;
}

uint64_t ain_worker_reconnects(const ain_worker_t *self)
{
    return self->reconnects;
}

uint64_t ain_worker_invalid(const ain_worker_t *self)
{
    return self->invalid;
}

/* An MDP REQUEST must be [""][MDPW01][0x02][address][""][envelope]. */
static int s_take_request(ain_worker_t *self, ain_frames_t *f, ain_work_t *work)
{
    if (f->count != 6 || ain_frame_size(&f->part[4]) != 0) {
        self->invalid++;
        ain_warn(self->log, "malformed REQUEST from the broker (%d frames); dropped", f->count);
        return 0;
    }
    work->compact = false;
    ain_frames_take(f, 3, &work->address);
    ain_frames_take(f, 5, &work->body);
    return 1;
}

/* A compact REQUEST is [AINW01 0x02 token][envelope]. */
static int s_take_compact(ain_worker_t *self, ain_frames_t *f, ain_work_t *work)
{
    const uint8_t *header = ain_frame_data(&f->part[0]);
    if (f->count != 2 || ain_frame_size(&f->part[0]) != AIN_WIRE_WORKER_HEADER_LEN ||
        header[AIN_MDP_HEADER_LEN] != AIN_MDPW_REQUEST) {
        self->invalid++;
        ain_warn(self->log, "malformed compact request (%d frames); dropped", f->count);
        return 0;
    }
    work->compact = true;
    ain_frames_take(f, 0, &work->address);
    ain_frames_take(f, 1, &work->body);
    return 1;
}

static int s_on_mdp(ain_worker_t *self, ain_frames_t *f, ain_work_t *work)
{
    int command = *(const uint8_t *)ain_frame_data(&f->part[2]);
    if (command == AIN_MDPW_REQUEST)
        return s_take_request(self, f, work);
    if (command == AIN_MDPW_DISCONNECT) {
        self->registered = false; /* the broker forgot us: no DISCONNECT back */
        s_reconnect(self, "broker sent DISCONNECT");
    } else if (command != AIN_MDPW_HEARTBEAT) {
        self->invalid++;
        ain_warn(self->log, "unexpected command %d from the broker; dropped", command);
    }
    return 0;
}

int ain_worker_recv(ain_worker_t *self, ain_work_t *work)
{
    ain_frames_t f;
    if (ain_frames_recv(&f, self->socket, ZMQ_DONTWAIT) < 0)
        return -1;
    int rc = 0;
    self->heard = true;
    if (!f.truncated && f.count >= 2 && ain_frame_size(&f.part[0]) >= AIN_MDP_HEADER_LEN &&
        memcmp(ain_frame_data(&f.part[0]), AIN_WIRE_WORKER, AIN_MDP_HEADER_LEN) == 0) {
        rc = s_take_compact(self, &f, work);
    } else if (!f.truncated && f.count >= 3 && ain_frame_size(&f.part[0]) == 0 &&
               ain_frame_is_str(&f.part[1], AIN_MDPW) && ain_frame_size(&f.part[2]) == 1) {
        rc = s_on_mdp(self, &f, work);
    } else {
        self->invalid++;
        ain_warn(self->log, "malformed message from the broker (%d frames); dropped", f.count);
    }
    ain_frames_close(&f);
    return rc;
}

int ain_worker_reply(ain_worker_t *self, ain_work_t *work, const void *envelope, size_t len)
{
    int rc = -1;
    if (!self->registered) {
        /* The broker we took it from is gone; a new one would not know it. */
    } else if (work->compact) {
        ((uint8_t *)zmq_msg_data(&work->address))[AIN_MDP_HEADER_LEN] = AIN_MDPW_REPLY;
        if (ain_send_frame(self->socket, &work->address, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0)
            rc = ain_send_bytes(self->socket, envelope, len, 0);
    } else if (s_send_command(self, AIN_MDPW_REPLY, true) == 0) {
        ain_send_frame(self->socket, &work->address, ZMQ_SNDMORE);
        ain_send_bytes(self->socket, "", 0, ZMQ_SNDMORE);
        rc = ain_send_bytes(self->socket, envelope, len, 0);
    }
    if (rc == 0)
        self->spoke = true;
    zmq_msg_close(&work->address);
    zmq_msg_init(&work->address);
    return rc;
}

int ain_worker_tick(ain_worker_t *self)
{
    int64_t now = ain_clock_mono_ms();
    if (self->heard)
        self->broker_expiry = now + self->heartbeat_ms * self->liveness;
    if (self->spoke)
        self->next_heartbeat = now + self->heartbeat_ms;
    self->heard = self->spoke = false;
    if (!self->registered) {
        s_try_register(self, now);
        if (!self->registered && now >= self->broker_expiry)
            s_reconnect(self, "broker unreachable");
        if (!self->registered)
            return S_READY_RETRY_MS;
    }
    if (now >= self->broker_expiry) {
        s_reconnect(self, "broker silent");
        return S_READY_RETRY_MS;
    }
    if (now >= self->next_heartbeat) {
        s_send_command(self, AIN_MDPW_HEARTBEAT, false);
        self->next_heartbeat = now + self->heartbeat_ms;
    }
    int64_t next =
        self->next_heartbeat < self->broker_expiry ? self->next_heartbeat : self->broker_expiry;
    return next - now > 0 ? (int)(next - now) : 0;
}

int ain_worker_set_credit(ain_worker_t *self, unsigned credit)
{
    self->credit = credit;
    if (!self->registered)
        return -1;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_uint32(&pk, credit);
    int rc = -1;
    if (s_send_command(self, AIN_MDPW_CREDIT, true) == 0)
        rc = ain_send_bytes(self->socket, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}
