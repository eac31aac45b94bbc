#!/usr/bin/python3
"""fake_providers.py: runs the fake Google and Microsoft sign-in servers in one process.

  python3 tools/fakes/fake_providers.py --port 8089 \
      --client google:ID:SECRET:http://127.0.0.1:3000/google/callback \
      --client microsoft:ID:SECRET:http://127.0.0.1:3000/auth/outlook/callback

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
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args()
    fakes = Fakes(args.access_ttl, args.ms_revoke_rotated)
    for spec in args.client:
        provider, client_id, secret, redirect = spec.split(":", 3)
        fakes.providers[provider].auth.add_client(client_id, secret, [redirect])
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
