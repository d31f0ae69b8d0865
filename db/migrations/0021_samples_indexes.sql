-- transactional: false
-- depends: 0020_samples_tables
-- Indexes of the product catalogue and sample requests, built concurrently.
set lock_timeout = '5s';
set statement_timeout = '0';

create index concurrently if not exists product_category_idx on product (category, sku);
create index concurrently if not exists product_name_trgm_idx on product using gin (name gin_trgm_ops);
create index concurrently if not exists sample_request_created_idx on sample_request (created_at, id);
create index concurrently if not exists sample_request_customer_idx on sample_request (customer_id, created_at, id);
create index concurrently if not exists sample_request_chain_idx on sample_request (chain_id, created_at, id);
create index concurrently if not exists sample_request_status_idx on sample_request (status, created_at, id);
create index concurrently if not exists sample_request_requested_by_idx
    on sample_request (requested_by, created_at, id);
create index concurrently if not exists sample_request_customer_quota_idx
    on sample_request (customer_id, submitted_at)
    where submitted_at is not null;
create index concurrently if not exists sample_request_chain_quota_idx
    on sample_request (chain_id, submitted_at)
    where submitted_at is not null;
create unique index concurrently if not exists sample_request_idempotency_idx
    on sample_request (requested_by, idempotency_key)
    where idempotency_key is not null;
create index concurrently if not exists sample_item_product_idx on sample_item (product_id);
create index concurrently if not exists sample_request_history_request_idx on sample_request_history (request_id, id);
