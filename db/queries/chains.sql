-- name: list_chains
-- Keyset page ordered by (name, id); fetch limit + 1 to know whether a next page exists.
select
    chain_json(c) as body,
    c.name as sort_name,
    c.id::text as sort_id
from chain as c
where (cast(:q as text) is null or c.name ilike crm_contains_pattern(:q))
  and (cast(:after_name as text) is null or (c.name, c.id) > (:after_name, cast(:after_id as uuid)))
order by c.name, c.id
limit :limit;

-- name: get_chain^
select
    chain_json(c) as body
from chain as c
where c.id = :id;

-- name: lock_chain^
select
    crm_etag(c.id, c.version) as etag,
    (select count(*) from customer as cu where cu.chain_id = c.id) as customer_count
from chain as c
where c.id = :id
for update;

-- name: insert_chain^
insert into chain (
    name,
    description
)
values (
    :name,
    :description
)
on conflict ((lower(name))) do nothing
returning chain_json(chain) as body;

-- name: find_chain_by_name^
select
    c.id
from chain as c
where lower(c.name) = lower(:name);

-- name: update_chain^
update chain
set
    name = case when :set_name then :name else name end,
    description = case when :set_description then :description else description end
where id = :id
returning chain_json(chain) as body;

-- name: delete_chain!
delete from chain
where id = :id;
