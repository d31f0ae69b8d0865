-- name: get_idempotency_key^
select
    request_hash,
    status,
    body,
    headers
from idempotency_key
where principal = :principal
  and operation = :operation
  and key = :key
  and created_at > now() - interval '24 hours';

-- name: put_idempotency_key!
insert into idempotency_key (
    principal,
    operation,
    key,
    request_hash,
    status,
    body,
    headers
)
values (
    :principal,
    :operation,
    :key,
    :request_hash,
    :status,
    cast(:body as jsonb),
    cast(:headers as jsonb)
)
on conflict (principal, operation, key) do update
set
    request_hash = excluded.request_hash,
    status = excluded.status,
    body = excluded.body,
    headers = excluded.headers,
    created_at = excluded.created_at
where idempotency_key.created_at <= now() - interval '24 hours';

-- name: purge_idempotency_keys!
delete from idempotency_key
where created_at < now() - interval '48 hours';
