-- 0005_mail_events.sql: a mail write's user events and its idempotency key,
-- both decided in the write's own transaction.
--
-- Owner: the cache actor (the one mail writer). MAIL_APPLY calls
-- ain_mail_write, which runs ain_mail_apply, builds the user events the
-- write causes from what it reports (new_email, email_updated,
-- email_deleted, unread_count_updated: the original's shapes,
-- ../shared/docs/ainbox-contract.md 2.2) and stores them in the write's
-- outbox row beside `changed`, in the same transaction. So a writer that
-- dies right after its commit loses nothing: the row is relayed
-- (invalidation, then the events) by any cache actor (actors/cache/outbox.c).
-- A write with a key records its result under (user, key); the same key
-- again answers that result instead of writing twice.

alter table mail_outbox add column events jsonb not null default '[]'; -- [event object, ...]

-- Owner: the cache actor. One row per keyed MAIL_APPLY for 24 h (pruned
-- in batches by the cache actors' relay timer).
create table mail_write_keys (
    user_id     bigint not null references users(id) on delete cascade,
    key         text not null check (octet_length(key) between 1 and 128),
    account_id  bigint not null,
    changes_md5 text not null, -- of the changes' jsonb text: a reuse with other changes is refused
    result      jsonb,         -- {changed: [[kind, ref], ...], events: n, outbox_id}
    created_at  timestamptz not null default now(),
    primary key (user_id, key)
);
create index mail_write_keys_created_idx on mail_write_keys (created_at);

-- The user events of one write, in order: one per reported message (by
-- provider id, as ain_mail_apply sorts them), then the inbox's counts.
--   * the message is there and was created in this transaction
--     (created_at = now(), the transaction's start)        -> new_email
--   * it is there otherwise                               -> email_updated
--   * it is gone and was there before the write (p_before,
--     {provider id: thread provider id})                  -> email_deleted
--   * 'counts' changed and the account's inbox label is among the changed
--     labels                                              -> unread_count_updated
-- Ids are the provider's (what the edge's routes take). `labelIds` lists
-- UNREAD for an unread message, as Gmail does (the store keeps it as a
-- flag). `source` is the account's provider. Text fields are cut (1,000
-- characters; `to` 4,000) so an event stays far below the events
-- service's 64 KiB.
create function ain__mail_events(p_user bigint, p_account bigint, p_changed jsonb,
                                 p_before jsonb)
returns jsonb
language sql stable as $$
    with ctx as (
        select a.provider as src,
               to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as ts
          from accounts a where a.id = p_account and a.user_id = p_user),
    ch as (select x.e->>0 as k, x.e->>1 as r, x.n
             from jsonb_array_elements(p_changed) with ordinality x(e, n)),
    msg as (
        select c.n, case
            when m.id is null then jsonb_build_object(
                'type', 'email_deleted', 'emailId', c.r, 'threadId', p_before->>c.r,
                'reason', 'deleted', 'source', ctx.src, 'timestamp', ctx.ts)
            when m.created_at = now() then jsonb_build_object(
                'type', 'new_email',
                'email', jsonb_build_object(
                    'id', m.provider_id, 'threadId', t.provider_id,
                    'messageId', left(coalesce(m.header_message_id, ''), 1000),
                    'from', left(coalesce(ain__mail_from(m.from_name, m.from_addr), ''), 1000),
                    'to', left(coalesce(m.to_addrs, ''), 4000),
                    'subject', left(coalesce(m.subject, ''), 1000),
                    'snippet', left(coalesce(m.snippet, ''), 1000),
                    'preview', left(coalesce(m.snippet, ''), 1000),
                    'date', to_char(m.sent_at at time zone 'utc',
                                    'Dy, FMDD Mon YYYY HH24:MI:SS "+0000"'),
                    'labelIds', to_jsonb(m.label_ids || case when m.unread then array['UNREAD']
                                                            else '{}'::text[] end),
                    'isRead', not m.unread, 'isStarred', m.starred,
                    'hasAttachment', m.has_attachments),
                'source', ctx.src, 'timestamp', ctx.ts)
            else jsonb_build_object(
                'type', 'email_updated',
                'email', jsonb_build_object(
                    'id', m.provider_id, 'threadId', t.provider_id, 'isRead', not m.unread,
                    'isStarred', m.starred,
                    'labelIds', to_jsonb(m.label_ids || case when m.unread then array['UNREAD']
                                                            else '{}'::text[] end),
                    'source', ctx.src),
                'source', ctx.src, 'timestamp', ctx.ts)
            end as ev
          from ch c cross join ctx
          left join messages m on m.account_id = p_account and m.user_id = p_user
                              and m.provider_id = c.r
          left join threads t on t.id = m.thread_id
         where c.k = 'message' and (m.id is not null or p_before ? c.r)),
    cnt as (
        select 1000000000::bigint as n, jsonb_build_object(
                   'type', 'unread_count_updated', 'unread', l.unread, 'total', l.total,
                   'account', p_account, 'source', ctx.src, 'timestamp', ctx.ts) as ev
          from labels l cross join ctx
         where l.account_id = p_account and l.user_id = p_user and l.role = 'inbox'
           and exists (select 1 from ch where ch.k = 'counts')
           and exists (select 1 from ch where ch.k = 'label' and ch.r = l.provider_id)
         order by l.id limit 1)
    select coalesce(jsonb_agg(e.ev order by e.n), '[]'::jsonb)
      from (select * from msg union all select * from cnt) e
