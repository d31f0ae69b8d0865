-- Chains, customers, contacts, the transactional outbox and idempotency keys.
-- depends: 0001_extensions_types
set lock_timeout = '5s';
set statement_timeout = '60s';

-- Request claims arrive per transaction via set_config('crm.*', ..., true).
-- No claims set means no rows: a forgotten setting can never widen access.
create function crm_scope_all() returns boolean
language sql stable
as $$
    select coalesce(current_setting('crm.scope', true), '') = 'all'
$$;

create function crm_chain_ids() returns uuid[]
language sql stable
as $$
    select coalesce(
        string_to_array(nullif(current_setting('crm.chain_ids', true), ''), ',')::uuid[],
        '{}'::uuid[]
    )
$$;

create function crm_touch() returns trigger
language plpgsql
as $$
begin
    new.version := old.version + 1;
    new.updated_at := now();
    return new;
end
$$;

create table chain (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    description text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint chain_name_length check (char_length(name) between 1 and 200)
);

create table customer (
    id uuid primary key default gen_random_uuid(),
    customer_number text not null,
    name text not null,
    type customer_type not null,
    status customer_status not null default 'LEAD',
    chain_id uuid references chain (id),
    owner text,
    street text,
    postal_code text,
    city text,
    country text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint customer_number_unique unique (customer_number),
    constraint customer_name_length check (char_length(name) between 1 and 200),
    constraint customer_country_iso check (country ~ '^[A-Z]{2}$')
);

create table contact (
    id uuid primary key default gen_random_uuid(),
    customer_id uuid not null references customer (id) on delete cascade,
    first_name text,
    last_name text not null,
    job_role contact_role not null default 'OTHER',
    email text,
    phone text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1
);

-- Debezium outbox event router shape: id, aggregatetype, aggregateid, type, payload.
create table outbox (
    id uuid primary key default gen_random_uuid(),
    position bigint generated always as identity,
    aggregatetype text not null,
    aggregateid text not null,
    type text not null,
    payload jsonb not null,
    correlation_id text,
    actor text,
    created_at timestamptz not null default now()
);

create table idempotency_key (
    principal text not null,
    operation text not null,
    key text not null,
    request_hash text not null,
    status bigint not null,
    body jsonb,
    headers jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    primary key (principal, operation, key)
);

create trigger chain_touch before update on chain
    for each row execute function crm_touch();
create trigger customer_touch before update on customer
    for each row execute function crm_touch();
create trigger contact_touch before update on contact
    for each row execute function crm_touch();

-- Every write of a domain row emits its event in the same transaction.
create function crm_emit_event() returns trigger
language plpgsql
as $$
declare
    row_data jsonb;
    event_type text;
    aggregate text := tg_argv[0];
begin
    if tg_op = 'DELETE' then
        row_data := to_jsonb(old);
        event_type := aggregate || '.deleted';
    elsif tg_op = 'INSERT' then
        row_data := to_jsonb(new);
        event_type := aggregate || '.created';
    else
        row_data := to_jsonb(new);
        event_type := aggregate || '.updated';
        if row_data ->> 'status' = 'ARCHIVED' and to_jsonb(old) ->> 'status' <> 'ARCHIVED' then
            event_type := aggregate || '.archived';
        end if;
    end if;
    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    values (
        aggregate,
        row_data ->> 'id',
        event_type,
        row_data - 'version',
        nullif(current_setting('crm.correlation_id', true), ''),
        nullif(current_setting('crm.sub', true), '')
    );
    return null;
end
$$;

create trigger chain_events after insert or update or delete on chain
    for each row execute function crm_emit_event('chain');
create trigger customer_events after insert or update or delete on customer
    for each row execute function crm_emit_event('customer');
create trigger contact_events after insert or update or delete on contact
    for each row execute function crm_emit_event('contact');

-- Chain scope, enforced by the database. FORCE so the owning role is bound too.
alter table chain enable row level security;
alter table chain force row level security;
create policy chain_scope on chain
    using (crm_scope_all() or id = any (crm_chain_ids()))
    with check (crm_scope_all());

alter table customer enable row level security;
alter table customer force row level security;
create policy customer_scope on customer
    using (crm_scope_all() or chain_id = any (crm_chain_ids()))
    with check (crm_scope_all() or chain_id = any (crm_chain_ids()));

alter table contact enable row level security;
alter table contact force row level security;
create policy contact_scope on contact
    using (exists (select 1 from customer as c where c.id = contact.customer_id))
    with check (exists (select 1 from customer as c where c.id = contact.customer_id));
