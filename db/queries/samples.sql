-- name: sample_customer^
-- The customer a sample request is for, as far as the caller may see it.
select
    c.id,
    c.status::text as status,
    c.chain_id,
    c.name,
    c.street,
    c.postal_code,
    c.city,
    c.country
from customer as c
where c.id = :customer_id;

-- name: sample_products
-- The products named in a request, with what the sample rules need.
select
    p.id::text as id,
    p.sku,
    p.sample_available,
    p.max_sample_quantity
from product as p
where p.id = any (cast(:ids as uuid[]));

-- name: insert_sample_request^
-- A new draft. A concurrent first attempt with the same Idempotency-Key inserts nothing.
insert into sample_request (
    customer_id,
    chain_id,
    requested_by,
    purpose,
    desired_delivery_date,
    delivery_name,
    delivery_street,
    delivery_postal_code,
    delivery_city,
    delivery_country,
    idempotency_key
)
values (
    :customer_id,
    :chain_id,
    :requested_by,
    :purpose,
    cast(:desired_delivery_date as date),
    :delivery_name,
    :delivery_street,
    :delivery_postal_code,
    :delivery_city,
    :delivery_country,
    :idempotency_key
)
on conflict (requested_by, idempotency_key) where idempotency_key is not null do nothing
returning id;

-- name: find_sample_request_by_key^
select
    r.id
from sample_request as r
where r.requested_by = :requested_by
  and r.idempotency_key = :idempotency_key;

-- name: insert_sample_items!
-- The items of a new draft, in the order given.
insert into sample_item (
    request_id,
    product_id,
    quantity
)
select
    :request_id,
    t.product_id,
    t.quantity
from unnest(cast(:product_ids as uuid[]), cast(:quantities as bigint[])) with ordinality as t (product_id, quantity, n)
order by t.n;

-- name: insert_sample_history!
-- One status change; its outbox event is written by trigger (crm_sample_transition_event).
insert into sample_request_history (
    request_id,
    from_status,
    to_status,
    actor,
    reason,
    correlation_id,
    automatic,
    quota_override
)
values (
    :request_id,
    cast(:from_status as sample_status),
    cast(:to_status as sample_status),
    coalesce(nullif(current_setting('crm.sub', true), ''), 'system'),
    :reason,
    nullif(current_setting('crm.correlation_id', true), ''),
    :automatic,
    :quota_override
);

-- name: get_sample_request^
select
    sample_request_json(r) as body
from sample_request as r
where r.id = :id;

-- name: find_sample_request^
select
    r.id
from sample_request as r
where r.id = :id;

-- name: list_sample_requests
-- Keyset page, newest first: (created_at, id) descending.
select
    sample_request_json(r) as body,
    crm_ts(r.created_at) as sort_created,
    r.id::text as sort_id
from sample_request as r
where (cast(:status as sample_status) is null or r.status = cast(:status as sample_status))
  and (cast(:customer_id as uuid) is null or r.customer_id = cast(:customer_id as uuid))
  and (cast(:chain_id as uuid) is null or r.chain_id = cast(:chain_id as uuid))
  and (cast(:requested_by as text) is null or r.requested_by = :requested_by)
  and (cast(:created_from as timestamptz) is null or r.created_at >= cast(:created_from as timestamptz))
  and (cast(:created_to as timestamptz) is null or r.created_at < cast(:created_to as timestamptz))
  and (
      cast(:after_created as timestamptz) is null
      or (r.created_at, r.id) < (cast(:after_created as timestamptz), cast(:after_id as uuid))
  )
order by r.created_at desc, r.id desc
limit :limit;

-- name: lock_sample_request^
-- The row lock every change of a request (and of its items) takes first.
select
    r.id,
    r.status::text as status,
    r.requested_by,
    r.customer_id,
    r.chain_id,
    crm_etag(r.id, r.version) as etag,
    cast(sample_next_statuses(r.status) as text[]) as next_statuses
