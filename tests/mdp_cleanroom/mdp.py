"""mdp: a clean-room Majordomo Protocol (MDP/0.1) client and worker.

Written from the texts of ZeroMQ RFC 7 (7/MDP) and RFC 8 (8/MMI) only,
without looking at any broker's source, so that it is independent
evidence that a broker speaks the published protocol. It deliberately
implements nothing beyond those two RFCs: a broker's private extensions are
never sent and never expected.

Only the standard library, pyzmq and nothing else.

Frame layouts (RFC 7, "MDP/Client" and "MDP/Worker"), as seen on a DEALER
socket, which is why frame 0 is always an explicit empty frame:

    client REQUEST/REPLY: "", "MDPC01", service, body...
    worker READY:         "", "MDPW01", 0x01, service
    worker REQUEST/REPLY: "", "MDPW01", 0x02|0x03, client address, "", body...
    worker HEARTBEAT:     "", "MDPW01", 0x04
    worker DISCONNECT:    "", "MDPW01", 0x05
"""

import threading
import time

import zmq

# RFC 7, "MDP/Client": six bytes, MDP/Client v0.1.
C_CLIENT = b"MDPC01"
# RFC 7, "MDP/Worker": six bytes, MDP/Worker v0.1.
W_WORKER = b"MDPW01"

# RFC 7, "MDP/Worker": one-byte command codes.
W_READY = b"\x01"
W_REQUEST = b"\x02"
W_REPLY = b"\x03"
W_HEARTBEAT = b"\x04"
W_DISCONNECT = b"\x05"

COMMAND_NAMES = {W_READY: "READY", W_REQUEST: "REQUEST", W_REPLY: "REPLY",
                 W_HEARTBEAT: "HEARTBEAT", W_DISCONNECT: "DISCONNECT"}


class MdpProtocolError(Exception):
    """A message that does not follow RFC 7 framing."""


def _ms_now():
    """Monotonic milliseconds, for heartbeat and timeout arithmetic."""
    return time.monotonic() * 1000.0


# --------------------------------------------------------------------------
# MDP/Client
# --------------------------------------------------------------------------

class MdpClient:
    """A synchronous MDP/Client over a DEALER socket (RFC 7, "MDP/Client").

    RFC 7 allows a DEALER client, but then "the clients MUST create the empty
    frame 0 explicitly"; this client does, and checks it on replies too.

    Recovery follows the strategy the RFC recommends: poll instead of a
    blocking receive, and on a timeout close the socket, open a new one and
    resend there ("Lazy Pirate"). A fresh socket also guarantees that a late
    reply to an abandoned request can never be mistaken for the answer to the
    next one, which matters because MDP replies carry no request id.
    """

    def __init__(self, endpoint, ctx=None, retries=0):
        """endpoint: the broker's ZeroMQ endpoint; retries: how many times a
        request is resent on a new socket after a timeout (0 = just once)."""
        self.endpoint = endpoint
        self.retries = retries
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.sock = None
        self.reconnects = 0
        self._connect()

    def _connect(self):
        """(Re)creates the DEALER socket; a previous one is dropped unsent."""
        if self.sock is not None:
            self.sock.close(linger=0)
            self.reconnects += 1
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def send(self, service, body_frames):
        """Sends one REQUEST: "", "MDPC01", service, body... (4+ frames)."""
        if not body_frames:
            # RFC 7: a REQUEST has "4 or more frames", so at least one body frame.
            raise ValueError("an MDP request needs at least one body frame")
        self.sock.send_multipart([b"", C_CLIENT, bytes(service)] + [bytes(f) for f in body_frames])

    def recv(self, service, timeout_ms):
        """Waits up to timeout_ms for a REPLY to `service`; returns its body
        frames, or None on timeout. Raises MdpProtocolError on a malformed
        reply (the caller asked a conformant broker, so that is a failure)."""
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return parse_client_reply(self.sock.recv_multipart(), service)

    def request(self, service, body_frames, timeout_ms=2500):
        """Sends a request and returns the reply body frames (a list of
        bytes), or None when no reply came after 1 + retries attempts."""
        for attempt in range(self.retries + 1):
            if attempt:
                # RFC 7's recommended strategy: new socket, resend there.
                self._connect()
            self.send(service, body_frames)
            reply = self.recv(service, timeout_ms)
            if reply is not None:
                return reply
        # Leave a clean socket: a late reply must not answer the next request.
        self._connect()
        return None

    def close(self):
        """Closes the socket (and the context if this client made it)."""
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self._own_ctx:
            self.ctx.term()


