/* queries.h: the SQL the cache actor runs against the mail store.
 *
 * Every query takes $1 = users.id and filters on it, so a query run for one
 * user never returns another user's rows, whatever the other parameters
 * say. Where a query takes an account ($2), NULL means every account of the
 * user (a unified view). Every parameter is cast in the SQL, so the
 * statements can be sent with all parameters as text and no type OIDs
 * (PQexecParams/PQprepare with paramTypes NULL). Timestamps travel as epoch
 * milliseconds (bigint). The schema is deploy/migrations/0002_mail_store.sql;
 * writes go through ain_mail_apply() only (AIN_Q_APPLY).
 *
 * The strings are static and borrowed; nothing to free. queries.c holds
 * nothing but them (tests/e2e/test_mail_store.py reads it with a regex).
 */
#ifndef AIN_ACTORS_CACHE_QUERIES_H
#define AIN_ACTORS_CACHE_QUERIES_H

/* Thread columns, shared by LIST_LABEL, LIST_ARCHIVE and THREAD, in order:
 *   0 id bigint, 1 provider_id text, 2 account_id bigint,
 *   3 latest message provider_id text (null only for an empty thread),
 *   4 subject, 5 snippet, 6 origin_from, 7 latest_from, 8 latest_to (text),
 *   9 last_message_at_ms bigint, 10 message_count int, 11 unread_count int,
 *   12 has_attachments bool, 13 starred bool, 14 version bigint,
 *   15 label_ids text[] (provider label ids of the thread, sorted). */

/* Threads carrying a label, newest first, one page.
 * $1 user, $2 account or null, $3 label provider_id or null, $4 role or
 * null (exactly one of $3/$4), $5 cursor last_message_at_ms or null,
 * $6 cursor thread id or null (both null = first page), $7 page size.
 * Columns: the thread columns. The next cursor is (column 9, column 0) of
 * the last row. Unified by role or by id, each matching label is read as
 * one index range, at most $7 rows each, and the ranges merged. */
extern const char *const AIN_Q_LIST_LABEL;

/* Archive: threads in no label whose role is inbox, trash or spam
 * (threads.in_archive, kept by ain_mail_apply), newest first. That is
 * Gmail's "archived"; for Outlook it is every conversation out of the
 * inbox, junk and deleted items, sent-only ones included, while Outlook's
 * own Archive folder is LIST_LABEL with role 'archive'.
 * $1 user, $2 account or null, $3 cursor ms or null, $4 cursor thread id or
 * null, $5 page size. Columns: the thread columns. */
extern const char *const AIN_Q_LIST_ARCHIVE;

/* The `total` and `unread` of a LIST_LABEL filter, from labels.total and
 * labels.unread (kept by ain_mail_apply; no thread is counted here).
 * $1 user, $2 account or null, $3 label provider_id or null, $4 role or null.
 * Columns: total bigint, unread bigint (0, 0 when nothing matches). */
extern const char *const AIN_Q_COUNT_LABEL;

/* One thread by provider id. $1 user, $2 account or null, $3 thread
 * provider_id. Columns: the thread columns. With $2 null, two accounts
 * holding the same provider id give two rows, ordered by account_id. */
extern const char *const AIN_Q_THREAD;

/* Message columns, shared by THREAD_MESSAGES and MESSAGE, in order:
 *   0 id bigint, 1 provider_id text, 2 account_id bigint, 3 thread_id bigint,
 *   4 thread provider_id text, 5 subject, 6 from_name, 7 from_addr,
 *   8 to_addrs, 9 cc_addrs, 10 bcc_addrs, 11 snippet (text),
 *   12 sent_at_ms bigint, 13 size_bytes int, 14 unread bool, 15 starred bool,
 *   16 has_attachments bool, 17 is_sent bool, 18 label_ids text[],
 *   19 header_message_id, 20 in_reply_to, 21 refs (text), 22 version bigint,
 *   23 has_body bool (false: the body was never fetched), 24 html text,
 *   25 text text. */

/* A thread's messages, oldest first, with their bodies.
 * $1 user, $2 thread id (threads.id). Columns: the message columns. */
extern const char *const AIN_Q_THREAD_MESSAGES;

/* Attachments of a thread's messages, in message order.
 * $1 user, $2 thread id. Columns: message_id bigint,
 * provider_attachment_id text, filename text, mime_type text,
 * size_bytes int, content_id text, inline bool. */
extern const char *const AIN_Q_THREAD_ATTACHMENTS;

/* One message by provider id, with its body. $1 user, $2 account or null,
 * $3 message provider_id. Columns: the message columns (one row per
 * account holding that id when $2 is null, ordered by account_id). */
extern const char *const AIN_Q_MESSAGE;

/* Attachments of one message. $1 user, $2 message id (messages.id).
 * Columns: as THREAD_ATTACHMENTS. */
extern const char *const AIN_Q_MESSAGE_ATTACHMENTS;

/* Every label with its counts. $1 user, $2 account or null.
 * Columns: account_id bigint, provider_id text, name text, role text (or
 * null), total int, unread int; ordered by account, role, name. */
extern const char *const AIN_Q_COUNTS;

/* Applies a batch of changes atomically, once per key (ain_mail_write,
 * deploy/migrations/0005_mail_events.sql). $1 user, $2 account
 * (required), $3 changes, a JSON array (see ain_mail_apply in 0002),
 * $4 the idempotency key or null. One row: changed text (JSON [[kind,
 * ref], ...]: what to invalidate, 'message', 'thread', 'label' with
 * provider ids; 'role' with a role; 'counts' and 'archive' with ''),
 * outbox_id bigint (the write's outbox row, null when nothing changed or
 * already announced), events text (JSON array of the row's user events),
 * replayed bool (the key was written before: nothing applied now),
 * n_events int (the events the write caused; on a replay, the first
 * write's).
 * SQLSTATE 42501: not the user's account; 22023: bad batch or key;
 * AI409: the key was used for another write. */
extern const char *const AIN_Q_APPLY;

/* Deletes outbox row $1 (its invalidation ran). */
extern const char *const AIN_Q_OUTBOX_DONE;

/* Outbox rows older than $1 ms, oldest first, at most 100: writes whose
 * writer never finished their announcement. Columns: id bigint,
 * user_id bigint, changed text (JSON [[kind, ref], ...]), events text
 * (JSON [event, ...]). */
extern const char *const AIN_Q_OUTBOX_DUE;

/* Deletes at most $2 write keys older than $1 seconds. */
extern const char *const AIN_Q_KEYS_PRUNE;

#endif
