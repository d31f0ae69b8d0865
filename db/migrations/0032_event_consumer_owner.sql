-- Consumer checkpoints belong to the client that created them: an integration sees and moves only
-- its own (row-level security by owner, as webhook subscriptions), admins every checkpoint.
-- Existing checkpoints go to whoever last moved them.
-- depends: 0031_events_indexes
set lock_timeout = '5s';
set statement_timeout = '60s';

alter table event_consumer add column owner text;

update event_consumer
set owner = updated_by
where owner is null;

alter table event_consumer enable row level security;
alter table event_consumer force row level security;
create policy event_consumer_owner on event_consumer
    using (crm_scope_all() or owner = current_setting('crm.sub', true))
    with check (crm_scope_all() or owner = current_setting('crm.sub', true));
