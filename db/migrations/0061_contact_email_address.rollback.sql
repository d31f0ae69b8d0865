-- Rollback of the expand step: the previous release never read email_address, so dropping it
-- (with its trigger, function and flags) is safe while that release runs. The citext extension
-- stays installed (other objects may use it; it costs nothing).
set lock_timeout = '5s';
set statement_timeout = '60s';

select set_config('crm.scope', 'all', true);

delete from feature_flag
where key in ('contact_email_dual_write', 'contact_email_read');

-- squawk-ignore ban-drop-function
drop function if exists contact_json_v2(contact);

drop trigger if exists contact_email_sync on contact;

-- squawk-ignore ban-drop-function
drop function if exists crm_contact_email_sync();

-- squawk-ignore ban-drop-column
alter table contact drop column if exists email_address;
