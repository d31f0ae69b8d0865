-- Observability: reporting views in their own schema, read by Grafana and by /metrics.
--
-- * schema observability: the views below, and nothing else. Its owner is crm_observability.
-- * crm_observability (NOLOGIN, BYPASSRLS): owns the views, holds SELECT on the base tables they
--   read and nothing more. The domain tables FORCE row-level security (0002, 0020, 0030), so a
--   view owned by the migrating role would see no rows unless that role is a superuser (claims
--   are per request: nothing set means nothing visible). A view runs with its owner's
--   privileges and row-level security is checked against its owner, so views owned by a role
--   with BYPASSRLS show every row to whoever may read the views, without any claims. Views (not
--   security-definer functions) keep predicates like `where day >= ...` pushed down into them.
-- * crm_grafana (LOGIN, no password): may read the views and nothing else; its search_path is
--   observability, its transactions are read-only and time-limited. Give it a password
--   (`alter role crm_grafana password '...'`) where PostgreSQL asks for one; in the embedded
--   development database (trust authentication) it connects without. The API's /metrics reads the
--   views as this role too.
--
-- Creating a BYPASSRLS role needs a superuser (or, from PostgreSQL 16, a CREATEROLE role that has
-- BYPASSRLS itself): against an external database a DBA creates both roles beforehand, and this
-- file then only grants. Columns are documented with COMMENT ON and in docs/observability.md.
-- depends: 0031_events_indexes 0024_samples_all_rows_role 0013_customer_fields_validate
set lock_timeout = '5s';
set statement_timeout = '60s';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'crm_observability') then
        create role crm_observability nologin nosuperuser bypassrls;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'crm_grafana') then
        create role crm_grafana login nosuperuser nobypassrls;
    end if;
end
$$;

grant crm_observability to current_user;
grant crm_grafana to current_user;
alter role crm_grafana set search_path = observability;
alter role crm_grafana set default_transaction_read_only = on;
alter role crm_grafana set statement_timeout = '30s';

create schema if not exists observability authorization crm_observability;
comment on schema observability is
    'Reporting views (expose views, not tables): sample funnel, hot projection staleness, outbox lag. '
    'Owned by crm_observability; read by crm_grafana. See docs/observability.md.';

grant select on customer, customer_hot, sample_request_history, sample_item, outbox, event_consumer,
    webhook_subscription, webhook_delivery to crm_observability;
grant usage on schema observability to crm_grafana;

-- --- sample funnel, per UTC day -------------------------------------------------------------------

create view observability.sample_metrics_daily as
with transitions as (
    select
        (h.at at time zone 'UTC')::date as day,
        count(*) filter (where h.to_status = 'REQUESTED') as requested,
        count(*) filter (where h.to_status = 'APPROVED') as approved,
        count(*) filter (where h.to_status = 'REJECTED') as rejected,
        count(*) filter (where h.to_status = 'SHIPPED') as shipped,
        count(*) filter (where h.to_status = 'DELIVERED') as delivered
    from public.sample_request_history as h
    group by 1
),
deliveries as (
    select
        (d.at at time zone 'UTC')::date as day,
        percentile_cont(0.5) within group (order by extract(epoch from d.at - r.requested_at) / 3600) as hours
    from public.sample_request_history as d
    join (
        select
            q.request_id,
            min(q.at) as requested_at
        from public.sample_request_history as q
        where q.to_status = 'REQUESTED'
        group by q.request_id
    ) as r on r.request_id = d.request_id
    where d.to_status = 'DELIVERED'
    group by 1
),
feedback as (
    select
        (i.feedback_at at time zone 'UTC')::date as day,
        count(*) as feedback_count,
        avg(i.feedback_rating) as average_rating,
        avg(case when i.feedback_listing_decision = 'LISTED' then 1.0 else 0.0 end) as listing_rate
    from public.sample_item as i
    where i.feedback_at is not null
    group by 1
),
days as (
    select
        generate_series(b.first_day, greatest(b.first_day, (now() at time zone 'UTC')::date), interval '1 day')::date
            as day
    from (
        select least((select min(t.day) from transitions as t), (select min(f.day) from feedback as f)) as first_day
    ) as b
    where b.first_day is not null
)
select
    d.day,
    coalesce(t.requested, 0) as requested,
    coalesce(t.approved, 0) as approved,
    coalesce(t.rejected, 0) as rejected,
    coalesce(t.shipped, 0) as shipped,
    coalesce(t.delivered, 0) as delivered,
    coalesce(f.feedback_count, 0) as feedback_count,
    round(f.average_rating, 2) as average_rating,
    round(f.listing_rate, 4) as listing_rate,
    round(dl.hours::numeric, 2) as median_hours_request_to_delivery
from days as d
left join transitions as t on t.day = d.day
left join feedback as f on f.day = d.day
left join deliveries as dl on dl.day = d.day;

