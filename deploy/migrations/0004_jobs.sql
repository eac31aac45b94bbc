-- 0004_jobs.sql: the durable job queue and its dead-letter queue.
-- Owner: the jobs actor (actors/jobs/README.md explains the design). Any
-- number of jobs actors on any hosts share these tables: claims take rows
-- with FOR UPDATE SKIP LOCKED, every claim bumps lease_gen (the fencing
-- token), and every completion names the generation it holds, so the
-- completion of a holder whose lease ran out (and whose job was claimed
-- again elsewhere) changes nothing.
create table jobs (
    id           bigserial primary key,
    kind         text not null,
    service      text not null default 'sync',
    user_id      bigint not null,          -- no foreign key: see the README
    account_id   bigint,
    priority     smallint not null default 1 check (priority between 0 and 2), -- high, medium, low
    unique_key   text,
    payload      jsonb not null default '{}',
    run_at       timestamptz not null default now(),  -- not before
    vt           timestamptz not null default now(),  -- fair order (start-time fair queuing per user)
    attempts     int not null default 0,   -- claims since the last success or continue
    max_attempts int not null default 5 check (max_attempts between 1 and 100),
    state        text not null default 'pending' check (state in ('pending', 'running')),
    lease_owner  text,
    lease_until  timestamptz,
    lease_gen    bigint not null default 0,
    last_error   text,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
-- At most one pending job per key; a running one may wait beside it.
create unique index jobs_unique_pending on jobs (unique_key)
    where state = 'pending' and unique_key is not null;
-- Claims: per priority, in fair order.
create index jobs_claim on jobs (priority, vt) where state = 'pending';
-- The next delayed job (the claimers' timer).
create index jobs_run_at on jobs (run_at) where state = 'pending';
-- Leases that ran out.
create index jobs_lease on jobs (lease_until) where state = 'running';

-- Each user's next fair slot per priority: a user's jobs are spaced
-- AINBOX_JOBS_FAIR_STRIDE_MS apart in fair order, so one user's thousand
-- jobs interleave with other users' instead of running first.
create table jobs_fair (
    user_id  bigint not null,
    priority smallint not null,
    next_vt  timestamptz not null,
    primary key (user_id, priority)
);

create table jobs_dead (
    id           bigint primary key,
    kind         text not null,
    service      text not null,
    user_id      bigint not null,
    account_id   bigint,
    priority     smallint not null,
    unique_key   text,
    payload      jsonb not null,
    attempts     int not null,
    max_attempts int not null,
    last_error   text,
    lease_gen    bigint not null, -- kept, so a retried job's fence never repeats a generation
    created_at   timestamptz not null,
    failed_at    timestamptz not null default now()
);
create index jobs_dead_failed on jobs_dead (failed_at);

-- Enqueues a batch: p_jobs is [{kind, service, user, account, priority
-- (0..2), unique, payload, delay_ms, max_attempts}] (validated by the
-- actor). Returns one row per input, in order: (n, id, created). A job
-- whose unique key has a pending job already is not inserted; it answers
-- that job's id, or a NULL id when that job was claimed meanwhile (the
-- caller enqueues it again). Wakes the claimers with the batch's earliest
-- run_at (epoch ms) as payload.
-- (Nested loops off: the planner guesses one row for each CTE and would match the batch's
-- rows with its inserted ones in a nested loop, n x n: 200 ms for 1,000 jobs instead of 15.)
create function ain_jobs_enqueue(p_jobs jsonb, p_stride_ms int)
returns table(n int, id bigint, created boolean)
language plpgsql set enable_nestloop = off as $$
declare
    v_stride interval := p_stride_ms * interval '1 millisecond';
    v_first  bigint;
begin
    return query
    with input as (
        select x.n::int as n, x.e->>'kind' as kind, x.e->>'service' as service,
               (x.e->>'user')::bigint as user_id, (x.e->>'account')::bigint as account_id,
               (x.e->>'priority')::smallint as priority, x.e->>'unique' as unique_key,
               coalesce(x.e->'payload', '{}'::jsonb) as payload,
               now() + coalesce((x.e->>'delay_ms')::bigint, 0) * interval '1 millisecond' as run_at,
               (x.e->>'max_attempts')::int as max_attempts,
               row_number() over w as rn, count(*) over w as cnt
          from jsonb_array_elements(p_jobs) with ordinality x(e, n)
        window w as (partition by (x.e->>'user')::bigint, (x.e->>'priority')::smallint)
    ),
    fair as (
        insert into jobs_fair as f (user_id, priority, next_vt)
        select distinct i.user_id, i.priority, now() + i.cnt * v_stride from input i
         order by 1, 2 -- every writer locks jobs_fair rows in this order: no deadlock
        on conflict (user_id, priority) do update
           set next_vt = greatest(f.next_vt, now()) + (excluded.next_vt - now())
        returning f.user_id, f.priority, f.next_vt
    ),
    prepared as materialized (
        select i.*, nextval('jobs_id_seq') as new_id,
               greatest(i.run_at, f.next_vt - i.cnt * v_stride + (i.rn - 1) * v_stride) as vt
          from input i join fair f on f.user_id = i.user_id and f.priority = i.priority
    ),
    ins as (
        insert into jobs as j (id, kind, service, user_id, account_id, priority, unique_key,
                               payload, run_at, vt, max_attempts)
        select p.new_id, p.kind, p.service, p.user_id, p.account_id, p.priority, p.unique_key,
               p.payload, p.run_at, p.vt, p.max_attempts
          from prepared p order by p.n
        on conflict (unique_key) where state = 'pending' and unique_key is not null do nothing
        returning j.id
    )
    select p.n,
           coalesce(ins.id,
                    -- the first of this batch with the same key, when it was inserted
                    (select min(q.new_id) from prepared q join ins i2 on i2.id = q.new_id
                      where q.unique_key = p.unique_key),
                    -- a pending job from before this statement
                    (select o.id from jobs o
                      where o.unique_key = p.unique_key and o.state = 'pending' limit 1)),
           ins.id is not null
      from prepared p left join ins on ins.id = p.new_id
     order by p.n;
    select (extract(epoch from min(now() + coalesce((e->>'delay_ms')::bigint, 0)
                                         * interval '1 millisecond')) * 1000)::bigint
      into v_first from jsonb_array_elements(p_jobs) e;
    perform pg_notify('ain_jobs', v_first::text);
end $$;

-- The queue's functions below look rows up by index only; "enable_seqscan = off" keeps it so
-- whatever the statistics said when a session first planned them (an empty table: a sequential
-- scan, cached for the session, cost 10 ms per claim at 50,000 jobs).
-- Returns to the queue up to 1000 jobs whose lease ran out (their holder
-- died, stalled or lost the database). The attempt they were on stays
-- counted, so a job that kills its workers ends in the dead-letter queue.
-- One that would now collide with a pending job of the same unique key is
-- merged into it (deleted): the pending one does the same work.
create function ain_jobs_expire() returns int
language plpgsql set enable_seqscan = off as $$
declare
    r record;
    v_n int := 0;
begin
    for r in select j.id from jobs j
              where j.state = 'running' and j.lease_until < now()
              order by j.lease_until limit 1000 for update skip locked loop
        begin
            update jobs set state = 'pending', lease_owner = null, lease_until = null,
                            last_error = 'lease expired: its worker or jobs actor was lost',
                            updated_at = now()
             where jobs.id = r.id;
        exception when unique_violation then
            delete from jobs where jobs.id = r.id;
        end;
        v_n := v_n + 1;
    end loop;
    return v_n;
end $$;

-- Claims up to p_high / p_medium / p_low ready jobs of each priority for
-- p_owner, leased for p_lease_ms: each claim counts an attempt and bumps
-- the lease generation. Expired leases are returned to the queue first.
create function ain_jobs_claim(p_owner text, p_lease_ms int, p_high int, p_medium int, p_low int)
returns table(id bigint, kind text, service text, user_id bigint, account_id bigint,
              priority smallint, payload text, attempts int, max_attempts int, lease_gen bigint,
              last_error text)
language plpgsql set enable_seqscan = off as $$
begin
    perform ain_jobs_expire();
    return query
    with h as (
        select j.id from jobs j
         where j.state = 'pending' and j.priority = 0 and j.run_at <= now()
         order by j.vt limit p_high for update skip locked
    ), m as (
        select j.id from jobs j
         where j.state = 'pending' and j.priority = 1 and j.run_at <= now()
         order by j.vt limit p_medium for update skip locked
    ), l as (
        select j.id from jobs j
         where j.state = 'pending' and j.priority = 2 and j.run_at <= now()
         order by j.vt limit p_low for update skip locked
    ), c as (
        select h.id from h union all select m.id from m union all select l.id from l
    )
    update jobs j
       set state = 'running', attempts = j.attempts + 1, lease_owner = p_owner,
           lease_until = now() + p_lease_ms * interval '1 millisecond',
           lease_gen = j.lease_gen + 1, updated_at = now()
      from c where j.id = c.id
    returning j.id, j.kind, j.service, j.user_id, j.account_id, j.priority, j.payload::text,
              j.attempts, j.max_attempts, j.lease_gen, j.last_error;
end $$;

-- Applies a batch of outcomes, each for the lease generation it names
-- (a stale one changes nothing): p is [{id, gen, op, delay_ms, attempts,
-- payload, error}] with op "done" (delete), "dead" (to jobs_dead) or
-- "again" (pending after delay_ms; attempts "keep", "uncount" (this claim
-- did not count) or "reset"; payload replaces the job's when given).
-- Returns (id, outcome) for each applied one: done, dead, again, merged
-- (rescheduled onto a pending job of the same unique key, so deleted).
create function ain_jobs_finish(p jsonb, p_stride_ms int)
returns table(id bigint, outcome text)
language plpgsql set enable_seqscan = off as $$
declare
    v_stride interval := p_stride_ms * interval '1 millisecond';
    r record;
    v_vt timestamptz;
    v_run timestamptz;
    v_notify bigint;
begin
    return query
    delete from jobs j using jsonb_array_elements(p) e
     where e->>'op' = 'done' and j.id = (e->>'id')::bigint and j.lease_gen = (e->>'gen')::bigint
       and j.state = 'running'
    returning j.id, 'done'::text;

    return query
    with d as (
        delete from jobs j using jsonb_array_elements(p) e
         where e->>'op' = 'dead' and j.id = (e->>'id')::bigint
           and j.lease_gen = (e->>'gen')::bigint and j.state = 'running'
        returning j.*, e->>'error' as error
    ), ins as (
        insert into jobs_dead (id, kind, service, user_id, account_id, priority, unique_key,
                               payload, attempts, max_attempts, last_error, lease_gen, created_at)
        select d.id, d.kind, d.service, d.user_id, d.account_id, d.priority, d.unique_key,
               d.payload, d.attempts, d.max_attempts, coalesce(d.error, d.last_error), d.lease_gen,
               d.created_at
          from d
        on conflict on constraint jobs_dead_pkey do nothing
        returning jobs_dead.id
    )
    select d.id, 'dead'::text from d;

    -- In (user, priority) order, as ain_jobs_enqueue locks jobs_fair rows: no deadlock.
    for r in select (e->>'id')::bigint as jid, (e->>'gen')::bigint as gen,
                    coalesce((e->>'delay_ms')::bigint, 0) as delay_ms,
                    coalesce(e->>'attempts', 'keep') as att, e->'payload' as payload,
                    e->>'error' as error
               from jsonb_array_elements(p) e join jobs j0 on j0.id = (e->>'id')::bigint
              where e->>'op' = 'again'
              order by j0.user_id, j0.priority, j0.id loop
        v_run := now() + r.delay_ms * interval '1 millisecond';
        begin
            -- The back of the user's queue at this priority (fair order).
            insert into jobs_fair as f (user_id, priority, next_vt)
            select j.user_id, j.priority, greatest(v_run, now()) + v_stride
              from jobs j where j.id = r.jid and j.lease_gen = r.gen and j.state = 'running'
            on conflict (user_id, priority) do update
               set next_vt = greatest(f.next_vt, v_run) + v_stride
            returning f.next_vt - v_stride into v_vt;
            if v_vt is null then
                continue; -- stale: the lease moved on
            end if;
            update jobs j
               set state = 'pending', lease_owner = null, lease_until = null,
                   run_at = v_run, vt = v_vt, updated_at = now(),
                   attempts = case r.att when 'reset' then 0
                                         when 'uncount' then greatest(j.attempts - 1, 0)
                                         else j.attempts end,
                   payload = coalesce(r.payload, j.payload),
                   last_error = coalesce(r.error, j.last_error)
             where j.id = r.jid and j.lease_gen = r.gen and j.state = 'running';
            id := r.jid;
            outcome := 'again';
        exception when unique_violation then
            -- The pending job takes over the work, with the higher of the two priorities, the
            -- earlier start and the newer payload: a backfill's continuation merged into the
            -- poll's low-priority job must not drop to low priority, nor lose its cursor.
            update jobs pj
               set priority = least(pj.priority, j.priority), run_at = least(pj.run_at, v_run),
                   payload = coalesce(r.payload, j.payload), updated_at = now()
              from jobs j
             where j.id = r.jid and j.lease_gen = r.gen and j.state = 'running'
               and pj.unique_key = j.unique_key and pj.state = 'pending' and pj.id <> j.id;
            delete from jobs j where j.id = r.jid and j.lease_gen = r.gen and j.state = 'running';
            id := r.jid;
            outcome := 'merged';
        end;
        v_notify := least(v_notify, (extract(epoch from v_run) * 1000)::bigint); -- least skips NULL
        return next;
    end loop;
    if v_notify is not null then
        perform pg_notify('ain_jobs', v_notify::text);
    end if;
end $$;

-- When a claimer should look again: the next run_at of a pending job of the priorities it has
-- room for, or the next lease end (epoch ms; NULL: nothing).
create function ain_jobs_next(p_prios smallint[]) returns bigint
language sql stable set enable_seqscan = off as $$
    select (extract(epoch from least(
                (select min(run_at) from jobs where state = 'pending' and priority = any(p_prios)),
                (select min(lease_until) from jobs where state = 'running'))) * 1000)::bigint
$$;

-- Moves dead jobs back to the queue (p_id, or all when NULL) with fresh
-- attempts; one whose unique key has a pending job is merged into it.
create function ain_jobs_dlq_retry(p_id bigint)
returns table(retried bigint, merged bigint)
language plpgsql as $$
begin
    return query
    with d as (
        delete from jobs_dead where p_id is null or jobs_dead.id = p_id returning *
    ), ins as (
        insert into jobs (id, kind, service, user_id, account_id, priority, unique_key, payload,
                          max_attempts, created_at, last_error, lease_gen)
        select d.id, d.kind, d.service, d.user_id, d.account_id, d.priority, d.unique_key,
               d.payload, d.max_attempts, d.created_at, d.last_error, d.lease_gen
          from d
        on conflict do nothing
        returning jobs.id
    )
    select (select count(*) from ins), (select count(*) from d) - (select count(*) from ins);
    perform pg_notify('ain_jobs', ((extract(epoch from now()) * 1000)::bigint)::text);
end $$;
