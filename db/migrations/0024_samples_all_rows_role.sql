-- Requests that may see every row run as crm_api_all (0006_rls_all_rows_role): plain `true`
-- policies OR-ed with the scoped ones let the planner drop the row-level-security qualifier on
-- the sample tables too (no per-row customer lookup for sales staff). Chain managers and the
-- fulfilment partner keep running as crm_api under the scoped policies of 0020.
-- depends: 0023_sample_quota_defaults 0006_rls_all_rows_role
set lock_timeout = '5s';
set statement_timeout = '60s';

create policy sample_request_all_rows on sample_request to crm_api_all using (true) with check (true);
create policy sample_item_all_rows on sample_item to crm_api_all using (true) with check (true);
create policy sample_request_history_all_rows on sample_request_history to crm_api_all
    using (true) with check (true);
