-- The role API requests run as. Superusers and table owners can bypass row-level security, so
-- every request transaction switches to this role (set_config('role', 'crm_api', true)):
-- no BYPASSRLS, no ownership, only the privileges granted here.
-- depends: 0004_representations
set lock_timeout = '5s';
set statement_timeout = '60s';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'crm_api') then
        create role crm_api nologin nosuperuser nobypassrls;
    end if;
end
$$;

grant crm_api to current_user;
grant usage on schema public to crm_api;
grant select, insert, update, delete on chain, customer, contact, idempotency_key to crm_api;
grant insert on outbox to crm_api;
grant usage on all sequences in schema public to crm_api;
