-- Feature flags: switches that the code of a release reads at run time, so that a behaviour (the
-- dual-write and the read-switch of a schema change, see docs/deploy.md) is turned on and off
-- without a deploy. One row per flag. Flags are created by the migration of the change they gate
-- (the code that reads a flag ships with it) and removed by a later one; the API only reads and
-- switches them (admins). Every switch emits feature_flag.updated into the outbox.
-- Workers cache the flags for a couple of seconds (crm/feature_flags.py).
-- depends: 0030_events_relay
set lock_timeout = '5s';
set statement_timeout = '60s';

create table feature_flag (
    key text primary key,
    description text not null,
    enabled boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    updated_by text,
    version bigint not null default 1,
    constraint feature_flag_key_format check (key ~ '^[a-z][a-z0-9_]{2,62}$'),
    constraint feature_flag_description_length check (char_length(description) between 1 and 1000)
);

create trigger feature_flag_touch before update on feature_flag
    for each row execute function crm_touch();

create function feature_flag_json(f feature_flag) returns jsonb
language sql stable
as $$
    select jsonb_build_object(
        'key', f.key,
        'description', f.description,
        'enabled', f.enabled,
        'created_at', crm_ts(f.created_at),
        'updated_at', crm_ts(f.updated_at),
        'updated_by', f.updated_by,
        'etag', '"' || md5('feature_flag:' || f.key || ':' || f.version::text) || '"'
    )
$$;

-- A switch is an event: integrations and the audit trail see who turned what on, and when.
create function crm_feature_flag_event() returns trigger
language plpgsql
as $$
begin
    insert into outbox (aggregatetype, aggregateid, type, payload, correlation_id, actor)
    values (
        'feature_flag',
        new.key,
        'feature_flag.updated',
        jsonb_build_object(
            'key', new.key,
            'enabled', new.enabled,
            'previous_enabled', old.enabled,
            'updated_at', crm_ts(new.updated_at),
            'updated_by', new.updated_by
        ),
        nullif(current_setting('crm.correlation_id', true), ''),
        nullif(current_setting('crm.sub', true), '')
    );
    return null;
end
$$;

create trigger feature_flag_events after update on feature_flag
    for each row when (old.enabled is distinct from new.enabled)
    execute function crm_feature_flag_event();

-- Every caller (and the workers' flag cache, which reads without claims) may read the flags;
-- only the unrestricted scope may change them: admins through the API (which has no insert or
-- delete privilege), migrations with crm.scope = 'all' (flags come and go with migrations).
alter table feature_flag enable row level security;
alter table feature_flag force row level security;
create policy feature_flag_read on feature_flag
    for select
    using (true);
create policy feature_flag_change on feature_flag
    for all
    using (crm_scope_all())
    with check (crm_scope_all());

grant select, update on feature_flag to crm_api;
