"""The connection pool and the request transaction.

:func:`transaction` is the only way handlers' database code reaches PostgreSQL: it takes a pooled
connection, opens a transaction and hands the caller's claims to the database as
transaction-local settings (``crm.scope``, ``crm.chain_ids``, ``crm.sub``,
``crm.correlation_id``) which the row-level-security policies and the outbox trigger read.
Nothing set means nothing visible, so a path that forgets the claims cannot leak rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosql
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from crm.auth import Principal
from crm.context import correlation_id

queries = aiosql.from_path(Path(__file__).parent / "queries", "apsycopg", mandatory_parameters=False)

_pool: AsyncConnectionPool | None = None


async def _configure(conn: AsyncConnection) -> None:
    conn.row_factory = dict_row
    await conn.set_autocommit(True)


async def open_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> AsyncConnectionPool:
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configure,
            timeout=10,
            kwargs={"application_name": "kundenmanagement"},
        )
        await _pool.open(wait=False)
    return _pool


async def close_pool() -> None:
    global _pool
    if _pool is not None:
        await _pool.close()
        _pool = None


def pool() -> AsyncConnectionPool:
    if _pool is None:
        raise RuntimeError("the database pool is not open")
    return _pool


@asynccontextmanager
async def transaction(principal: Principal) -> AsyncIterator[AsyncConnection]:
    """A transaction carrying ``principal``'s claims; commits on success, rolls back on error."""
    # Pipelined: BEGIN and the claims travel with the first query, one round trip instead of three.
    async with pool().connection() as conn, conn.transaction(), conn.pipeline():
        await queries.set_claims(
            conn,
            role="crm_api_all" if principal.db_scope == "all" else "crm_api",
            scope=principal.db_scope,
            chain_ids=",".join(principal.chain_ids),
            sub=principal.sub,
            correlation_id=correlation_id.get() or "",
        )
        yield conn