comment on view observability.sample_metrics_daily is
    'The Cook&Fresh sample funnel per UTC day, from the request history and the tasting feedback. '
    'One row per day from the first sample activity to today, days without activity included.';
comment on column observability.sample_metrics_daily.day is
    'UTC calendar day.';
comment on column observability.sample_metrics_daily.requested is
    'Sample requests submitted that day (moves to REQUESTED).';
comment on column observability.sample_metrics_daily.approved is
    'Sample requests approved that day (moves to APPROVED).';
comment on column observability.sample_metrics_daily.rejected is
    'Sample requests rejected that day (moves to REJECTED).';
comment on column observability.sample_metrics_daily.shipped is
    'Sample requests shipped that day (moves to SHIPPED).';
comment on column observability.sample_metrics_daily.delivered is
    'Sample requests delivered that day (moves to DELIVERED).';
comment on column observability.sample_metrics_daily.feedback_count is
    'Items whose tasting feedback was (last) given that day.';
comment on column observability.sample_metrics_daily.average_rating is
    'Mean overall rating (1-5) of that day''s feedback; NULL without feedback.';
comment on column observability.sample_metrics_daily.listing_rate is
    'Share (0-1) of that day''s feedback with the listing decision LISTED (NOT_LISTED and UNDECIDED '
    'count as not listed); NULL without feedback.';
comment on column observability.sample_metrics_daily.median_hours_request_to_delivery is
    'Median hours from submission (first move to REQUESTED) to delivery, over the requests '
    'delivered that day; NULL when none was delivered.';

-- --- hot projection staleness --------------------------------------------------------------------

create view observability.hot_projection_staleness as
select
    c.id as customer_id,
    c.version as customer_version,
    h.source_version as projected_version,
    c.updated_at as changed_at,
    h.projected_at,
    case
        when h.customer_id is null then 'MISSING'
        when h.source_version < c.version then 'BEHIND'
        else 'CURRENT'
    end as state,
    case
        when h.source_version >= c.version then 0::numeric
        else round(greatest(extract(epoch from now() - c.updated_at), 0), 3)
    end as staleness_seconds
from public.customer as c
left join public.customer_hot as h on h.customer_id = c.id;

comment on view observability.hot_projection_staleness is
    'Per customer: is its customer_hot search row projected from its current version? The triggers '
    'project in the writing transaction, so every row is normally CURRENT with staleness 0.';
comment on column observability.hot_projection_staleness.customer_id is
    'The customer.';
comment on column observability.hot_projection_staleness.customer_version is
    'customer.version: grows with every change of the customer row (fields included).';
comment on column observability.hot_projection_staleness.projected_version is
    'customer_hot.source_version: the customer version the search row was computed from; NULL '
    'when the customer has no search row.';
comment on column observability.hot_projection_staleness.changed_at is
    'customer.updated_at: when the customer last changed.';
comment on column observability.hot_projection_staleness.projected_at is
    'customer_hot.projected_at: when the search row was last written.';
comment on column observability.hot_projection_staleness.state is
    'CURRENT (projected from the current version), BEHIND (from an older one) or MISSING (no row).';
comment on column observability.hot_projection_staleness.staleness_seconds is
    'Seconds the search row has been behind its source: 0 when CURRENT, else the time since the '
    'customer change not yet projected (now() - changed_at).';

create view observability.hot_projection_staleness_summary as
select
    count(*) as customers,
    count(*) filter (where s.state = 'CURRENT') as current_rows,
    count(*) filter (where s.state = 'BEHIND') as behind_rows,
    count(*) filter (where s.state = 'MISSING') as missing_rows,
    coalesce(max(s.staleness_seconds), 0) as max_staleness_seconds,
    min(s.changed_at) filter (where s.state <> 'CURRENT') as oldest_unprojected_change_at
from observability.hot_projection_staleness as s;

comment on view observability.hot_projection_staleness_summary is
    'hot_projection_staleness in aggregate: one row.';
comment on column observability.hot_projection_staleness_summary.customers is
    'Customers.';
comment on column observability.hot_projection_staleness_summary.current_rows is
    'Customers whose search row is CURRENT.';
comment on column observability.hot_projection_staleness_summary.behind_rows is
    'Customers whose search row is BEHIND.';
comment on column observability.hot_projection_staleness_summary.missing_rows is
    'Customers without a search row (MISSING).';
comment on column observability.hot_projection_staleness_summary.max_staleness_seconds is
    'The largest staleness_seconds; 0 when every row is current.';
comment on column observability.hot_projection_staleness_summary.oldest_unprojected_change_at is
    'changed_at of the oldest customer change not yet projected; NULL when none.';

-- --- outbox lag per consumer ---------------------------------------------------------------------

