-- name: list_customers
-- Keyset page ordered by (name, id). Archived customers only when status=ARCHIVED is asked for.
select
    customer_json(c) as body,
    c.name as sort_name,
    c.id::text as sort_id
from customer as c
where (cast(:chain_id as uuid) is null or c.chain_id = cast(:chain_id as uuid))
  and (
      (cast(:status as customer_status) is null and c.status <> 'ARCHIVED')
      or c.status = cast(:status as customer_status)
  )
  and (cast(:type as customer_type) is null or c.type = cast(:type as customer_type))
  and (cast(:owner as text) is null or c.owner = :owner)
  and (cast(:q as text) is null or c.name ilike crm_contains_pattern(:q))
  and (cast(:updated_since as timestamptz) is null or c.updated_at >= cast(:updated_since as timestamptz))
  and (cast(:after_name as text) is null or (c.name, c.id) > (:after_name, cast(:after_id as uuid)))
order by c.name, c.id
limit :limit;

-- name: get_customer^
select
    customer_json(c) as body
from customer as c
where c.id = :id;

-- name: lock_customer^
select
    crm_etag(c.id, c.version) as etag
from customer as c
where c.id = :id
for update;

-- name: insert_customer^
insert into customer (
    customer_number,
    name,
    type,
    status,
    chain_id,
    owner,
    street,
    postal_code,
    city,
    country
)
values (
    :customer_number,
    :name,
    :type,
    :status,
    :chain_id,
    :owner,
    :street,
    :postal_code,
    :city,
    :country
)
on conflict (customer_number) do nothing
returning customer_json(customer) as body;

-- name: find_customer_by_number^
select
    c.id
from customer as c
where c.customer_number = :customer_number;

-- name: update_customer^
update customer
set
    name = case when :set_name then :name else name end,
    type = case when :set_type then cast(:type as customer_type) else type end,
    status = case when :set_status then cast(:status as customer_status) else status end,
    chain_id = case when :set_chain_id then cast(:chain_id as uuid) else chain_id end,
    owner = case when :set_owner then :owner else owner end,
    street = case when :set_street then :street else street end,
    postal_code = case when :set_postal_code then :postal_code else postal_code end,
    city = case when :set_city then :city else city end,
    country = case when :set_country then :country else country end
where id = :id
returning customer_json(customer) as body;

-- name: archive_customer!
update customer
set
    status = 'ARCHIVED'
where id = :id
  and status <> 'ARCHIVED';
