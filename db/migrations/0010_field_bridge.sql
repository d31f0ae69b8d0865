-- Field-Bridge: custom field definitions, the customers' field values, and the hot projection.
--
-- * field_definition: what sales operations define (key, type, options, constraints, hot).
-- * customer.fields: the values, one JSONB object per customer (key -> value). They belong to
--   the customer row, so the customer's row-level security, version/ETag, outbox event and
--   cascade apply to them unchanged.
-- * customer_hot: the search projection. One row per customer with the searchable core columns
--   and one typed column f_<key> per hot field, kept current by statement-level triggers on
--   customer in the writing transaction. Columns are added and dropped at run time by the
--   field job runner (db/field_jobs.py) through the crm_hot_* functions below.
-- * customer_search / customer_search_all: the only ways the API roles read the projection.
--   customer_search is scoped by chain the same way customer's policy is (crm_api: chain
--   managers); customer_search_all has no scope qualifier and only crm_api_all (callers that see
--   every row, see 0006) may read it, so the planner can estimate its rows and walk a sort index
--   with early LIMIT termination. Row-level security directly on customer_hot would attach
--   security quals to the table, and PostgreSQL then refuses to use an index for any operator
--   that is not leakproof (numeric comparison, array overlap/containment, ILIKE), i.e. for most
--   searches. customer_hot itself has row-level security enabled with no policy and no grant, so
--   nothing else reads it.
-- depends: 0006_rls_all_rows_role
set lock_timeout = '5s';
set statement_timeout = '60s';

create type field_data_type as enum (
    'TEXT',
    'INTEGER',
    'NUMBER',
    'BOOLEAN',
    'DATE',
    'ENUM',
    'MULTI_ENUM'
);

-- NONE: not projected. BACKFILLING: the column exists and triggers write it, the backfill is
-- still running, searches on it answer 409. HOT: backfilled and indexed, searchable.
create type field_projection as enum (
    'NONE',
    'BACKFILLING',
    'HOT'
);

create type field_job_action as enum (
    'MAKE_HOT',
    'MAKE_COLD',
    'ARCHIVE'
);

create type field_job_status as enum (
    'PENDING',
    'RUNNING',
    'DONE',
    'FAILED',
    'CANCELLED'
);

create table field_definition (
    key text primary key,
    label text not null,
    description text,
    data_type field_data_type not null,
    options text[],
    required boolean not null default false,
    min_value numeric,
    max_value numeric,
    max_length bigint,
    pattern text,
    hot boolean not null default false,
    projection field_projection not null default 'NONE',
    archived_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version bigint not null default 1,
    constraint field_definition_key_format check (key ~ '^[a-z][a-z0-9_]{0,39}$'),
    constraint field_definition_label_length check (char_length(label) between 1 and 200),
    constraint field_definition_options check (
        (data_type in ('ENUM', 'MULTI_ENUM')) = (options is not null)
        and (options is null or cardinality(options) between 1 and 200)
    ),
    constraint field_definition_bounds check (
        (min_value is null and max_value is null) or data_type in ('INTEGER', 'NUMBER')
    ),
    constraint field_definition_bounds_order check (min_value is null or max_value is null or min_value <= max_value),
    constraint field_definition_text_rules check (
        (max_length is null and pattern is null) or data_type = 'TEXT'
    ),
    constraint field_definition_max_length check (max_length is null or max_length between 1 and 500)
);

create trigger field_definition_touch before update on field_definition
    for each row execute function crm_touch();

-- One row per change of a field's projection (make hot, make cold, archive), processed in
-- batches by the job runner; last_customer_id makes it resumable.
create table field_job (
    id bigint generated always as identity primary key,
    field_key text not null references field_definition (key),
    action field_job_action not null,
    status field_job_status not null default 'PENDING',
    phase text not null default 'START',
    last_customer_id uuid,
    processed bigint not null default 0,
    total bigint,
    batch_size bigint not null default 5000,
    error text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    heartbeat_at timestamptz,
    finished_at timestamptz
);

