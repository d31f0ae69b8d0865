-- Retention (db/retention.py). Each *_batch statement archives up to :batch_size rows that are due
-- into archive.record and deletes them, in one statement and so in one transaction: a batch is
-- archived and deleted entirely or not at all. Each *_due count uses the same condition as its
-- batch (dry runs; the tests check that both agree).

-- name: retention_start^
insert into retention_run (
    as_of,
    dry_run
)
values (
    :as_of,
    :dry_run
)
returning
    id;

-- name: retention_finish!
update retention_run
set
    finished_at = now(),
    counts = cast(:counts as jsonb)
where id = :id;

-- name: retention_lock^
select
    pg_try_advisory_lock(hashtext('crm.retention')) as locked;

-- name: retention_unlock!
select
    pg_advisory_unlock(hashtext('crm.retention'));

-- --- 30 days: delivered events, settled webhook deliveries, idempotency keys --------------------

-- name: retention_outbox_due^
-- Events every subscription has fanned out (and no delivery still waits for), older than the cutoff.
select
    count(*) as n
from outbox as o
where o.position <= least(
        coalesce((select min(s.position) from webhook_subscription as s), crm_outbox_safe_position()),
        crm_outbox_safe_position()
    )
  and o.created_at < :cutoff
  and not exists (
      select 1
      from webhook_delivery as d
      where d.event_id = o.id
        and d.status = 'PENDING'
  );

