-- Expand: contact.email_address (citext) beside contact.email (text).
--
-- Why: contacts are matched by their e-mail address (the duplicate check when a rep adds a
-- contact, erasure requests that arrive by e-mail), and "Anna.Koch@..." must match
-- "anna.koch@...". citext compares case-insensitively wherever it is used, so no query can forget
-- a lower(). `alter table contact alter column email type citext` would rewrite the table under
-- an ACCESS EXCLUSIVE lock, so the column moves the zero-downtime way (docs/deploy.md):
--
--   0061 expand      new column, the sync trigger, the flags               (this file)
--   0062 backfill    existing rows, in batches                             (next file)
--   flag contact_email_dual_write   the release writes email_address; the trigger keeps email
--   flag contact_email_read         the release reads email_address (contact_json_v2)
--   contract         drop the trigger and contact.email (db/pending/, a later release)
--
-- The sync trigger keeps both columns equal whichever one a writer sets, so the previous release
-- (which only knows email) and this one (either column, by flag) can run side by side at every
-- step. Columns are compared as text: citext equality ignores case, and a change of case only must
-- still be copied.
-- depends: 0060_feature_flags
set lock_timeout = '5s';
set statement_timeout = '60s';

create extension if not exists citext;

alter table contact add column email_address citext;

create function crm_contact_email_sync() returns trigger
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

create trigger contact_email_sync before insert or update on contact
    for each row execute function crm_contact_email_sync();

-- The representation read from the new column: what the release reads once contact_email_read
-- is on. The contract step makes contact_json the same; a later cleanup drops this one.
create function contact_json_v2(c contact) returns jsonb
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

select set_config('crm.scope', 'all', true);

insert into feature_flag (
    key,
    description
)
values
    (
        'contact_email_dual_write',
        'Contacts: the API writes contact.email_address (citext); the sync trigger of migration 0061 '
        || 'keeps contact.email current for the previous release. Step 3 of docs/deploy.md.'
    ),
    (
        'contact_email_read',
        'Contacts: the API reads contact.email_address (contact_json_v2) instead of contact.email. '
        || 'Step 4 of docs/deploy.md.'
    )
on conflict (key) do nothing;
