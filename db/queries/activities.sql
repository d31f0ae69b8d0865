-- name: activity_customer^
-- The customer an activity is for, as far as the caller may see it.
select
    c.id,
    c.status::text as status
from customer as c
where c.id = :customer_id;

-- name: activity_contacts
-- The contacts named as participants, with the customer each belongs to.
select
    c.id::text as id,
    c.customer_id::text as customer_id
from contact as c
where c.id = any (cast(:ids as uuid[]));

-- name: activity_products
-- The presented products that exist.
select
    p.id::text as id
from product as p
where p.id = any (cast(:ids as uuid[]));

-- name: activity_sample_request^
select
    r.id,
    r.customer_id::text as customer_id
from sample_request as r
where r.id = :id;

-- name: insert_activity^
-- A new activity. A concurrent first attempt with the same Idempotency-Key inserts nothing.
insert into activity (
    type,
    customer_id,
    status,
    occurred_at,
    planned_at,
    subject,
    notes,
    outcome,
    next_step,
    follow_up_at,
    sample_request_id,
    owner,
    created_by,
    direction,
    duration_seconds,
    reached,
    visit_kind,
    location,
    participants,
    products_presented,
    idempotency_key
)
values (
    cast(:type as activity_type),
    :customer_id,
    cast(:status as activity_status),
    cast(:occurred_at as timestamptz),
    cast(:planned_at as timestamptz),
    :subject,
    :notes,
    cast(:outcome as activity_outcome),
    :next_step,
    cast(:follow_up_at as timestamptz),
    cast(:sample_request_id as uuid),
    :owner,
    :created_by,
    cast(:direction as call_direction),
    cast(:duration_seconds as bigint),
    cast(:reached as boolean),
    cast(:visit_kind as visit_kind),
    :location,
    cast(:participants as uuid[]),
    cast(:products_presented as uuid[]),
    :idempotency_key
)
on conflict (created_by, idempotency_key) where idempotency_key is not null do nothing
returning activity_json(activity) as body;

-- name: find_activity_by_key^
select
    a.id
from activity as a
where a.created_by = :created_by
  and a.idempotency_key = :idempotency_key;

-- name: get_activity^
select
    activity_json(a) as body
from activity as a
where a.id = :id;

-- name: lock_activity^
-- The row lock every change takes first, with the activity as it is.
select
    activity_json(a) as body,
    crm_etag(a.id, a.version) as etag
from activity as a
where a.id = :id
for update;

-- name: update_activity^
-- Merge patch: each column changes only when its set_ flag is true.
update activity
set
    status = case when :set_status then cast(:status as activity_status) else status end,
    occurred_at = case when :set_occurred_at then cast(:occurred_at as timestamptz) else occurred_at end,
    planned_at = case when :set_planned_at then cast(:planned_at as timestamptz) else planned_at end,
    subject = case when :set_subject then :subject else subject end,
    notes = case when :set_notes then :notes else notes end,
    outcome = case when :set_outcome then cast(:outcome as activity_outcome) else outcome end,
    next_step = case when :set_next_step then :next_step else next_step end,
    follow_up_at = case when :set_follow_up_at then cast(:follow_up_at as timestamptz) else follow_up_at end,
    sample_request_id = case
        when :set_sample_request_id then cast(:sample_request_id as uuid)
        else sample_request_id
    end,
    owner = case when :set_owner then :owner else owner end,
    direction = case when :set_direction then cast(:direction as call_direction) else direction end,
    duration_seconds = case
        when :set_duration_seconds then cast(:duration_seconds as bigint)
        else duration_seconds
    end,
    reached = case when :set_reached then cast(:reached as boolean) else reached end,
    visit_kind = case when :set_visit_kind then cast(:visit_kind as visit_kind) else visit_kind end,
    location = case when :set_location then :location else location end,
    participants = case when :set_participants then cast(:participants as uuid[]) else participants end,
    products_presented = case
        when :set_products_presented then cast(:products_presented as uuid[])
        else products_presented
    end
where id = :id
returning activity_json(activity) as body;

-- name: delete_activity!
delete from activity
where id = :id;

-- name: list_activities
-- Keyset page, newest first: (activity_at, id) descending. activity_at is occurred_at, or
-- planned_at while the activity has not occurred.
select
    activity_json(a) as body,
    crm_ts(a.activity_at) as sort_at,
    a.id::text as sort_id
from activity as a
where (cast(:customer_id as uuid) is null or a.customer_id = cast(:customer_id as uuid))
  and (
      cast(:chain_id as uuid) is null
      or a.customer_id in (
          select
              c.id
          from customer as c
          where c.chain_id = cast(:chain_id as uuid)
      )
  )
  and (cast(:type as activity_type) is null or a.type = cast(:type as activity_type))
  and (cast(:owner as text) is null or a.owner = :owner)
  and (cast(:status as activity_status) is null or a.status = cast(:status as activity_status))
  and (cast(:occurred_from as timestamptz) is null or a.activity_at >= cast(:occurred_from as timestamptz))
  and (cast(:occurred_to as timestamptz) is null or a.activity_at < cast(:occurred_to as timestamptz))
  and (
      cast(:after_at as timestamptz) is null
      or (a.activity_at, a.id) < (cast(:after_at as timestamptz), cast(:after_id as uuid))
  )
order by a.activity_at desc, a.id desc
limit :limit;

-- name: list_due_activities
-- "What is due": open follow-ups (not CANCELLED) before a date, earliest first: keyset on
-- (follow_up_at, id) ascending.
select
    activity_json(a) as body,
    crm_ts(a.follow_up_at) as sort_at,
    a.id::text as sort_id
