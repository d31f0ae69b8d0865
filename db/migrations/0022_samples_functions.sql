-- Sample requests: the state graph, representations, outbox events and the API role's privileges.
-- depends: 0021_samples_indexes
set lock_timeout = '5s';
set statement_timeout = '60s';

-- The lifecycle of a sample request: the states each state may move to. The API answers an
-- illegal transition with 409 naming these; the guard trigger below refuses any other change.
create or replace function sample_next_statuses(s sample_status) returns sample_status[]
language sql immutable
as $$
    select case s
        when 'DRAFT' then array['REQUESTED', 'CANCELLED']::sample_status[]
        when 'REQUESTED' then array['APPROVED', 'REJECTED', 'CANCELLED']::sample_status[]
        when 'APPROVED' then array['SHIPPED', 'CANCELLED']::sample_status[]
        when 'SHIPPED' then array['DELIVERED']::sample_status[]
        when 'DELIVERED' then array['FEEDBACK_RECEIVED']::sample_status[]
        when 'FEEDBACK_RECEIVED' then array['CLOSED']::sample_status[]
        else '{}'::sample_status[]
    end
$$;

create or replace function crm_sample_request_guard() returns trigger
language plpgsql
as $$
begin
    if tg_op = 'INSERT' and new.status <> 'DRAFT' then
        raise exception 'a sample request starts as DRAFT, not %', new.status
            using errcode = 'check_violation', constraint = 'sample_request_lifecycle';
    end if;
    if tg_op = 'UPDATE' and new.status <> old.status and not (new.status = any (sample_next_statuses(old.status))) then
        raise exception 'a sample request cannot move from % to %', old.status, new.status
            using errcode = 'check_violation', constraint = 'sample_request_lifecycle';
    end if;
    return new;
end
$$;

create trigger sample_request_guard before insert or update of status on sample_request
    for each row execute function crm_sample_request_guard();

create or replace function product_json(p product) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', p.id,
        'sku', p.sku,
        'name', p.name,
        'brand', p.brand,
        'category', p.category,
        'pack_size', trim_scale(p.pack_size),
        'unit', p.unit,
        'allergens', to_jsonb(p.allergens),
        'diet_tags', to_jsonb(p.diet_tags),
        'sample_available', p.sample_available,
        'max_sample_quantity', p.max_sample_quantity,
        'description', p.description,
        'created_at', crm_ts(p.created_at),
        'updated_at', crm_ts(p.updated_at),
        'etag', crm_etag(p.id, p.version)
    )
$$;

create or replace function sample_item_json(i sample_item) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', i.id,
        'sample_request_id', i.request_id,
        'product_id', i.product_id,
        'sku', p.sku,
        'product_name', p.name,
        'quantity', i.quantity,
        'lot_number', i.lot_number,
        'best_before', i.best_before,
        'feedback', case when i.feedback_at is not null then jsonb_build_object(
            'rating', i.feedback_rating,
            'taste', i.feedback_taste,
            'handling', i.feedback_handling,
            'price_perception', i.feedback_price_perception,
            'listing_decision', i.feedback_listing_decision,
            'comment', i.feedback_comment,
            'given_by', i.feedback_by,
            'given_at', crm_ts(i.feedback_at)
        ) end,
        'created_at', crm_ts(i.created_at),
        'updated_at', crm_ts(i.updated_at),
        'etag', crm_etag(i.id, i.version)
    )
    from product as p
    where p.id = i.product_id
$$;

create or replace function sample_request_json(r sample_request) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', r.id,
        'customer_id', r.customer_id,
        'chain_id', r.chain_id,
        'status', r.status,
        'next_statuses', to_jsonb(sample_next_statuses(r.status)),
        'requested_by', r.requested_by,
        'purpose', r.purpose,
        'desired_delivery_date', r.desired_delivery_date,
        'delivery_address', jsonb_build_object(
            'name', r.delivery_name,
            'street', r.delivery_street,
            'postal_code', r.delivery_postal_code,
            'city', r.delivery_city,
            'country', r.delivery_country
        ),
        'items', coalesce(
            (
                select jsonb_agg(sample_item_json(i) order by i.seq)
                from sample_item as i
                where i.request_id = r.id
            ),
            '[]'::jsonb
        ),
        'submitted_at', crm_ts(r.submitted_at),
        'decision', case when r.decision is not null then jsonb_build_object(
            'outcome', r.decision,
            'by', r.decided_by,
            'at', crm_ts(r.decided_at),
            'reason', r.decision_reason
        ) end,
        'shipment', case when r.shipped_at is not null then jsonb_build_object(
            'carrier', r.carrier,
            'tracking_number', r.tracking_number,
            'shipped_at', crm_ts(r.shipped_at),
            'delivered_at', crm_ts(r.delivered_at)
        ) end,
        'quota_override', case when r.quota_override_at is not null then jsonb_build_object(
            'by', r.quota_override_by,
            'at', crm_ts(r.quota_override_at),
            'reason', r.quota_override_reason,
            'usage', r.quota_override_usage
        ) end,
        'created_at', crm_ts(r.created_at),
        'updated_at', crm_ts(r.updated_at),
        'etag', crm_etag(r.id, r.version)
    )
$$;

create or replace function sample_history_json(h sample_request_history) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', h.id,
        'sample_request_id', h.request_id,
        'from', h.from_status,
        'to', h.to_status,
        'actor', h.actor,
        'at', crm_ts(h.at),
        'reason', h.reason,
        'correlation_id', h.correlation_id,
        'automatic', h.automatic,
        'quota_override', h.quota_override
    )
$$;

-- One outbox event per recorded transition (sample_request.created, .requested, .approved, ...),
-- in the same transaction, with the request as it is after the transition.
create or replace function crm_sample_transition_event() returns trigger
language plpgsql
as $$
begin
    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    select
        'sample_request',
        new.request_id::text,
        'sample_request.' || case when new.from_status is null then 'created' else lower(new.to_status::text) end,
        jsonb_build_object(
            'transition', sample_history_json(new),
            'sample_request', sample_request_json(r)
        ),
        new.correlation_id,
        new.actor
    from sample_request as r
    where r.id = new.request_id;
    return null;
end
$$;

create trigger sample_request_history_events after insert on sample_request_history
    for each row execute function crm_sample_transition_event();

-- Changes that are not transitions (a draft edited, items added, feedback recorded) and deletes.
create or replace function crm_sample_request_event() returns trigger
language plpgsql
as $$
declare
    event_type text;
    body jsonb;
    aggregate_id uuid;
begin
    if tg_op = 'DELETE' then
        event_type := 'sample_request.deleted';
        body := to_jsonb(old) - 'version' - 'idempotency_key';
        aggregate_id := old.id;
    elsif new.status is distinct from old.status then
        return null;  -- a transition: its history row emits the event
    else
        event_type := 'sample_request.updated';
        body := sample_request_json(new);
        aggregate_id := new.id;
    end if;
    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    values (
        'sample_request',
        aggregate_id::text,
        event_type,
        body,
        nullif(current_setting('crm.correlation_id', true), ''),
        nullif(current_setting('crm.sub', true), '')
    );
    return null;
end
$$;

create trigger sample_request_events after update or delete on sample_request
    for each row execute function crm_sample_request_event();
create trigger product_events after insert or update or delete on product
    for each row execute function crm_emit_event('product');

grant select, insert, update on product to crm_api;
grant select, insert, update, delete on sample_request, sample_item to crm_api;
grant select, insert on sample_request_history to crm_api;
grant select, update on sample_quota to crm_api;
grant usage on all sequences in schema public to crm_api;
