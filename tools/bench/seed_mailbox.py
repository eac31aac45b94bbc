"""seed_mailbox.py: gives the bench user an inbox to page through.

    seed_mailbox.py PG_PORT BROKER EMAIL [THREADS]

Adds a Gmail account to the user signed in as EMAIL and writes THREADS (20)
inbox threads into the store through the cache actor (MAIL_APPLY), the way
the sync actors will: the cached inbox page the edge benchmark asks for is
then a real page, about as large as the peers' 20-summary emails.json.
Needs /usr/bin/python3 with python3-zmq and python3-msgpack and
PYTHONPATH=tests/harness (for ainbox_proto).
"""

import subprocess
import sys

import ainbox_proto as proto


def psql(port, sql):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          f"host=127.0.0.1 port={port} user=postgres dbname=ainbox", "-c", sql],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def main():
    port, broker, email = sys.argv[1], sys.argv[2], sys.argv[3]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    user = int(psql(port, f"select id from users where email = '{email}'"))
    account = int(psql(port, f"insert into accounts (user_id, provider, address) values "
                             f"({user}, 'gmail', '{email}') returning id"))
    t0 = 1_767_225_600_000
    changes = [{"op": "upsert_message", "id": f"m{i}", "thread_id": f"t{i}",
                "sent_at_ms": t0 + i * 60_000, "labels": ["INBOX"], "unread": i % 3 == 0,
                "subject": f"Quarterly planning notes, part {i}",
                "from_name": "Dana Whitfield", "from_addr": f"dana{i}@example.com",
                "to": "Bench User <bench@bench.example>",
                "snippet": "Hi team, attached are the notes from this morning's planning "
                           "session; please review the action items before Friday."}
               for i in range(threads)]
    client = proto.Client(broker)
    try:
        reply = client.call("cache", "MAIL_APPLY",
                            proto.pack({"account": account, "changes": changes}),
                            user=user, timeout_ms=10000)
    finally:
        client.close()
    if not reply or reply["status"] != "OK":
        sys.exit(f"seed_mailbox: MAIL_APPLY failed: {reply and proto.body_map(reply)}")
    print(f"seed_mailbox: user {user}, account {account}, {threads} inbox threads")


if __name__ == "__main__":
    main()
