#!/usr/bin/python3
"""fake_providers.py: runs the fake Google (sign-in and Gmail) and Microsoft in one process.

  python3 tools/fakes/fake_providers.py --port 8089 \
      --client google:ID:SECRET:http://127.0.0.1:3000/google/callback \
      --client microsoft:ID:SECRET:http://127.0.0.1:3000/auth/outlook/callback \
      --gmail-mailbox alice@gmail.test:5000 --quota new \
      --push-url http://127.0.0.1:3000/webhooks/gmail/notifications --push-token SECRET \
      --generate alice@gmail.test:2000

Prints "ready <port>" on stdout once it listens; runs until SIGTERM or SIGINT. See README.md.
"""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ainfake.server import Fakes, serve  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--client", action="append", default=[],
                    help="PROVIDER:CLIENT_ID:SECRET:REDIRECT_URI (repeatable)")
    ap.add_argument("--access-ttl", type=int, default=3599, help="access token lifetime (s)")
    ap.add_argument("--ms-revoke-rotated", action="store_true",
                    help="a Microsoft refresh token stops working once rotated")
    ap.add_argument("--gmail-mailbox", action="append", default=[],
                    help="EMAIL:N[:SEED]: a mailbox with N synthetic messages (repeatable)")
    ap.add_argument("--gmail-autocreate", type=int, default=25,
                    help="messages in the mailbox made for a user the API first sees")
    ap.add_argument("--quota", choices=("new", "old"), default="new",
                    help="Gmail limits: new (2026-05: 6,000 units/user/min, messages.get 20) "
                    "or old (15,000, messages.get 5)")
    ap.add_argument("--quota-style", choices=("429", "403"), default="429",
                    help="how an exhausted limit answers")
    ap.add_argument("--history-keep", type=int, default=100000,
                    help="history records kept per mailbox; older startHistoryIds get 404")
    ap.add_argument("--history-keep-s", type=float, default=0,
                    help="history kept this many seconds (0: no time limit)")
    ap.add_argument("--push-url", help="Pub/Sub push endpoint for users.watch notifications")
    ap.add_argument("--push-token", help="added to the push URL as ?token=")
    ap.add_argument("--push-bearer", help="sent as Authorization: Bearer on each push")
    ap.add_argument("--generate", action="append", default=[],
                    help="EMAIL:MS: deliver new mail to EMAIL every MS milliseconds")
    ap.add_argument("--gmail-watch", action="append", default=[],
                    help="EMAIL: the mailbox is watched from the start (INBOX changes pushed), as "
                    "if users.watch had been called; the demo's, while nothing calls watch")
    ap.add_argument("--gmail-check-scopes", action="store_true",
                    help="messages.delete and friends need https://mail.google.com/")
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args()
    fakes = Fakes(args.access_ttl, args.ms_revoke_rotated, quota_mode=args.quota,
                  push_url=args.push_url, push_token=args.push_token,
                  autocreate=args.gmail_autocreate, history_keep=args.history_keep,
                  history_keep_s=args.history_keep_s, check_scopes=args.gmail_check_scopes)
    fakes.gmail.quota.style = args.quota_style
    fakes.gmail.pusher.bearer = args.push_bearer
    for spec in args.client:
        provider, client_id, secret, redirect = spec.split(":", 3)
        fakes.providers[provider].auth.add_client(client_id, secret, [redirect])
    for spec in args.gmail_mailbox:
        addr, n, *seed = spec.split(":")
        fakes.gmail.new_mailbox(addr, int(n), int(seed[0]) if seed else 0)
    for addr in args.gmail_watch:
        fakes.gmail.pusher.watch(addr, "projects/ainbox-demo/topics/gmail", ["INBOX"], "include")
    for spec in args.generate:
        addr, ms = spec.rsplit(":", 1)
        fakes.gmail.start_generator([addr], int(ms))
    server = serve(args.host, args.port, fakes, quiet=not args.verbose)
    print(f"ready {server.server_address[1]}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        signal.pause()
    server.shutdown()


if __name__ == "__main__":
    main()