-- The values. A constant default: no table rewrite (PostgreSQL 11+).
alter table customer add column fields jsonb not null default '{}'::jsonb;
alter table customer add column fields_version bigint not null default 1;
alter table customer add constraint customer_fields_object check (jsonb_typeof(fields) = 'object') not valid;

-- --- typed access to a value; NULL when the value is missing or of another type ---------------

create function crm_fv_text(v jsonb) returns text
language sql immutable
as $$
    select case when jsonb_typeof(v) = 'string' then v #>> '{}' end
$$;

create function crm_fv_numeric(v jsonb) returns numeric
language sql immutable
as $$
    select case when jsonb_typeof(v) = 'number' then v::numeric end
$$;

create function crm_fv_bigint(v jsonb) returns bigint
language sql immutable
as $$
    select case
        when jsonb_typeof(v) <> 'number' then null
        when v::numeric <> trunc(v::numeric) then null
        when v::numeric not between -9223372036854775807 and 9223372036854775807 then null
        else v::numeric::bigint
    end
$$;

create function crm_fv_boolean(v jsonb) returns boolean
language sql immutable
as $$
    select case when jsonb_typeof(v) = 'boolean' then v::boolean end
$$;

-- A calendar date written YYYY-MM-DD (no DateStyle involved: make_date is immutable).
create function crm_fv_date(v jsonb) returns date
language sql immutable
as $$
    select case
        when jsonb_typeof(v) <> 'string' then null
        when (v #>> '{}') !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then null
        when substr(v #>> '{}', 1, 4)::int < 1 then null
        when substr(v #>> '{}', 6, 2)::int not between 1 and 12 then null
        when substr(v #>> '{}', 9, 2)::int not between 1 and extract(
            day from make_date(substr(v #>> '{}', 1, 4)::int, substr(v #>> '{}', 6, 2)::int, 1)
                + interval '1 month' - interval '1 day'
        )::int then null
        else make_date(
            substr(v #>> '{}', 1, 4)::int, substr(v #>> '{}', 6, 2)::int, substr(v #>> '{}', 9, 2)::int
        )
    end
$$;

create function crm_fv_text_array(v jsonb) returns text[]
language sql immutable
as $$
    select case
        when jsonb_typeof(v) = 'array' then array(select jsonb_array_elements_text(v))
    end
$$;

-- Why a value breaks its definition (NULL: it does not). JSON null means "no value".
create function crm_field_value_error(d field_definition, v jsonb) returns text
language plpgsql stable
as $$
declare
    n numeric;
    s text;
begin
    if v is null or jsonb_typeof(v) = 'null' then
        return null;
    end if;
    case d.data_type
        when 'TEXT' then
            if jsonb_typeof(v) <> 'string' then
                return 'must be a string';
            end if;
            s := v #>> '{}';
            if char_length(s) > coalesce(d.max_length, 500) then
                return format('must be at most %s characters long', coalesce(d.max_length, 500));
            end if;
            if d.pattern is not null and s !~ d.pattern then
                return format('must match the pattern %s', d.pattern);
            end if;
        when 'INTEGER', 'NUMBER' then
            if jsonb_typeof(v) <> 'number' then
                return case when d.data_type = 'INTEGER' then 'must be an integer' else 'must be a number' end;
            end if;
            if d.data_type = 'INTEGER' and crm_fv_bigint(v) is null then
                return 'must be an integer';
            end if;
            n := v::numeric;
            if d.min_value is not null and n < d.min_value then
                return format('must be at least %s', d.min_value);
            end if;
            if d.max_value is not null and n > d.max_value then
                return format('must be at most %s', d.max_value);
            end if;
        when 'BOOLEAN' then
            if jsonb_typeof(v) <> 'boolean' then
                return 'must be true or false';
            end if;
        when 'DATE' then
            if crm_fv_date(v) is null then
                return 'must be a date (YYYY-MM-DD)';
            end if;
        when 'ENUM' then
            if jsonb_typeof(v) <> 'string' or not ((v #>> '{}') = any (d.options)) then
                return 'must be one of ' || array_to_string(d.options, ', ');
            end if;
        when 'MULTI_ENUM' then
            if jsonb_typeof(v) <> 'array' then
                return 'must be an array of options';
            end if;
            if exists (
                select 1
                from jsonb_array_elements(v) as e
                where jsonb_typeof(e) <> 'string' or not ((e #>> '{}') = any (d.options))
            ) then
                return 'every element must be one of ' || array_to_string(d.options, ', ');
            end if;
            if (select count(*) <> count(distinct e) from jsonb_array_elements(v) as e) then
                return 'must not name an option twice';
            end if;
    end case;
    return null;
end
$$;

-- An ENUM or MULTI_ENUM value with the options named in option_map (old -> new) replaced;
-- a MULTI_ENUM keeps its order and names each option once.
create function crm_map_options(v jsonb, option_map jsonb) returns jsonb
language sql immutable
as $$
    select case jsonb_typeof(v)
        when 'string' then coalesce(option_map -> (v #>> '{}'), v)
        when 'array' then (
            select coalesce(jsonb_agg(m.value order by m.first), '[]'::jsonb)
            from (
                select
                    coalesce(option_map -> (e.value #>> '{}'), e.value) as value,
                    min(e.ord) as first
                from jsonb_array_elements(v) with ordinality as e (value, ord)
                group by 1
            ) as m
        )
        else v
    end
$$;

-- The options of a MULTI_ENUM value that are among "options" (in order, once each); NULL when
-- none is.
create function crm_valid_options(v jsonb, options text[]) returns jsonb
language sql immutable
as $$
    select case when jsonb_typeof(v) = 'array' then (
        select jsonb_agg(to_jsonb(m.value) order by m.first)
        from (
            select
                e.value #>> '{}' as value,
                min(e.ord) as first
            from jsonb_array_elements(v) with ordinality as e (value, ord)
            where jsonb_typeof(e.value) = 'string'
              and (e.value #>> '{}') = any (options)
            group by 1
        ) as m
    ) end
$$;

-- Whether a pattern is a valid (POSIX advanced) regular expression.
create function crm_regex_valid(pattern text) returns boolean
language plpgsql immutable
as $$
begin
    perform '' ~ pattern;
    return true;
exception
    when invalid_regular_expression then
        return false;
end
$$;

-- --- the hot projection ------------------------------------------------------------------------

create table customer_hot (
    customer_id uuid primary key references customer (id) on delete cascade,
    chain_id uuid,
    customer_number text not null,
    name text not null,
    type customer_type not null,
    status customer_status not null,
    owner text,
    city text,
    postal_code text,
    country text,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    -- staleness: the customer version this row was projected from, and when
    source_version bigint not null,
    projected_at timestamptz not null
) with (fillfactor = 70);  -- room on each page, so a backfill's updates stay HOT (no index churn)

alter table customer_hot enable row level security;  -- no policy: only the owner (triggers, jobs) reads it

create function crm_hot_column(key text) returns text
language sql immutable
as $$
    select 'f_' || key
$$;

create function crm_hot_column_type(data_type field_data_type) returns text
language sql immutable
as $$
    select case data_type
        when 'TEXT' then 'text'
        when 'ENUM' then 'text'
        when 'INTEGER' then 'bigint'
        when 'NUMBER' then 'numeric'
        when 'BOOLEAN' then 'boolean'
        when 'DATE' then 'date'
        when 'MULTI_ENUM' then 'text[]'
    end
$$;

-- The SQL expression computing a field's projected (typed) value from the SQL expression of
-- its JSON value.
create function crm_hot_value_expr(data_type field_data_type, value_sql text) returns text
language sql immutable
as $$
    select case data_type
        when 'TEXT' then 'crm_fv_text'
        when 'ENUM' then 'crm_fv_text'
        when 'INTEGER' then 'crm_fv_bigint'
        when 'NUMBER' then 'crm_fv_numeric'
        when 'BOOLEAN' then 'crm_fv_boolean'
        when 'DATE' then 'crm_fv_date'
        when 'MULTI_ENUM' then 'crm_fv_text_array'
    end || '(' || value_sql || ')'
$$;

-- The one statement that writes projection rows: every customer row of "source" (a relation
-- or parenthesised query with customer's columns) becomes its customer_hot row, with every
-- projected field (BACKFILLING or HOT). Triggers, recompute_customer_hot and the backfills all
-- run it. customer.version grows with every update (crm_touch), and a row is only replaced by
-- one projected from the same or a newer version; so a writer computing from a stale snapshot
-- (a backfill, a recompute racing a customer update) can never undo a newer projection, and no
-- customer row has to be locked for it.
create function crm_hot_upsert_sql(source text) returns text
language sql stable
as $$
    with projected as (
        select
            d.key,
            d.data_type
        from field_definition as d
        where d.projection in ('BACKFILLING', 'HOT')
          and d.archived_at is null
    )
    select
        'insert into customer_hot as h (customer_id, chain_id, customer_number, name, type, status, owner, '
        || 'city, postal_code, country, created_at, updated_at, source_version, projected_at'
        || coalesce(string_agg(', ' || quote_ident(crm_hot_column(p.key)), '' order by p.key), '')
        || ') select c.id, c.chain_id, c.customer_number, c.name, c.type, c.status, c.owner, c.city, '
        || 'c.postal_code, c.country, c.created_at, c.updated_at, c.version, clock_timestamp()'
        || coalesce(string_agg(', ' || crm_hot_value_expr(p.data_type, 'v.' || quote_ident(crm_hot_column(p.key))),
                               '' order by p.key), '')
        || ' from ' || source || ' as c'
        -- each JSON value extracted once (OFFSET 0 keeps the planner from copying the extraction
        -- into every use inside the crm_fv_* functions): a third less time for bulk projections
        || coalesce(' cross join lateral (select '
                    || string_agg(format('c.fields -> %L as %I', p.key, crm_hot_column(p.key)), ', ' order by p.key)
                    || ' offset 0) as v', '')
        || ' on conflict (customer_id) do update set '
        || 'chain_id = excluded.chain_id, customer_number = excluded.customer_number, name = excluded.name, '
        || 'type = excluded.type, status = excluded.status, owner = excluded.owner, city = excluded.city, '
        || 'postal_code = excluded.postal_code, country = excluded.country, created_at = excluded.created_at, '
        || 'updated_at = excluded.updated_at, source_version = excluded.source_version, '
        || 'projected_at = excluded.projected_at'
        || coalesce(
            string_agg(format(', %1$I = excluded.%1$I', crm_hot_column(p.key)), '' order by p.key), ''
        )
        -- monotonic: a write computed from an older customer version never replaces a newer one
        || ' where h.source_version <= excluded.source_version'
    from projected as p
$$;

-- Statement-level, with the changed rows as a transition table: one upsert per statement, so a
-- bulk write costs one set-based statement and a single-customer write O(1).
create function crm_customer_hot_trigger() returns trigger
language plpgsql security definer
set search_path = public, pg_temp
as $$
begin
    -- Lock first, then read which fields are projected: the job runner changes columns and
    -- field states under an ACCESS EXCLUSIVE lock, so what we read matches the table.
    lock table customer_hot in row exclusive mode;
    execute crm_hot_upsert_sql('new_rows');
    return null;
end
$$;

create trigger customer_hot_insert after insert on customer
    referencing new table as new_rows
    for each statement execute function crm_customer_hot_trigger();
create trigger customer_hot_update after update on customer
    referencing new table as new_rows
    for each statement execute function crm_customer_hot_trigger();

-- Recompute one customer's projection row from its customer row, exactly as the triggers do
-- (same statement); idempotent, callable any time. Returns the row (without projected_at) as
-- JSON, NULL when there is no such customer (as seen by the function's owner, who runs it: an
-- operator's tool, not granted to the API role).
create function recompute_customer_hot(p_customer_id uuid) returns jsonb
language plpgsql security definer
set search_path = public, pg_temp
as $$
declare
    result jsonb;
begin
    lock table customer_hot in row exclusive mode;
    execute crm_hot_upsert_sql('(select * from customer where id = $1)') using p_customer_id;
    select to_jsonb(h) - 'projected_at'
    into result
    from customer_hot as h
    where h.customer_id = p_customer_id
      and exists (select 1 from customer as c where c.id = p_customer_id);
    return result;
end
$$;

-- What the API roles read: the projection scoped like customer's policy (chain_id is kept
-- current by the triggers in the same transaction as the customer row), and all of it for the
-- all-rows role. Recreated whenever customer_hot's columns change.
create function crm_hot_create_view() returns void
language plpgsql
as $$
begin
    execute 'create or replace view customer_search as '
        || 'select h.* from customer_hot as h '
        || 'where crm_scope_all() or h.chain_id = any (crm_chain_ids())';
    execute 'grant select on customer_search to crm_api';
    execute 'create or replace view customer_search_all as select h.* from customer_hot as h';
    execute 'grant select on customer_search_all to crm_api_all';
end
$$;

do $$
begin
    perform crm_hot_create_view();
end
$$;

-- Add (or re-type) the projected column of a field and start projecting it: from the commit
-- on, every write projects the field; the backfill fills the rest. Runs under an ACCESS
-- EXCLUSIVE lock on customer_hot, held for the catalog change only.
create function crm_hot_add_column(p_key text) returns void
language plpgsql
as $$
declare
    d field_definition;
    col text := crm_hot_column(p_key);
    current_type text;
begin
    -- views first, as a search locks them (customer_search, then customer_hot): one lock order,
    -- no deadlock
    lock table customer_search, customer_search_all, customer_hot in access exclusive mode;
    select * into strict d from field_definition where key = p_key for update;
    select format_type(a.atttypid, a.atttypmod)
    into current_type
    from pg_attribute as a
    where a.attrelid = 'customer_hot'::regclass
      and a.attname = col
      and not a.attisdropped;
    if current_type is not null and current_type <> crm_hot_column_type(d.data_type) then
        execute 'drop view customer_search';
        execute 'drop view customer_search_all';
        execute format('alter table customer_hot drop column %I', col);
        current_type := null;
    end if;
    if current_type is null then
        execute format('alter table customer_hot add column %I %s', col, crm_hot_column_type(d.data_type));
    end if;
    perform crm_hot_create_view();
    update field_definition
    set
        projection = 'BACKFILLING'
    where key = p_key
      and projection = 'NONE';
end
$$;

-- Drop the projected column of a field that is no longer projected (its indexes go with it).
create function crm_hot_drop_column(p_key text) returns void
language plpgsql
as $$
declare
    col text := crm_hot_column(p_key);
begin
    -- views first, as a search locks them (customer_search, then customer_hot): one lock order,
    -- no deadlock
    lock table customer_search, customer_search_all, customer_hot in access exclusive mode;
    if exists (
        select 1
        from field_definition as d
        where d.key = p_key
          and d.projection <> 'NONE'
    ) then
        raise exception 'field % is still projected', p_key;
    end if;
    if exists (
        select 1
        from pg_attribute as a
        where a.attrelid = 'customer_hot'::regclass
          and a.attname = col
          and not a.attisdropped
    ) then
        execute 'drop view customer_search';
        execute 'drop view customer_search_all';
        execute format('alter table customer_hot drop column %I', col);
        perform crm_hot_create_view();
    end if;
end
$$;

-- One backfill batch of a field becoming hot: the next p_limit customers after p_after (in
-- id order) get the field's projected value. Rows whose source_version differs from the
-- customer version read here were (or are being) written by a concurrent customer write, which
-- projects the field itself (it is BACKFILLING); they are skipped. Rows missing or stale (a
-- write with triggers disabled) get a whole new row. Returns the last id and the batch size.
create function crm_hot_backfill_batch(p_key text, p_after uuid, p_limit bigint)
returns table (last_id uuid, row_count bigint)
language plpgsql
as $$
declare
    d field_definition;
    ids uuid[];
begin
    if not crm_scope_all() then
        raise exception 'crm_hot_backfill_batch needs crm.scope = all';
    end if;
    select * into strict d from field_definition where key = p_key;
    select array_agg(s.id order by s.id)
    into ids
    from (
        select c.id
        from customer as c
        where p_after is null or c.id > p_after
        order by c.id
        limit p_limit
    ) as s;
    if ids is null then
        return query select p_after, 0::bigint;
        return;
    end if;
    execute crm_hot_upsert_sql(
        '(select * from customer as m where m.id = any ($1) and not exists ('
        || 'select 1 from customer_hot as x where x.customer_id = m.id and x.source_version >= m.version))'
    ) using ids;
    execute format(
        'update customer_hot as h set %1$I = %2$s, projected_at = clock_timestamp() '
        || 'from customer as c where c.id = any ($1) and h.customer_id = c.id '
        || 'and h.source_version = c.version and h.%1$I is distinct from %2$s',
        crm_hot_column(p_key),
        crm_hot_value_expr(d.data_type, 'c.fields -> ' || quote_literal(p_key))
    ) using ids;
    return query select ids[cardinality(ids)], cardinality(ids)::bigint;
end
$$;

-- One batch of a full rebuild: the whole projection rows of the next p_limit customers after
-- p_after. Returns the last id, NULL when there are no more customers.
create function crm_hot_fill_batch(p_after uuid, p_limit bigint) returns uuid
language plpgsql
as $$
declare
    ids uuid[];
begin
    if not crm_scope_all() then
        raise exception 'crm_hot_fill_batch needs crm.scope = all';
    end if;
    select array_agg(s.id order by s.id)
    into ids
    from (
        select c.id
        from customer as c
        where p_after is null or c.id > p_after
        order by c.id
        limit p_limit
    ) as s;
    if ids is null then
        return null;
    end if;
    execute crm_hot_upsert_sql('(select * from customer as m where m.id = any ($1))') using ids;
    return ids[cardinality(ids)];
end
$$;

-- --- representations ---------------------------------------------------------------------------

create function crm_fields_etag(id uuid, fields_version bigint) returns text
language sql immutable
as $$
    select '"' || md5('fields:' || id::text || ':' || fields_version::text) || '"'
$$;

create function crm_field_definition_etag(key text, version bigint) returns text
language sql immutable
as $$
    select '"' || md5('field:' || key || ':' || version::text) || '"'
$$;

-- The values the API shows: those of fields that are not archived.
create function crm_visible_fields(fields jsonb) returns jsonb
language sql stable
as $$
    select fields - coalesce(
        (select array_agg(d.key) from field_definition as d where d.archived_at is not null),
        '{}'::text[]
    )
$$;

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
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
$$;

create function customer_fields_json(c customer) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'customer_id', c.id,
        'fields', crm_visible_fields(c.fields),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_fields_etag(c.id, c.fields_version)
    )
$$;

create function field_definition_json(d field_definition) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'key', d.key,
        'label', d.label,
        'description', d.description,
        'data_type', d.data_type,
        'options', to_jsonb(d.options),
        'required', d.required,
        'min', d.min_value,
        'max', d.max_value,
        'max_length', d.max_length,
        'pattern', d.pattern,
        'hot', d.hot,
        'hot_status', case
            when d.projection = 'HOT' then 'HOT'
            when d.hot then 'BACKFILLING'
            else 'COLD'
        end,
        'backfill', (
            select jsonb_build_object(
                'action', j.action,
                'status', j.status,
                'phase', j.phase,
                'processed', j.processed,
                'total', j.total,
                'started_at', crm_ts(j.started_at),
                'finished_at', crm_ts(j.finished_at),
                'error', j.error
            )
            from field_job as j
            where j.field_key = d.key
            order by j.id desc
            limit 1
        ),
        'created_at', crm_ts(d.created_at),
        'updated_at', crm_ts(d.updated_at),
        'etag', crm_field_definition_etag(d.key, d.version)
    )
$$;

-- --- privileges ------------------------------------------------------------------------------

revoke execute on function recompute_customer_hot(uuid) from public;
revoke execute on function crm_customer_hot_trigger() from public;
revoke execute on function crm_hot_add_column(text) from public;
revoke execute on function crm_hot_drop_column(text) from public;
revoke execute on function crm_hot_backfill_batch(text, uuid, bigint) from public;
revoke execute on function crm_hot_fill_batch(uuid, bigint) from public;
grant select, insert, update on field_definition to crm_api;
grant select, insert, update on field_job to crm_api;
