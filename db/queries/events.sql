-- name: feed_bounds^
-- The highest position every earlier position of which is settled (see crm_outbox_safe_position),
-- and what retention has removed. Must run in a statement before the read of the rows.
select
    crm_outbox_safe_position() as safe_position,
    coalesce((select r.purged_through from outbox_retention as r), 0) as purged_through;

-- name: feed_events
-- Events after a position, up to the safe bound, optionally of some types (LIKE patterns).
select
    o.id,
    o.position,
    o.type,
    o.aggregatetype,
    o.aggregateid,
    o.payload,
    o.correlation_id,
    o.actor,
    o.created_at
from outbox as o
where o.position > :after
  and o.position <= :safe_position
  and (cast(:patterns as text[]) is null or o.type like any (cast(:patterns as text[])))
order by o.position
limit :limit;

-- name: get_consumer^
select
    c.name,
    c.position,
    c.updated_at,
    '"' || md5(c.name || ':' || c.version) || '"' as etag
from event_consumer as c
where c.name = :name;

-- name: lock_consumer^
select
    '"' || md5(c.name || ':' || c.version) || '"' as etag
from event_consumer as c
where c.name = :name
for update;

-- name: insert_consumer^
-- Another client's checkpoint of the same name is invisible here (row-level security): then
-- nothing is inserted, and the lock query after it finds nothing either.
insert into event_consumer (
    name,
    position,
    owner,
    updated_by
)
values (
    :name,
    :position,
    :actor,
    :actor
)
on conflict (name) do nothing
returning
    name,
    position,
    updated_at,
    '"' || md5(name || ':' || version) || '"' as etag;

-- name: update_consumer^
update event_consumer
set
    position = :position,
    version = version + 1,
    updated_at = now(),
    updated_by = :actor
where name = :name
returning
    name,
    position,
    updated_at,
    '"' || md5(name || ':' || version) || '"' as etag;

-- name: list_subscriptions
select
    s.id,
    s.owner,
    s.url,
    s.event_types,
    s.description,
    s.active,
    s.paused_reason,
    s.paused_at,
    s.consecutive_failures,
    s.position,
    s.created_at,
    s.updated_at,
    crm_etag(s.id, s.version) as etag
from webhook_subscription as s
where (cast(:after_created as timestamptz) is null
       or (s.created_at, s.id) > (cast(:after_created as timestamptz), cast(:after_id as uuid)))
order by s.created_at, s.id
limit :limit;

-- name: get_subscription^
select
    s.id,
    s.owner,
    s.url,
    s.event_types,
    s.description,
    s.active,
    s.paused_reason,
    s.paused_at,
    s.consecutive_failures,
    s.position,
    s.created_at,
    s.updated_at,
    crm_etag(s.id, s.version) as etag
from webhook_subscription as s
where s.id = :id;

-- name: lock_subscription^
select
    crm_etag(s.id, s.version) as etag
from webhook_subscription as s
where s.id = :id
for update;

-- name: insert_subscription^
-- A new subscription starts at the newest event: it receives what happens from now on.
insert into webhook_subscription (
    owner,
    url,
    event_types,
    description,
    secret,
    active,
    position
)
values (
    :owner,
    :url,
    :event_types,
    :description,
    :secret,
    :active,
    coalesce((select max(o.position) from outbox as o), 0)
)
returning
    id;

-- name: update_subscription^
-- Resuming (active set to true) clears a pause and the failure count.
update webhook_subscription
set
    url = case when :set_url then :url else url end,
    event_types = case when :set_event_types then cast(:event_types as text[]) else event_types end,
    description = case when :set_description then :description else description end,
    secret = case when :set_secret then :secret else secret end,
    active = case when :set_active then :active else active end,
    paused_reason = case when :set_active then null else paused_reason end,
    paused_at = case when :set_active then null else paused_at end,
    consecutive_failures = case when :set_active and :active then 0 else consecutive_failures end,
    version = version + 1,
    updated_at = now()
where id = :id
returning
    id;

-- name: delete_subscription!
delete from webhook_subscription
where id = :id;

-- name: list_deliveries
select
    d.id,
    d.subscription_id,
    d.event_id,
    d.event_position,
    d.event_type,
    d.aggregatetype,
    d.aggregateid,
    d.correlation_id,
    d.status,
    d.attempts,
    d.next_attempt_at,
    d.last_status_code,
    d.last_error,
    d.last_latency_ms,
    d.attempt_log,
    d.created_at,
    d.delivered_at
from webhook_delivery as d
where d.subscription_id = :subscription_id
  and (cast(:status as text) is null or d.status = :status)
  and (cast(:after_position as bigint) is null
       or (d.event_position, d.id) > (cast(:after_position as bigint), cast(:after_id as uuid)))
order by d.event_position, d.id
limit :limit;

-- name: requeue_deliveries^
-- Dead (or, when ids are named, also delivered) deliveries go back into the queue.
with requeued as (
    update webhook_delivery
    set
        status = 'PENDING',
        attempts = 0,
        next_attempt_at = now(),
        updated_at = now()
    where subscription_id = :subscription_id
      and (
          (cast(:ids as uuid[]) is null and status = 'DEAD')
          or (id = any (cast(:ids as uuid[])) and status in ('DEAD', 'DELIVERED'))
      )
    returning
        id
)
select
    count(*) as requeued
