-- transactional: false
-- depends: 0061_contact_email_address
-- Backfill of 0061: contact.email_address for every contact written before the sync trigger
-- existed. Batches of 5000 contacts in id order, each committed on its own; only rows whose two
-- columns differ are written, so a rerun after a crash (or a second run) repeats no work and
-- changes nothing. A row a writer changes meanwhile is re-read under its row lock (READ COMMITTED
-- re-evaluation), so the copy is never older than that write.
--
-- The copy does not change the contact's representation, so it should not bump the contact's
-- version (the ETag clients hold) or emit a contact.updated event per row: the batches run with
-- session_replication_role = replica, which skips ordinary triggers. That needs a role allowed to
-- set it (superuser, a cloud provider's admin role, or GRANT SET ON PARAMETER on PostgreSQL 15+);
-- without it the backfill still runs, with versions bumped and one event per contact.
set lock_timeout = '5s';
set statement_timeout = '0';

set crm.scope = 'all';

do $$
declare
    ids uuid[];
    last_id uuid;
begin
    begin
        perform set_config('session_replication_role', 'replica', false);
    exception when insufficient_privilege then
        raise notice 'session_replication_role not permitted: the backfill bumps contact versions';
    end;
    loop
        select array_agg(b.id order by b.id)
        into ids
        from (
            select c.id
            from contact as c
            where last_id is null or c.id > last_id
            order by c.id
            limit 5000
        ) as b;
        exit when ids is null;
        update contact as c
        set email_address = c.email
        where c.id = any (ids)
          and c.email_address::text is distinct from c.email;
        last_id := ids[array_upper(ids, 1)];
        commit;
    end loop;
end
$$;

reset session_replication_role;

reset crm.scope;
