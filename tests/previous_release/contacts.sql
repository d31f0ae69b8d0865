-- The previous release's contact SQL: db/queries/contacts.sql as of commit cc33c98 (the last
-- commit before the contact e-mail change), unchanged. tests/test_zero_downtime.py runs it
-- against the database at every step of the change, as the still-deployed release would.
-- Do not edit: it stands for code that is already running in production.

-- name: find_customer^
select
    c.id
from customer as c
where c.id = :customer_id;

-- name: list_contacts
-- Keyset page ordered by (created_at, id).
select
    contact_json(c) as body,
    crm_ts(c.created_at) as sort_created,
    c.id::text as sort_id
from contact as c
where c.customer_id = :customer_id
  and (
      cast(:after_created as timestamptz) is null
      or (c.created_at, c.id) > (cast(:after_created as timestamptz), cast(:after_id as uuid))
  )
order by c.created_at, c.id
limit :limit;

-- name: get_contact^
select
    contact_json(c) as body
from contact as c
where c.id = :id;

-- name: lock_contact^
select
    crm_etag(c.id, c.version) as etag
from contact as c
where c.id = :id
for update;

-- name: insert_contact^
insert into contact (
    customer_id,
    first_name,
    last_name,
    job_role,
    email,
    phone
)
values (
    :customer_id,
    :first_name,
    :last_name,
    :job_role,
    :email,
    :phone
)
returning contact_json(contact) as body;

-- name: update_contact^
update contact
set
    first_name = case when :set_first_name then :first_name else first_name end,
    last_name = case when :set_last_name then :last_name else last_name end,
    job_role = case when :set_job_role then cast(:job_role as contact_role) else job_role end,
    email = case when :set_email then :email else email end,
    phone = case when :set_phone then :phone else phone end
where id = :id
returning contact_json(contact) as body;

-- name: delete_contact!
delete from contact
where id = :id;

-- name: set_claims!
-- db/queries/session.sql as of cc33c98.
select
    set_config('role', :role, true),
    set_config('crm.scope', :scope, true),
    set_config('crm.chain_ids', :chain_ids, true),
    set_config('crm.sub', :sub, true),
    set_config('crm.correlation_id', :correlation_id, true);