def parse_client_reply(frames, service):
    """Validates a REPLY as RFC 7 defines it and returns its body frames."""
    if len(frames) < 4:
        raise MdpProtocolError(f"client REPLY has {len(frames)} frames, RFC 7 needs 4 or more")
    if frames[0] != b"":
        raise MdpProtocolError(f"client REPLY frame 0 is {frames[0]!r}, not empty")
    if frames[1] != C_CLIENT:
        raise MdpProtocolError(f"client REPLY frame 1 is {frames[1]!r}, not MDPC01")
    if frames[2] != bytes(service):
        raise MdpProtocolError(f"client REPLY is for service {frames[2]!r}, asked {service!r}")
    return frames[3:]


# --------------------------------------------------------------------------
# MMI (RFC 8)
# --------------------------------------------------------------------------

def mmi_service(client, name, timeout_ms=2500):
    """Asks the broker's mmi.service (RFC 8) whether `name` has a worker.

    Returns the status code as bytes: b"200" (found) or b"404" (not found);
    None if the broker did not answer in time. RFC 8 specifies only the code,
    so exactly one reply body frame is expected.
    """
    reply = client.request(b"mmi.service", [bytes(name)], timeout_ms)
    if reply is None:
        return None
    if len(reply) != 1:
        raise MdpProtocolError(f"mmi.service replied {len(reply)} frames, expected 1")
    return reply[0]


def mmi_call(client, service, body_frames, timeout_ms=2500):
    """Any mmi.* request; returns the first reply frame (e.g. b"501")."""
    reply = client.request(service, body_frames, timeout_ms)
    return None if reply is None else reply[0]


# --------------------------------------------------------------------------
# MDP/Worker
# --------------------------------------------------------------------------

