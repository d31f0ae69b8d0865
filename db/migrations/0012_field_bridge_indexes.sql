-- transactional: false
-- depends: 0011_customer_hot_backfill
-- Indexes of the hot projection's core columns (hot fields get theirs from the job runner when
-- they become hot) and of the job table.
set lock_timeout = '5s';
set statement_timeout = '0';

create index concurrently if not exists customer_hot_name_idx on customer_hot (name, customer_id);
create index concurrently if not exists customer_hot_name_trgm_idx on customer_hot using gin (name gin_trgm_ops);
create index concurrently if not exists customer_hot_number_idx on customer_hot (customer_number, customer_id);
create index concurrently if not exists customer_hot_chain_idx on customer_hot (chain_id, customer_id);
create index concurrently if not exists customer_hot_owner_idx on customer_hot (owner, customer_id);
create index concurrently if not exists customer_hot_city_idx on customer_hot (city, customer_id);
create index concurrently if not exists customer_hot_postal_code_idx on customer_hot (postal_code, customer_id);
create index concurrently if not exists customer_hot_created_idx on customer_hot (created_at, customer_id);
create index concurrently if not exists customer_hot_updated_idx on customer_hot (updated_at, customer_id);
create index concurrently if not exists field_job_field_idx on field_job (field_key, id);
create index concurrently if not exists field_job_open_idx on field_job (id) where status in ('PENDING', 'RUNNING', 'FAILED');
create index concurrently if not exists field_definition_archived_idx on field_definition (key) where archived_at is not null;
