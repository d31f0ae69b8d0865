-- Contract: contact.email goes; contact.email_address (citext) is the e-mail address from now on.
--
-- Ships in the release after the one that introduced the flags contact_email_dual_write and
-- contact_email_read, once both have been on everywhere for longer than the workers' flag cache
-- (2 s): from then on no running code names contact.email. That release (with its flags on) is
-- the N-1 this step has to keep working, and it does: its writes name email_address only and its
-- reads use contact_json_v2. The release before it (which only knew contact.email) stops working
-- here; it must no longer be deployed or be a rollback target.
--
-- Consumers of contact.* events see the change too: the payload is the row, so `email` leaves it
-- (it carried `email_address` since the expand step).
-- depends: 0062_contact_email_address_backfill
set lock_timeout = '5s';
set statement_timeout = '60s';

select set_config('crm.scope', 'all', true);

-- Refuse unless the release before has been switched over, and the two columns agree.
do $$
begin
    if (
        select count(*)
        from feature_flag as f
        where f.key in ('contact_email_dual_write', 'contact_email_read')
          and f.enabled
    ) <> 2 then
        raise exception 'contract refused: the flags contact_email_dual_write and contact_email_read must both be on'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if exists (
        select 1
        from contact as c
        where c.email_address::text is distinct from c.email
    ) then
        raise exception 'contract refused: contact.email and contact.email_address differ (run the backfill 0062 again)'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
end
$$;

drop trigger contact_email_sync on contact;

-- squawk-ignore ban-drop-function
drop function crm_contact_email_sync();

-- contact_json reads the new column too (callers that still use it keep working); the cleanup
-- release that drops contact_json_v2 switches its callers back to this name first.
create or replace function contact_json(c contact) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', c.id,
        'customer_id', c.customer_id,
        'first_name', c.first_name,
        'last_name', c.last_name,
        'job_role', c.job_role,
        'email', c.email_address::text,
        'phone', c.phone,
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
$$;

-- squawk-ignore ban-drop-column
alter table contact drop column email;
