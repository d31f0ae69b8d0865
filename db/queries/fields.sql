-- Field-Bridge: field definitions, customer field values, field jobs (make hot / cold, archive).
-- The dynamic search SQL is built in db/search.py; the projection DDL and batches are functions
-- of migration 0010 (crm_hot_*).

-- name: list_field_definitions
-- Keyset page ordered by key; archived definitions are left out.
select
    field_definition_json(d) as body,
    d.key as sort_key
from field_definition as d
where d.archived_at is null
  and (cast(:after_key as text) is null or d.key > :after_key)
order by d.key
limit :limit;

-- name: get_field_definition^
select
    field_definition_json(d) as body
from field_definition as d
where d.key = :key
  and d.archived_at is null;

-- name: find_field_definition^
select
    d.key,
    d.archived_at
from field_definition as d
where d.key = :key;

-- name: lock_field_definition^
select
    d.key,
    d.data_type,
    d.options,
    d.required,
    d.min_value,
    d.max_value,
    d.max_length,
    d.pattern,
    d.hot,
    d.projection,
    crm_field_definition_etag(d.key, d.version) as etag
from field_definition as d
where d.key = :key
  and d.archived_at is null
for update;

-- name: regex_is_valid^
select
    crm_regex_valid(:pattern) as valid;

-- name: insert_field_definition^
insert into field_definition (
    key,
    label,
    description,
    data_type,
    options,
    required,
    min_value,
    max_value,
    max_length,
    pattern,
    hot
)
values (
    :key,
    :label,
    :description,
    cast(:data_type as field_data_type),
    cast(:options as text[]),
    :required,
    cast(:min_value as numeric),
    cast(:max_value as numeric),
    cast(:max_length as bigint),
    :pattern,
    :hot
)
on conflict (key) do nothing
returning field_definition_json(field_definition) as body;

-- name: update_field_definition^
update field_definition
set
    label = case when :set_label then :label else label end,
    description = case when :set_description then :description else description end,
    options = case when :set_options then cast(:options as text[]) else options end,
    required = case when :set_required then :required else required end,
    min_value = case when :set_min_value then cast(:min_value as numeric) else min_value end,
    max_value = case when :set_max_value then cast(:max_value as numeric) else max_value end,
    max_length = case when :set_max_length then cast(:max_length as bigint) else max_length end,
    pattern = case when :set_pattern then :pattern else pattern end,
    hot = case when :set_hot then :hot else hot end,
    -- leaving hot takes the field out of searches at once; the job drops the column later
    projection = case when :set_hot and not :hot then 'NONE' else projection end
where key = :key
returning field_definition_json(field_definition) as body;

-- name: archive_field_definition!
update field_definition
set
    archived_at = now(),
    hot = false,
    projection = 'NONE'
where key = :key;

-- name: check_field_value^
-- Why a value breaks the (stored) definition of :key; NULL when it does not.
select
    crm_field_value_error(d, cast(:value as jsonb)) as message
from field_definition as d
where d.key = :key;

-- name: count_offending_customers^
-- Customers whose stored value of :key breaks its (stored) definition, and active customers
-- without a value of a required field.
select
    count(*) filter (where crm_field_value_error(d, c.fields -> d.key) is not null) as invalid,
    count(*) filter (
        where d.required
          and c.status <> 'ARCHIVED'
          and (c.fields -> d.key) is null
    ) as missing
from customer as c
cross join field_definition as d
where d.key = :key;

-- name: migrate_field_map_options!
-- ENUM / MULTI_ENUM: replace options named in :option_map (old -> new) in every stored value.
update customer as c
set
    fields = jsonb_set(c.fields, array[cast(:key as text)], crm_map_options(c.fields -> :key, cast(:option_map as jsonb))),
    fields_version = c.fields_version + 1
where (c.fields -> :key) is not null
  and crm_map_options(c.fields -> :key, cast(:option_map as jsonb)) is distinct from (c.fields -> :key);

-- name: migrate_field_unset_invalid!
-- Values that break the definition are removed; of a MULTI_ENUM only the invalid options are,
-- and the value is removed when none is left.
update customer as c
set
    fields = case
        when d.data_type = 'MULTI_ENUM' and crm_valid_options(c.fields -> d.key, d.options) is not null
            then jsonb_set(c.fields, array[d.key], crm_valid_options(c.fields -> d.key, d.options))
        else c.fields - d.key
    end,
    fields_version = c.fields_version + 1
from field_definition as d
where d.key = :key
  and crm_field_value_error(d, c.fields -> d.key) is not null;

-- name: migrate_field_replace_invalid!
update customer as c
set
    fields = jsonb_set(c.fields, array[d.key], cast(:value as jsonb)),
    fields_version = c.fields_version + 1
from field_definition as d
where d.key = :key
  and crm_field_value_error(d, c.fields -> d.key) is not null;

-- name: migrate_field_fill_missing!
update customer as c
set
    fields = jsonb_set(c.fields, array[cast(:key as text)], cast(:value as jsonb)),
    fields_version = c.fields_version + 1
where (c.fields -> :key) is null
  and c.status <> 'ARCHIVED';

-- name: get_customer_fields^
select
    customer_fields_json(c) as body
from customer as c
where c.id = :id;

-- name: lock_customer_fields^
select
    crm_fields_etag(c.id, c.fields_version) as etag
from customer as c
where c.id = :id
for update;