$$;

-- ain_mail_write(user, account, changes, key, quiet): ain_mail_apply plus the
-- write's outbox row (what changed and the events it causes) in one
-- transaction, once per (user, key). Returns one row:
--   changed   JSON [[kind, ref], ...], ain_mail_apply's rows in order
--   outbox_id the outbox row (null when nothing changed, or on a replay
--             whose row was already relayed and deleted)
--   events    JSON [event, ...] of that row (on a replay: of the row if it
--             is still there, else [])
--   replayed  true when `key` had been written before: nothing was applied
--             now, the first write's result is returned
--   n_events  how many events the write caused (on a replay: the first
--             write's count, whether or not its row is still there)
-- quiet (a backfill's writes): only unread_count_updated is announced;
-- mail that was already in the mailbox is not news for new_email.
-- Errors: those of ain_mail_apply; 22023 for a key that is not 1..128
-- bytes; AI409 for a key reused with another account or other changes.
-- Two writes with one key at once: the second waits on the first's key
-- row (the primary key), then replays its result (or, if the first rolled
-- back, writes).
create function ain_mail_write(p_user bigint, p_account bigint, p_changes jsonb, p_key text,
                               p_quiet bool default false)
returns table(changed text, outbox_id bigint, events text, replayed bool, n_events int)
language plpgsql as $$
declare
    v_md5     text := md5(coalesce(p_changes::text, ''));
    v_kept    record;
    v_before  jsonb := '{}';
    v_changed jsonb;
    v_events  jsonb := '[]';
    v_id      bigint;
begin
    if p_key is not null then
        if octet_length(p_key) not between 1 and 128 then
            raise exception 'key must be 1 to 128 bytes' using errcode = '22023';
        end if;
        insert into mail_write_keys (user_id, key, account_id, changes_md5)
        values (p_user, p_key, p_account, v_md5)
        on conflict do nothing;
        if not found then
            select k.account_id, k.changes_md5, k.result into v_kept
              from mail_write_keys k where k.user_id = p_user and k.key = p_key;
            if v_kept.account_id <> p_account or v_kept.changes_md5 <> v_md5 then
                raise exception 'key % was used for a different write', p_key
                    using errcode = 'AI409';
            end if;
            select o.id, o.events into v_id, v_events
              from mail_outbox o
             where o.id = (v_kept.result->>'outbox_id')::bigint and o.user_id = p_user;
            return query select (v_kept.result->'changed')::text, v_id,
                                coalesce(v_events, '[]'::jsonb)::text, true,
                                (v_kept.result->>'events')::int;
            return;
        end if;
    end if;
    -- The thread of every message a delete names, before it goes: an
    -- email_deleted event carries it.
    if jsonb_typeof(p_changes) = 'array' then
        select coalesce(jsonb_object_agg(m.provider_id, t.provider_id), '{}') into v_before
          from messages m join threads t on t.id = m.thread_id
         where m.account_id = p_account and m.user_id = p_user
           and m.provider_id in (select x.e->>'id' from jsonb_array_elements(p_changes) x(e)
                                  where jsonb_typeof(x.e) = 'object'
                                    and x.e->>'op' = 'delete_message');
    end if;
    select coalesce(jsonb_agg(jsonb_build_array(a.k, a.r) order by a.n), '[]'::jsonb)
      into v_changed
      from ain_mail_apply(p_user, p_account, p_changes) with ordinality a(k, r, n);
    if jsonb_array_length(v_changed) > 0 then
        v_events := ain__mail_events(p_user, p_account, v_changed, v_before);
        if p_quiet then -- a backfill: old mail is not news; the counts are
            select coalesce(jsonb_agg(e order by n), '[]'::jsonb) into v_events
              from jsonb_array_elements(v_events) with ordinality x(e, n)
             where e->>'type' = 'unread_count_updated';
        end if;
        insert into mail_outbox (user_id, changed, events) values (p_user, v_changed, v_events)
        returning id into v_id;
    end if;
    if p_key is not null then
        update mail_write_keys k
           set result = jsonb_build_object('changed', v_changed,
                                           'events', jsonb_array_length(v_events),
                                           'outbox_id', v_id)
         where k.user_id = p_user and k.key = p_key;
    end if;
    return query select v_changed::text, v_id, v_events::text, false,
                        jsonb_array_length(v_events);
end $$;

-- The 0003 entry point, kept for callers that name it (tests simulate a
-- writer that dies after its commit by calling it): now with the events.
create or replace function ain_mail_apply_outboxed(p_user bigint, p_account bigint,
                                                   p_changes jsonb)
returns table(kind text, ref text, outbox_id bigint)
language plpgsql as $$
declare
    w record;
begin
    select * into w from ain_mail_write(p_user, p_account, p_changes, null);
    return query
        select x.e->>0, x.e->>1, w.outbox_id
          from jsonb_array_elements(w.changed::jsonb) with ordinality x(e, n)
         order by x.n;
end $$;
