-- Activities: guards, the representation, outbox events, the customer's sales-cycle facts (in
-- its representation and in the search projection) and the customer change log.
--
-- Sales-cycle facts of a customer (crm_activity_facts):
-- * last_activity_at: the latest occurred_at of its DONE activities;
-- * next_follow_up_at: the earliest open follow-up (follow_up_at of an activity that is not
--   CANCELLED) or planned activity (planned_at of a PLANNED one); an overdue one stays the next
--   until it is done, cleared or cancelled;
-- * activities_last_90_days: its DONE activities that occurred within the last 90 days.
-- The first two depend on the activities only: triggers copy them into customer_hot for search
-- in the writing transaction. The count also changes as time passes, so it is never stored: the
-- representation and the search count it when they read it (index activity_customer_done_idx).
-- depends: 0041_activities_indexes
set lock_timeout = '5s';
set statement_timeout = '60s';

-- --- guards --------------------------------------------------------------------------------------

-- type and customer never change; participants must be contacts of the customer, presented
-- products must exist and a linked sample request must be one of the customer's. Only values
-- added by this write are checked: a contact deleted since stays listed until it is removed.
create or replace function crm_activity_guard() returns trigger
language plpgsql
as $$
declare
    old_participants uuid[] := '{}';
    old_products uuid[] := '{}';
    old_sample_request uuid;
begin
    if tg_op = 'UPDATE' then
        if new.type <> old.type then
            raise exception 'the type of an activity cannot change (% to %)', old.type, new.type
                using errcode = 'check_violation', constraint = 'activity_type_fixed';
        end if;
        if new.customer_id <> old.customer_id then
            raise exception 'an activity cannot move to another customer'
                using errcode = 'check_violation', constraint = 'activity_customer_fixed';
        end if;
        old_participants := old.participants;
        old_products := old.products_presented;
        old_sample_request := old.sample_request_id;
    end if;
    if exists (
        select 1
        from unnest(new.participants) as p (id)
        where not (p.id = any (old_participants))
          and not exists (
              select 1
              from contact as c
              where c.id = p.id
                and c.customer_id = new.customer_id
          )
    ) then
        raise exception 'every participant must be a contact of the customer'
            using errcode = 'check_violation', constraint = 'activity_participants_contacts';
    end if;
    if exists (
        select 1
        from unnest(new.products_presented) as x (id)
        where not (x.id = any (old_products))
          and not exists (select 1 from product as p where p.id = x.id)
    ) then
        raise exception 'every presented product must exist'
            using errcode = 'check_violation', constraint = 'activity_products_known';
    end if;
    if new.sample_request_id is not null
       and new.sample_request_id is distinct from old_sample_request
       and not exists (
           select 1
           from sample_request as r
           where r.id = new.sample_request_id
             and r.customer_id = new.customer_id
       ) then
        raise exception 'the sample request must be one of the customer''s'
            using errcode = 'check_violation', constraint = 'activity_sample_request_customer';
    end if;
    return new;
end
$$;

create trigger activity_guard before insert or update on activity
    for each row execute function crm_activity_guard();

-- --- representation ------------------------------------------------------------------------------

create or replace function activity_json(a activity) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', a.id,
        'type', a.type,
        'customer_id', a.customer_id,
        'status', a.status,
        'occurred_at', crm_ts(a.occurred_at),
        'planned_at', crm_ts(a.planned_at),
        'subject', a.subject,
        'notes', a.notes,
        'outcome', a.outcome,
        'next_step', a.next_step,
        'follow_up_at', crm_ts(a.follow_up_at),
        'sample_request_id', a.sample_request_id,
        'owner', a.owner,
        'created_by', a.created_by,
        'created_at', crm_ts(a.created_at),
        'updated_at', crm_ts(a.updated_at),
        'etag', crm_etag(a.id, a.version)
    ) || case a.type
        when 'CALL' then jsonb_build_object(
            'direction', a.direction,
            'duration_seconds', a.duration_seconds,
            'reached', a.reached
        )
        else jsonb_build_object(
            'visit_kind', a.visit_kind,
            'location', a.location,
            'participants', to_jsonb(a.participants),
            'products_presented', to_jsonb(a.products_presented)
        )
    end
$$;

