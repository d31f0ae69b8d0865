"""Demo data: three restaurant chains with outlets, customers of every type, their head chefs,
the Cook&Fresh product catalogue (47 products), a sales cycle of calls and visits for the first 60
customers, and 15 custom fields (8 hot) with values.

Deterministic and idempotent: running it again adds nothing; a larger ``customers`` count adds
the missing ones (``make bench`` seeds 100,000 this way).
"""

from __future__ import annotations

from pathlib import Path

import aiosql
import psycopg
from psycopg.rows import dict_row

queries = aiosql.from_path(Path(__file__).parent / "queries" / "seed.sql", "psycopg", mandatory_parameters=False)


def seed(dsn: str, customers: int = 200) -> dict[str, int]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn, conn.transaction():
        conn.execute("select set_config('crm.scope', 'all', true), set_config('crm.sub', 'seed', true)")
        queries.seed_chains(conn)
        queries.seed_customers(conn, customers=customers)
        queries.seed_contacts(conn)
        queries.seed_products(conn)
        queries.seed_activities(conn)
        counts = dict(queries.seed_counts(conn))
    seed_fields(dsn)
    return counts


def seed_fields(dsn: str) -> None:
    """Field-Bridge demo data: 15 field definitions (8 hot) and values for the demo customers.
    The hot fields are made hot first (nothing to backfill yet), so the triggers project the
    values as they are written, in one statement."""
    import asyncio

    from db.field_jobs import run_jobs

    with psycopg.connect(dsn, row_factory=dict_row) as conn, conn.transaction():
        conn.execute("select set_config('crm.scope', 'all', true), set_config('crm.sub', 'seed', true)")
        queries.seed_field_definitions(conn)
        queries.seed_field_jobs(conn)
    asyncio.run(run_jobs(dsn))
    with psycopg.connect(dsn, row_factory=dict_row) as conn, conn.transaction():
        conn.execute("select set_config('crm.scope', 'all', true), set_config('crm.sub', 'seed', true)")
        queries.seed_field_values(conn)
