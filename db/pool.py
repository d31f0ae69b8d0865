"""The connection pool and the request transaction.

:func:`transaction` is the only way handlers' database code reaches PostgreSQL: it takes a pooled
connection, opens a transaction and hands the caller's claims to the database as
transaction-local settings (``crm.scope``, ``crm.chain_ids``, ``crm.sub``,
``crm.correlation_id``) which the row-level-security policies and the outbox trigger read.
Nothing set means nothing visible, so a path that forgets the claims cannot leak rows.

:func:`read_transaction` is the same for read-only operations: with ``DATABASE_READ_URL`` set it
runs on a streaming replica (a second pool), unless the caller has to see a write of its own that
the replica has not replayed yet. Every primary transaction then notes the primary's WAL position
after its commit; :mod:`crm.consistency` hands it to the client as a cookie, and a read carrying
that cookie uses the replica only if ``pg_last_wal_replay_lsn()`` has reached it, else the
primary. Workers keep no state for it. An unreachable replica sends reads to the primary for a few
seconds. See ``docs/scaling.md``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path

import aiosql
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from crm.auth import Principal
from crm.context import correlation_id

queries = aiosql.from_path(Path(__file__).parent / "queries", "apsycopg", mandatory_parameters=False)

_pool: AsyncConnectionPool | None = None
_read_pool: AsyncConnectionPool | None = None
_read_pool_down_until = 0.0
READ_POOL_TIMEOUT = 2.0  # seconds to wait for a replica connection before using the primary
READ_POOL_BACKOFF = 5.0  # seconds the primary serves reads after the replica failed

log = logging.getLogger("crm.pool")

# Read-your-writes state of the current request, set by crm.consistency's middleware (only while a
# read pool is open): "after", the WAL position the client's cookie carries; "written", the
# highest position a primary transaction of this request reached.
consistency: ContextVar[dict[str, str | None] | None] = ContextVar("crm_consistency", default=None)
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def lsn_value(lsn: str | None) -> int | None:
    """A WAL position (``"16/B374D848"``) as a number, or None if it is not one."""
    if not lsn or not _LSN.match(lsn):
        return None
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


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


async def open_read_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """The pool of the streaming replica that read-only operations use (``DATABASE_READ_URL``)."""
    global _read_pool, _read_pool_down_until
    if _read_pool is None:
        _read_pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configure,
            timeout=READ_POOL_TIMEOUT,
            kwargs={"application_name": "kundenmanagement-read"},
        )
        _read_pool_down_until = 0.0
        await _read_pool.open(wait=False)
    return _read_pool


async def close_read_pool() -> None:
    global _read_pool
    if _read_pool is not None:
        await _read_pool.close()
        _read_pool = None


def read_pool_open() -> bool:
    return _read_pool is not None


def pool() -> AsyncConnectionPool:
    if _pool is None:
        raise RuntimeError("the database pool is not open")
    return _pool


@asynccontextmanager
async def transaction(principal: Principal) -> AsyncIterator[AsyncConnection]:
    """A transaction carrying ``principal``'s claims; commits on success, rolls back on error."""
    # Pipelined: BEGIN and the claims travel with the first query, one round trip instead of three.
    async with pool().connection() as conn:
        async with conn.transaction(), conn.pipeline():
            await _set_claims(conn, principal)
            yield conn
        if _read_pool is not None:
            await _note_write_position(conn)


async def _set_claims(conn: AsyncConnection, principal: Principal) -> None:
    await queries.set_claims(
        conn,
        role="crm_api_all" if principal.db_scope == "all" else "crm_api",
        scope=principal.db_scope,
        chain_ids=",".join(principal.chain_ids),
        sub=principal.sub,
        correlation_id=correlation_id.get() or "",
    )


async def _note_write_position(conn: AsyncConnection) -> None:
    """After a commit on the primary: the request's reads must not see less than this."""
    state = consistency.get()
    if state is None:
        return
    lsn = (await queries.wal_insert_position(conn))["lsn"]
    if (lsn_value(lsn) or 0) > (lsn_value(state.get("written")) or 0):
        state["written"] = lsn


def _must_see() -> str | None:
    """The WAL position this request's reads must see: its own writes, else the client's cookie."""
    state = consistency.get()
    if state is None:
        return None
    return max((p for p in (state.get("after"), state.get("written")) if lsn_value(p) is not None),
               key=lsn_value, default=None)


async def _replica(stack: AsyncExitStack) -> AsyncConnection | None:
    """A replica connection (entered on ``stack``) that has replayed what the caller must see, or
    None: no read pool, the replica is behind, or it failed a moment ago."""
    global _read_pool_down_until
    read_pool = _read_pool
    if read_pool is None or time.monotonic() < _read_pool_down_until:
        return None
    held = AsyncExitStack()
    try:
        conn = await held.enter_async_context(read_pool.connection(timeout=READ_POOL_TIMEOUT))
        after = _must_see()
        if after is not None and not (await queries.replica_has_replayed(conn, lsn=after))["caught_up"]:
            await held.aclose()
            return None
    except (PoolTimeout, psycopg.OperationalError) as exc:
        await held.aclose()
        _read_pool_down_until = time.monotonic() + READ_POOL_BACKOFF
        log.warning("replica unavailable (%s); reads use the primary for %.0f s",
                    type(exc).__name__, READ_POOL_BACKOFF)
        return None
    await stack.enter_async_context(held)
    return conn


@asynccontextmanager
async def read_transaction(principal: Principal) -> AsyncIterator[AsyncConnection]:
    """A read-only operation's transaction: on the replica when one is configured and has what the
    caller must see, else exactly :func:`transaction`."""
    async with AsyncExitStack() as stack:
        conn = await _replica(stack)
        if conn is None:
            conn = await stack.enter_async_context(transaction(principal))
        else:
            await stack.enter_async_context(conn.transaction())
            await stack.enter_async_context(conn.pipeline())
            await _set_claims(conn, principal)
        yield conn
