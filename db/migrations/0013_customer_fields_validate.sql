-- Validate the check added NOT VALID in 0010 (SHARE UPDATE EXCLUSIVE: reads and writes go on).
-- depends: 0012_field_bridge_indexes
set lock_timeout = '5s';
set statement_timeout = '0';

alter table customer validate constraint customer_fields_object;
