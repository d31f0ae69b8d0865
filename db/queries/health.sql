-- name: applied_migrations
select
    migration_id
from _yoyo_migration;
