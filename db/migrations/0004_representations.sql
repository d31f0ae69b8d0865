-- The API representation of each resource, built in one place by the database.
-- depends: 0003_indexes
set lock_timeout = '5s';
set statement_timeout = '60s';

create or replace function crm_ts(ts timestamptz) returns text
language sql immutable
as $$
    select to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

create or replace function crm_etag(id uuid, version bigint) returns text
language sql immutable
as $$
    select '"' || md5(id::text || ':' || version::text) || '"'
$$;

create or replace function chain_json(c chain) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', c.id,
        'name', c.name,
        'description', c.description,
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
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
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
$$;

create or replace function contact_json(c contact) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', c.id,
        'customer_id', c.customer_id,
        'first_name', c.first_name,
        'last_name', c.last_name,
        'job_role', c.job_role,
        'email', c.email,
        'phone', c.phone,
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
$$;

-- An ILIKE pattern matching ``term`` anywhere, its wildcards escaped to match literally.
create or replace function crm_contains_pattern(term text) returns text
language sql immutable
as $$
    select '%' || replace(replace(replace(term, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;
