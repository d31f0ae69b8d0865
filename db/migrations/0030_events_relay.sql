-- Events: a feed that is safe against late commits, consumer checkpoints, webhook subscriptions
-- and their deliveries, and the role the relay runs as.
-- depends: 0006_rls_all_rows_role
set lock_timeout = '5s';
set statement_timeout = '60s';

-- The safe feed. A sequence number is taken before its transaction commits, so a reader that
-- served position 12 could later find position 11 commit. Every transaction that writes outbox
-- rows therefore announces, before it takes its first position, a floor below all positions it
-- will take: a shared transaction-level advisory lock whose key carries the sequence's value at
-- that moment (key = 20290 << 40 | floor). The lock lives until the transaction ends.
-- crm_outbox_safe_position() reads the sequence's last value first, then the floors of the
-- locks held; every position up to the smaller of the two belongs to a transaction that has
-- committed (visible to any later statement) or rolled back (never visible). The feed reads in a
-- later statement, so with a newer snapshot, and serves positions up to that bound only.
create function crm_outbox_fence() returns trigger
language plpgsql
as $$
declare
    xact text := pg_current_xact_id()::text;
    floor bigint;
begin
    if current_setting('crm.outbox_fence', true) is distinct from xact then
        floor := coalesce(pg_sequence_last_value('outbox_position_seq'), 0);
        perform pg_advisory_xact_lock_shared((20290::bigint << 40) | floor);
        perform set_config('crm.outbox_fence', xact, true);
        -- the identity default was drawn before the lock; take a position above the floor
        new.position := nextval('outbox_position_seq');
    end if;
    return new;
end
$$;

create trigger outbox_fence before insert on outbox
    for each row execute function crm_outbox_fence();

create function crm_outbox_safe_position() returns bigint
language plpgsql
volatile
as $$
declare
    last_taken bigint;
    oldest_floor bigint;
begin
    -- order matters: the sequence first, then the locks (see crm_outbox_fence)
    last_taken := coalesce(pg_sequence_last_value('outbox_position_seq'), 0);
    select min(((l.classid::int8 << 32) | l.objid::int8) & 1099511627775)
    into oldest_floor
    from pg_locks l
    where l.locktype = 'advisory'
      and l.objsubid = 1
      and l.database = (select d.oid from pg_database d where d.datname = current_database())
      and (l.classid::int8 >> 8) = 20290;
    return least(last_taken, coalesce(oldest_floor, last_taken));
end
$$;

-- What retention removed: positions up to purged_through are gone (the feed answers 410).
create table outbox_retention (
    singleton boolean primary key default true,
    purged_through bigint not null default 0,
    purged_at timestamptz,
    constraint outbox_retention_singleton check (singleton)
);
insert into outbox_retention (singleton) values (true);

-- Pull consumers' checkpoints.
create table event_consumer (
    name text primary key,
    position bigint not null,
    version bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    updated_by text,
    constraint event_consumer_name check (name ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
    constraint event_consumer_position check (position >= 0)
);

create table webhook_subscription (
    id uuid primary key default gen_random_uuid(),
    owner text not null,
    url text not null,
    event_types text[] not null,
    description text,
    secret text not null,
    active boolean not null default true,
    paused_reason text,
    paused_at timestamptz,
    consecutive_failures bigint not null default 0,
    position bigint not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint webhook_subscription_url_length check (char_length(url) between 8 and 2000),
    constraint webhook_subscription_types check (cardinality(event_types) between 1 and 50)
);

create table webhook_delivery (
    id uuid primary key default gen_random_uuid(),
    subscription_id uuid not null references webhook_subscription (id) on delete cascade,
    event_id uuid not null,
    event_position bigint not null,
    event_type text not null,
    aggregatetype text not null,
    aggregateid text not null,
    correlation_id text,
    status text not null default 'PENDING',
    attempts bigint not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_status_code bigint,
    last_error text,
    last_latency_ms bigint,
    attempt_log jsonb not null default '[]'::jsonb,
    created_at timestamptz not null default now(),
    delivered_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint webhook_delivery_event_unique unique (subscription_id, event_id),
    constraint webhook_delivery_status check (status in ('PENDING', 'DELIVERED', 'DEAD'))
);

-- Who may do what. API requests: webhook subscriptions are the caller's own unless the scope is
-- 'all' (admins). The relay runs as crm_relay: the outbox (read), subscriptions and deliveries.
alter table webhook_subscription enable row level security;
alter table webhook_subscription force row level security;
create policy webhook_subscription_owner on webhook_subscription
    using (crm_scope_all() or owner = current_setting('crm.sub', true))
    with check (crm_scope_all() or owner = current_setting('crm.sub', true));

alter table webhook_delivery enable row level security;
alter table webhook_delivery force row level security;
create policy webhook_delivery_owner on webhook_delivery
    using (exists (select 1 from webhook_subscription s where s.id = subscription_id));

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'crm_relay') then
        create role crm_relay nologin nosuperuser nobypassrls;
    end if;
end
$$;

grant crm_relay to current_user;
grant usage on schema public to crm_relay;
grant select on outbox, outbox_retention to crm_relay;
grant select, update on webhook_subscription to crm_relay;
grant select, insert, update on webhook_delivery to crm_relay;
grant usage on sequence outbox_position_seq to crm_relay;
create policy webhook_subscription_relay on webhook_subscription to crm_relay using (true) with check (true);
create policy webhook_delivery_relay on webhook_delivery to crm_relay using (true) with check (true);

grant select on outbox, outbox_retention to crm_api;
grant select, insert, update on event_consumer to crm_api;
grant select, insert, update, delete on webhook_subscription to crm_api;
grant select, update on webhook_delivery to crm_api;

-- Wake the relay when events commit (one notification per transaction; it also polls).
create function crm_outbox_notify() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('crm_outbox', '');
    return null;
end
$$;

create trigger outbox_notify after insert on outbox
    for each statement execute function crm_outbox_notify();
