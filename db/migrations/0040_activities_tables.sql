-- Activities (calls and visits) of the sales cycle, the customer change log the timeline reads,
-- and the sales-cycle facts in the search projection: types, tables, guards, row-level security.
--
-- * activity: one row per call or visit, planned, done or cancelled. The variant's own columns
--   (direction, duration_seconds, reached for CALL; visit_kind, location, participants,
--   products_presented for VISIT) are null or empty for the other variant (checked). type and
--   customer_id never change after creation (guard trigger, 0042).
-- * customer_change: what changed on a customer, when and by whom (one row per customer write
--   that changed something), kept for the customer timeline. The outbox is not that record:
--   retention removes delivered events after 30 days, a sales cycle runs for months.
-- * customer_hot.last_activity_at / next_follow_up_at: the facts customer search filters and
--   sorts on, kept current by triggers on activity (0042) in the writing transaction.
-- depends: 0031_events_indexes 0024_samples_all_rows_role 0013_customer_fields_validate
set lock_timeout = '5s';
set statement_timeout = '60s';

create type activity_type as enum (
    'CALL',
    'VISIT'
);

create type activity_status as enum (
    'PLANNED',
    'DONE',
    'CANCELLED'
);

create type activity_outcome as enum (
    'POSITIVE',
    'NEUTRAL',
    'NEGATIVE'
);

create type call_direction as enum (
    'INBOUND',
    'OUTBOUND'
);

create type visit_kind as enum (
    'KITCHEN_VISIT',
    'TASTING',
    'TRADE_FAIR',
    'HEAD_OFFICE'
);

create table activity (
    id uuid primary key default gen_random_uuid(),
    type activity_type not null,
    customer_id uuid not null references customer (id),
    status activity_status not null default 'DONE',
    occurred_at timestamptz,
    planned_at timestamptz,
    -- When it happened, or is planned to: the activity's place in lists and in the timeline.
    activity_at timestamptz generated always as (coalesce(occurred_at, planned_at)) stored,
    subject text,
    notes text,
    outcome activity_outcome,
    next_step text,
    follow_up_at timestamptz,
    sample_request_id uuid references sample_request (id) on delete set null,
    owner text not null,
    created_by text not null,
    -- CALL
    direction call_direction,
    duration_seconds bigint,
    reached boolean,
    -- VISIT
    visit_kind visit_kind,
    location text,
    participants uuid[] not null default '{}',
    products_presented uuid[] not null default '{}',
    idempotency_key text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint activity_when check (occurred_at is not null or planned_at is not null),
    constraint activity_done_occurred check (status <> 'DONE' or occurred_at is not null),
    constraint activity_planned_not_occurred check (
        status <> 'PLANNED' or (planned_at is not null and occurred_at is null)
    ),
    constraint activity_follow_up_after check (follow_up_at >= coalesce(occurred_at, planned_at)),
    constraint activity_duration_range check (duration_seconds between 0 and 86400),
    constraint activity_call_fields check (
        type = 'CALL' or (direction is null and duration_seconds is null and reached is null)
    ),
    constraint activity_call_direction check (type <> 'CALL' or direction is not null),
    constraint activity_visit_fields check (
        type = 'VISIT' or (
            visit_kind is null
            and location is null
            and cardinality(participants) = 0
            and cardinality(products_presented) = 0
        )
    ),
    constraint activity_visit_kind check (type <> 'VISIT' or visit_kind is not null),
    constraint activity_participants_size check (cardinality(participants) <= 50),
    constraint activity_products_size check (cardinality(products_presented) <= 100),
    constraint activity_subject_length check (char_length(subject) between 1 and 200),
    constraint activity_notes_length check (char_length(notes) <= 10000),
    constraint activity_next_step_length check (char_length(next_step) <= 1000),
    constraint activity_location_length check (char_length(location) <= 500),
    constraint activity_owner_length check (char_length(owner) between 1 and 200)
);

create table customer_change (
    id bigint generated always as identity primary key,
    customer_id uuid not null references customer (id) on delete cascade,
    action text not null,
    -- {"<property>": {"from": ..., "to": ...}}; custom fields as "fields.<key>"
    changes jsonb not null default '{}'::jsonb,
    actor text not null,
    correlation_id text,
    at timestamptz not null default now(),
    constraint customer_change_action check (action in ('CREATED', 'UPDATED', 'ARCHIVED'))
);

create trigger activity_touch before update on activity
    for each row execute function crm_touch();

-- The search projection's sales-cycle facts. Views first, then the table (the lock order of
-- searches and of the field job runner), then the views are recreated with the new columns.
lock table customer_search, customer_search_all, customer_hot in access exclusive mode;
alter table customer_hot add column last_activity_at timestamptz;
alter table customer_hot add column next_follow_up_at timestamptz;
do $$
begin
    perform crm_hot_create_view();
end
$$;

-- An activity is visible with its customer (chain scope, as customers). Only callers who see
-- every customer (sales reps, sales managers, admins: crm_api_all) write activities; chain
-- managers read those of their chains' outlets; the integration role sees none (it sees no
-- customer).
alter table activity enable row level security;
alter table activity force row level security;
create policy activity_scope on activity
    for select
    using (exists (select 1 from customer as c where c.id = activity.customer_id));
create policy activity_write on activity
    for all
    using (crm_scope_all())
    with check (crm_scope_all());
create policy activity_all_rows on activity to crm_api_all using (true) with check (true);

alter table customer_change enable row level security;
alter table customer_change force row level security;
create policy customer_change_scope on customer_change
    using (exists (select 1 from customer as c where c.id = customer_change.customer_id))
    with check (exists (select 1 from customer as c where c.id = customer_change.customer_id));
create policy customer_change_all_rows on customer_change to crm_api_all using (true) with check (true);

grant select, insert, update, delete on activity to crm_api;
grant select, insert on customer_change to crm_api;
grant usage on all sequences in schema public to crm_api;
