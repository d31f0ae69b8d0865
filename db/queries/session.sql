-- name: set_claims!
select
    set_config('role', :role, true),
    set_config('crm.scope', :scope, true),
    set_config('crm.chain_ids', :chain_ids, true),
    set_config('crm.sub', :sub, true),
    set_config('crm.correlation_id', :correlation_id, true);
