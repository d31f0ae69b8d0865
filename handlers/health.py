"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

from crm.errors import ServiceUnavailable
from db.migrate import migration_ids
from db.pool import pool, queries


async def live():
    return {"status": "UP", "checks": {}}


async def ready():
    try:
        async with pool().connection(timeout=2) as conn:
            applied = {row["migration_id"] async for row in queries.applied_migrations(conn)}
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        raise ServiceUnavailable(f"The database is not reachable ({type(exc).__name__}).") from None
    missing = [m for m in migration_ids() if m not in applied]
    if missing:
        raise ServiceUnavailable(f"{len(missing)} migration(s) are not applied yet.", pending=missing)
    return {"status": "UP", "checks": {"database": "UP", "migrations": "UP"}}