from activity as a
where a.follow_up_at < cast(:follow_up_due_before as timestamptz)
  and a.status <> 'CANCELLED'
  and (cast(:customer_id as uuid) is null or a.customer_id = cast(:customer_id as uuid))
  and (
      cast(:chain_id as uuid) is null
      or a.customer_id in (
          select
              c.id
          from customer as c
          where c.chain_id = cast(:chain_id as uuid)
      )
  )
  and (cast(:type as activity_type) is null or a.type = cast(:type as activity_type))
  and (cast(:owner as text) is null or a.owner = :owner)
  and (cast(:status as activity_status) is null or a.status = cast(:status as activity_status))
  and (cast(:occurred_from as timestamptz) is null or a.activity_at >= cast(:occurred_from as timestamptz))
  and (cast(:occurred_to as timestamptz) is null or a.activity_at < cast(:occurred_to as timestamptz))
  and (
      cast(:after_at as timestamptz) is null
      or (a.follow_up_at, a.id) > (cast(:after_at as timestamptz), cast(:after_id as uuid))
  )
order by a.follow_up_at, a.id
limit :limit;

-- name: list_customer_timeline
-- A customer's story, newest first: its activities, the transitions of its sample requests and
-- the changes of the customer itself, merged. Keyset on (at, kind, id) descending, kind and id
-- compared as text in the "C" collation (the same order wherever the database runs); each
-- source contributes at most :limit rows after the cursor, the merge keeps the first :limit.
with entries as (
    (
        select
            a.activity_at as at,
            cast('ACTIVITY' as text) as kind,
            a.id::text as id,
            jsonb_build_object(
                'kind', 'ACTIVITY',
                'id', a.id::text,
                'at', crm_ts(a.activity_at),
                'actor', a.owner,
                'summary', concat_ws(
                    ': ',
                    case a.type
                        when 'CALL' then case a.direction when 'INBOUND' then 'Inbound call' else 'Outbound call' end
                        else initcap(replace(a.visit_kind::text, '_', ' '))
                    end || case a.status
                        when 'PLANNED' then ' (planned)'
                        when 'CANCELLED' then ' (cancelled)'
                        else ''
                    end,
                    a.subject
                ),
                'link', '/api/v1/activities/' || a.id::text,
                'activity', activity_json(a)
            ) as body
        from activity as a
        where a.customer_id = :customer_id
          and (cast(:after_at as timestamptz) is null or a.activity_at <= cast(:after_at as timestamptz))
          and (
              cast(:after_at as timestamptz) is null
              or (a.activity_at, cast('ACTIVITY' as text) collate "C", a.id::text collate "C")
                 < (cast(:after_at as timestamptz), cast(:after_kind as text), cast(:after_id as text))
          )
        order by a.activity_at desc, a.id::text collate "C" desc
        limit :limit
    )
    union all
    (
        select
            h.at,
            cast('SAMPLE_REQUEST_TRANSITION' as text) as kind,
            h.id::text as id,
            jsonb_build_object(
                'kind', 'SAMPLE_REQUEST_TRANSITION',
                'id', h.id::text,
                'at', crm_ts(h.at),
                'actor', h.actor,
                'summary', case
                    when h.from_status is null then 'Sample request created'
                    else 'Sample request ' || h.from_status::text || ' → ' || h.to_status::text
                end,
                'link', '/api/v1/sample-requests/' || h.request_id::text,
                'transition', sample_history_json(h)
            ) as body
        from sample_request as r
        join sample_request_history as h on h.request_id = r.id
        where r.customer_id = :customer_id
          and (cast(:after_at as timestamptz) is null or h.at <= cast(:after_at as timestamptz))
          and (
              cast(:after_at as timestamptz) is null
              or (h.at, cast('SAMPLE_REQUEST_TRANSITION' as text) collate "C", h.id::text collate "C")
                 < (cast(:after_at as timestamptz), cast(:after_kind as text), cast(:after_id as text))
          )
        order by h.at desc, h.id::text collate "C" desc
        limit :limit
    )
    union all
    (
        select
            ch.at,
            cast('CUSTOMER_CHANGE' as text) as kind,
            ch.id::text as id,
            jsonb_build_object(
                'kind', 'CUSTOMER_CHANGE',
                'id', ch.id::text,
                'at', crm_ts(ch.at),
                'actor', ch.actor,
                'summary', case ch.action
                    when 'CREATED' then 'Customer created'
                    when 'ARCHIVED' then 'Customer archived'
                    else 'Customer changed: ' || (
                        select
                            string_agg(k.key, ', ' order by k.key)
                        from jsonb_object_keys(ch.changes) as k (key)
                    )
                end,
                'link', '/api/v1/customers/' || ch.customer_id::text,
                'change', jsonb_build_object(
                    'action', ch.action,
                    'changes', ch.changes,
                    'correlation_id', ch.correlation_id
                )
            ) as body
        from customer_change as ch
        where ch.customer_id = :customer_id
          and (cast(:after_at as timestamptz) is null or ch.at <= cast(:after_at as timestamptz))
          and (
              cast(:after_at as timestamptz) is null
              or (ch.at, cast('CUSTOMER_CHANGE' as text) collate "C", ch.id::text collate "C")
                 < (cast(:after_at as timestamptz), cast(:after_kind as text), cast(:after_id as text))
          )
        order by ch.at desc, ch.id::text collate "C" desc
        limit :limit
    )
)
select
    e.body,
    crm_ts(e.at) as sort_at,
    e.kind as sort_kind,
    e.id as sort_id
from entries as e
order by e.at desc, e.kind collate "C" desc, e.id collate "C" desc
limit :limit;
