-- Cook&Fresh product catalogue and sample requests: types, tables, version triggers, row-level security.
-- depends: 0005_api_role
set lock_timeout = '5s';
set statement_timeout = '60s';

create type product_category as enum (
    'SOUPS',
    'SAUCES',
    'BASES_AND_BOUILLONS',
    'SIDE_DISHES',
    'READY_MEALS',
    'VEGETABLES',
    'DRESSINGS',
    'DESSERTS',
    'SEASONINGS'
);

create type product_unit as enum (
    'G',
    'KG',
    'ML',
    'L',
    'PIECES'
);

-- The 14 allergen groups of Regulation (EU) No 1169/2011, Annex II.
create type allergen as enum (
    'CEREALS_CONTAINING_GLUTEN',
    'CRUSTACEANS',
    'EGGS',
    'FISH',
    'PEANUTS',
    'SOYBEANS',
    'MILK',
    'NUTS',
    'CELERY',
    'MUSTARD',
    'SESAME_SEEDS',
    'SULPHUR_DIOXIDE_AND_SULPHITES',
    'LUPIN',
    'MOLLUSCS'
);

create type diet_tag as enum (
    'VEGAN',
    'VEGETARIAN',
    'GLUTEN_FREE',
    'LACTOSE_FREE',
    'HALAL'
);

create type sample_status as enum (
    'DRAFT',
    'REQUESTED',
    'APPROVED',
    'REJECTED',
    'SHIPPED',
    'DELIVERED',
    'FEEDBACK_RECEIVED',
    'CLOSED',
    'CANCELLED'
);

create type listing_decision as enum (
    'LISTED',
    'NOT_LISTED',
    'UNDECIDED'
);

create type price_perception as enum (
    'TOO_EXPENSIVE',
    'ACCEPTABLE',
    'GOOD_VALUE'
);

create type sample_quota_subject as enum (
    'CUSTOMER',
    'CHAIN'
);

create table product (
    id uuid primary key default gen_random_uuid(),
    sku text not null,
    name text not null,
    brand text not null default 'Cook&Fresh',
    category product_category not null,
    pack_size numeric(10, 3) not null,
    unit product_unit not null,
    allergens allergen[] not null default '{}',
    diet_tags diet_tag[] not null default '{}',
    sample_available boolean not null default true,
    max_sample_quantity bigint not null default 5,
    description text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint product_sku_unique unique (sku),
    constraint product_sku_format check (sku ~ '^[A-Z0-9][A-Z0-9-]{1,31}$'),
    constraint product_name_length check (char_length(name) between 1 and 200),
    constraint product_brand_length check (char_length(brand) between 1 and 100),
    constraint product_pack_size_positive check (pack_size > 0),
    constraint product_max_sample_quantity_range check (max_sample_quantity between 1 and 100)
);

create table sample_request (
    id uuid primary key default gen_random_uuid(),
    customer_id uuid not null references customer (id),
    -- The customer's chain when the request was created or last submitted: chain quota, filter, scope.
    chain_id uuid references chain (id),
    status sample_status not null default 'DRAFT',
    requested_by text not null,
    purpose text,
    desired_delivery_date date,
    delivery_name text,
    delivery_street text,
    delivery_postal_code text,
    delivery_city text,
    delivery_country text,
    submitted_at timestamptz,
    decision text,
    decided_by text,
    decided_at timestamptz,
    decision_reason text,
    carrier text,
    tracking_number text,
    shipped_at timestamptz,
    delivered_at timestamptz,
    quota_override_by text,
    quota_override_at timestamptz,
    quota_override_reason text,
    quota_override_usage jsonb,
    idempotency_key text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint sample_request_decision check (decision in ('APPROVED', 'REJECTED')),
    constraint sample_request_purpose_length check (char_length(purpose) <= 2000),
    constraint sample_request_country_iso check (delivery_country ~ '^[A-Z]{2}$')
);