from sample_request as r
where r.id = :id
for update;

-- name: update_sample_request^
update sample_request
set
    purpose = case when :set_purpose then :purpose else purpose end,
    desired_delivery_date = case
        when :set_desired_delivery_date then cast(:desired_delivery_date as date)
        else desired_delivery_date
    end,
    delivery_name = case when :set_delivery_name then :delivery_name else delivery_name end,
    delivery_street = case when :set_delivery_street then :delivery_street else delivery_street end,
    delivery_postal_code = case
        when :set_delivery_postal_code then :delivery_postal_code
        else delivery_postal_code
    end,
    delivery_city = case when :set_delivery_city then :delivery_city else delivery_city end,
    delivery_country = case when :set_delivery_country then :delivery_country else delivery_country end
where id = :id
returning sample_request_json(sample_request) as body;

-- name: touch_sample_request!
-- A new version (and ETag) of the request after one of its items changed.
update sample_request
set
    updated_at = now()
where id = :id;

-- name: delete_sample_request!
delete from sample_request
where id = :id;

-- name: set_sample_status^
-- A transition: the new status and what comes with it (submission, decision, shipment, override).
update sample_request
set
    status = cast(:to_status as sample_status),
    chain_id = case when cast(:to_status as text) = 'REQUESTED' then cast(:chain_id as uuid) else chain_id end,
    submitted_at = case when cast(:to_status as text) = 'REQUESTED' then now() else submitted_at end,
    decision = case
        when cast(:to_status as text) in ('APPROVED', 'REJECTED') then cast(:to_status as text)
        else decision
    end,
    decided_by = case
        when cast(:to_status as text) in ('APPROVED', 'REJECTED') then current_setting('crm.sub', true)
        else decided_by
    end,
    decided_at = case when cast(:to_status as text) in ('APPROVED', 'REJECTED') then now() else decided_at end,
    decision_reason = case
        when cast(:to_status as text) in ('APPROVED', 'REJECTED') then cast(:reason as text)
        else decision_reason
    end,
    carrier = case when cast(:to_status as text) = 'SHIPPED' then cast(:carrier as text) else carrier end,
    tracking_number = case
        when cast(:to_status as text) = 'SHIPPED' then cast(:tracking_number as text)
        else tracking_number
    end,
    shipped_at = case when cast(:to_status as text) = 'SHIPPED' then now() else shipped_at end,
    delivered_at = case when cast(:to_status as text) = 'DELIVERED' then now() else delivered_at end,
    quota_override_by = case
        when :quota_override then current_setting('crm.sub', true)
        else quota_override_by
    end,
    quota_override_at = case when :quota_override then now() else quota_override_at end,
    quota_override_reason = case
        when :quota_override then cast(:reason as text)
        else quota_override_reason
    end,
    quota_override_usage = case
        when :quota_override then cast(:quota_usage as jsonb)
        else quota_override_usage
    end
where id = :id
returning sample_request_json(sample_request) as body;

-- name: lock_sample_quota!
-- Serialises quota checks of one chain (or one customer without a chain): transaction-scoped.
select
    pg_advisory_xact_lock(hashtextextended(:key, 0));

