-- name: erasure_record^
-- The record of an earlier erasure of the contact, if any.
select
    erasure_json(e) as body
from erasure_log as e
where e.contact_id = :contact_id;

-- name: erase_contact^
-- The erasure itself (migration 0063, crm_erase_contact): null when nothing of the contact exists.
select
    crm_erase_contact(cast(:contact_id as uuid)) as body;
