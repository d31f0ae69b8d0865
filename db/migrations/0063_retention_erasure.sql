-- GDPR: retention (db/retention.py, `crm retention run`) and erasure on request
-- (POST /api/v1/contacts/{contact_id}/erasure).
--
-- * archive.record: every row retention removes, as JSON, kept for a grace period (purge_after)
--   and then deleted for good by the same job. One table for every source table: a row keeps
--   its shape even after the source table changed (expand/contract), and can be restored with
--   jsonb_populate_record(null::<table>, row_data). The API roles have no access to the schema.
-- * retention_run: what each run did (as of when, counts per class and table), also dry runs.
-- * erasure_log: that a contact's personal data was erased, when, by whom, in which request, and
--   how many copies were scrubbed; nothing of the personal data itself.
-- * crm_erase_contact(): the erasure, in one transaction, as the table owner (security definer):
--   the API role may not rewrite outbox events or archived rows, this function does exactly that
--   for one person. It names contact.email_address, not contact.email, so the contract step of
--   docs/deploy.md does not have to touch it.
-- depends: 0062_contact_email_address_backfill 0042_activities_functions
set lock_timeout = '5s';
set statement_timeout = '60s';

create schema if not exists archive;

revoke all on schema archive from public;

create table archive.record (
    id bigint generated always as identity primary key,
    retention_class text not null,
    source_table text not null,
    -- the row's primary key as text (composite keys as a JSON array)
    source_key text not null,
    customer_id uuid,
    row_data jsonb not null,
    archived_at timestamptz not null,
    purge_after timestamptz not null,
    run_id bigint,
    constraint record_source_unique unique (source_table, source_key),
    constraint record_retention_class check (retention_class in ('30_DAYS', '2_YEARS', '5_YEARS'))
);

create table retention_run (
    id bigint generated always as identity primary key,
    as_of timestamptz not null,
    dry_run boolean not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    counts jsonb not null default '{}'::jsonb
);

create table erasure_log (
    id uuid primary key default gen_random_uuid(),
    contact_id uuid not null,
    customer_id uuid,
    erased_at timestamptz not null default now(),
    erased_by text not null,
    correlation_id text,
    scrubbed jsonb not null default '{}'::jsonb,
    constraint erasure_log_contact_unique unique (contact_id)
);

alter table erasure_log enable row level security;
alter table erasure_log force row level security;
create policy erasure_log_all on erasure_log
    using (crm_scope_all())
    with check (crm_scope_all());

-- the API reads earlier erasures (admins and sales managers only, by the policy)
grant select on erasure_log to crm_api;

alter table retention_run enable row level security;
alter table retention_run force row level security;
create policy retention_run_all on retention_run
    using (crm_scope_all())
    with check (crm_scope_all());

-- --- scrubbing ----------------------------------------------------------------------------------

-- A literal as a regular expression that matches it (every special character escaped).
create function crm_regex_escape(t text) returns text
language sql immutable
as $$
    select regexp_replace(t, '([\\.^$*+?()\[\]{}|/-])', '\\\1', 'g')
$$;

-- t with every case-insensitive occurrence of the literals (e-mail, phone) and of the names
-- (whole words only) replaced by [erased]. Too short a needle (a one-letter name) is skipped.
create function crm_scrub_text(t text, names text[], literals text[]) returns text
language plpgsql immutable
as $$
declare
    needle text;
    result text := t;
begin
    if result is null then
        return null;
    end if;
    foreach needle in array coalesce(literals, '{}'::text[]) loop
        if char_length(needle) >= 3 then
            result := regexp_replace(result, crm_regex_escape(needle), '[erased]', 'gi');
        end if;
    end loop;
    foreach needle in array coalesce(names, '{}'::text[]) loop
        if char_length(needle) >= 2 then
            result := regexp_replace(result, '\m' || crm_regex_escape(needle) || '\M', '[erased]', 'gi');
        end if;
    end loop;
    return result;
end
$$;