from requeued;

-- name: relay_subscription_ids
select
    s.id
from webhook_subscription as s
where s.active
order by s.id;

-- name: relay_lock_subscription^
-- One relay at a time fans events out for a subscription; the others skip it.
select
    s.id,
    s.url,
    s.event_types,
    s.secret,
    s.position,
    s.active
from webhook_subscription as s
where s.id = :id
  and s.active
for update skip locked;

-- name: relay_insert_delivery*!
insert into webhook_delivery (
    subscription_id,
    event_id,
    event_position,
    event_type,
    aggregatetype,
    aggregateid,
    correlation_id
)
values (
    :subscription_id,
    :event_id,
    :event_position,
    :event_type,
    :aggregatetype,
    :aggregateid,
    :correlation_id
)
on conflict (subscription_id, event_id) do nothing;

-- name: relay_advance_subscription!
update webhook_subscription
set
    position = greatest(position, :position)
where id = :id;

-- name: relay_claim_deliveries
-- Due deliveries of one subscription, the oldest pending one per aggregate only (per-aggregate
-- order), locked: a second relay skips them, and waits for them to be settled.
select
    d.id as delivery_id,
    d.attempts,
    o.id,
    o.position,
    o.type,
    o.aggregatetype,
    o.aggregateid,
    o.payload,
    o.correlation_id,
    o.actor,
    o.created_at
from webhook_delivery as d
join outbox as o on o.id = d.event_id
where d.subscription_id = :subscription_id
  and d.status = 'PENDING'
  and d.next_attempt_at <= now()
  and not exists (
      select 1
      from webhook_delivery as e
      where e.subscription_id = d.subscription_id
        and e.aggregatetype = d.aggregatetype
        and e.aggregateid = d.aggregateid
        and e.status = 'PENDING'
        and e.event_position < d.event_position
  )
order by d.event_position
limit :limit
for update of d skip locked;

-- name: relay_delivered*!
update webhook_delivery
set
    status = 'DELIVERED',
    attempts = attempts + 1,
    delivered_at = now(),
    updated_at = now(),
    last_status_code = :status_code,
    last_error = null,
    last_latency_ms = :latency_ms,
    attempt_log = attempt_log || cast(:attempt as jsonb)
where id = :id;

-- name: relay_failed*!
-- A failed attempt: retry later, or dead-letter after the last attempt.
update webhook_delivery
set
    status = case when attempts + 1 >= :max_attempts then 'DEAD' else 'PENDING' end,
    attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => :delay_seconds),
    updated_at = now(),
    last_status_code = :status_code,
    last_error = :error,
    last_latency_ms = :latency_ms,
    attempt_log = attempt_log || cast(:attempt as jsonb)
where id = :id;

-- name: relay_record_outcome^
-- Count consecutive failed attempts of a subscription; pause it past the limit.
update webhook_subscription
set
    consecutive_failures = case when :failures = 0 then 0 else consecutive_failures + :failures end,
    active = case when :failures > 0 and consecutive_failures + :failures >= :pause_after then false else active end,
    paused_reason = case
        when :failures > 0 and consecutive_failures + :failures >= :pause_after
            then :reason
        else paused_reason
    end,
    paused_at = case
        when :failures > 0 and consecutive_failures + :failures >= :pause_after and active then now()
        else paused_at
    end,
    version = case
        when :failures > 0 and consecutive_failures + :failures >= :pause_after and active then version + 1
        else version
    end
where id = :id
returning
    active;

-- name: purge_events^
-- Retention: events older than the cutoff that every subscription has fanned out, with their
-- settled deliveries. The feed answers 410 for positions at or below what is gone.
with bound as (
    select
        least(
            coalesce((select min(s.position) from webhook_subscription as s), crm_outbox_safe_position()),
            crm_outbox_safe_position()
        ) as position
),
gone_deliveries as (
    delete from webhook_delivery as d
    where d.status <> 'PENDING'
      and d.created_at < :cutoff
    returning
        d.id
),
gone as (
    delete from outbox as o
    using bound as b
    where o.position <= b.position
      and o.created_at < :cutoff
      and not exists (
          select 1
          from webhook_delivery as d
          where d.event_id = o.id
            and d.status = 'PENDING'
      )
    returning
        o.position
),
mark as (
    insert into outbox_retention as r (
        singleton,
        purged_through,
        purged_at
    )
    values (
        true,
        coalesce((select max(g.position) from gone as g), 0),
        now()
    )
    on conflict (singleton) do update
    set
        purged_through = greatest(r.purged_through, excluded.purged_through),
        purged_at = excluded.purged_at
    returning
        r.purged_through
)
select
    (select count(*) from gone) as events,
    (select count(*) from gone_deliveries) as deliveries,
    (select m.purged_through from mark as m) as purged_through;

-- name: relay_get_subscription^
select
    s.id,
    s.url,
    s.secret,
    s.active
from webhook_subscription as s
where s.id = :id;

-- name: relay_role^
select
    set_config('role', 'crm_relay', true) as role;