-- name: retention_outbox_batch^
-- The feed answers 410 below outbox_retention.purged_through.
with doomed as (
    select
        o.*
    from outbox as o
    where o.position <= least(
            coalesce((select min(s.position) from webhook_subscription as s), crm_outbox_safe_position()),
            crm_outbox_safe_position()
        )
      and o.created_at < :cutoff
      and not exists (
          select 1
          from webhook_delivery as d
          where d.event_id = o.id
            and d.status = 'PENDING'
      )
    order by o.position
    limit :batch_size
    for update of o skip locked
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '30_DAYS',
        'outbox',
        d.id::text,
        case when d.payload ->> 'customer_id' ~ '^[0-9a-f-]{36}$' then cast(d.payload ->> 'customer_id' as uuid) end,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from outbox as o
    using doomed as d
    where o.id = d.id
    returning
        o.position
),
mark as (
    insert into outbox_retention as r (
        singleton,
        purged_through,
        purged_at
    )
    select
        true,
        max(g.position),
        :as_of
    from deleted as g
    having count(*) > 0
    on conflict (singleton) do update
    set
        purged_through = greatest(r.purged_through, excluded.purged_through),
        purged_at = excluded.purged_at
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted;

-- name: retention_deliveries_due^
select
    count(*) as n
from webhook_delivery as d
where d.status <> 'PENDING'
  and d.created_at < :cutoff;

-- name: retention_deliveries_batch^
with doomed as (
    select
        d.*
    from webhook_delivery as d
    where d.status <> 'PENDING'
      and d.created_at < :cutoff
    order by d.created_at, d.id
    limit :batch_size
    for update of d skip locked
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '30_DAYS',
        'webhook_delivery',
        d.id::text,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from webhook_delivery as w
    using doomed as d
    where w.id = d.id
    returning
        w.id
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted;

-- name: retention_idempotency_due^
select
    count(*) as n
from idempotency_key as k
where k.created_at < :cutoff;

-- name: retention_idempotency_batch^
with doomed as (
    select
        k.*
    from idempotency_key as k
    where k.created_at < :cutoff
    order by k.created_at
    limit :batch_size
    for update of k skip locked
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '30_DAYS',
        'idempotency_key',
        jsonb_build_array(d.principal, d.operation, d.key)::text,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from idempotency_key as k
    using doomed as d
    where (k.principal, k.operation, k.key) = (d.principal, d.operation, d.key)
    returning
        1
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted;

-- --- 2 years after the customer's last activity: its activities and contacts --------------------

-- name: retention_dormant_customers
-- Customers whose last activity lies before the cutoff and who still have activities or contacts:
-- nothing of theirs changed since (the customer, an activity — done or planned, when or since —,
-- a contact, a sample request). Locked, so no contact or activity is added to them meanwhile.
select
    c.id
from customer as c
where (cast(:after_id as uuid) is null or c.id > cast(:after_id as uuid))
  and c.updated_at < :cutoff
  and (
      exists (select 1 from activity as a where a.customer_id = c.id)
      or exists (select 1 from contact as ct where ct.customer_id = c.id)
  )
  and not exists (
      select 1
      from activity as a
      where a.customer_id = c.id
        and (a.activity_at >= :cutoff or a.updated_at >= :cutoff)
  )
  and not exists (
      select 1
      from contact as ct
      where ct.customer_id = c.id
        and ct.updated_at >= :cutoff
  )
  and not exists (
      select 1
      from sample_request as r
      where r.customer_id = c.id
        and r.updated_at >= :cutoff
  )
order by c.id
limit :batch_size
for update of c skip locked;

-- name: retention_dormant_due^
select
    (select count(*) from activity as a where a.customer_id = any (cast(:ids as uuid[]))) as activities,
    (select count(*) from contact as ct where ct.customer_id = any (cast(:ids as uuid[]))) as contacts;

-- name: retention_activities_batch^
-- Every activity of the given dormant customers (locked by retention_dormant_customers).
with doomed as (
    select
        a.*
    from activity as a
    where a.customer_id = any (cast(:ids as uuid[]))
      and a.updated_at < :cutoff
    for update of a
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '2_YEARS',
        'activity',
        d.id::text,
        d.customer_id,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from activity as a
    using doomed as d
    where a.id = d.id
    returning
        a.id
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted,
    (select array_agg(g.id::text) from deleted as g) as ids;

-- name: retention_contacts_batch^
-- Every contact of the given dormant customers.
with doomed as (
    select
        ct.*
    from contact as ct
    where ct.customer_id = any (cast(:ids as uuid[]))
      and ct.updated_at < :cutoff
    for update of ct
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '2_YEARS',
        'contact',
        d.id::text,
        d.customer_id,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from contact as ct
    using doomed as d
    where ct.id = d.id
    returning
        ct.id
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted,
    (select array_agg(g.id::text) from deleted as g) as ids;

-- name: retention_quiet_deleted_events!
-- The *.deleted events the batch's deletes wrote carry the whole row; downstream systems only
-- need to know what to delete: the payload keeps the ids.
update outbox as o
set payload = jsonb_build_object(
    'id', o.payload -> 'id',
    'customer_id', o.payload -> 'customer_id',
    'removed_by', 'RETENTION'
)
where o.aggregatetype = :aggregatetype
  and o.type = :aggregatetype || '.deleted'
  and o.aggregateid = any (cast(:ids as text[]));

-- --- 5 years: sample requests, their items (with the feedback) and history -----------------------

-- name: retention_samples_due^
select
    count(*) as requests,
    coalesce(sum((select count(*) from sample_item as i where i.request_id = r.id)), 0) as items,
    coalesce(sum((select count(*) from sample_request_history as h where h.request_id = r.id)), 0) as history
from sample_request as r
where r.updated_at < :cutoff
  and not exists (
      select 1
      from sample_item as i
      where i.request_id = r.id
        and i.updated_at >= :cutoff
  );

-- name: retention_samples_batch^
-- Requests nothing of which changed since the cutoff; their items and history go with them.
with doomed as (
    select
        r.*
    from sample_request as r
    where r.updated_at < :cutoff
      and not exists (
          select 1
          from sample_item as i
          where i.request_id = r.id
            and i.updated_at >= :cutoff
      )
    order by r.updated_at, r.id
    limit :batch_size
    for update of r skip locked
),
archived_items as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '5_YEARS',
        'sample_item',
        i.id::text,
        d.customer_id,
        to_jsonb(i),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    inner join sample_item as i on i.request_id = d.id
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
archived_history as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '5_YEARS',
        'sample_request_history',
        h.id::text,
        d.customer_id,
        to_jsonb(h),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    inner join sample_request_history as h on h.request_id = d.id
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
archived as (
    insert into archive.record (
        retention_class,
        source_table,
        source_key,
        customer_id,
        row_data,
        archived_at,
        purge_after,
        run_id
    )
    select
        '5_YEARS',
        'sample_request',
        d.id::text,
        d.customer_id,
        to_jsonb(d),
        :as_of,
        :purge_after,
        :run_id
    from doomed as d
    on conflict (source_table, source_key) do update
    set
        row_data = excluded.row_data,
        archived_at = excluded.archived_at,
        purge_after = excluded.purge_after,
        run_id = excluded.run_id
    returning
        1
),
deleted as (
    delete from sample_request as r
    using doomed as d
    where r.id = d.id
    returning
        r.id
)
select
    (select count(*) from archived) as archived,
    (select count(*) from deleted) as deleted,
    (select count(*) from archived_items) as items,
    (select count(*) from archived_history) as history,
    (select array_agg(g.id::text) from deleted as g) as ids;

-- --- the archive itself -------------------------------------------------------------------------

-- name: retention_archive_due^
select
    count(*) as n
from archive.record as r
where r.purge_after < :as_of;

-- name: retention_archive_batch^
-- Archived rows whose grace period is over: gone for good.
with doomed as (
    select
        r.id
    from archive.record as r
    where r.purge_after < :as_of
    order by r.purge_after, r.id
    limit :batch_size
    for update of r skip locked
),
deleted as (
    delete from archive.record as r
    using doomed as d
    where r.id = d.id
    returning
        1
)
select
    (select count(*) from deleted) as deleted;