-- crm_scrub_text applied to every string in a JSON document, keys kept.
create function crm_scrub_jsonb(j jsonb, names text[], literals text[]) returns jsonb
language sql immutable
as $$
    select case jsonb_typeof(j)
        when 'object' then coalesce(
            (select jsonb_object_agg(e.key, crm_scrub_jsonb(e.value, names, literals)) from jsonb_each(j) as e),
            '{}'::jsonb
        )
        when 'array' then coalesce(
            (
                select jsonb_agg(crm_scrub_jsonb(e.value, names, literals) order by e.n)
                from jsonb_array_elements(j) with ordinality as e (value, n)
            ),
            '[]'::jsonb
        )
        when 'string' then to_jsonb(crm_scrub_text(j #>> '{}', names, literals))
        else j
    end
$$;

-- A contact as JSON (representation, event payload or archived row) without its personal data.
create function crm_anonymised_contact(j jsonb) returns jsonb
language sql immutable
as $$
    select j
        || case when j ? 'first_name' then '{"first_name": null}'::jsonb else '{}'::jsonb end
        || case when j ? 'last_name' then '{"last_name": "[erased]"}'::jsonb else '{}'::jsonb end
        || case when j ? 'email' then '{"email": null}'::jsonb else '{}'::jsonb end
        || case when j ? 'email_address' then '{"email_address": null}'::jsonb else '{}'::jsonb end
        || case when j ? 'phone' then '{"phone": null}'::jsonb else '{}'::jsonb end
$$;

create function erasure_json(e erasure_log) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', e.id,
        'contact_id', e.contact_id,
        'customer_id', e.customer_id,
        'erased_at', crm_ts(e.erased_at),
        'erased_by', e.erased_by,
        'correlation_id', e.correlation_id,
        'scrubbed', e.scrubbed
    )
$$;

-- --- erasure on request -------------------------------------------------------------------------

-- Erases one person: the contact row is anonymised (the row stays: activities and reports keep
-- counting it), their name, e-mail address and phone number are scrubbed from the free text of
-- the customer's activities and sample requests, from the outbox events and archived rows of the
-- contact and of those activities and requests, and from stored idempotent responses; the
-- activities keep the contact's id among their participants (it now leads to the anonymised
-- contact). A contact already deleted or removed by retention is erased from what is left of it
-- (outbox, archive). Writes contact.erased (ids only) for downstream systems, and the log entry.
-- Erasing twice returns the first entry. Null when nothing of the contact exists.
create function crm_erase_contact(p_contact_id uuid) returns jsonb
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    entry erasure_log;
    v_customer uuid;
    v_first text;
    v_last text;
    v_email text;
    v_phone text;
    v_found boolean := false;
    v_names text[];
    v_literals text[];
    v_activities uuid[];
    v_requests uuid[];
    v_aggregates text[];
    n_contact bigint := 0;
    n_activities bigint := 0;
    n_requests bigint := 0;
    n_items bigint := 0;
    n_events bigint := 0;
    n_archived bigint := 0;
    n_keys bigint := 0;
