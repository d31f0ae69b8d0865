-- name: feature_flag_states
-- What the workers' flag cache reads (crm/feature_flags.py).
select
    f.key,
    f.enabled
from feature_flag as f;

-- name: list_feature_flags
-- Keyset page ordered by key.
select
    feature_flag_json(f) as body,
    f.key as sort_key
from feature_flag as f
where cast(:after_key as text) is null or f.key > :after_key
order by f.key
limit :limit;

-- name: get_feature_flag^
select
    feature_flag_json(f) as body
from feature_flag as f
where f.key = :key;

-- name: lock_feature_flag^
select
    feature_flag_json(f) ->> 'etag' as etag
from feature_flag as f
where f.key = :key
for update;

-- name: update_feature_flag^
update feature_flag
set
    enabled = case when :set_enabled then cast(:enabled as boolean) else enabled end,
    updated_by = :updated_by
where key = :key
returning feature_flag_json(feature_flag) as body;