-- name: sample_quota_usage^
-- Packs of the other submitted, live requests of the customer and of the chain within each
-- quota's window, the packs of this request, and the limits (null: no quota configured).
with target as (
    select
        r.id,
        r.customer_id,
        cast(:chain_id as uuid) as chain_id,
        (
            select
                cast(coalesce(sum(i.quantity), 0) as bigint)
            from sample_item as i
            where i.request_id = r.id
        ) as requested
    from sample_request as r
    where r.id = :id
)
select
    t.requested,
    cq.max_units as customer_limit,
    cq.window_days as customer_window_days,
    (
        select
            cast(coalesce(sum(i.quantity), 0) as bigint)
        from sample_request as o
        join sample_item as i on i.request_id = o.id
        where o.customer_id = t.customer_id
          and o.id <> t.id
          and o.status in ('REQUESTED', 'APPROVED', 'SHIPPED', 'DELIVERED', 'FEEDBACK_RECEIVED', 'CLOSED')
          and o.submitted_at > now() - make_interval(days => cast(cq.window_days as integer))
    ) as customer_used,
    hq.max_units as chain_limit,
    hq.window_days as chain_window_days,
    (
        select
            cast(coalesce(sum(i.quantity), 0) as bigint)
        from sample_request as o
        join sample_item as i on i.request_id = o.id
        where o.chain_id = t.chain_id
          and o.id <> t.id
          and o.status in ('REQUESTED', 'APPROVED', 'SHIPPED', 'DELIVERED', 'FEEDBACK_RECEIVED', 'CLOSED')
          and o.submitted_at > now() - make_interval(days => cast(hq.window_days as integer))
    ) as chain_used
from target as t
left join sample_quota as cq on cq.subject = 'CUSTOMER'
left join sample_quota as hq on hq.subject = 'CHAIN';

-- name: sample_request_items
-- A request's items with what submit, shipping and feedback check.
select
    i.id::text as id,
    i.product_id::text as product_id,
    i.quantity,
    i.feedback_at is not null as has_feedback,
    p.sku,
    p.sample_available,
    p.max_sample_quantity
from sample_item as i
join product as p on p.id = i.product_id
where i.request_id = :request_id
order by i.seq;

-- name: set_sample_item_shipment!
-- Lot number and best-before date per item, from parallel arrays.
update sample_item as i
set
    lot_number = s.lot_number,
    best_before = s.best_before
from unnest(
    cast(:item_ids as uuid[]),
    cast(:lot_numbers as text[]),
    cast(:best_befores as date[])
) as s (item_id, lot_number, best_before)
where i.id = s.item_id
  and i.request_id = :request_id;

-- name: list_sample_items
-- Keyset page in the order the items were added.
select
    sample_item_json(i) as body,
    i.seq as sort_seq
from sample_item as i
where i.request_id = :request_id
  and (cast(:after_seq as bigint) is null or i.seq > cast(:after_seq as bigint))
order by i.seq
limit :limit;

-- name: get_sample_item^
select
    sample_item_json(i) as body
from sample_item as i
where i.id = :item_id
  and i.request_id = :request_id;

-- name: lock_sample_item^
select
    i.id,
    crm_etag(i.id, i.version) as etag
from sample_item as i
where i.id = :item_id
  and i.request_id = :request_id
for update;

-- name: insert_sample_item^
insert into sample_item (
    request_id,
    product_id,
    quantity
)
values (
    :request_id,
    :product_id,
    :quantity
)
on conflict (request_id, product_id) do nothing
returning sample_item_json(sample_item) as body;

-- name: find_sample_item_by_product^
select
    i.id
from sample_item as i
where i.request_id = :request_id
  and i.product_id = :product_id;

-- name: delete_sample_item!
delete from sample_item
where id = :item_id;

-- name: put_sample_feedback^
update sample_item
set
    feedback_rating = :rating,
    feedback_taste = :taste,
    feedback_handling = :handling,
    feedback_price_perception = cast(:price_perception as price_perception),
    feedback_listing_decision = cast(:listing_decision as listing_decision),
    feedback_comment = :comment,
    feedback_by = current_setting('crm.sub', true),
    feedback_at = now()
where id = :item_id
returning sample_item_json(sample_item) as body;

-- name: list_sample_history
-- Keyset page, oldest first.
select
    sample_history_json(h) as body,
    h.id as sort_id
from sample_request_history as h
where h.request_id = :request_id
  and (cast(:after_id as bigint) is null or h.id > cast(:after_id as bigint))
order by h.id
limit :limit;
