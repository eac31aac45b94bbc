/* queries.c: the cache actor's SQL (see queries.h). Strings only: each
 * constant is adjacent literals, each ending in a space, with no quote,
 * backslash or SQL comment inside, so tests can lift them out as they are. */
#include "actors/cache/queries.h"

const char *const AIN_Q_LIST_LABEL =
    "with lab as ( "
    "select l.id from labels l "
    "where l.user_id = $1::bigint "
    "and ($2::bigint is null or l.account_id = $2::bigint) "
    "and (l.provider_id = $3::text or l.role = $4::text)), "
    "page as ( "
    "select distinct p.thread_id, p.last_message_at from lab cross join lateral ( "
    "select tl.thread_id, tl.last_message_at from thread_labels tl "
    "where tl.user_id = $1::bigint and tl.label_id = lab.id "
    "and (tl.last_message_at, tl.thread_id) < "
    "(coalesce(timestamptz 'epoch' + $5::bigint * interval '1 millisecond', 'infinity'), "
    "coalesce($6::bigint, 9223372036854775807)) "
    "order by tl.last_message_at desc, tl.thread_id desc "
    "limit $7::int) p "
    "order by p.last_message_at desc, p.thread_id desc "
    "limit $7::int) "
    "select t.id, t.provider_id, t.account_id, lm.provider_id as latest_message, t.subject, "
    "t.snippet, t.origin_from, t.latest_from, t.latest_to, "
    "floor(extract(epoch from t.last_message_at) * 1000)::bigint as last_message_at_ms, "
    "t.message_count, t.unread_count, t.has_attachments, t.starred, t.version, "
    "array(select (select l.provider_id from labels l where l.id = x.label_id) as p "
    "from thread_labels x where x.thread_id = t.id order by 1) as label_ids "
    "from page join threads t on t.id = page.thread_id and t.user_id = $1::bigint "
    "left join messages lm on lm.id = t.latest_message_id "
    "order by page.last_message_at desc, page.thread_id desc ";

const char *const AIN_Q_LIST_ARCHIVE =
    "select t.id, t.provider_id, t.account_id, lm.provider_id as latest_message, t.subject, "
    "t.snippet, t.origin_from, t.latest_from, t.latest_to, "
    "floor(extract(epoch from t.last_message_at) * 1000)::bigint as last_message_at_ms, "
    "t.message_count, t.unread_count, t.has_attachments, t.starred, t.version, "
    "array(select (select l.provider_id from labels l where l.id = x.label_id) as p "
    "from thread_labels x where x.thread_id = t.id order by 1) as label_ids "
    "from threads t left join messages lm on lm.id = t.latest_message_id "
    "where t.user_id = $1::bigint "
    "and ($2::bigint is null or t.account_id = $2::bigint) "
    "and t.in_archive "
    "and (t.last_message_at, t.id) < "
    "(coalesce(timestamptz 'epoch' + $3::bigint * interval '1 millisecond', 'infinity'), "
    "coalesce($4::bigint, 9223372036854775807)) "
    "order by t.last_message_at desc, t.id desc "
    "limit $5::int ";

const char *const AIN_Q_COUNT_LABEL =
    "select coalesce(sum(l.total), 0)::bigint as total, coalesce(sum(l.unread), 0)::bigint "
    "as unread from labels l "
    "where l.user_id = $1::bigint "
    "and ($2::bigint is null or l.account_id = $2::bigint) "
    "and (l.provider_id = $3::text or l.role = $4::text) ";

const char *const AIN_Q_THREAD =
    "select t.id, t.provider_id, t.account_id, lm.provider_id as latest_message, t.subject, "
    "t.snippet, t.origin_from, t.latest_from, t.latest_to, "
    "floor(extract(epoch from t.last_message_at) * 1000)::bigint as last_message_at_ms, "
    "t.message_count, t.unread_count, t.has_attachments, t.starred, t.version, "
    "array(select (select l.provider_id from labels l where l.id = x.label_id) as p "
    "from thread_labels x where x.thread_id = t.id order by 1) as label_ids "
    "from threads t left join messages lm on lm.id = t.latest_message_id "
    "where t.user_id = $1::bigint and t.provider_id = $3::text "
    "and t.account_id in (select a.id from accounts a where a.user_id = $1::bigint "
    "and ($2::bigint is null or a.id = $2::bigint)) "
    "order by t.account_id ";