-- name: check_field_values
-- One row per problem of a field-values merge patch: unknown or archived keys, values that
-- break their definition, and required fields the customer would be left without.
select
    e.key as field,
    case
        when d.key is null then 'is not a defined field'
        else crm_field_value_error(d, e.value)
    end as message
from jsonb_each(cast(:patch as jsonb)) as e
left join field_definition as d
    on d.key = e.key
    and d.archived_at is null
where d.key is null
   or crm_field_value_error(d, e.value) is not null
union all
select
    d.key as field,
    'is required' as message
from field_definition as d
cross join customer as c
where c.id = :id
  and d.required
  and d.archived_at is null
  and (jsonb_strip_nulls(c.fields || cast(:patch as jsonb)) -> d.key) is null
order by field;

-- name: update_customer_fields^
update customer
set
    fields = jsonb_strip_nulls(fields || cast(:patch as jsonb)),
    fields_version = fields_version + 1
where id = :id
returning customer_fields_json(customer) as body;

-- name: search_field_states
-- The definitions a search names (archived ones are unknown), with the progress of a backfill.
select
    d.key,
    d.data_type,
    d.options,
    d.hot,
    d.projection,
    j.processed,
    j.total
from field_definition as d
left join lateral (
    select
        fj.processed,
        fj.total
    from field_job as fj
    where fj.field_key = d.key
    order by fj.id desc
    limit 1
) as j on true
where d.key = any (cast(:keys as text[]))
  and d.archived_at is null;

-- name: lock_search_projection!
-- Taken before the field states are read: a column change of the job runner (ACCESS
-- EXCLUSIVE) then either finished before, or waits for this transaction.
lock table customer_search in access share mode;

-- --- field jobs ------------------------------------------------------------------------------

-- name: cancel_field_jobs!
update field_job
set
    status = 'CANCELLED',
    finished_at = now()
where field_key = :key
  and status in ('PENDING', 'RUNNING', 'FAILED');

-- name: insert_field_job!
insert into field_job (
    field_key,
    action,
    batch_size
)
values (
    :key,
    cast(:action as field_job_action),
    :batch_size
);

-- name: open_field_jobs
select
    j.id,
    j.field_key,
    j.action,
    j.status,
    j.phase
from field_job as j
where j.status in ('PENDING', 'RUNNING', 'FAILED')
order by j.id;

-- name: try_lock_field^
-- One runner per field at a time (session lock: a crashed runner's connection releases it).
select
    pg_try_advisory_lock(hashtext('crm.field_job'), hashtext(:key)) as locked;

-- name: unlock_field^
select
    pg_advisory_unlock(hashtext('crm.field_job'), hashtext(:key)) as unlocked;

-- name: start_field_job^
update field_job as j
set
    status = 'RUNNING',
    started_at = coalesce(j.started_at, now()),
    heartbeat_at = now(),
    error = null,
    total = coalesce(j.total, (select count(*) from customer))
where j.id = :id
  and j.status in ('PENDING', 'RUNNING', 'FAILED')
returning
    j.id,
    j.field_key,
    j.action,
    j.phase,
    j.last_customer_id,
    j.processed,
    j.total,
    j.batch_size;

-- name: field_job_status^
select
    j.status
from field_job as j
where j.id = :id;

-- name: field_job_progress^
update field_job
set
    phase = :phase,
    last_customer_id = :last_id,
    processed = processed + :row_count,
    heartbeat_at = now()
where id = :id
  and status = 'RUNNING'
returning
    status,
    processed,
    total;

-- name: finish_field_job!
update field_job
set
    status = cast(:status as field_job_status),
    phase = :phase,
    error = :error,
    heartbeat_at = now(),
    finished_at = case when :status in ('DONE', 'CANCELLED') then now() end
where id = :id
  and status in ('PENDING', 'RUNNING', 'FAILED');

-- name: field_for_job^
select
    d.key,
    d.data_type,
    d.hot,
    d.projection,
    d.archived_at
from field_definition as d
where d.key = :key;

-- name: hot_add_column!
select crm_hot_add_column(:key);

-- name: hot_drop_column!
select crm_hot_drop_column(:key);

-- name: hot_backfill_batch^
select
    b.last_id,
    b.row_count
from crm_hot_backfill_batch(:key, cast(:after as uuid), :batch_size) as b;

-- name: hot_index_states
select
    i.relname as name,
    x.indisvalid as valid
from pg_index as x
join pg_class as i on i.oid = x.indexrelid
where x.indrelid = cast('customer_hot' as regclass)
  and i.relname = any (cast(:names as text[]));

-- name: mark_field_hot^
update field_definition
set
    projection = 'HOT'
where key = :key
  and hot
  and archived_at is null
  and projection = 'BACKFILLING'
returning key;

-- name: archive_touch_batch^
-- Archiving changes the representation of every customer holding a value of the field: bump
-- their versions (new ETags, customer.updated events) in batches of customers in id order.
with batch as (
    select
        c.id
    from customer as c
    where cast(:after as uuid) is null or c.id > cast(:after as uuid)
    order by c.id
    limit :batch_size
),
touched as (
    update customer as c
    set
        fields_version = c.fields_version + 1
    from batch as b
    where c.id = b.id
      and (c.fields -> :key) is not null
    returning c.id
)
select
    (select b.id from batch as b order by b.id desc limit 1) as last_id,
    (select count(*) from batch) as row_count,
    (select count(*) from touched) as touched;
