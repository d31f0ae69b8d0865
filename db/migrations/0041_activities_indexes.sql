-- transactional: false
-- depends: 0040_activities_tables
-- Indexes of activities (lists, the due list, the customer facts, the timeline), of the customer
-- change log, and of the facts in the search projection, built concurrently.
set lock_timeout = '5s';
set statement_timeout = '0';

-- lists, newest first; per customer also the timeline
create index concurrently if not exists activity_at_idx on activity (activity_at, id);
create index concurrently if not exists activity_customer_idx on activity (customer_id, activity_at, id);
create index concurrently if not exists activity_owner_idx on activity (owner, activity_at, id);
-- "what is due": open follow-ups by date, for everyone and per owner
create index concurrently if not exists activity_follow_up_idx
    on activity (follow_up_at, id)
    where follow_up_at is not null and status <> 'CANCELLED';
create index concurrently if not exists activity_owner_follow_up_idx
    on activity (owner, follow_up_at, id)
    where follow_up_at is not null and status <> 'CANCELLED';
-- the customer facts: last done activity and the 90-day count, next follow-up, next planned one
create index concurrently if not exists activity_customer_done_idx
    on activity (customer_id, occurred_at)
    where status = 'DONE';
create index concurrently if not exists activity_customer_follow_up_idx
    on activity (customer_id, follow_up_at)
    where follow_up_at is not null and status <> 'CANCELLED';
create index concurrently if not exists activity_customer_planned_idx
    on activity (customer_id, planned_at)
    where status = 'PLANNED';
create index concurrently if not exists activity_sample_request_idx
    on activity (sample_request_id)
    where sample_request_id is not null;
create unique index concurrently if not exists activity_idempotency_idx
    on activity (created_by, idempotency_key)
    where idempotency_key is not null;
create index concurrently if not exists customer_change_customer_idx on customer_change (customer_id, at, id);
create index concurrently if not exists customer_hot_last_activity_idx on customer_hot (last_activity_at, customer_id);
create index concurrently if not exists customer_hot_next_follow_up_idx on customer_hot (next_follow_up_at, customer_id);
