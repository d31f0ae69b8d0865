-- transactional: false
-- depends: 0002_core_tables
-- Indexes are built concurrently so that the same file is safe on a live table.
set lock_timeout = '5s';
set statement_timeout = '0';

create index concurrently if not exists customer_name_id_idx on customer (name, id);
create index concurrently if not exists customer_chain_idx on customer (chain_id, name, id);
create index concurrently if not exists customer_owner_idx on customer (owner, name, id);
create index concurrently if not exists customer_updated_idx on customer (updated_at, id);
create index concurrently if not exists customer_name_trgm_idx on customer using gin (name gin_trgm_ops);
create index concurrently if not exists chain_name_id_idx on chain (name, id);
create unique index concurrently if not exists chain_name_unique_idx on chain (lower(name));
create index concurrently if not exists contact_customer_idx on contact (customer_id, created_at, id);
create index concurrently if not exists outbox_aggregate_idx on outbox (aggregatetype, aggregateid, position);
create index concurrently if not exists idempotency_key_created_idx on idempotency_key (created_at);
