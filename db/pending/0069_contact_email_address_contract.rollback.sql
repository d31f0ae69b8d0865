-- Rollback of the contract step: contact.email comes back, filled from email_address, with the sync
-- trigger and the old contact_json, so the release before the flags could run again. The copy is
-- one statement here (the rollback is one transaction); on a large table run it in batches as
-- 0062 does before deploying that release.
set lock_timeout = '5s';
set statement_timeout = '0';

select set_config('crm.scope', 'all', true);

alter table contact add column email text;

create or replace function crm_contact_email_sync() returns trigger
language plpgsql
as $$
begin
    if tg_op = 'INSERT' then
        if new.email_address is null then
            new.email_address := new.email;
        elsif new.email is null then
            new.email := new.email_address::text;
        end if;
    elsif new.email is distinct from old.email
        and new.email_address::text is not distinct from old.email_address::text then
        new.email_address := new.email;
    elsif new.email_address::text is distinct from old.email_address::text
        and new.email is not distinct from old.email then
        new.email := new.email_address::text;
    end if;
    return new;
end
$$;

-- The copy changes no representation: no version bump, no events (see 0062).
select set_config('session_replication_role', 'replica', true);

update contact
set email = email_address::text
where email_address is not null;

select set_config('session_replication_role', 'origin', true);

create trigger contact_email_sync before insert or update on contact
    for each row execute function crm_contact_email_sync();

create or replace function contact_json(c contact) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'id', c.id,
        'customer_id', c.customer_id,
        'first_name', c.first_name,
        'last_name', c.last_name,
        'job_role', c.job_role,
        'email', c.email,
        'phone', c.phone,
        'created_at', crm_ts(c.created_at),
        'updated_at', crm_ts(c.updated_at),
        'etag', crm_etag(c.id, c.version)
    )
$$;