begin
    select * into entry from erasure_log as l where l.contact_id = p_contact_id;
    if found then
        return erasure_json(entry);
    end if;

    select c.customer_id, c.first_name, c.last_name, c.email_address::text, c.phone
    into v_customer, v_first, v_last, v_email, v_phone
    from contact as c
    where c.id = p_contact_id
    for update;
    if found then
        v_found := true;
        update contact
        set
            first_name = null,
            last_name = '[erased]',
            email_address = null,
            phone = null
        where id = p_contact_id;
        n_contact := 1;
    else
        select
            (r.row_data ->> 'customer_id')::uuid,
            r.row_data ->> 'first_name',
            r.row_data ->> 'last_name',
            coalesce(r.row_data ->> 'email_address', r.row_data ->> 'email'),
            r.row_data ->> 'phone'
        into v_customer, v_first, v_last, v_email, v_phone
        from archive.record as r
        where r.source_table = 'contact'
          and r.source_key = p_contact_id::text;
        v_found := found;
        if not v_found then
            select
                (o.payload ->> 'customer_id')::uuid,
                o.payload ->> 'first_name',
                o.payload ->> 'last_name',
                coalesce(o.payload ->> 'email_address', o.payload ->> 'email'),
                o.payload ->> 'phone'
            into v_customer, v_first, v_last, v_email, v_phone
            from outbox as o
            where o.aggregatetype = 'contact'
              and o.aggregateid = p_contact_id::text
            order by o.position desc
            limit 1;
            v_found := found;
        end if;
        if not v_found then
            return null;
        end if;
    end if;

    v_names := array_remove(array[nullif(concat_ws(' ', v_first, v_last), v_last), v_last], null);
    v_names := array_remove(v_names, '[erased]');
    v_literals := array_remove(array[v_email, v_phone], null);

    -- the free text of the customer's activities and sample requests
    with changed as (
        update activity as a
        set
            subject = crm_scrub_text(a.subject, v_names, v_literals),
            notes = crm_scrub_text(a.notes, v_names, v_literals),
            next_step = crm_scrub_text(a.next_step, v_names, v_literals),
            location = crm_scrub_text(a.location, v_names, v_literals)
        where a.customer_id = v_customer
          and (
              crm_scrub_text(a.subject, v_names, v_literals) is distinct from a.subject
              or crm_scrub_text(a.notes, v_names, v_literals) is distinct from a.notes
              or crm_scrub_text(a.next_step, v_names, v_literals) is distinct from a.next_step
              or crm_scrub_text(a.location, v_names, v_literals) is distinct from a.location
          )
        returning 1
    )
    select count(*) into n_activities from changed;

    with changed as (
        update sample_request as r
        set delivery_name = crm_scrub_text(r.delivery_name, v_names, v_literals),
            purpose = crm_scrub_text(r.purpose, v_names, v_literals)
        where r.customer_id = v_customer
          and (
              crm_scrub_text(r.delivery_name, v_names, v_literals) is distinct from r.delivery_name
              or crm_scrub_text(r.purpose, v_names, v_literals) is distinct from r.purpose
          )
        returning 1
    )
    select count(*) into n_requests from changed;

    with changed as (
        update sample_item as i
        set feedback_comment = crm_scrub_text(i.feedback_comment, v_names, v_literals)
        from sample_request as r
        where r.id = i.request_id
          and r.customer_id = v_customer
          and crm_scrub_text(i.feedback_comment, v_names, v_literals) is distinct from i.feedback_comment
        returning 1
    )
    select count(*) into n_items from changed;

    -- the events of the contact, and of the customer's activities and sample requests
    select array_agg(a.id) into v_activities from activity as a where a.customer_id = v_customer;
    select array_agg(r.id) into v_requests from sample_request as r where r.customer_id = v_customer;
    v_aggregates := array(
        select x::text from unnest(coalesce(v_activities, '{}'::uuid[]) || coalesce(v_requests, '{}'::uuid[])) as x
        union
        select r.source_key
        from archive.record as r
        where r.customer_id = v_customer
          and r.source_table in ('activity', 'sample_request')
    );
    with changed as (
        update outbox as o
        set payload = crm_scrub_jsonb(
            case when o.aggregatetype = 'contact' then crm_anonymised_contact(o.payload) else o.payload end,
            v_names,
            v_literals
        )
        where (
            (o.aggregatetype = 'contact' and o.aggregateid = p_contact_id::text)
            or (o.aggregatetype in ('activity', 'sample_request') and o.aggregateid = any (v_aggregates))
        )
          and crm_scrub_jsonb(
              case when o.aggregatetype = 'contact' then crm_anonymised_contact(o.payload) else o.payload end,
              v_names,
              v_literals
          ) is distinct from o.payload
        returning 1
    )
    select count(*) into n_events from changed;

    -- what retention archived: the contact itself, the customer's rows, the events of both
    with changed as (
        update archive.record as r
        set row_data = crm_scrub_jsonb(
            case when r.source_table = 'contact' and r.source_key = p_contact_id::text
                then crm_anonymised_contact(r.row_data)
                when r.source_table = 'outbox' and r.row_data ->> 'aggregateid' = p_contact_id::text
                then r.row_data || jsonb_build_object('payload', crm_anonymised_contact(r.row_data -> 'payload'))
                else r.row_data
            end,
            v_names,
            v_literals
        )
        where (
            r.customer_id = v_customer
            or (r.source_table = 'contact' and r.source_key = p_contact_id::text)
            or (r.source_table = 'outbox' and r.row_data ->> 'aggregateid' = p_contact_id::text)
        )
        returning 1
    )
    select count(*) into n_archived from changed;

    -- responses kept for idempotent replays (at most 30 days)
    with changed as (
        update idempotency_key as k
        set body = crm_scrub_jsonb(
            case when k.body ->> 'id' = p_contact_id::text then crm_anonymised_contact(k.body) else k.body end,
            v_names,
            v_literals
        )
        where (k.body ->> 'id' = p_contact_id::text or k.body ->> 'customer_id' = v_customer::text)
          and crm_scrub_jsonb(
              case when k.body ->> 'id' = p_contact_id::text then crm_anonymised_contact(k.body) else k.body end,
              v_names,
              v_literals
          ) is distinct from k.body
        returning 1
    )
    select count(*) into n_keys from changed;

    insert into erasure_log (contact_id, customer_id, erased_by, correlation_id, scrubbed)
    values (
        p_contact_id,
        v_customer,
        coalesce(nullif(current_setting('crm.sub', true), ''), current_user),
        nullif(current_setting('crm.correlation_id', true), ''),
        jsonb_build_object(
            'contact', n_contact,
            'activities', n_activities,
            'sample_requests', n_requests,
            'sample_items', n_items,
            'outbox_events', n_events,
            'archived_rows', n_archived,
            'idempotency_keys', n_keys
        )
    )
    returning * into entry;

    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    values (
        'contact',
        p_contact_id::text,
        'contact.erased',
        jsonb_build_object('id', p_contact_id, 'customer_id', v_customer, 'erased_at', crm_ts(entry.erased_at)),
        entry.correlation_id,
        entry.erased_by
    );
    return erasure_json(entry);
end
$$;

revoke execute on function crm_erase_contact(uuid) from public;
grant execute on function crm_erase_contact(uuid) to crm_api_all;
