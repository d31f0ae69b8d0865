-- The observability views (migration 0050), read for /metrics (crm/metrics.py) in a short
-- read-only transaction as crm_grafana: the views and nothing else.

-- name: observability_session!
select
    set_config('role', 'crm_grafana', true),
    set_config('statement_timeout', '2000', true),
    set_config('transaction_read_only', 'on', true);

-- name: observability_outbox_lag
select
    l.consumer_kind,
    l.consumer,
    l.events_behind,
    l.pending_deliveries,
    l.dead_deliveries,
    l.lag_seconds
from observability.outbox_lag as l
order by
    l.consumer_kind,
    l.consumer;

-- name: observability_projection_staleness^
select
    s.customers,
    s.current_rows,
    s.behind_rows,
    s.missing_rows,
    s.max_staleness_seconds
from observability.hot_projection_staleness_summary as s;
