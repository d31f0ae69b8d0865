"""``crm relay``: delivers outbox events to webhook subscriptions.

One asyncio process; per active subscription one worker task, so a slow or failing receiver only
ever holds up its own subscription. Each worker repeats two short steps:

1. **Fan-out** — lock the subscription row (``FOR UPDATE SKIP LOCKED``: one relay at a time),
   read the events after its checkpoint up to the feed's safe bound (see migration
   ``0030_events_relay``), insert a ``webhook_delivery`` row per matching event and move the
   checkpoint, in one transaction. Delivery rows are the durable queue: a crash loses nothing.
2. **Deliver** — claim due ``PENDING`` deliveries (``FOR UPDATE SKIP LOCKED``), only the oldest
   pending one per aggregate, POST them concurrently (HMAC-SHA256 signed), record the outcome and
   commit. The claim's row locks are held during the POST, so a second relay skips them and never
   delivers one twice in the normal case; a relay killed mid-POST releases them with its
   connection and the delivery is retried (at-least-once, same ``X-Event-Id``).

Failures back off exponentially with jitter; after ``RELAY_MAX_ATTEMPTS`` a delivery is ``DEAD``
(dead letter, redeliverable through the API) and later events of its aggregate proceed. A
subscription whose attempts keep failing (``RELAY_PAUSE_AFTER`` in a row) is paused with a
reason. Database errors (a restart) are waited out; the pool reconnects by itself.
The relay runs as the role ``crm_relay``: it reads the outbox and touches subscriptions and
deliveries, nothing else.

Every delivery attempt writes one JSON log line (logger ``crm.relay.delivery``: correlation id,
subscription, delivery and event ids, event type, attempt, outcome ``delivered``/``retry``/``dead``,
status code, error class, duration) and counts in ``crm_relay_deliveries_total`` and
``crm_relay_delivery_duration_seconds`` (:mod:`crm.metrics`). No payload, URL or error message
is logged: those may carry personal data or credentials.

Target addresses are checked at delivery time too, not only when a subscription is created: a
host name can resolve to an internal address later (DNS rebinding). Unless
``WEBHOOK_ALLOW_PRIVATE=1`` (development), every connection resolves the host, refuses it when
any address is private, loopback or link-local, and connects to the address it checked — so no
second lookup can swap it; TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from crm import metrics
from crm.logs import describe, json_line
from db.events import event_body, is_public_address, like_patterns, private_targets_allowed
from db.pool import queries

log = logging.getLogger("crm.relay")
# One JSON line per delivery attempt (see Relay._observe).
delivery_log = logging.getLogger("crm.relay.delivery")

DB_ERRORS = (psycopg.Error, PoolTimeout, OSError)


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


@dataclass(frozen=True)
class RelayConfig:
    max_attempts: int = 8
    backoff_base: float = 2.0        # seconds before the 2nd attempt; doubles per attempt
    backoff_max: float = 3600.0
    pause_after: int = 50            # failed attempts in a row before a subscription is paused
    timeout: float = 10.0            # per POST
    poll_interval: float = 1.0       # besides LISTEN crm_outbox
    batch_size: int = 10             # deliveries claimed (and POSTed concurrently) per subscription and round
    fanout_size: int = 500
    max_connections: int = 40

    @classmethod
    def from_env(cls) -> RelayConfig:
        d = cls()
        return cls(
            max_attempts=int(_float("RELAY_MAX_ATTEMPTS", d.max_attempts)),
            backoff_base=_float("RELAY_BACKOFF_BASE", d.backoff_base),
            backoff_max=_float("RELAY_BACKOFF_MAX", d.backoff_max),
            pause_after=int(_float("RELAY_PAUSE_AFTER", d.pause_after)),
            timeout=_float("RELAY_TIMEOUT", d.timeout),
            poll_interval=_float("RELAY_POLL_INTERVAL", d.poll_interval),
            batch_size=int(_float("RELAY_BATCH_SIZE", d.batch_size)),
            fanout_size=int(_float("RELAY_FANOUT_SIZE", d.fanout_size)),
            max_connections=int(_float("RELAY_MAX_CONNECTIONS", d.max_connections)),
        )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body`` with the secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant-time)."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class _Outcome:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    error_class: str | None = None  # for the log: the class only (httpx's messages name the URL)


@dataclass
class Relay:
    dsn: str
    config: RelayConfig = field(default_factory=RelayConfig.from_env)

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        async def configure(conn: psycopg.AsyncConnection) -> None:
            conn.row_factory = dict_row
            await conn.set_autocommit(True)

        self._pool = AsyncConnectionPool(
            self.dsn, min_size=1, max_size=self.config.max_connections, open=False, configure=configure,
            timeout=5, reconnect_timeout=0, kwargs={"application_name": "crm-relay"},
        )
        await self._pool.open(wait=False)
        listener = asyncio.create_task(self._listen())
        log.info("relay started")
        try:
            while not self._stop.is_set():
                try:
                    await self._supervise()
                except DB_ERRORS as exc:
                    log.warning("relay: database unavailable (%s); retrying", exc.__class__.__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.poll_interval)
        finally:
            listener.cancel()
            for task in self._workers.values():
                task.cancel()
            await asyncio.gather(listener, *self._workers.values(), return_exceptions=True)
            await self._pool.close()
            log.info("relay stopped")

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute("listen crm_outbox")
                    async for _ in conn.notifies():
                        self._notify()
            except DB_ERRORS:
                await asyncio.sleep(1)

    async def _supervise(self) -> None:
        async with self._pool.connection() as conn:
            ids = {str(r["id"]) async for r in queries.relay_subscription_ids(conn)}
        for sub_id in ids - self._workers.keys():
            self._workers[sub_id] = asyncio.create_task(self._worker(sub_id))
        for sub_id, task in list(self._workers.items()):
            if task.done():
                del self._workers[sub_id]

    # --- per subscription -----------------------------------------------------------------------

    async def _worker(self, sub_id: str) -> None:
        # One HTTP client per subscription: a slow receiver cannot take another one's connections,
        # and httpx's pool stays small (its cost per request grows with the requests queued in it).
        limits = httpx.Limits(max_connections=self.config.batch_size)
        transport = None if private_targets_allowed() else PublicTargetsTransport(limits=limits)
        async with httpx.AsyncClient(timeout=self.config.timeout, follow_redirects=False, limits=limits,
                                     transport=transport) as http:
            await self._work(sub_id, http)

    async def _work(self, sub_id: str, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            wake = self._wake
            try:
                active, fanned = await self._fan_out(sub_id)
                if not active:
                    return  # paused, deactivated or deleted: the supervisor restarts it when active
                delivered = await self._deliver(sub_id, http)
            except DB_ERRORS as exc:
                log.warning("relay %s: database error %s; retrying", sub_id, exc.__class__.__name__)
                await asyncio.sleep(min(self.config.poll_interval, 1.0))
                continue
            except Exception as exc:  # noqa: BLE001 - logged (without its message); the worker goes on
                log.error("relay %s: unexpected error; retrying: %s", sub_id, describe(exc))
                await asyncio.sleep(1.0)
                continue
            if not fanned and not delivered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.config.poll_interval)

    async def _fan_out(self, sub_id: str) -> tuple[bool, int]:
        """Turn new events into deliveries; ``(still active, events fanned out)``."""
        async with self._pool.connection() as conn, conn.transaction():
            await queries.relay_role(conn)
            sub = await queries.relay_lock_subscription(conn, id=sub_id)
            if sub is None:
                current = await queries.relay_get_subscription(conn, id=sub_id)
                return bool(current and current["active"]), 0  # another relay holds it
            bounds = await queries.feed_bounds(conn)
            start = max(sub["position"], bounds["purged_through"])
            rows = [r async for r in queries.feed_events(
                conn, after=start, safe_position=bounds["safe_position"],
                patterns=like_patterns(list(sub["event_types"])), limit=self.config.fanout_size)]
            if rows:
                await queries.relay_insert_delivery(conn, [
                    {"subscription_id": sub_id, "event_id": r["id"], "event_position": r["position"],
                     "event_type": r["type"], "aggregatetype": r["aggregatetype"],
                     "aggregateid": r["aggregateid"], "correlation_id": r["correlation_id"]}
                    for r in rows
                ])
            full = len(rows) == self.config.fanout_size
            new_position = rows[-1]["position"] if full else max(start, bounds["safe_position"])
            if new_position > sub["position"]:
                await queries.relay_advance_subscription(conn, id=sub_id, position=new_position)
        return True, len(rows)

    async def _deliver(self, sub_id: str, http: httpx.AsyncClient) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            await queries.relay_role(conn)
            sub = await queries.relay_get_subscription(conn, id=sub_id)
            if sub is None or not sub["active"]:
                return 0
            rows = [r async for r in queries.relay_claim_deliveries(
                conn, subscription_id=sub_id, limit=self.config.batch_size)]
            if not rows:
                return 0
            outcomes = await asyncio.gather(*(self._post(http, sub, r) for r in rows))
            delivered, failed = [], []
            for row, outcome in zip(rows, outcomes, strict=True):
                attempt = json.dumps({
                    "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "status_code": outcome.status_code, "latency_ms": outcome.latency_ms, "error": outcome.error,
                })
                common = {"id": row["delivery_id"], "status_code": outcome.status_code,
                          "latency_ms": outcome.latency_ms, "attempt": attempt}
                self._observe(sub_id, row, outcome)
                if outcome.ok:
                    delivered.append(common)
                else:
                    failed.append({**common, "max_attempts": self.config.max_attempts, "error": outcome.error,
                                   "delay_seconds": self._backoff(row["attempts"] + 1)})
            if delivered:
                await queries.relay_delivered(conn, delivered)
            if failed:
                await queries.relay_failed(conn, failed)
            failures = len(failed)
            succeeded = failures < len(rows)
            last_error = next((o.error for o in outcomes if not o.ok), None)
            await queries.relay_record_outcome(
                conn, id=sub_id, failures=0 if succeeded else failures, pause_after=self.config.pause_after,
                reason=f"Paused by the relay after {self.config.pause_after} failed deliveries in a row; "
                       f"last error: {last_error}. PATCH active=true to resume.",
            )
        return len(rows) - failures

    def _observe(self, sub_id: str, row: dict[str, Any], outcome: _Outcome) -> None:
        """One JSON log line and the metrics per delivery attempt: ids, type, outcome, status
        code, duration; no payload, no URL, no error message (see crm.logs)."""
        metrics.observe_delivery(outcome.ok, outcome.latency_ms / 1000)
        attempt = row["attempts"] + 1
        delivery_log.info(json_line(
            "webhook_delivery",
            correlation_id=row["correlation_id"],
            subscription_id=sub_id,
            delivery_id=str(row["delivery_id"]),
            event_id=str(row["id"]),
            event_type=row["type"],
            attempt=attempt,
            outcome="delivered" if outcome.ok else (
                "dead" if attempt >= self.config.max_attempts else "retry"),
            status_code=outcome.status_code,
            error=outcome.error_class,
            duration_ms=outcome.latency_ms,
        ))

    def _backoff(self, attempts: int) -> float:
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempts - 1))
        return random.uniform(delay / 2, delay)

    async def _post(self, http: httpx.AsyncClient, sub: dict[str, Any], row: dict[str, Any]) -> _Outcome:
        body = json.dumps(event_body(row), separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Kundenmanagement-Webhooks/1",
            "X-Event-Id": str(row["id"]),
            "X-Event-Type": row["type"],
            "X-Signature-Timestamp": timestamp,
            "X-Signature": sign(sub["secret"], timestamp, body),
        }
        if row["correlation_id"]:
            headers["X-Correlation-ID"] = row["correlation_id"]
        started = time.perf_counter()
        try:
            response = await http.post(sub["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            latency = int((time.perf_counter() - started) * 1000)
            return _Outcome(False, None, latency, f"{exc.__class__.__name__}: {exc}"[:500], exc.__class__.__name__)
        latency = int((time.perf_counter() - started) * 1000)
        ok = 200 <= response.status_code < 300
        return _Outcome(ok, response.status_code, latency, None if ok else f"HTTP {response.status_code}")


class PublicTargetsBackend(httpcore.AnyIOBackend):
    """Connects only to public addresses, and to the very address it checked."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout or 10)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the webhook host: {exc.__class__.__name__}") from None
        addresses = [info[4][0] for info in infos]
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise httpcore.ConnectError("the webhook host resolves to a private, loopback or link-local address")
        return await super().connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                         socket_options=socket_options)


class PublicTargetsTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with :class:`PublicTargetsBackend` under its connection pool (httpx is
    pinned in requirements.lock; the pool keeps its backend in ``_network_backend``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool._network_backend = PublicTargetsBackend()


async def run_relay(dsn: str, config: RelayConfig | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    import signal

    relay = Relay(dsn, config or RelayConfig.from_env())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.stop)
    await relay.run()
