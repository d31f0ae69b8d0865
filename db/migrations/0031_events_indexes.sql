-- transactional: false
-- depends: 0030_events_relay
-- Indexes of the feed and the webhook deliveries, built concurrently.
set lock_timeout = '5s';
set statement_timeout = '0';

create unique index concurrently if not exists outbox_position_idx on outbox (position);
create index concurrently if not exists webhook_subscription_owner_idx on webhook_subscription (owner, created_at, id);
create index concurrently if not exists webhook_delivery_due_idx
    on webhook_delivery (subscription_id, next_attempt_at, event_position)
    where status = 'PENDING';
create index concurrently if not exists webhook_delivery_aggregate_idx
    on webhook_delivery (subscription_id, aggregatetype, aggregateid, event_position)
    where status = 'PENDING';
create index concurrently if not exists webhook_delivery_list_idx
    on webhook_delivery (subscription_id, event_position, id);
create index concurrently if not exists webhook_delivery_created_idx on webhook_delivery (created_at);