class MdpWorker:
    """An MDP/Worker for one service over a DEALER socket (RFC 7, "MDP/Worker").

    - Opens a connection by creating a new socket, connecting it and sending
      READY ("Opening and Closing a Connection").
    - Sends HEARTBEAT every heartbeat_ms when it has sent nothing else
      ("Peers SHOULD NOT send HEARTBEAT commands while also sending other
      commands"), and treats any command from the broker as a heartbeat.
    - Considers the broker disconnected after `liveness` heartbeat intervals
      of silence, and then restarts a new conversation.
    - On DISCONNECT sends nothing more, closes its socket, and reconnects on a
      new socket with a fresh READY ("MUST close its socket, and reconnect").
    - Sends REPLY with precisely the client address frame and the empty
      delimiter it received ("Request and Reply Processing").
    - Sends DISCONNECT on close().

    heartbeat_ms must agree with the broker's interval: MDP does not
    negotiate it (RFC 7, "Known Weaknesses").

    beat_on_wake=True gives the rhythm of a worker that looks at its clock
    only when it wakes: it waits up to heartbeat_ms for a broker command,
    and on waking (a command came, or the wait ran out) sends HEARTBEAT if
    heartbeat_ms has passed since its last HEARTBEAT; other commands do not
    move that time. Its HEARTBEATs are then heartbeat_ms to heartbeat_ms +
    the broker's interval apart (with 2500 ms and a broker beating every
    second: every 2.5 to 3.5 s), still regular as RFC 7 asks.

    One request at a time, as RFC 7 assumes of workers. The object belongs to
    the thread that created it (ZeroMQ sockets are not thread-safe); only the
    counters and stop_event may be read or set from other threads.
    """

    def __init__(self, endpoint, service, heartbeat_ms=2500, liveness=3, ctx=None,
                 beat_on_wake=False):
        self.endpoint = endpoint
        self.service = bytes(service)
        self.heartbeat_ms = heartbeat_ms
        self.beat_on_wake = beat_on_wake
        self.liveness_max = liveness
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.sock = None
        # Counters for observers (tests): plain ints, written by this thread only.
        self.connects = 0            # READY sent (1 + reconnections)
        self.requests = 0            # REQUESTs handled
        self.heartbeats_in = 0       # HEARTBEATs received from the broker
        self.disconnects_in = 0      # DISCONNECTs received from the broker
        self.silence_reconnects = 0  # reconnections because the broker went silent
        self.invalid_in = 0          # messages dropped as not RFC 7
        self.overlaps = 0            # REQUESTs received while one was in progress
        self.send_dropped = 0        # commands the socket could not take
        self.heartbeats_out = 0      # HEARTBEATs sent
        self._pending = []           # REQUESTs read while busy, handled next
        self._connect()

    # ----------------------------------------------------------- connection

    def _connect(self):
        """Opens a new conversation: new socket, connect, READY."""
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)
        self._pending = []
        self._send(W_READY, [self.service])
        self.connects += 1
        self.liveness = self.liveness_max
        self._heard_at = _ms_now()
        self._heartbeat_at = self._heard_at + self.heartbeat_ms
        self._wake_at = self._heard_at + self.heartbeat_ms

    def _send(self, command, frames=()):
        """Sends one worker command with its RFC 7 header. Never blocks: if
        the socket cannot take it (no broker for a long time), the command is
        lost as it would be on a dead link, and heartbeating recovers."""
        try:
            self.sock.send_multipart([b"", W_WORKER, command] + list(frames), zmq.NOBLOCK)
        except zmq.Again:
            self.send_dropped += 1
        # Any command counts as a heartbeat, so the next HEARTBEAT can wait
        # (beat_on_wake: only a HEARTBEAT moves it).
        if command == W_HEARTBEAT:
            self.heartbeats_out += 1
        if command == W_HEARTBEAT or not self.beat_on_wake:
            self._heartbeat_at = _ms_now() + self.heartbeat_ms

    def close(self):
        """Ends the conversation with DISCONNECT (RFC 7: the worker MAY send
        DISCONNECT at any time) and closes the socket."""
        if self.sock is not None:
            try:
                self._send(W_DISCONNECT)
                # Give the DISCONNECT a moment to leave; then drop the rest.
                self.sock.close(linger=200)
            finally:
                self.sock = None
        if self._own_ctx:
            self.ctx.term()

    # ----------------------------------------------------------- main loop

    def serve(self, handler, stop_event):
        """Serves requests until stop_event is set, then close()s.

        handler(body_frames: list[bytes]) -> list[bytes] is the reply body.
        """
        try:
            while not stop_event.is_set():
                self.step(handler, timeout_ms=min(self.heartbeat_ms, 50))
        finally:
            self.close()

    def step(self, handler, timeout_ms):
        """Waits up to timeout_ms for one broker command and acts on it;
        also sends heartbeats and checks the broker's liveness. Returns the
        command handled (b"\\x02" etc.) or None."""
        if self._pending:
            # A REQUEST that arrived while another was in progress.
            return self._on_message(self._pending.pop(0), handler)
        due = self._wake_at if self.beat_on_wake else self._heartbeat_at
        wait = max(0, min(timeout_ms, due - _ms_now()))
        command = None
        if self.sock.poll(int(wait), zmq.POLLIN):
            command = self._on_message(self.sock.recv_multipart(), handler)
        self._tick(woke=command is not None)
        return command

    def _tick(self, woke=False):
        """Heartbeat duty, both ways (RFC 7, "Heartbeating"). `woke`: a
        broker command was just read."""
        now = _ms_now()
        # Broker silence: one liveness point lost per silent interval.
        if now - self._heard_at >= self.heartbeat_ms:
            self.liveness -= 1
            self._heard_at = now
            if self.liveness <= 0:
                # "If the worker detects that the broker has disconnected, it
                # SHOULD restart a new conversation."
                self.silence_reconnects += 1
                self._connect()
                return
        if self.beat_on_wake:
            if not woke and now < self._wake_at:
                return   # still "asleep": it does not look at its clock
            self._wake_at = now + self.heartbeat_ms
        if now >= self._heartbeat_at:
            self._send(W_HEARTBEAT)

    # ----------------------------------------------------------- messages

    def _on_message(self, frames, handler):
        """Validates one message from the broker and dispatches it."""
        command = parse_worker_command(frames)
        if command is None:
            # RFC 7: invalid messages are dropped.
            self.invalid_in += 1
            return None
        # "Any received command except DISCONNECT acts as a heartbeat."
        self.liveness = self.liveness_max
        self._heard_at = _ms_now()
        if command == W_REQUEST:
            self._on_request(frames, handler)
        elif command == W_HEARTBEAT:
            self.heartbeats_in += 1
        elif command == W_DISCONNECT:
            # "MUST close its socket, and reconnect to the broker on a new socket."
            self.disconnects_in += 1
            self._connect()
        else:
            # READY/REPLY are never sent to a worker: drop as invalid.
            self.invalid_in += 1
            return None
        return command

    def _on_request(self, frames, handler):
        """Runs the handler and sends REPLY with the same address frame and
        the empty delimiter the REQUEST carried."""
        address, body = frames[3], frames[5:]
        reply = [bytes(f) for f in handler(body)]
        self.requests += 1
        if not self._drain_while_busy():
            # DISCONNECT arrived meanwhile: "it must send no further
            # commands to the broker", so the reply is dropped.
            self.disconnects_in += 1
            self._connect()
            return
        self._send(W_REPLY, [address, b""] + reply)

    def _drain_while_busy(self):
        """Reads what arrived while the handler ran, before replying.

        A REQUEST found here was sent to us while we still owed a REPLY,
        which a plain MDP broker should not do (RFC 7 assumes a worker
        handles at most one request at a time); it is counted in `overlaps`
        and handled next. Heartbeats are taken into account at once.
        Returns False if the broker sent DISCONNECT meanwhile.
        """
        while self.sock.poll(0, zmq.POLLIN):
            frames = self.sock.recv_multipart()
            command = parse_worker_command(frames)
            if command == W_REQUEST:
                self.overlaps += 1
                self._pending.append(frames)
            elif command == W_HEARTBEAT:
                self.heartbeats_in += 1
                self.liveness = self.liveness_max
                self._heard_at = _ms_now()
            elif command == W_DISCONNECT:
                return False
            else:
                self.invalid_in += 1
        return True


