"""Demo data: three restaurant chains with outlets, customers of every type, their head chefs.

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
        return dict(queries.seed_counts(conn))
