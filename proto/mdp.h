/* mdp.h: Majordomo Protocol constants (ZeroMQ RFC 7, MDP/0.1) and our
 * extensions to it.
 *
 * Client frames (after the ROUTER identity):
 *   REQUEST  ["" "MDPC01" service body...]   REPLY  ["" "MDPC01" service body...]
 * Worker frames:
 *   READY      ["" "MDPW01" 0x01 service]
 *   REQUEST    ["" "MDPW01" 0x02 client-address "" body...]
 *   REPLY      ["" "MDPW01" 0x03 client-address "" body...]
 *   HEARTBEAT  ["" "MDPW01" 0x04]
 *   DISCONNECT ["" "MDPW01" 0x05]
 *
 * Extensions, seen only by our own workers and our broker:
 *   - READY may carry a fifth frame, a msgpack map {credit, instance, pid,
 *     host, heartbeat_ms}. A worker that sends it is "native": it may hold
 *     `credit` requests at once, and requests to its service must carry a
 *     valid envelope; `heartbeat_ms` (optional, at most
 *     AIN_MDP_HEARTBEAT_MAX_MS) is its heartbeat interval, so the broker
 *     need not guess it (RFC 7 does not negotiate it). A worker without the
 *     frame is a plain MDP worker (credit 1), whose interval the broker
 *     learns from the gaps before its HEARTBEATs.
 *   - CREDIT ["" "MDPW01" 0x81 uint-msgpack]: a native worker changes its
 *     credit (0 = drain: send nothing new, it will DISCONNECT when done).
 *   - The client address the broker puts in a REQUEST is an opaque
 *     AIN_MDP_TOKEN_BYTES token naming the broker's in-flight slot; workers
 *     echo it back unchanged, as the RFC requires of any address.
 *
 *   - Compact framing. MDP spends four or five frames on every request and
 *     reply; measured here, frame handling was half of the broker's cost.
 *     Our own peers therefore use one header frame instead:
 *       native client REQUEST/REPLY  ["AINC01" service][envelope]
 *       native worker REQUEST        ["AINW01" 0x02 token][envelope]
 *       native worker REPLY          ["AINW01" 0x03 token][envelope]
 *     The broker answers each client in the framing it used, so plain MDP
 *     clients and workers see nothing but MDP. Registration, heartbeats and
 *     DISCONNECT stay in MDP framing for everyone.
 *
 * MMI (ZeroMQ RFC 8): service "mmi.service" with a service name as body
 * answers "200" (has workers), "404" (none); other "mmi.*" answer "501".
 */
#ifndef AIN_PROTO_MDP_H
#define AIN_PROTO_MDP_H

#include <stdbool.h>
#include <stddef.h>

#define AIN_MDP_TOKEN_BYTES 8
#define AIN_MDPC            "MDPC01"
#define AIN_MDPW            "MDPW01"
#define AIN_MDP_HEADER_LEN  6
#define AIN_WIRE_CLIENT     "AINC01" /* compact native client header prefix */
#define AIN_WIRE_WORKER     "AINW01" /* compact native worker header prefix */
/* Compact worker header: prefix, command byte, token. */
#define AIN_WIRE_WORKER_HEADER_LEN (AIN_MDP_HEADER_LEN + 1 + AIN_MDP_TOKEN_BYTES)

enum {
    AIN_MDPW_READY = 0x01,
    AIN_MDPW_REQUEST = 0x02,
    AIN_MDPW_REPLY = 0x03,
    AIN_MDPW_HEARTBEAT = 0x04,
    AIN_MDPW_DISCONNECT = 0x05,
    AIN_MDPW_CREDIT = 0x81, /* extension, native workers only */
};

#define AIN_MMI_PREFIX          "mmi."
#define AIN_MMI_SERVICE         "mmi.service"
#define AIN_BROKER_SERVICE      "broker" /* the broker's own admin service */
#define AIN_SERVICE_NAME_MAX    64
#define AIN_MDP_MAX_BODY_FRAMES 8 /* more body frames than this are refused */
/* The heartbeat interval of RFC 7's reference peers (the ZeroMQ guide's
 * Majordomo broker and worker): what the broker assumes of a plain MDP
 * worker until it has seen that worker's own rhythm. */
#define AIN_MDP_RFC7_HEARTBEAT_MS 2500
/* The longest heartbeat interval a native worker may state at READY (the
 * bound of AINBOX_HEARTBEAT_MS); a longer one makes READY malformed. */
#define AIN_MDP_HEARTBEAT_MAX_MS 60000

/* Name of a worker command, for logs; "?" if unknown. Static string. */
const char *ain_mdpw_command_name(int command);

/* True if `name` (not NUL-terminated, `len` bytes) is a service name we
 * accept: 1..AIN_SERVICE_NAME_MAX printable ASCII characters, no spaces. */
bool ain_mdp_service_valid(const void *name, size_t len);

int ain_mdp_test(bool verbose);

#endif
