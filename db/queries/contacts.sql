-- name: find_customer^
select
    c.id
from customer as c
where c.id = :customer_id;

-- name: list_contacts
-- Keyset page ordered by (created_at, id). read_new: the flag contact_email_read (docs/deploy.md).
select
    case when cast(:read_new as boolean) then contact_json_v2(c) else contact_json(c) end as body,
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
    case when cast(:read_new as boolean) then contact_json_v2(c) else contact_json(c) end as body
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
returning case when cast(:read_new as boolean) then contact_json_v2(contact) else contact_json(contact) end as body;

-- name: update_contact^
update contact
set
    first_name = case when :set_first_name then :first_name else first_name end,
    last_name = case when :set_last_name then :last_name else last_name end,
    job_role = case when :set_job_role then cast(:job_role as contact_role) else job_role end,
    email = case when :set_email then :email else email end,
    phone = case when :set_phone then :phone else phone end
where id = :id
returning case when cast(:read_new as boolean) then contact_json_v2(contact) else contact_json(contact) end as body;

-- name: insert_contact_v2^
-- With the flag contact_email_dual_write: the address goes into email_address (citext); the sync
-- trigger of migration 0061 copies it into email for the previous release. Names no column the
-- contract step drops.
insert into contact (
    customer_id,
    first_name,
    last_name,
    job_role,
    email_address,
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
returning case when cast(:read_new as boolean) then contact_json_v2(contact) else contact_json(contact) end as body;

-- name: update_contact_v2^
-- With the flag contact_email_dual_write (see insert_contact_v2).
update contact
set
    first_name = case when :set_first_name then :first_name else first_name end,
    last_name = case when :set_last_name then :last_name else last_name end,
    job_role = case when :set_job_role then cast(:job_role as contact_role) else job_role end,
    email_address = case when :set_email then cast(:email as citext) else email_address end,
    phone = case when :set_phone then :phone else phone end
where id = :id
returning case when cast(:read_new as boolean) then contact_json_v2(contact) else contact_json(contact) end as body;

-- name: delete_contact!
delete from contact
where id = :id;