-- --- outbox events -------------------------------------------------------------------------------

create or replace function crm_activity_event() returns trigger
language plpgsql
as $$
declare
    event_type text;
    body jsonb;
begin
    if tg_op = 'DELETE' then
        event_type := 'activity.deleted';
        body := activity_json(old);
    elsif tg_op = 'INSERT' then
        event_type := 'activity.created';
        body := activity_json(new);
    else
        event_type := 'activity.updated';
        body := activity_json(new);
    end if;
    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    values (
        'activity',
        body ->> 'id',
        event_type,
        body,
        nullif(current_setting('crm.correlation_id', true), ''),
        nullif(current_setting('crm.sub', true), '')
    );
    return null;
end
$$;

create trigger activity_events after insert or update or delete on activity
    for each row execute function crm_activity_event();

-- --- the customer's sales-cycle facts ----------------------------------------------------------

create or replace function crm_activity_facts(p_customer_id uuid)
returns table (last_activity_at timestamptz, next_follow_up_at timestamptz, activities_last_90_days bigint)
language sql stable
as $$
    select
        (
            select
                max(a.occurred_at)
            from activity as a
            where a.customer_id = p_customer_id
              and a.status = 'DONE'
        ),
        least(
            (
                select
                    min(a.follow_up_at)
                from activity as a
                where a.customer_id = p_customer_id
                  and a.follow_up_at is not null
                  and a.status <> 'CANCELLED'
            ),
            (
                select
                    min(a.planned_at)
                from activity as a
                where a.customer_id = p_customer_id
                  and a.status = 'PLANNED'
            )
        ),
        (
            select
                count(*)
            from activity as a
            where a.customer_id = p_customer_id
              and a.status = 'DONE'
              and a.occurred_at > now() - interval '90 days'
        )
$$;

-- Copy a customer's last_activity_at and next_follow_up_at into its projection row. The row is
-- locked first and the facts computed by a later statement (a newer snapshot), so of two
-- concurrent activity writes for one customer the second sees the first's activity.
create or replace function crm_activity_facts_project(p_customer_id uuid) returns void
language plpgsql
as $$
begin
    -- the lock mode of the update first: no upgrade that could deadlock with the field job's DDL
    lock table customer_hot in row exclusive mode;
    perform 1
    from customer_hot as h
    where h.customer_id = p_customer_id
    for update;
    update customer_hot as h
    set
        last_activity_at = f.last_activity_at,
        next_follow_up_at = f.next_follow_up_at
    from crm_activity_facts(p_customer_id) as f
    where h.customer_id = p_customer_id
      and (
          h.last_activity_at is distinct from f.last_activity_at
          or h.next_follow_up_at is distinct from f.next_follow_up_at
      );
end
$$;

create or replace function crm_activity_facts_trigger() returns trigger
language plpgsql security definer
set search_path = public, pg_temp
as $$
begin
    if tg_op = 'DELETE' then
        perform crm_activity_facts_project(old.customer_id);
    else
        perform crm_activity_facts_project(new.customer_id);
    end if;
    return null;
end
$$;

create trigger activity_facts_write after insert or delete on activity
    for each row execute function crm_activity_facts_trigger();
create trigger activity_facts_update after update on activity
    for each row
    when (
        old.status is distinct from new.status
        or old.occurred_at is distinct from new.occurred_at
        or old.planned_at is distinct from new.planned_at
        or old.follow_up_at is distinct from new.follow_up_at
    )
    execute function crm_activity_facts_trigger();

-- Repair: recompute the facts of the next p_limit customers after p_after (id order) in the
-- projection; returns the last id, NULL when there are no more. For operators (after a rebuild
-- of customer_hot, or writes with triggers off); not granted to the API roles.
create or replace function crm_activity_facts_fill_batch(p_after uuid, p_limit bigint) returns uuid
language plpgsql security definer
set search_path = public, pg_temp
as $$
declare
    ids uuid[];
