"""Field jobs: changing what the hot projection holds, on a live system.

A change of a field's ``hot`` flag, or its archiving, inserts a row into ``field_job``; this
module processes those rows. ``crm fields backfill`` runs it to completion, and the API starts
it in the background after such a change (async database calls only; the event loop never
blocks). Every step is short and committed on its own:

``MAKE_HOT``
    1. ``COLUMN`` — ``crm_hot_add_column``: the typed column ``f_<key>`` is added under a brief
       ACCESS EXCLUSIVE lock (``lock_timeout`` 500 ms, retried), and the field becomes
       ``BACKFILLING``: from this commit on, every customer write projects it (the triggers).
    2. ``BACKFILL`` — ``crm_hot_backfill_batch`` in batches of customers in id order, each batch
       one transaction together with the job's progress (``last_customer_id``, ``processed``).
       No customer row is locked: a row is only written when its ``source_version`` still is
       the customer version the batch read, so a concurrent write always wins.
    3. ``INDEX`` — the column's indexes, ``CREATE INDEX CONCURRENTLY`` (an invalid index left
       by a crash is dropped and rebuilt), then ``ANALYZE``.
    4. The field becomes ``HOT``: searchable. Until then a search on it answers 409.
``MAKE_COLD``
    The field left the searches already (``projection = NONE`` in the request that made it
    cold); the job drops the column and its indexes (catalog only, brief lock).
``ARCHIVE``
    Bumps the version of every customer holding a value of the field, in batches (their
    representation lost the field: new ETags, ``customer.updated`` events), then drops the
    column if there is one.

Resumable: the phase and the last customer id are stored with each batch, and a session
advisory lock per field keeps two runners apart; a crashed runner's connection releases it, and
the next run (``crm fields backfill``, or the next change) continues where it stopped. A job
whose field changed again in the meantime is ``CANCELLED`` by that change and stops at its next
batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from db.pool import queries

log = logging.getLogger("crm.field_jobs")

DEFAULT_BATCH_SIZE = 5000
DDL_LOCK_TIMEOUT = "500ms"  # a catalog change waits at most this long, and queues searches as long
DDL_ATTEMPTS = 40
BATCH_ATTEMPTS = 5

# Start jobs in the background after an API change (tests switch this off to drive jobs).
AUTO_RUN = True
_background: set[asyncio.Task] = set()


@dataclass(frozen=True)
class Progress:
    job_id: int
    key: str
    action: str
    phase: str
    processed: int
    total: int | None


class _Stop(Exception):
    """``max_batches`` reached: leave the job as a crash would (RUNNING, resumable)."""


def hot_indexes(key: str, data_type: str) -> list[tuple[str, sql.Composable]]:
    """Names and definitions (without ``CREATE INDEX [CONCURRENTLY]``) of a hot column's indexes:
    a btree on (value, customer_id) for equality, ranges, sorting and keyset pages; GIN with
    trigram ops for a TEXT field's ``contains``/``starts_with``; GIN for a MULTI_ENUM's
    ``has_any``/``has_all``."""
    column = sql.Identifier(f"f_{key}")
    btree = (f"customer_hot_f_{key}_idx",
             sql.SQL("on customer_hot ({}, customer_id)").format(column))
    if data_type == "MULTI_ENUM":
        return [(f"customer_hot_f_{key}_idx", sql.SQL("on customer_hot using gin ({})").format(column))]
    if data_type == "TEXT":
        return [btree, (f"customer_hot_f_{key}_trgm",
                        sql.SQL("on customer_hot using gin ({} gin_trgm_ops)").format(column))]
    return [btree]


def create_index_sql(name: str, definition: sql.Composable, concurrently: bool = True) -> sql.Composed:
    how = sql.SQL("concurrently ") if concurrently else sql.SQL("")
    return sql.SQL("create index {}if not exists {} {}").format(how, sql.Identifier(name), definition)


async def _connect(conninfo: str) -> AsyncConnection:
    conn = await AsyncConnection.connect(
        conninfo, autocommit=True, row_factory=dict_row, application_name="crm-field-jobs"
    )
    # Jobs work on every customer (row-level security is forced on customer, owner included);
    # their outbox events name this actor.
    await conn.execute("select set_config('crm.scope', 'all', false), set_config('crm.sub', 'field-jobs', false)")
    return conn


async def _ddl(conn: AsyncConnection, query: Callable[..., Any], **params: Any) -> None:
    """Run a catalog change with a short lock timeout, retried: it must never queue other
    sessions behind it for long."""
    for attempt in range(1, DDL_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(DDL_LOCK_TIMEOUT)))
                await query(conn, **params)
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            if attempt == DDL_ATTEMPTS:
                raise
            await asyncio.sleep(min(0.1 * attempt, 2.0))  # let the queued requests through


class _Runner:
    def __init__(self, conn: AsyncConnection, max_batches: int | None,
                 on_progress: Callable[[Progress], None] | None, batch_size: int | None) -> None:
        self.conn = conn
        self.batches_left = max_batches
        self.on_progress = on_progress
        self.batch_size = batch_size

    def _tick(self) -> None:
        if self.batches_left is not None:
            if self.batches_left <= 0:
                raise _Stop
            self.batches_left -= 1

    async def _phase(self, job: dict[str, Any], phase: str) -> bool:
        """Record the phase; False when the job was cancelled meanwhile."""
        row = await queries.field_job_progress(self.conn, id=job["id"], phase=phase,
                                               last_id=job["last_customer_id"], row_count=0)
        job["phase"] = phase
        return row is not None

    def _report(self, job: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(job["id"], job["field_key"], job["action"], job["phase"],
                                      job["processed"], job["total"]))

    async def _batches(self, job: dict[str, Any], phase: str, batch: Callable[..., Any]) -> bool:
        """Run ``batch`` from the job's last customer id until a short batch; each batch and the
        job's progress commit together. False when the job was cancelled."""
        size = self.batch_size or job["batch_size"]
        while True:
            self._tick()
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                try:
                    async with self.conn.transaction():
                        done = await batch(self.conn, key=job["field_key"], after=job["last_customer_id"],
                                           batch_size=size)
                        row = await queries.field_job_progress(
                            self.conn, id=job["id"], phase=phase, last_id=done["last_id"],
                            row_count=done["row_count"],
                        )
                    break
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    # a multi-customer write locked projection rows in another order; PostgreSQL
                    # chose this batch to abort: run it again
                    if attempt == BATCH_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.05 * attempt)
            if row is None:
                return False
            job.update(last_customer_id=done["last_id"], processed=row["processed"], total=row["total"], phase=phase)
            self._report(job)
            if done["row_count"] < size:
                return True

    async def _build_indexes(self, key: str, data_type: str) -> None:
        wanted = hot_indexes(key, data_type)
        names = [name for name, _ in wanted]
        states = {r["name"]: r["valid"] async for r in queries.hot_index_states(self.conn, names=names)}
        for name, definition in wanted:
            if states.get(name) is False:  # left invalid by an interrupted build
                await self.conn.execute(sql.SQL("drop index concurrently if exists {}").format(sql.Identifier(name)))
            await self.conn.execute(create_index_sql(name, definition))
        await self.conn.execute(sql.SQL("analyze customer_hot ({})").format(sql.Identifier(f"f_{key}")))

    async def _finish(self, job: dict[str, Any], status: str, error: str | None = None) -> str:
        await queries.finish_field_job(self.conn, id=job["id"], status=status, phase=job["phase"], error=error)
        job["phase"] = "DONE" if status == "DONE" else job["phase"]
        return status

    async def make_hot(self, job: dict[str, Any], field: dict[str, Any]) -> str:
        key = job["field_key"]
        if not field["hot"] or field["archived_at"] is not None:
            return await self._finish(job, "CANCELLED")
        if job["phase"] in ("START", "COLUMN"):
            await _ddl(self.conn, queries.hot_add_column, key=key)
            job["last_customer_id"], job["processed"] = None, 0
            if not await self._phase(job, "BACKFILL"):
                return "CANCELLED"
        if job["phase"] == "BACKFILL":
            if not await self._batches(job, "BACKFILL", queries.hot_backfill_batch):
                return "CANCELLED"
            if not await self._phase(job, "INDEX"):
                return "CANCELLED"
        await self._build_indexes(key, field["data_type"])
        async with self.conn.transaction():
            await queries.mark_field_hot(self.conn, key=key)
            job["phase"] = "DONE"
            await self._finish(job, "DONE")
        self._report(job)
        return "DONE"

    async def make_cold(self, job: dict[str, Any], field: dict[str, Any]) -> str:
        if field["projection"] != "NONE":  # hot again: a newer job owns the column
            return await self._finish(job, "CANCELLED")
        await _ddl(self.conn, queries.hot_drop_column, key=job["field_key"])
        job["phase"] = "DONE"
        return await self._finish(job, "DONE")

    async def archive(self, job: dict[str, Any], field: dict[str, Any]) -> str:
        if job["phase"] in ("START", "TOUCH"):
            if not await self._batches(job, "TOUCH", queries.archive_touch_batch):
                return "CANCELLED"
            if not await self._phase(job, "DROP"):
                return "CANCELLED"
        await _ddl(self.conn, queries.hot_drop_column, key=job["field_key"])
        job["phase"] = "DONE"
        return await self._finish(job, "DONE")

    async def run(self, job_id: int) -> str:
        job = await queries.start_field_job(self.conn, id=job_id)
        if job is None:
            return "GONE"
        job = dict(job)
        field = await queries.field_for_job(self.conn, key=job["field_key"])
        self._report(job)
        try:
            action = {"MAKE_HOT": self.make_hot, "MAKE_COLD": self.make_cold, "ARCHIVE": self.archive}[job["action"]]
            return await action(job, field)
        except _Stop:
            raise
        except psycopg.Error as exc:
            log.warning("field job %s (%s %s) failed: %s", job_id, job["action"], job["field_key"], exc)
            if not self.conn.broken:
                await self._finish(job, "FAILED", f"{type(exc).__name__}: {exc}"[:500])
            return "FAILED"


