-- Observability: the sales-cycle activities (calls and visits, 0040-0042) per day, type and owner.
-- Same arrangement as 0050: owned by crm_observability (BYPASSRLS; activity forces row-level
-- security), readable by crm_grafana, columns documented here and in docs/observability.md.
-- depends: 0050_observability_views 0042_activities_functions
set lock_timeout = '5s';
set statement_timeout = '60s';

grant select on activity to crm_observability;

create view observability.activity_metrics_daily as
select
    (coalesce(a.occurred_at, a.planned_at) at time zone 'UTC')::date as day,
    a.type::text as type,
    a.owner,
    count(*) as activities,
    count(*) filter (where a.status = 'DONE') as done,
    count(*) filter (where a.status = 'PLANNED') as planned,
    count(*) filter (where a.status = 'CANCELLED') as cancelled,
    count(distinct a.customer_id) as customers,
    count(*) filter (where a.status = 'DONE' and a.outcome = 'POSITIVE') as positive,
    count(*) filter (where a.status = 'DONE' and a.outcome = 'NEUTRAL') as neutral,
    count(*) filter (where a.status = 'DONE' and a.outcome = 'NEGATIVE') as negative,
    round(
        avg(case when a.reached then 1.0 else 0.0 end)
            filter (where a.type = 'CALL' and a.status = 'DONE' and a.reached is not null),
        4
    ) as reach_rate,
    round(sum(a.duration_seconds) filter (where a.type = 'CALL' and a.status = 'DONE') / 60.0, 1) as call_minutes,
    count(*) filter (where a.follow_up_at is not null and a.status <> 'CANCELLED') as with_follow_up,
    count(*) filter (where a.sample_request_id is not null) as with_sample_request
from public.activity as a
group by
    1,
    2,
    3;

comment on view observability.activity_metrics_daily is
    'Calls and visits per UTC day, type and owner: how much field sales did, with whom, and how it went.';
comment on column observability.activity_metrics_daily.day is
    'UTC day the activity happened (occurred_at) or, not yet happened, is planned for (planned_at).';
comment on column observability.activity_metrics_daily.type is
    'CALL or VISIT.';
comment on column observability.activity_metrics_daily.owner is
    'The owner''s subject (sub claim of the sales rep the activity belongs to).';
comment on column observability.activity_metrics_daily.activities is
    'Activities of that day, type and owner, whatever their status.';
comment on column observability.activity_metrics_daily.done is
    'Of them DONE.';
comment on column observability.activity_metrics_daily.planned is
    'Of them PLANNED (not happened yet; on past days: overdue).';
comment on column observability.activity_metrics_daily.cancelled is
    'Of them CANCELLED.';
comment on column observability.activity_metrics_daily.customers is
    'Distinct customers the activities concern.';
comment on column observability.activity_metrics_daily.positive is
    'DONE activities with outcome POSITIVE.';
comment on column observability.activity_metrics_daily.neutral is
    'DONE activities with outcome NEUTRAL.';
comment on column observability.activity_metrics_daily.negative is
    'DONE activities with outcome NEGATIVE.';
comment on column observability.activity_metrics_daily.reach_rate is
    'CALL: share (0-1) of the DONE calls that reached someone (reached = true), over those that say; '
    'NULL for VISIT or when no call says.';
comment on column observability.activity_metrics_daily.call_minutes is
    'CALL: total duration of the DONE calls in minutes; NULL for VISIT or without durations.';
comment on column observability.activity_metrics_daily.with_follow_up is
    'Activities, not cancelled, with a follow-up date set.';
comment on column observability.activity_metrics_daily.with_sample_request is
    'Activities linked to a sample request.';

alter view observability.activity_metrics_daily owner to crm_observability;
grant select on observability.activity_metrics_daily to crm_grafana;