-- Webhook subscriptions filter by event types with * wildcards; as LIKE patterns (see
-- db/events.py like_patterns): escape the LIKE metacharacters, then * becomes %.
create function observability.event_type_patterns(types text[]) returns text[]
language sql immutable
as $$
    select array(
        select replace(replace(replace(replace(t, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%')
        from unnest(types) as t
    )
$$;

create view observability.outbox_lag as
with head as (
    select
        coalesce(max(o.position), 0) as position
    from public.outbox as o
)
select
    'PULL' as consumer_kind,
    c.name as consumer,
    true as active,
    c.position,
    head.position as head_position,
    (
        select
            count(*)
        from (
            select
                1
            from public.outbox as o
            where o.position > c.position
            limit 100000
        ) as b
    ) as events_behind,
    0::bigint as pending_deliveries,
    0::bigint as dead_deliveries,
    n.created_at as oldest_undelivered_at,
    coalesce(round(greatest(extract(epoch from now() - n.created_at), 0), 3), 0) as lag_seconds
from public.event_consumer as c
cross join head
left join lateral (
    select
        o.created_at
    from public.outbox as o
    where o.position > c.position
    order by o.position
    limit 1
) as n on true
union all
select
    'WEBHOOK' as consumer_kind,
    s.id::text as consumer,
    s.active,
    s.position,
    head.position as head_position,
    (
        select
            count(*)
        from (
            select
                1
            from public.outbox as o
            where o.position > s.position
            limit 100000
        ) as b
    ) as events_behind,
    p.pending as pending_deliveries,
    p.dead as dead_deliveries,
    least(pe.created_at, nf.created_at) as oldest_undelivered_at,
    coalesce(round(greatest(extract(epoch from now() - least(pe.created_at, nf.created_at)), 0), 3), 0)
        as lag_seconds
from public.webhook_subscription as s
cross join head
cross join lateral (
    select
        count(*) filter (where d.status = 'PENDING') as pending,
        count(*) filter (where d.status = 'DEAD') as dead,
        min(d.event_position) filter (where d.status = 'PENDING') as oldest_pending_position
    from public.webhook_delivery as d
    where d.subscription_id = s.id
      and d.status in ('PENDING', 'DEAD')
) as p
left join lateral (
    select
        o.created_at
    from public.outbox as o
    where o.position = p.oldest_pending_position
) as pe on true
left join lateral (
    select
        o.created_at
    from public.outbox as o
    where o.position > s.position
      and o.type like any (observability.event_type_patterns(s.event_types))
    order by o.position
    limit 1
) as nf on true;

comment on function observability.event_type_patterns(text[]) is
    'A webhook subscription''s event types (* wildcards) as LIKE patterns, as the relay matches them.';
comment on view observability.outbox_lag is
    'Per event consumer: how far behind the outbox it is. PULL: a consumer checkpoint of the feed '
    '(GET/PUT /api/v1/consumers/{name}/checkpoint); WEBHOOK: a webhook subscription (crm relay).';
comment on column observability.outbox_lag.consumer_kind is
    'PULL (feed checkpoint) or WEBHOOK (subscription).';
comment on column observability.outbox_lag.consumer is
    'The checkpoint name, or the webhook subscription id.';
comment on column observability.outbox_lag.active is
    'false for a paused or deactivated webhook subscription (its lag keeps growing); always true for PULL.';
comment on column observability.outbox_lag.position is
    'The consumer''s checkpoint: the last outbox position it has taken (for WEBHOOK: fanned out '
    'into deliveries).';
comment on column observability.outbox_lag.head_position is
    'The newest outbox position.';
comment on column observability.outbox_lag.events_behind is
    'Events (of any type) after the checkpoint, counted up to 100000 (a larger backlog shows as '
    '100000). Positions have gaps, so this is not head_position - position.';
comment on column observability.outbox_lag.pending_deliveries is
    'WEBHOOK: deliveries waiting to be (re)sent; 0 for PULL.';
comment on column observability.outbox_lag.dead_deliveries is
    'WEBHOOK: dead-lettered deliveries (not counted as lag; POST .../redeliver requeues them); 0 for PULL.';
comment on column observability.outbox_lag.oldest_undelivered_at is
    'created_at of the oldest event the consumer has not got yet: PULL the first event after its '
    'checkpoint; WEBHOOK the oldest pending delivery''s event or the first matching event not yet '
    'fanned out. NULL when it is up to date.';
comment on column observability.outbox_lag.lag_seconds is
    'Age in seconds of oldest_undelivered_at; 0 when up to date.';

-- --- ownership and access ------------------------------------------------------------------------

alter function observability.event_type_patterns(text[]) owner to crm_observability;
alter view observability.sample_metrics_daily owner to crm_observability;
alter view observability.hot_projection_staleness owner to crm_observability;
alter view observability.hot_projection_staleness_summary owner to crm_observability;
alter view observability.outbox_lag owner to crm_observability;

grant select on observability.sample_metrics_daily, observability.hot_projection_staleness,
    observability.hot_projection_staleness_summary, observability.outbox_lag to crm_grafana;