begin
    select array_agg(s.customer_id order by s.customer_id)
    into ids
    from (
        select h.customer_id
        from customer_hot as h
        where p_after is null or h.customer_id > p_after
        order by h.customer_id
        limit p_limit
    ) as s;
    if ids is null then
        return null;
    end if;
    lock table customer_hot in row exclusive mode;
    update customer_hot as h
    set
        last_activity_at = f.last_activity_at,
        next_follow_up_at = f.next_follow_up_at
    from unnest(ids) as u (customer_id)
    cross join lateral crm_activity_facts(u.customer_id) as f
    where h.customer_id = u.customer_id
      and (
          h.last_activity_at is distinct from f.last_activity_at
          or h.next_follow_up_at is distinct from f.next_follow_up_at
      );
    return ids[cardinality(ids)];
end
$$;

revoke execute on function crm_activity_facts_project(uuid) from public;
revoke execute on function crm_activity_facts_trigger() from public;
revoke execute on function crm_activity_facts_fill_batch(uuid, bigint) from public;

-- The customer representation of 0010 with the sales-cycle facts. They are derived from the
-- activities and not covered by the customer's ETag: logging a call does not make a concurrent
-- change of the customer fail with 412.
create or replace function customer_json(c customer) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', c.id,
        'customer_number', c.customer_number,
        'name', c.name,
        'type', c.type,
        'status', c.status,
        'chain_id', c.chain_id,
        'owner', c.owner,
        'address', jsonb_build_object(
            'street', c.street,
            'postal_code', c.postal_code,
            'city', c.city,
            'country', c.country
        ),
        'fields', crm_visible_fields(c.fields),
        'last_activity_at', crm_ts(f.last_activity_at),
        'next_follow_up_at', crm_ts(f.next_follow_up_at),
        'activities_last_90_days', f.activities_last_90_days,
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
    from crm_activity_facts(c.id) as f
$$;

-- --- customer change log (the customer part of the timeline) ------------------------------------

-- What differs between two versions of a customer row: {"<column>": {"from", "to"}}, custom
-- field values as "fields.<key>"; bookkeeping columns left out.
create or replace function crm_customer_diff(o jsonb, n jsonb) returns jsonb
language sql immutable
as $$
    select coalesce(jsonb_object_agg(d.key, jsonb_build_object('from', d.old_value, 'to', d.new_value)), '{}'::jsonb)
    from (
        select
            k.key,
            nullif(o -> k.key, 'null'::jsonb) as old_value,
            nullif(n -> k.key, 'null'::jsonb) as new_value
        from jsonb_object_keys(
            (o || n) - array['id', 'version', 'created_at', 'updated_at', 'fields', 'fields_version']
        ) as k (key)
        union all
        select
            'fields.' || k.key,
            nullif(o -> 'fields' -> k.key, 'null'::jsonb),
            nullif(n -> 'fields' -> k.key, 'null'::jsonb)
        from jsonb_object_keys(coalesce(o -> 'fields', '{}'::jsonb) || coalesce(n -> 'fields', '{}'::jsonb)) as k (key)
    ) as d
    where d.old_value is distinct from d.new_value
$$;

create or replace function crm_customer_created_log() returns trigger
language plpgsql
as $$
begin
    insert into customer_change (customer_id, action, actor, correlation_id)
    select
        n.id,
        'CREATED',
        coalesce(nullif(current_setting('crm.sub', true), ''), 'system'),
        nullif(current_setting('crm.correlation_id', true), '')
    from new_rows as n;
    return null;
end
$$;

create or replace function crm_customer_updated_log() returns trigger
language plpgsql
as $$
begin
    insert into customer_change (customer_id, action, changes, actor, correlation_id)
    select
        n.id,
        case when n.status = 'ARCHIVED' and o.status <> 'ARCHIVED' then 'ARCHIVED' else 'UPDATED' end,
        d.changes,
        coalesce(nullif(current_setting('crm.sub', true), ''), 'system'),
        nullif(current_setting('crm.correlation_id', true), '')
    from new_rows as n
    join old_rows as o on o.id = n.id
    cross join lateral (select crm_customer_diff(to_jsonb(o), to_jsonb(n)) as changes) as d
    where d.changes <> '{}'::jsonb;
    return null;
end
$$;

create trigger customer_change_insert after insert on customer
    referencing new table as new_rows
    for each statement execute function crm_customer_created_log();
create trigger customer_change_update after update on customer
    referencing old table as old_rows new table as new_rows
    for each statement execute function crm_customer_updated_log();