create table sample_item (
    id uuid primary key default gen_random_uuid(),
    seq bigint generated always as identity,
    request_id uuid not null references sample_request (id) on delete cascade,
    product_id uuid not null references product (id),
    quantity bigint not null,
    lot_number text,
    best_before date,
    feedback_rating bigint,
    feedback_taste bigint,
    feedback_handling bigint,
    feedback_price_perception price_perception,
    feedback_listing_decision listing_decision,
    feedback_comment text,
    feedback_by text,
    feedback_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint sample_item_product_unique unique (request_id, product_id),
    constraint sample_item_quantity_range check (quantity between 1 and 100),
    constraint sample_item_rating_range check (feedback_rating between 1 and 5),
    constraint sample_item_taste_range check (feedback_taste between 1 and 5),
    constraint sample_item_handling_range check (feedback_handling between 1 and 5),
    constraint sample_item_feedback_complete check (
        (feedback_at is null) = (feedback_rating is null)
        and (feedback_at is null) = (feedback_listing_decision is null)
    )
);

-- Every change of status (creation included: from_status null), in order.
create table sample_request_history (
    id bigint generated always as identity primary key,
    request_id uuid not null references sample_request (id) on delete cascade,
    from_status sample_status,
    to_status sample_status not null,
    actor text not null,
    at timestamptz not null default now(),
    reason text,
    correlation_id text,
    automatic boolean not null default false,
    quota_override boolean not null default false
);

-- Sample quotas: units (sum of quantities) per customer and per chain (all outlets together)
-- within a rolling window of days. One row per subject; see the README ("Samples").
create table sample_quota (
    subject sample_quota_subject primary key,
    max_units bigint not null,
    window_days bigint not null default 90,
    updated_at timestamptz not null default now(),
    constraint sample_quota_max_units_range check (max_units >= 0),
    constraint sample_quota_window_range check (window_days between 1 and 366)
);

create trigger product_touch before update on product
    for each row execute function crm_touch();
create trigger sample_request_touch before update on sample_request
    for each row execute function crm_touch();
create trigger sample_item_touch before update on sample_item
    for each row execute function crm_touch();

-- The fulfilment partner's service account (role integration) runs with crm.scope = 'fulfilment':
-- it sees approved requests and later ones, and nothing of customers or contacts.
create function crm_scope_fulfilment() returns boolean
language sql stable
as $$
    select coalesce(current_setting('crm.scope', true), '') = 'fulfilment'
$$;

-- The catalogue is public to every caller; only the unrestricted scope changes it.
alter table product enable row level security;
alter table product force row level security;
create policy product_read on product
    for select
    using (true);
create policy product_write on product
    for all
    using (crm_scope_all())
    with check (crm_scope_all());

-- A sample request is visible with its customer (chain scope, as customers), and to fulfilment
-- once approved.
alter table sample_request enable row level security;
alter table sample_request force row level security;
create policy sample_request_scope on sample_request
    using (
        exists (select 1 from customer as c where c.id = sample_request.customer_id)
        or (
            crm_scope_fulfilment()
            and sample_request.status in ('APPROVED', 'SHIPPED', 'DELIVERED', 'FEEDBACK_RECEIVED', 'CLOSED')
        )
    )
    with check (
        exists (select 1 from customer as c where c.id = sample_request.customer_id)
        or (
            crm_scope_fulfilment()
            and sample_request.status in ('APPROVED', 'SHIPPED', 'DELIVERED', 'FEEDBACK_RECEIVED', 'CLOSED')
        )
    );

alter table sample_item enable row level security;
alter table sample_item force row level security;
create policy sample_item_scope on sample_item
    using (exists (select 1 from sample_request as r where r.id = sample_item.request_id))
    with check (exists (select 1 from sample_request as r where r.id = sample_item.request_id));

alter table sample_request_history enable row level security;
alter table sample_request_history force row level security;
create policy sample_request_history_scope on sample_request_history
    using (exists (select 1 from sample_request as r where r.id = sample_request_history.request_id))
    with check (exists (select 1 from sample_request as r where r.id = sample_request_history.request_id));

alter table sample_quota enable row level security;
alter table sample_quota force row level security;
create policy sample_quota_read on sample_quota
    for select
    using (true);
create policy sample_quota_write on sample_quota
    for all
    using (crm_scope_all())
    with check (crm_scope_all());