const char *const AIN_Q_THREAD_MESSAGES =
    "select m.id, m.provider_id, m.account_id, m.thread_id, t.provider_id as thread, m.subject, "
    "m.from_name, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs, m.snippet, "
    "floor(extract(epoch from m.sent_at) * 1000)::bigint as sent_at_ms, m.size_bytes, m.unread, "
    "m.starred, m.has_attachments, m.is_sent, m.label_ids, m.header_message_id, m.in_reply_to, "
    "m.refs, m.version, b.message_id is not null as has_body, b.html, b.text "
    "from messages m join threads t on t.id = m.thread_id "
    "left join bodies b on b.message_id = m.id "
    "where m.user_id = $1::bigint and m.thread_id = $2::bigint "
    "order by m.sent_at, m.id ";

const char *const AIN_Q_THREAD_ATTACHMENTS =
    "select a.message_id, a.provider_attachment_id, a.filename, a.mime_type, a.size_bytes, "
    "a.content_id, a.inline "
    "from messages m join attachments a on a.message_id = m.id "
    "where m.user_id = $1::bigint and m.thread_id = $2::bigint and a.user_id = $1::bigint "
    "order by m.sent_at, m.id, a.id ";

const char *const AIN_Q_MESSAGE =
    "select m.id, m.provider_id, m.account_id, m.thread_id, t.provider_id as thread, m.subject, "
    "m.from_name, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs, m.snippet, "
    "floor(extract(epoch from m.sent_at) * 1000)::bigint as sent_at_ms, m.size_bytes, m.unread, "
    "m.starred, m.has_attachments, m.is_sent, m.label_ids, m.header_message_id, m.in_reply_to, "
    "m.refs, m.version, b.message_id is not null as has_body, b.html, b.text "
    "from messages m join threads t on t.id = m.thread_id "
    "left join bodies b on b.message_id = m.id "
    "where m.user_id = $1::bigint and m.provider_id = $3::text "
    "and m.account_id in (select a.id from accounts a where a.user_id = $1::bigint "
    "and ($2::bigint is null or a.id = $2::bigint)) "
    "order by m.account_id ";

const char *const AIN_Q_MESSAGE_ATTACHMENTS =
    "select a.message_id, a.provider_attachment_id, a.filename, a.mime_type, a.size_bytes, "
    "a.content_id, a.inline "
    "from attachments a "
    "where a.user_id = $1::bigint and a.message_id = $2::bigint "
    "order by a.id ";

const char *const AIN_Q_COUNTS =
    "select l.account_id, l.provider_id, l.name, l.role, l.total, l.unread "
    "from labels l "
    "where l.user_id = $1::bigint "
    "and ($2::bigint is null or l.account_id = $2::bigint) "
    "order by l.account_id, l.role nulls last, l.name, l.provider_id ";

const char *const AIN_Q_APPLY =
    "select changed, outbox_id, events, replayed, n_events "
    "from ain_mail_write($1::bigint, $2::bigint, $3::jsonb, $4::text, $5::bool) ";

/* The outbox (deploy/migrations/0003_mail_outbox.sql) and the write keys
 * (0005) are the cache actor's own bookkeeping across users, so these are
 * not scoped by user. */
const char *const AIN_Q_OUTBOX_DONE = "delete from mail_outbox where id = $1::bigint ";

const char *const AIN_Q_OUTBOX_DUE =
    "select id, user_id, changed::text, events::text from mail_outbox "
    "where created_at < now() - make_interval(secs => $1::int / 1000.0) "
    "order by id limit 100 ";

const char *const AIN_Q_KEYS_PRUNE =
    "delete from mail_write_keys where ctid = any(array("
    "select ctid from mail_write_keys "
    "where created_at < now() - make_interval(secs => $1::int) limit $2::int)) ";
