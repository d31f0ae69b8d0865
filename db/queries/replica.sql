-- name: wal_insert_position^
-- After a commit on the primary: a WAL position at or past the commit record (the read-your-writes
-- marker, see db/pool.py).
select
    pg_current_wal_insert_lsn()::text as lsn;

-- name: replica_has_replayed^
-- On the replica: whether it has replayed the WAL up to the caller's marker (false on a server
-- that is not in recovery).
select
    coalesce(pg_last_wal_replay_lsn() >= cast(:lsn as pg_lsn), false) as caught_up;
