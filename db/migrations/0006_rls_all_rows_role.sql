-- Requests that may see every row (admin, sales manager, sales rep) run as crm_api_all.
-- Its policies are plain `true`, OR-ed with the scoped ones, so the planner folds the whole
-- row-level-security qualifier away and keeps index scans with early LIMIT termination.
-- Under the scoped policy alone the unknowable current_setting() comparison made the planner
-- expect a handful of rows and scan and sort whole tables instead.
-- Chain managers and every other caller keep running as crm_api, with the scoped policies.
-- depends: 0005_api_role
set lock_timeout = '5s';
set statement_timeout = '60s';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'crm_api_all') then
        create role crm_api_all nologin nosuperuser nobypassrls in role crm_api;
    end if;
end
$$;

grant crm_api_all to current_user;

create policy chain_all_rows on chain to crm_api_all using (true) with check (true);
create policy customer_all_rows on customer to crm_api_all using (true) with check (true);
create policy contact_all_rows on contact to crm_api_all using (true) with check (true);
