-- Batches of making a field hot (crm_hot_backfill_batch) and of a full rebuild
-- (crm_hot_fill_batch) share-lock their customers, in id order, before they touch the
-- projection rows.
--
-- A customer write locks the customer row and then its projection row. A batch wrote the
-- projection rows of its customers without holding the customer rows, in the order the upsert
-- happened to read them; a transaction writing several customers (in id order) could then wait
-- for a batch that waited for it: deadlock (seen under tests/test_hot_projection.py's concurrent
-- writers). Holding the batch's customer rows first, taken in id order like every multi-customer
-- write, the batch never waits for a writer after that, and a writer waits at most one batch (a
-- few hundred milliseconds at 5,000 customers). The bodies are those of 0010 otherwise.
-- depends: 0013_customer_fields_validate
set lock_timeout = '5s';
set statement_timeout = '60s';

create or replace function crm_hot_backfill_batch(p_key text, p_after uuid, p_limit bigint)
returns table (last_id uuid, row_count bigint)
language plpgsql
as $$
declare
    d field_definition;
    ids uuid[];
begin
    if not crm_scope_all() then
        raise exception 'crm_hot_backfill_batch needs crm.scope = all';
    end if;
    select * into strict d from field_definition where key = p_key;
    select array_agg(s.id order by s.id)
    into ids
    from (
        select c.id
        from customer as c
        where p_after is null or c.id > p_after
        order by c.id
        limit p_limit
        for share
    ) as s;
    if ids is null then
        return query select p_after, 0::bigint;
        return;
    end if;
    execute crm_hot_upsert_sql(
        '(select * from customer as m where m.id = any ($1) and not exists ('
        || 'select 1 from customer_hot as x where x.customer_id = m.id and x.source_version >= m.version))'
    ) using ids;
    execute format(
        'update customer_hot as h set %1$I = %2$s, projected_at = clock_timestamp() '
        || 'from customer as c where c.id = any ($1) and h.customer_id = c.id '
        || 'and h.source_version = c.version and h.%1$I is distinct from %2$s',
        crm_hot_column(p_key),
        crm_hot_value_expr(d.data_type, 'c.fields -> ' || quote_literal(p_key))
    ) using ids;
    return query select ids[cardinality(ids)], cardinality(ids)::bigint;
end
$$;

-- One batch of a full rebuild: the whole projection rows of the next p_limit customers after
-- p_after. Returns the last id, NULL when there are no more customers.
create or replace function crm_hot_fill_batch(p_after uuid, p_limit bigint) returns uuid
language plpgsql
as $$
declare
    ids uuid[];
begin
    if not crm_scope_all() then
        raise exception 'crm_hot_fill_batch needs crm.scope = all';
    end if;
    select array_agg(s.id order by s.id)
    into ids
    from (
        select c.id
        from customer as c
        where p_after is null or c.id > p_after
        order by c.id
        limit p_limit
        for share
    ) as s;
    if ids is null then
        return null;
    end if;
    execute crm_hot_upsert_sql('(select * from customer as m where m.id = any ($1))') using ids;
    return ids[cardinality(ids)];
end
$$;
