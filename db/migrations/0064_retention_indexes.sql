-- transactional: false
-- depends: 0063_retention_erasure
-- Indexes retention and erasure walk: archived rows by purge date and by customer, sample requests
-- by their last change (the 5-year class), built concurrently.
set lock_timeout = '5s';
set statement_timeout = '0';

create index concurrently if not exists record_purge_after_idx on archive.record (purge_after, id);
create index concurrently if not exists record_customer_idx on archive.record (customer_id)
    where customer_id is not null;
create index concurrently if not exists sample_request_updated_idx on sample_request (updated_at, id);
