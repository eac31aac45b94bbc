-- The mail write outbox: what each committed write changed, kept in the
-- write's own transaction until its cache invalidation has run.
--
-- Owner: the cache actor. MAIL_APPLY calls ain_mail_apply_outboxed, which
-- runs ain_mail_apply and records its (kind, ref) list here in the same
-- transaction; once the invalidation ran (L2 and every L1), the writer
-- deletes the row. A row that outlives its writer (the process died
-- between commit and invalidation, or Redis was away) is relayed by any
-- cache actor after AINBOX_CACHE_OUTBOX_AGE_MS. Invalidating twice is
-- harmless, so relays need no lock. The sync issue's user events can ride
-- on the same rows (a column of events beside `changed`).
create table mail_outbox (
    id         bigserial primary key,
    user_id    bigint not null references users(id) on delete cascade,
    changed    jsonb not null, -- [[kind, ref], ...] in ain_mail_apply's order
    created_at timestamptz not null default now()
);
create index mail_outbox_created_idx on mail_outbox (created_at);

create function ain_mail_apply_outboxed(p_user bigint, p_account bigint, p_changes jsonb)
returns table(kind text, ref text, outbox_id bigint)
language plpgsql as $$
declare
    v_changed jsonb;
    v_id      bigint;
begin
    select coalesce(jsonb_agg(jsonb_build_array(a.k, a.r) order by a.n), '[]'::jsonb)
      into v_changed
      from ain_mail_apply(p_user, p_account, p_changes) with ordinality a(k, r, n);
    if jsonb_array_length(v_changed) > 0 then
        insert into mail_outbox (user_id, changed) values (p_user, v_changed)
        returning id into v_id;
    end if;
    return query
        select x.e->>0, x.e->>1, v_id
          from jsonb_array_elements(v_changed) with ordinality x(e, n)
         order by x.n;
end $$;