async def run_jobs(
    conninfo: str,
    *,
    key: str | None = None,
    max_batches: int | None = None,
    batch_size: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[int, str]:
    """Process open field jobs (of ``key``, or all) until none is left that this run may take;
    return ``{job id: outcome}``. Jobs of a field another runner holds are left to it.

    ``max_batches`` stops after that many batches, leaving the job as a crash would (tests);
    ``batch_size`` overrides the jobs' own.
    """
    outcomes: dict[int, str] = {}
    async with await _connect(conninfo) as conn:
        runner = _Runner(conn, max_batches, on_progress, batch_size)
        while True:
            # Read the open jobs only after releasing the previous lock: a job committed while we
            # held it (whose own runner found the field locked) is seen here.
            jobs = [j async for j in queries.open_field_jobs(conn)
                    if j["id"] not in outcomes and (key is None or j["field_key"] == key)]
            taken = False
            for job in jobs:
                if not (await queries.try_lock_field(conn, key=job["field_key"]))["locked"]:
                    continue
                try:
                    outcomes[job["id"]] = await runner.run(job["id"])
                except _Stop:
                    outcomes[job["id"]] = "STOPPED"
                    return outcomes
                finally:
                    if not conn.broken:
                        await queries.unlock_field(conn, key=job["field_key"])
                taken = True
                break
            if not taken:
                return outcomes


def start_in_background(conninfo: str) -> None:
    """Run the open jobs in a task of the running event loop (after an API change)."""
    if not AUTO_RUN:
        return

    async def run() -> None:
        try:
            await run_jobs(conninfo)
        except (psycopg.Error, OSError) as exc:
            log.warning("field jobs stopped: %s (they resume with the next change or `crm fields backfill`)", exc)
        except Exception:
            log.exception("field jobs stopped by an unexpected error; `crm fields backfill` resumes them")

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def wait_for_background() -> None:
    """Wait for the jobs started in the background of this process (tests)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)
