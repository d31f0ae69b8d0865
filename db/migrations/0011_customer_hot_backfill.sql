-- transactional: false
-- depends: 0010_field_bridge
-- Backfill: one customer_hot row for every customer that existed before 0010's triggers.
-- Batches of 5000 customers in id order (crm_hot_fill_batch), each committed on its own. A
-- projection row is only ever replaced by one of the same or a newer customer version, so a
-- concurrent customer write is never undone, and a rerun after a crash repeats work only.
set lock_timeout = '5s';
set statement_timeout = '0';

set crm.scope = 'all';

do $$
declare
    last_id uuid;
begin
    loop
        last_id := crm_hot_fill_batch(last_id, 5000);
        exit when last_id is null;
        commit;
    end loop;
end
$$;

reset crm.scope;
