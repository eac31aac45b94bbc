-- 0002_mail_store.sql: the mail store (accounts, labels, threads, messages,
-- bodies, attachments), sessions, drafts/templates/signatures, and
-- ain_mail_apply(), the one function that writes mail.
--
-- Model, for Gmail and Outlook alike:
--   * a label is a Gmail label or a Graph mail folder (provider_id = the
--     label id or the folder id); `role` names the well-known ones;
--   * a thread is a Gmail thread or a Graph conversation; it belongs to one
--     account; its list data (counts, snippet, senders, last_message_at)
--     is kept up to date by ain_mail_apply from its messages;
--   * messages.label_ids holds the provider label ids of a message; a
--     thread carries the union of its messages' labels (thread_labels, with
--     the thread's last_message_at copied in, so a folder page is one range
--     of one index); labels.total/unread count threads (unread: threads
--     with an unread message), moved incrementally by ain_mail_apply;
--   * the archive is not a label: it is the threads in no label whose role
--     is inbox, trash or spam (threads.in_archive, derived like the counts);
--     Outlook's own Archive folder is a label with role 'archive';
--   * unread and starred are flags of a message. The Gmail pseudo-label
--     UNREAD is never stored as a label (it is the unread flag); the label
--     STARRED is kept equal to the starred flag on every account, so the
--     'starred' role lists flagged Outlook mail too (a label STARRED,
--     created on first use, stands for Outlook's flag);
--   * every row carries user_id, and every read query filters on it.
-- Mail tables are written through ain_mail_apply only, never by hand:
-- their derived columns would drift.

-- Owner: the edge's accounts logic (sign-in, refresh-token rotation).
create table sessions (
    id           bigserial primary key,
    user_id      bigint not null references users(id) on delete cascade,
    refresh_hash bytea not null,
    user_agent   text,
    ip           text,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    revoked_at   timestamptz,
    replaced_by  bigint -- the session that replaced this one on rotation
);
create index sessions_user_idx on sessions (user_id);
create index sessions_expires_idx on sessions (expires_at);

-- Owner: the edge's accounts logic (tokens); the sync actor writes the
-- sync_* columns.
create table accounts (
    id                bigserial primary key,
    user_id           bigint not null references users(id) on delete cascade,
    provider          text not null check (provider in ('gmail', 'outlook')),
    address           text not null,
    token_ciphertext  bytea,
    token_nonce       bytea,
    token_key_version int,
    scopes            text,
    sync_cursor       text,
    sync_state        text not null default 'new'
                      check (sync_state in ('new', 'syncing', 'idle', 'error', 'revoked')),
    last_synced_at    timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    unique (user_id, provider, address)
);

-- Owner: the cache actor (through ain_mail_apply).
create table labels (
    id          bigserial primary key,
    user_id     bigint not null references users(id) on delete cascade,
    account_id  bigint not null references accounts(id) on delete cascade,
    provider_id text not null,
    name        text not null,
    role        text check (role in ('inbox', 'sent', 'drafts', 'archive', 'trash', 'spam',
                                     'starred', 'important')),
    total       int not null default 0, -- threads carrying the label
    unread      int not null default 0, -- of those, threads with an unread message
    unique (account_id, provider_id)
);
create index labels_user_idx on labels (user_id);

-- Owner: the cache actor (through ain_mail_apply).
create table threads (
    id                bigserial primary key,
    user_id           bigint not null references users(id) on delete cascade,
    account_id        bigint not null references accounts(id) on delete cascade,
    provider_id       text not null,
    subject           text,   -- of the first message
    snippet           text,   -- of the latest message
    last_message_at   timestamptz not null,
    message_count     int not null,
    unread_count      int not null,
    has_attachments   bool not null,
    starred           bool not null,
    origin_from       text,   -- sender of the first message not sent by the user, else of the first
    latest_from       text,
    latest_to         text,
    latest_message_id bigint, -- messages.id of the latest message (no foreign key: a cycle)
    version           bigint not null default 1, -- bumped on any change to it or its messages
    -- In no label whose role is inbox, trash or spam: the archive list.
    -- Derived (like the counts) so an archive page is one index range even
    -- when the archive is a sliver of the mailbox.
    in_archive        bool not null default false,
    unique (account_id, provider_id)
);
-- Every thread of a user, newest first (an "all mail" order; also serves
-- the cascade when a user goes).
create index threads_list_idx on threads (user_id, last_message_at desc, id desc);
-- The archive list, keyset-paginated like a folder.
create index threads_archive_idx on threads (user_id, last_message_at desc, id desc)
    where in_archive;

-- Owner: the cache actor (through ain_mail_apply).
create table thread_labels (
    user_id         bigint not null references users(id) on delete cascade,
    thread_id       bigint not null references threads(id) on delete cascade,
    label_id        bigint not null references labels(id) on delete cascade,
    last_message_at timestamptz not null, -- = threads.last_message_at
    primary key (thread_id, label_id)
);
-- A folder page: one range scan, keyset-paginated on (last_message_at, thread_id).
create index thread_labels_list_idx
    on thread_labels (user_id, label_id, last_message_at desc, thread_id desc);
-- For the cascade when a label goes (the index above leads with user_id).
create index thread_labels_label_idx on thread_labels (label_id);

-- Owner: the cache actor (through ain_mail_apply).
create table messages (
    id                bigserial primary key,
    user_id           bigint not null references users(id) on delete cascade,
    account_id        bigint not null references accounts(id) on delete cascade,
    thread_id         bigint not null references threads(id) on delete cascade,
    provider_id       text not null,
    subject           text,
    from_name         text,
    from_addr         text,
    to_addrs          text,
    cc_addrs          text,
    bcc_addrs         text,
    snippet           text,
    sent_at           timestamptz not null,
    size_bytes        int,
    unread            bool not null,
    starred           bool not null,
    has_attachments   bool not null,
    is_sent           bool not null default false,
    label_ids         text[] not null default '{}', -- provider label ids, sorted, no UNREAD
    header_message_id text,
    in_reply_to       text,
    refs              text,
    version           bigint not null default 1,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    unique (account_id, provider_id)
);
create index messages_thread_idx on messages (user_id, thread_id, sent_at);
-- For the cascade when a thread goes (the index above leads with user_id).
create index messages_thread_fk_idx on messages (thread_id);

-- Owner: the cache actor (through ain_mail_apply). Apart from messages so
-- list queries never drag bodies through the buffer cache.
create table bodies (
    message_id bigint primary key references messages(id) on delete cascade,
    user_id    bigint not null references users(id) on delete cascade,
    html       text,
    text       text,
    fetched_at timestamptz not null default now()
);
create index bodies_user_idx on bodies (user_id);

-- Owner: the cache actor (through ain_mail_apply). Metadata only; the
-- bytes stay at the provider.
create table attachments (
    id                     bigserial primary key,
    user_id                bigint not null references users(id) on delete cascade,
    message_id             bigint not null references messages(id) on delete cascade,
    provider_attachment_id text,
    filename               text,
    mime_type              text,
    size_bytes             int,
    content_id             text,
    inline                 bool not null default false
);
create index attachments_message_idx on attachments (message_id);
create index attachments_user_idx on attachments (user_id);

-- Owner: the cache actor (compose; a later issue).
create table drafts (
    id                     bigserial primary key,
    user_id                bigint not null references users(id) on delete cascade,
    account_id             bigint not null references accounts(id) on delete cascade,
    provider_id            text,
    to_addrs               text,
    cc_addrs               text,
    bcc_addrs              text,
    subject                text,
    html                   text,
    text                   text,
    in_reply_to_message_id bigint references messages(id) on delete set null,
    updated_at             timestamptz not null default now()
);
create index drafts_user_idx on drafts (user_id);
create index drafts_account_idx on drafts (account_id);
create index drafts_reply_idx on drafts (in_reply_to_message_id)
    where in_reply_to_message_id is not null;

-- Owner: the cache actor (compose; a later issue).
create table templates (
    id         bigserial primary key,
    user_id    bigint not null references users(id) on delete cascade,
    name       text not null,
    subject    text,
    html       text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (user_id, name)
);

-- Owner: the cache actor (compose; a later issue). account_id null = every account.
create table signatures (
    id         bigserial primary key,
    user_id    bigint not null references users(id) on delete cascade,
    account_id bigint references accounts(id) on delete cascade,
    name       text not null,
    html       text,
    is_default bool not null default false
);
create index signatures_user_idx on signatures (user_id);
create index signatures_account_idx on signatures (account_id) where account_id is not null;

-- ---------------------------------------------------------------- helpers
-- ain__mail_*: internal to ain_mail_apply; nothing else should call them.
-- Those called per op from PL/pgSQL are PL/pgSQL too: an SQL function that
-- is not inlined is planned again on every call (five times slower here).

-- Role of a label created on the fly, from Gmail's system label ids.
create function ain__mail_role_of(p_pid text) returns text
language sql immutable as $$
    select case p_pid
        when 'INBOX' then 'inbox' when 'SENT' then 'sent' when 'DRAFT' then 'drafts'
        when 'TRASH' then 'trash' when 'SPAM' then 'spam' when 'STARRED' then 'starred'
        when 'IMPORTANT' then 'important' end
$$;

-- Epoch milliseconds to timestamptz, exactly (interval arithmetic in
-- microseconds; no floating-point seconds).
create function ain__mail_ts(p_ms bigint) returns timestamptz
language plpgsql immutable as $$
begin
    return timestamptz 'epoch' + p_ms * interval '1 millisecond';
end
$$;

-- "Name <addr>", or whichever of the two exists.
create function ain__mail_from(p_name text, p_addr text) returns text
language sql immutable as $$
    select case
        when coalesce(p_name, '') = '' then nullif(p_addr, '')
        when coalesce(p_addr, '') = '' then p_name
        else p_name || ' <' || p_addr || '>' end
$$;

-- A message's stored label set: sorted, distinct, no UNREAD (a flag), and
-- STARRED exactly when the message is starred.
create function ain__mail_norm_labels(p_labels text[], p_starred bool) returns text[]
language plpgsql immutable as $$
begin
    return array(
        select x from unnest(p_labels) x
        where x is not null and x <> '' and x <> 'UNREAD' and x <> 'STARRED'
        union
        select 'STARRED' where p_starred
        order by 1);
end
$$;

-- A JSON array of strings as text[] (null or absent = empty); anything
-- else is the caller's error, reported with where it was.
create function ain__mail_texts(p_json jsonb, p_where text) returns text[]
language plpgsql immutable as $$
begin
    if p_json is null or jsonb_typeof(p_json) = 'null' then
        return '{}';
    end if;
    if jsonb_typeof(p_json) <> 'array' then
        raise exception '%: expected an array of strings, got %', p_where, jsonb_typeof(p_json)
            using errcode = '22023';
    end if;
    return array(select jsonb_array_elements_text(p_json));
end
$$;

-- A string, or an array of strings joined with p_sep; null stays null.
create function ain__mail_join(p_json jsonb, p_sep text) returns text
language plpgsql immutable as $$
begin
    return case jsonb_typeof(p_json)
        when 'string' then p_json #>> '{}'
        when 'array' then array_to_string(array(select jsonb_array_elements_text(p_json)), p_sep)
        when 'null' then null
        else p_json::text end;
end
$$;

-- A boolean field, or null when absent; anything but a JSON boolean is an error.
create function ain__mail_bool(p_op jsonb, p_key text, p_idx int) returns bool
language plpgsql immutable as $$
begin
    if p_op->p_key is null or jsonb_typeof(p_op->p_key) = 'null' then
        return null;
    end if;
    if jsonb_typeof(p_op->p_key) <> 'boolean' then
        raise exception 'changes[%] (%): "%" must be true or false', p_idx, p_op->>'op', p_key
            using errcode = '22023';
    end if;
    return (p_op->p_key)::bool;
end
$$;

-- An integer field (number or numeric string, as Gmail's internalDate), or null.
create function ain__mail_int(p_op jsonb, p_key text, p_idx int) returns bigint
language plpgsql immutable as $$
begin
    if p_op->p_key is null or jsonb_typeof(p_op->p_key) = 'null' then
        return null;
    end if;
    if (p_op->>p_key) !~ '^-?[0-9]{1,18}$' then
        raise exception 'changes[%] (%): "%" must be an integer', p_idx, p_op->>'op', p_key
            using errcode = '22023';
    end if;
    return (p_op->>p_key)::bigint;
end
$$;

-- The op's "id", which every op needs.
create function ain__mail_id(p_op jsonb, p_idx int) returns text
language plpgsql immutable as $$
begin
    if jsonb_typeof(p_op->'id') is distinct from 'string' or p_op->>'id' = '' then
        raise exception 'changes[%] (%): "id" must be a non-empty string', p_idx, p_op->>'op'
            using errcode = '22023';
    end if;
    return p_op->>'id';
end
$$;

-- ------------------------------------------------------------ the ops
-- Each op applies one change and returns what it touched, as rows of
-- (w, id, ref):
--   'm' message changed or deleted (id, provider id)   'M' message created
--   't' thread whose messages changed (id)             'T' thread losing a label
--   'a' the archive list changed
-- Labels report nothing: ain_mail_apply compares the account's labels
-- before and after the batch. A change that changes nothing returns
-- nothing. Ops naming a message the store does not have are no-ops (sync
-- races make that normal).

create function ain__mail_upsert_message(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid     text := ain__mail_id(p_op, p_idx);
    v_tpid    text := p_op->>'thread_id';
    v_ms      bigint := ain__mail_int(p_op, 'sent_at_ms', p_idx);
    v_labels  text[] := ain__mail_texts(p_op->'labels',
                                        format('changes[%s] (upsert_message): "labels"', p_idx));
    v_unread  bool := coalesce(ain__mail_bool(p_op, 'unread', p_idx), 'UNREAD' = any(v_labels));
    v_starred bool := coalesce(ain__mail_bool(p_op, 'starred', p_idx), 'STARRED' = any(v_labels));
    v_sent    bool := coalesce(ain__mail_bool(p_op, 'is_sent', p_idx), 'SENT' = any(v_labels));
    v_tid     bigint;
    v_old_tid bigint;
    v_mid     bigint;
    v_created bool;
begin
    if coalesce(v_tpid, '') = '' or v_ms is null then
        raise exception 'changes[%] (upsert_message): "thread_id" and "sent_at_ms" are required',
            p_idx using errcode = '22023';
    end if;
    -- A new thread starts at version 0 with placeholder aggregates; the
    -- settle step fills them in and brings it to version 1. Look-then-insert
    -- is safe: the account's lock (ain_mail_apply) keeps other writers out.
    select t.id into v_tid from threads t where t.account_id = p_account and t.provider_id = v_tpid;
    if v_tid is null then
        insert into threads (user_id, account_id, provider_id, last_message_at, message_count,
                             unread_count, has_attachments, starred, version)
        values (p_user, p_account, v_tpid, ain__mail_ts(v_ms), 0, 0, false, false, 0)
        returning threads.id into v_tid;
    end if;
    select m.thread_id into v_old_tid from messages m
     where m.account_id = p_account and m.provider_id = v_pid;

    insert into messages as m (user_id, account_id, thread_id, provider_id, subject, from_name,
                               from_addr, to_addrs, cc_addrs, bcc_addrs, snippet, sent_at,
                               size_bytes, unread, starred, has_attachments, is_sent, label_ids,
                               header_message_id, in_reply_to, refs)
    values (p_user, p_account, v_tid, v_pid, p_op->>'subject', p_op->>'from_name',
            p_op->>'from_addr', ain__mail_join(p_op->'to', ', '), ain__mail_join(p_op->'cc', ', '),
            ain__mail_join(p_op->'bcc', ', '), p_op->>'snippet', ain__mail_ts(v_ms),
            ain__mail_int(p_op, 'size', p_idx)::int, v_unread, v_starred,
            coalesce(ain__mail_bool(p_op, 'has_attachments', p_idx), false), v_sent,
            ain__mail_norm_labels(v_labels, v_starred), p_op->>'header_message_id',
            p_op->>'in_reply_to', ain__mail_join(p_op->'references', ' '))
    on conflict (account_id, provider_id) do update set
        thread_id = excluded.thread_id, subject = excluded.subject,
        from_name = excluded.from_name, from_addr = excluded.from_addr,
        to_addrs = excluded.to_addrs, cc_addrs = excluded.cc_addrs,
        bcc_addrs = excluded.bcc_addrs, snippet = excluded.snippet, sent_at = excluded.sent_at,
        size_bytes = excluded.size_bytes, unread = excluded.unread, starred = excluded.starred,
        has_attachments = excluded.has_attachments, is_sent = excluded.is_sent,
        label_ids = excluded.label_ids, header_message_id = excluded.header_message_id,
        in_reply_to = excluded.in_reply_to, refs = excluded.refs,
        version = m.version + 1, updated_at = now()
    where (m.thread_id, m.subject, m.from_name, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs,
           m.snippet, m.sent_at, m.size_bytes, m.unread, m.starred, m.has_attachments, m.is_sent,
           m.label_ids, m.header_message_id, m.in_reply_to, m.refs)
          is distinct from
          (excluded.thread_id, excluded.subject, excluded.from_name, excluded.from_addr,
           excluded.to_addrs, excluded.cc_addrs, excluded.bcc_addrs, excluded.snippet,
           excluded.sent_at, excluded.size_bytes, excluded.unread, excluded.starred,
           excluded.has_attachments, excluded.is_sent, excluded.label_ids,
           excluded.header_message_id, excluded.in_reply_to, excluded.refs)
    returning m.id, m.xmax = 0 into v_mid, v_created; -- xmax 0: inserted, not updated
    if v_mid is null then
        return; -- identical to what is stored
    end if;
    return query values (case when v_created then 'M' else 'm' end, v_mid, v_pid),
                        ('t', v_tid, null::text);
    if v_old_tid is not null and v_old_tid <> v_tid then
        return query values ('t', v_old_tid, null::text); -- moved out of a thread
    end if;
end
$$;

-- set_flags {id, unread?, starred?}: an absent flag stays as it is.
create function ain__mail_set_flags(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid     text := ain__mail_id(p_op, p_idx);
    v_unread  bool := ain__mail_bool(p_op, 'unread', p_idx);
    v_starred bool := ain__mail_bool(p_op, 'starred', p_idx);
begin
    return query
    with u as (
        update messages m set
            unread = coalesce(v_unread, m.unread),
            starred = coalesce(v_starred, m.starred),
            label_ids = ain__mail_norm_labels(m.label_ids, coalesce(v_starred, m.starred)),
            version = m.version + 1, updated_at = now()
        where m.account_id = p_account and m.provider_id = v_pid
          and (m.unread, m.starred) is distinct from
              (coalesce(v_unread, m.unread), coalesce(v_starred, m.starred))
        returning m.id, m.thread_id)
    select 'm', u.id, v_pid from u
    union all
    select 't', u.thread_id, null from u;
end
$$;

-- set_labels {id, add:[...], remove:[...]}: UNREAD and STARRED in either
-- list set the flags; a label in both lists ends up added.
create function ain__mail_set_labels(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid     text := ain__mail_id(p_op, p_idx);
    v_add     text[] := ain__mail_texts(p_op->'add',
                                        format('changes[%s] (set_labels): "add"', p_idx));
    v_rem     text[] := ain__mail_texts(p_op->'remove',
                                        format('changes[%s] (set_labels): "remove"', p_idx));
    v_mid     bigint;
    v_tid     bigint;
    v_labels  text[];
    v_unread  bool;
    v_starred bool;
    v_nlabels text[];
    v_nunread bool;
    v_nstar   bool;
begin
    select m.id, m.thread_id, m.label_ids, m.unread, m.starred
      into v_mid, v_tid, v_labels, v_unread, v_starred
      from messages m where m.account_id = p_account and m.provider_id = v_pid;
    if not found then
        return;
    end if;
    v_nunread := case when 'UNREAD' = any(v_add) then true
                      when 'UNREAD' = any(v_rem) then false else v_unread end;
    v_nstar := case when 'STARRED' = any(v_add) then true
                    when 'STARRED' = any(v_rem) then false else v_starred end;
    v_nlabels := ain__mail_norm_labels(
        array(select x from unnest(v_labels) x where x <> all(v_rem)) || v_add, v_nstar);
    if (v_nlabels, v_nunread, v_nstar) is not distinct from (v_labels, v_unread, v_starred) then
        return;
    end if;
    update messages m set label_ids = v_nlabels, unread = v_nunread, starred = v_nstar,
                          version = m.version + 1, updated_at = now()
     where m.id = v_mid;
    return query values ('m', v_mid, v_pid), ('t', v_tid, null::text);
end
$$;

-- delete_message {id}: the thread goes in the settle step if it is empty.
create function ain__mail_delete_message(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid text := ain__mail_id(p_op, p_idx);
begin
    return query
    with d as (
        delete from messages m where m.account_id = p_account and m.provider_id = v_pid
        returning m.id, m.thread_id)
    select 'm', d.id, v_pid from d
    union all
    select 't', d.thread_id, null from d;
end
$$;

-- upsert_body {id, html, text, attachments:[...]}: the body and the full
-- list of attachments (absent = none) replace what was stored.
create function ain__mail_upsert_body(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid text := ain__mail_id(p_op, p_idx);
    v_att jsonb := coalesce(p_op->'attachments', '[]');
    v_mid bigint;
    v_tid bigint;
begin
    if jsonb_typeof(v_att) = 'null' then
        v_att := '[]';
    end if;
    if jsonb_typeof(v_att) <> 'array'
       or exists (select 1 from jsonb_array_elements(v_att) e
                   where jsonb_typeof(e) <> 'object') then
        raise exception 'changes[%] (upsert_body): "attachments" must be an array of objects', p_idx
            using errcode = '22023';
    end if;
    update messages m set version = m.version + 1, updated_at = now()
     where m.account_id = p_account and m.provider_id = v_pid
    returning m.id, m.thread_id into v_mid, v_tid;
    if v_mid is null then
        return;
    end if;
    insert into bodies (message_id, user_id, html, text)
    values (v_mid, p_user, p_op->>'html', p_op->>'text')
    on conflict (message_id) do update
        set html = excluded.html, text = excluded.text, fetched_at = now();
    delete from attachments a where a.message_id = v_mid;
    insert into attachments (user_id, message_id, provider_attachment_id, filename, mime_type,
                             size_bytes, content_id, inline)
    select p_user, v_mid, e->>'id', e->>'filename', e->>'mime_type',
           ain__mail_int(e, 'size', p_idx)::int, e->>'content_id',
           coalesce(ain__mail_bool(e, 'inline', p_idx), false)
      from jsonb_array_elements(v_att) with ordinality x(e, n)
     order by n;
    return query values ('m', v_mid, v_pid), ('t', v_tid, null::text);
end
$$;

-- upsert_label {id, name, role?}: an absent role keeps the stored one (a
-- new label gets the Gmail system role of its id, if any); "role": null
-- clears it.
create function ain__mail_upsert_label(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid   text := ain__mail_id(p_op, p_idx);
    v_name  text := coalesce(p_op->>'name', v_pid);
    v_role  text := p_op->>'role';
    v_lid   bigint;
    v_oname text;
    v_orole text;
    v_moved int;
begin
    if v_role is not null and v_role not in ('inbox', 'sent', 'drafts', 'archive', 'trash',
                                             'spam', 'starred', 'important') then
        raise exception 'changes[%] (upsert_label): unknown role "%"', p_idx, v_role
            using errcode = '22023';
    end if;
    select l.id, l.name, l.role into v_lid, v_oname, v_orole
      from labels l where l.account_id = p_account and l.provider_id = v_pid;
    if not found then
        insert into labels (user_id, account_id, provider_id, name, role)
        values (p_user, p_account, v_pid, v_name,
                case when p_op ? 'role' then v_role else ain__mail_role_of(v_pid) end);
        return;
    end if;
    if not p_op ? 'role' then
        v_role := v_orole;
    end if;
    if (v_name, v_role) is not distinct from (v_oname, v_orole) then
        return;
    end if;
    update labels l set name = v_name, role = v_role where l.id = v_lid;
    if coalesce(v_role in ('inbox', 'trash', 'spam'), false)
       <> coalesce(v_orole in ('inbox', 'trash', 'spam'), false) then
        -- The label's threads may enter or leave the archive.
        with n as (
            select tl.thread_id, not exists (
                       select 1 from thread_labels o join labels l on l.id = o.label_id
                        where o.thread_id = tl.thread_id
                          and l.role in ('inbox', 'trash', 'spam')) as arch
              from thread_labels tl where tl.user_id = p_user and tl.label_id = v_lid)
        update threads t set in_archive = n.arch
          from n where t.id = n.thread_id and t.in_archive <> n.arch;
        get diagnostics v_moved = row_count;
        if v_moved > 0 then
            return query values ('a', null::bigint, null::text);
        end if;
    end if;
end
$$;

-- delete_label {id}: the label leaves every message of the account too
-- (STARRED takes the starred flag with it: the two stay equal).
create function ain__mail_delete_label(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    v_pid   text := ain__mail_id(p_op, p_idx);
    v_lid   bigint;
    v_role  text;
begin
    select l.id, l.role into v_lid, v_role
      from labels l where l.account_id = p_account and l.provider_id = v_pid;
    if not found then
        return;
    end if;
    -- Threads losing the label: their rows in their other labels' lists change.
    return query select 'T', tl.thread_id, null::text from thread_labels tl
                  where tl.user_id = p_user and tl.label_id = v_lid;
    return query
    with u as (
        update messages m set label_ids = array_remove(m.label_ids, v_pid),
                              starred = m.starred and v_pid <> 'STARRED',
                              version = m.version + 1, updated_at = now()
        where m.user_id = p_user
          and m.thread_id in (select tl.thread_id from thread_labels tl
                               where tl.user_id = p_user and tl.label_id = v_lid)
          and m.label_ids @> array[v_pid]
        returning m.id, m.provider_id, m.thread_id)
    select 'm', u.id, u.provider_id from u
    union all
    select 't', u.thread_id, null from u;
    delete from labels l where l.id = v_lid; -- the settle step redoes in_archive
end
$$;

create function ain__mail_op(p_user bigint, p_account bigint, p_op jsonb, p_idx int)
returns table(w text, id bigint, ref text)
language plpgsql as $$
declare
    u bigint := p_user;
    a bigint := p_account;
    o jsonb := p_op;
    i int := p_idx;
begin
    case p_op->>'op'
    when 'upsert_message' then return query select * from ain__mail_upsert_message(u, a, o, i);
    when 'set_flags'      then return query select * from ain__mail_set_flags(u, a, o, i);
    when 'set_labels'     then return query select * from ain__mail_set_labels(u, a, o, i);
    when 'delete_message' then return query select * from ain__mail_delete_message(u, a, o, i);
    when 'upsert_body'    then return query select * from ain__mail_upsert_body(u, a, o, i);
    when 'upsert_label'   then return query select * from ain__mail_upsert_label(u, a, o, i);
    when 'delete_label'   then return query select * from ain__mail_delete_label(u, a, o, i);
    end case; -- ain_mail_apply checked the op names: no else
end
$$;

-- ------------------------------------------------------------ settling
-- After the ops, for the threads whose messages changed (p_tids): create
-- the labels their messages name, rebuild their thread_labels, recompute
-- their aggregates, archive flag and version (one write per thread),
-- delete the empty ones, move the label counts by the difference, and say
-- which threads, labels, roles and lists changed (label renames, counts
-- and created/deleted labels are ain_mail_apply's, from its label diff).
-- Only this step writes threads and thread_labels (but for creating a
-- thread, and upsert_label moving in_archive on a role change), so what
-- they hold on entry is the state before the batch; the per-account lock
-- in ain_mail_apply keeps it so.
create function ain__mail_settle(p_user bigint, p_account bigint, p_tids bigint[],
                                 p_forced bigint[])
returns table(w text, id bigint, ref text)
language plpgsql as $$
#variable_conflict use_column
declare
    b_t    bigint[]; -- before: (thread, label, thread has unread) triples
    b_l    bigint[];
    b_u    bool[];
    a_t    bigint[]; -- after
    a_l    bigint[];
    a_u    bool[];
    v_new  bigint[]; -- threads created by this batch
    v_gone bigint[]; -- threads deleted
    v_chg  bigint[]; -- threads whose list row changed (aggregates or labels)
    v_pids text[];   -- provider ids of p_tids, taken while they all exist
    b_arch bigint[]; -- threads in the archive before
    a_arch bigint[]; -- and after
begin
    select coalesce(array_agg(t.id) filter (where t.version = 0), '{}'),
           coalesce(array_agg(t.provider_id), '{}'),
           coalesce(array_agg(t.id) filter (where t.in_archive), '{}')
      into v_new, v_pids, b_arch
      from threads t where t.id = any(p_tids);
    select coalesce(array_agg(tl.thread_id), '{}'), coalesce(array_agg(tl.label_id), '{}'),
           coalesce(array_agg(t.unread_count > 0), '{}')
      into b_t, b_l, b_u
      from thread_labels tl join threads t on t.id = tl.thread_id
     where tl.thread_id = any(p_tids);

    -- Labels named by messages but unknown: created with name = id.
    insert into labels (user_id, account_id, provider_id, name, role)
    select distinct p_user, p_account, x, x, ain__mail_role_of(x)
      from messages m cross join unnest(m.label_ids) x
     where m.user_id = p_user and m.thread_id = any(p_tids)
       and not exists (select 1 from labels l where l.account_id = p_account
                                                and l.provider_id = x);

    -- thread_labels: what the messages say, minus what is there. Threads
    -- left without messages lose every row here.
    with lm as (
        select m.thread_id, max(m.sent_at) as lm from messages m
         where m.user_id = p_user and m.thread_id = any(p_tids) group by m.thread_id),
    want as (
        select distinct m.thread_id, l.id as label_id
          from messages m cross join unnest(m.label_ids) x
          join labels l on l.account_id = m.account_id and l.provider_id = x
         where m.user_id = p_user and m.thread_id = any(p_tids)),
    del as (
        delete from thread_labels tl
         where tl.thread_id = any(p_tids)
           and not exists (select 1 from want where want.thread_id = tl.thread_id
                                                and want.label_id = tl.label_id))
    insert into thread_labels as tl (user_id, thread_id, label_id, last_message_at)
    select p_user, want.thread_id, want.label_id, lm.lm
      from want join lm on lm.thread_id = want.thread_id
    on conflict (thread_id, label_id) do update set last_message_at = excluded.last_message_at
     where tl.last_message_at <> excluded.last_message_at;

    -- After: the same triples, unread taken from the messages.
    select coalesce(array_agg(tl.thread_id), '{}'), coalesce(array_agg(tl.label_id), '{}'),
           coalesce(array_agg(u.u), '{}')
      into a_t, a_l, a_u
      from thread_labels tl
      join (select m.thread_id, bool_or(m.unread) as u from messages m
             where m.user_id = p_user and m.thread_id = any(p_tids)
             group by m.thread_id) u on u.thread_id = tl.thread_id
     where tl.thread_id = any(p_tids);

    -- Aggregates. "Changed" compares the list row before and after.
    with s as (
        select m.thread_id as tid, count(*)::int as mc,
               (count(*) filter (where m.unread))::int as uc,
               bool_or(m.has_attachments) as ha, bool_or(m.starred) as st, max(m.sent_at) as lm
          from messages m where m.user_id = p_user and m.thread_id = any(p_tids)
         group by m.thread_id),
    latest as (
        select distinct on (m.thread_id) m.thread_id as tid, m.id as mid, m.snippet,
               ain__mail_from(m.from_name, m.from_addr) as fr, m.to_addrs, m.subject
          from messages m where m.user_id = p_user and m.thread_id = any(p_tids)
         order by m.thread_id, m.sent_at desc, m.id desc),
    earliest as (
        select distinct on (m.thread_id) m.thread_id as tid, m.subject
          from messages m where m.user_id = p_user and m.thread_id = any(p_tids)
         order by m.thread_id, m.sent_at, m.id),
    origin as (
        select distinct on (m.thread_id) m.thread_id as tid,
               ain__mail_from(m.from_name, m.from_addr) as fr
          from messages m where m.user_id = p_user and m.thread_id = any(p_tids)
         order by m.thread_id, m.is_sent, m.sent_at, m.id),
    hidden as (
        select distinct a.t as tid from unnest(a_t, a_l) a(t, l) join labels l on l.id = a.l
         where l.role in ('inbox', 'trash', 'spam')),
    n as (
        select s.*, latest.mid, latest.snippet, latest.fr as lfr, latest.to_addrs,
               coalesce(earliest.subject, latest.subject) as subject, origin.fr as ofr,
               hidden.tid is null as arch
          from s join latest using (tid) join earliest using (tid) join origin using (tid)
          left join hidden using (tid)),
    c as (
        select n.*, t.version = 0 or
               (t.subject, t.snippet, t.last_message_at, t.message_count, t.unread_count,
                t.has_attachments, t.starred, t.origin_from, t.latest_from, t.latest_to,
                t.latest_message_id)
               is distinct from
               (n.subject, n.snippet, n.lm, n.mc, n.uc, n.ha, n.st, n.ofr, n.lfr, n.to_addrs,
                n.mid) as changed
          from n join threads t on t.id = n.tid),
    u as (
        update threads t set subject = c.subject, snippet = c.snippet, last_message_at = c.lm,
               message_count = c.mc, unread_count = c.uc, has_attachments = c.ha,
               starred = c.st, origin_from = c.ofr, latest_from = c.lfr, latest_to = c.to_addrs,
               latest_message_id = c.mid, in_archive = c.arch, version = t.version + 1
          from c where t.id = c.tid
        returning t.id, c.changed, c.arch)
    select coalesce(array_agg(u.id) filter (where u.changed), '{}'),
           coalesce(array_agg(u.id) filter (where u.arch), '{}')
      into v_chg, a_arch
      from u;

    with d as (
        delete from threads t
         where t.id = any(p_tids)
           and not exists (select 1 from messages m where m.thread_id = t.id)
        returning t.id)
    select coalesce(array_agg(d.id), '{}') into v_gone from d;
    -- Every thread touched, but one born and gone within the batch.
    return query select 'thread', null::bigint, p.pid from unnest(p_tids, v_pids) p(tid, pid)
                 where not (p.tid = any(v_new) and p.tid = any(v_gone));

    -- Threads whose label set changed count as changed too (their rows
    -- carry their label ids), as do threads created and deleted.
    select array(
        select distinct x from (
            select unnest(v_chg) union all select unnest(v_new) union all select unnest(v_gone)
            union all select unnest(p_forced)
            union all
            select t from ((select * from unnest(b_t, b_l) except select * from unnest(a_t, a_l))
                           union all
                           (select * from unnest(a_t, a_l) except select * from unnest(b_t, b_l)))
                          sym(t, l)) y(x))
      into v_chg;

    -- Counts move by (after - before) per label.
    with d as (
        select x.l, sum(x.dt)::int as dt, sum(x.du)::int as du from (
            select b.l, -1 as dt, -(b.u::int) as du from unnest(b_t, b_l, b_u) b(t, l, u)
            union all
            select a.l, 1, a.u::int from unnest(a_t, a_l, a_u) a(t, l, u)) x
         group by x.l
        having sum(x.dt) <> 0 or sum(x.du) <> 0)
    update labels l set total = l.total + d.dt, unread = l.unread + d.du
      from d where l.id = d.l;

    -- Every label a changed thread was or is in: its list changed.
    return query
    select 'label', null::bigint, l.provider_id from labels l
     where l.id in (select b.l from unnest(b_t, b_l) b(t, l) where b.t = any(v_chg)
                    union
                    select a.l from unnest(a_t, a_l) a(t, l) where a.t = any(v_chg))
    union all
    select 'role', null::bigint, l.role from labels l
     where l.role is not null
       and l.id in (select b.l from unnest(b_t, b_l) b(t, l) where b.t = any(v_chg)
                    union
                    select a.l from unnest(a_t, a_l) a(t, l) where a.t = any(v_chg));
    -- The archive list changed if a changed thread is or was in it.
    if exists (select 1 from unnest(v_chg) c(t) where c.t = any(b_arch) or c.t = any(a_arch)) then
        return query values ('archive', null::bigint, '');
    end if;
end
$$;

-- ------------------------------------------------------------ the entry point

-- An account's labels as {provider id: [name, role, total, unread]}: the
-- before and after of a batch, for its label, role and counts rows.
create function ain__mail_label_state(p_account bigint) returns jsonb
language sql stable as $$
    select coalesce(jsonb_object_agg(l.provider_id,
                                     jsonb_build_array(l.name, l.role, l.total, l.unread)), '{}')
      from labels l where l.account_id = p_account
$$;

-- ain_mail_apply(user, account, changes): applies a JSON array of changes
-- for one account of one user, atomically (it runs inside the caller's
-- statement: all or nothing), and returns what changed, for the cache:
--   ('message', provider id)  a message changed, appeared or went
--   ('thread', provider id)   a thread's data or one of its messages changed
--                             (or the thread went)
--   ('label', provider id)    a label's thread list, counts, name or role
--                             changed, or the label appeared or went
--   ('role', role)            the role of such a label (old and new on a
--                             role change)
--   ('counts', '')            some label's name, role, total or unread
--                             changed, or a label appeared or went
--   ('archive', '')           the archive list (threads in no inbox, trash
--                             or spam label) changed
-- What is reported is the net change of the batch: a message or thread
-- created and deleted within it, or a label created and deleted, is not.
-- Errors: 42501 when the account is not the user's; 22023 for a malformed
-- batch (not an array, an unknown op, a bad field), naming changes[i].
-- Concurrent calls for one account are serialised by an advisory lock, so
-- the incremental counts stay exact.
-- Its statements are planned once per session (generic plans): custom
-- plans, re-made on every call, cost three times the work itself.
create function ain_mail_apply(p_user bigint, p_account bigint, p_changes jsonb)
returns table(kind text, ref text)
language plpgsql
set plan_cache_mode = force_generic_plan as $$
#variable_conflict use_column
declare
    v_bad    record;
    v_op     jsonb;
    v_idx    int;
    r        record;
    v_tids   bigint[] := '{}';
    v_forced bigint[] := '{}';
    v_mpids  text[] := '{}'; -- messages touched, in first-touch order
    v_mnew   bool[] := '{}'; -- ... and whether the first touch created it
    v_out    text[] := '{}'; -- kind, ref, kind, ref, ...
    v_lstate jsonb;
begin
    if not exists (select 1 from accounts a where a.id = p_account and a.user_id = p_user) then
        raise exception 'ain_mail_apply: account % does not belong to user %', p_account, p_user
            using errcode = '42501';
    end if;
    if p_changes is null or jsonb_typeof(p_changes) <> 'array' then
        raise exception 'ain_mail_apply: changes must be a JSON array, not %',
            coalesce(jsonb_typeof(p_changes), 'SQL null') using errcode = '22023';
    end if;
    select x.n - 1 as idx, x.e->>'op' as op, jsonb_typeof(x.e) as t into v_bad
      from jsonb_array_elements(p_changes) with ordinality x(e, n)
     where jsonb_typeof(x.e) <> 'object'
        or (x.e->>'op') is null
        or (x.e->>'op') not in ('upsert_message', 'set_flags', 'set_labels', 'delete_message',
                                'upsert_body', 'upsert_label', 'delete_label')
     order by x.n limit 1;
    if found then
        if v_bad.t <> 'object' then
            raise exception 'ain_mail_apply: changes[%] is a JSON %, not an object',
                v_bad.idx, v_bad.t using errcode = '22023';
        end if;
        raise exception 'ain_mail_apply: changes[%]: unknown op "%"', v_bad.idx,
            coalesce(v_bad.op, '(none)') using errcode = '22023';
    end if;
    perform pg_advisory_xact_lock(1095323969, (p_account % 2147483647)::int); -- 'AIMA'
    v_lstate := ain__mail_label_state(p_account);

    for v_op, v_idx in select x.e, x.n - 1
                         from jsonb_array_elements(p_changes) with ordinality x(e, n) loop
        for r in select * from ain__mail_op(p_user, p_account, v_op, v_idx) loop
            case r.w
            when 'm', 'M' then
                if not r.ref = any(v_mpids) then
                    v_mpids := v_mpids || r.ref;
                    v_mnew := v_mnew || (r.w = 'M');
                end if;
            when 't' then v_tids := v_tids || r.id;
            when 'T' then v_forced := v_forced || r.id; v_tids := v_tids || r.id;
            when 'a' then v_out := v_out || array['archive', ''];
            end case;
        end loop;
    end loop;

    v_tids := array(select distinct x from unnest(v_tids) x order by 1);
    if cardinality(v_tids) > 0 then
        v_forced := array(select distinct x from unnest(v_forced) x);
        for r in select * from ain__mail_settle(p_user, p_account, v_tids, v_forced) loop
            v_out := v_out || array[r.w, r.ref];
        end loop;
    end if;
    return query
    with lb as (select * from jsonb_each(v_lstate)),
    la as (select * from jsonb_each(ain__mail_label_state(p_account))),
    ld as (select coalesce(la.key, lb.key) as pid, lb.value->>1 as brole, la.value->>1 as arole
             from lb full join la on la.key = lb.key
            where lb.value is distinct from la.value)
    select distinct o.k, o.v from (
        select v_out[2 * i - 1] as k, v_out[2 * i] as v
          from generate_series(1, cardinality(v_out) / 2) i
        union all
        select 'message', x.p from unnest(v_mpids, v_mnew) x(p, n)
         where not x.n or exists (select 1 from messages m where m.account_id = p_account
                                                            and m.provider_id = x.p)
        union all
        select 'label', ld.pid from ld
        union all
        select 'role', ld.brole from ld
        union all
        select 'role', ld.arole from ld
        union all
        select 'counts', '' from ld) o(k, v)
     where o.v is not null
     order by 1, 2;
end
$$;
