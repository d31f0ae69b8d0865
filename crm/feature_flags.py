"""Feature flags as the code reads them: a per-process cache of the ``feature_flag`` table.

Every worker process keeps all flags in memory and reloads them (one small query) when they are
older than ``FEATURE_FLAGS_TTL`` seconds (default 2), on the first request that asks after that.
A switch through the API updates the switching process at once; every other worker sees it
within the TTL, so a flag is in force everywhere a couple of seconds after it was switched
(``docs/deploy.md`` waits longer than that between steps). Why not LISTEN/NOTIFY: it needs a
dedicated connection per worker that has to be re-established and re-synchronised after every
database restart or failover, and a missed notification would leave a worker on the old value
indefinitely; a short TTL bounds the staleness by construction, costs one indexed read of a few
rows per worker every two seconds at most, and needs nothing when idle.

A request reads the flags once (:func:`snapshot`) before it opens its transaction, so one
request sees one consistent set, and the flag read never holds a second pooled connection. If
the table cannot be read, the last known values stay in force (and the read is retried after
the TTL); a process that never read them treats every flag as off, which for the flags of a
schema change is the previous release's behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger("crm.feature_flags")

Loader = Callable[[], Awaitable[dict[str, bool]]]


def ttl_seconds() -> float:
    value = os.environ.get("FEATURE_FLAGS_TTL", "").strip()
    return float(value) if value else 2.0


async def _load_from_pool() -> dict[str, bool]:
    from db.pool import pool, queries

    async with pool().connection() as conn:
        return {row["key"]: row["enabled"] async for row in queries.feature_flag_states(conn)}


class FlagCache:
    """All flags of one process; ``loader`` reads them from the database."""

    def __init__(self, loader: Loader = _load_from_pool, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._ttl = ttl
        self._clock = clock
        self._values: Mapping[str, bool] = MappingProxyType({})
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def ttl(self) -> float:
        return ttl_seconds() if self._ttl is None else self._ttl

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < self.ttl

    async def snapshot(self) -> Mapping[str, bool]:
        """Every flag's state, reloaded first if older than the TTL."""
        if not self._fresh():
            async with self._lock:  # one reload per process, however many requests wait
                if not self._fresh():
                    await self._reload()
        return self._values

    async def enabled(self, key: str) -> bool:
        return (await self.snapshot()).get(key, False)

    async def _reload(self) -> None:
        try:
            values = await self._loader()
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            log.warning("feature flags not reloaded (%s); keeping the last known values", type(exc).__name__)
            self._loaded_at = self._clock()  # retry after the TTL, not on every request
            return
        self._values = MappingProxyType(values)
        self._loaded_at = self._clock()

    def remember(self, key: str, enabled: bool) -> None:
        """A switch made by this process is in force here at once."""
        self._values = MappingProxyType({**self._values, key: enabled})

    def invalidate(self) -> None:
        """The next read reloads (tests, and after a switch made outside the API)."""
        self._loaded_at = None


_cache = FlagCache()


async def snapshot() -> Mapping[str, bool]:
    return await _cache.snapshot()


async def enabled(key: str) -> bool:
    return await _cache.enabled(key)


def remember(key: str, enabled: bool) -> None:
    _cache.remember(key, enabled)


def invalidate() -> None:
    _cache.invalidate()