def parse_worker_command(frames):
    """Returns the command byte of a valid broker-to-worker message, or None.

    Checks the RFC 7 layout: empty frame 0, "MDPW01", a known command, and
    for REQUEST the client address followed by an empty delimiter.
    """
    if len(frames) < 3 or frames[0] != b"" or frames[1] != W_WORKER:
        return None
    command = frames[2]
    if command == W_REQUEST:
        # 6 or more frames; precisely one address frame, then an empty frame.
        if len(frames) < 6 or frames[4] != b"":
            return None
        return command
    if command in (W_HEARTBEAT, W_DISCONNECT):
        return command if len(frames) == 3 else None
    if command in (W_READY, W_REPLY):
        return command
    return None


def echo_handler(body_frames):
    """The simplest handler: the reply body is the request body."""
    return list(body_frames)


class WorkerThread(threading.Thread):
    """Runs an MdpWorker in its own thread (the worker is created there,
    since a ZeroMQ socket must stay in the thread that uses it)."""

    def __init__(self, endpoint, service, handler=echo_handler, **worker_args):
        super().__init__(daemon=True, name=f"mdp-worker-{service!r}")
        self.endpoint = endpoint
        self.service = service
        self.handler = handler
        self.worker_args = worker_args
        self.stop_event = threading.Event()
        self.started = threading.Event()
        self.worker = None
        self.error = None

    def run(self):
        try:
            self.worker = MdpWorker(self.endpoint, self.service, **self.worker_args)
            self.started.set()
            self.worker.serve(self.handler, self.stop_event)
        except Exception as exc:  # reported to the test through .error
            self.error = exc
            self.started.set()

    def stop(self, timeout=5):
        """Asks the worker to DISCONNECT and waits for the thread."""
        self.stop_event.set()
        self.join(timeout)
        return not self.is_alive()
