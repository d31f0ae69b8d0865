"""Prometheus metrics, served at ``/metrics`` (no authentication, like the health probes).

What is measured, and where:

* **requests** — ``crm_http_requests_total`` and the latency histogram
  ``crm_http_request_duration_seconds`` per ``operation`` (the operationId; ``none`` for requests no
  operation matched) and ``status_class`` (``2xx`` ... ``5xx``), observed by the outermost
  middleware (:class:`crm.context.CorrelationMiddleware`). The buckets have a bound at 0.2 s, the
  latency SLO, so the SLO's good-request ratio is exact.
* **the connection pool** of each worker — ``crm_db_pool_*``, sampled every 2 seconds from
  ``psycopg_pool``'s ``pop_stats()`` (gauges summed over the live workers, counters over all).
* **the webhook relay** — ``crm_relay_deliveries_total`` and ``crm_relay_delivery_duration_seconds``
  (``crm serve`` gives the relay the API's metrics directory, so the API's ``/metrics`` shows them;
  a relay run on its own serves them on ``RELAY_METRICS_PORT``).
* **read from the observability views at scrape time** (``db/migrations/0050_observability_views``):
  outbox lag per consumer and hot projection staleness. One scrape runs one short read-only
  transaction as ``crm_grafana``; the result is kept ``METRICS_DB_CACHE_SECONDS`` (default 10 s) per
  worker, so scrapes at any rate cost the database at most one query per worker and period.

**Several gunicorn workers**: each worker is a process of its own, so the counters live in
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and ``/metrics``
sums every process's files, whichever worker answers the scrape. ``crm/gunicorn_conf.py`` (used by
``crm serve``) creates the directory when the variable is unset, removes files of processes that
no longer run at start, and drops a dead worker's live gauges (``child_exit``). Without the
variable (tests, a single process) the default in-process registry is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("crm.metrics")

disable_created_metrics()  # no *_created series: the multiprocess mode has none either

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version reads
# Latency buckets around the SLO (p95 < 200 ms): 0.2 is a bound, so the share of requests within
# the SLO is read off exactly.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
POOL_SAMPLE_SECONDS = 2.0

REQUESTS = Counter(
    "crm_http_requests_total",
    "HTTP requests answered, by operationId (none: no operation matched) and status class.",
    ["operation", "status_class"],
)
LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "Time from the request's arrival to its response, by operationId and status class.",
    ["operation", "status_class"],
    buckets=LATENCY_BUCKETS,
)
POOL_CONNECTIONS = Gauge(
    "crm_db_pool_connections",
    "Connections of the workers' PostgreSQL pools, idle or in use (sum over the live workers).",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "crm_db_pool_max_connections",
    "The pools' maximum size (sum over the live workers).",
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "crm_db_pool_requests_waiting",
    "Requests waiting for a pooled connection right now (sum over the live workers).",
    multiprocess_mode="livesum",
)
POOL_REQUESTS = Counter(
    "crm_db_pool_requests_total",
    "Connections taken from the pools.",
)
POOL_QUEUED = Counter(
    "crm_db_pool_requests_queued_total",
    "Connections taken from the pools that had to wait for one to become free.",
)
POOL_WAIT = Counter(
    "crm_db_pool_wait_seconds_total",
    "Time spent waiting for a pooled connection.",
)
POOL_ERRORS = Counter(
    "crm_db_pool_errors_total",
    "Connection requests that failed (timed out waiting for a connection, or the pool was closed).",
)
RELAY_DELIVERIES = Counter(
    "crm_relay_deliveries_total",
    "Webhook delivery attempts by the relay, by outcome (delivered: a 2xx answer; failed: any other).",
    ["outcome"],
)
RELAY_LATENCY = Histogram(
    "crm_relay_delivery_duration_seconds",
    "Duration of a webhook delivery attempt (the POST to the receiver).",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


def observe_request(operation: str | None, status: int, seconds: float) -> None:
    labels = (operation or "none", status_class(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


def observe_delivery(ok: bool, seconds: float) -> None:
    outcome = "delivered" if ok else "failed"
    RELAY_DELIVERIES.labels(outcome).inc()
    RELAY_LATENCY.labels(outcome).observe(seconds)


# --- the connection pool ---------------------------------------------------------------------------

def sample_pool(pool: Any) -> None:
    """Copy a ``psycopg_pool`` pool's state into the pool metrics (``pop_stats`` resets its
    counters, so each sample adds what happened since the previous one)."""
    stats = pool.pop_stats()
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    POOL_CONNECTIONS.labels("idle").set(available)
    POOL_CONNECTIONS.labels("in_use").set(max(size - available, 0))
    POOL_MAX.set(stats.get("pool_max", 0))
    POOL_WAITING.set(stats.get("requests_waiting", 0))
    POOL_REQUESTS.inc(stats.get("requests_num", 0))
    POOL_QUEUED.inc(stats.get("requests_queued", 0))
    POOL_WAIT.inc(stats.get("requests_wait_ms", 0) / 1000)
    POOL_ERRORS.inc(stats.get("requests_errors", 0))


def start_pool_sampler(get_pool: Any, interval: float = POOL_SAMPLE_SECONDS) -> asyncio.Task[None]:
    """Sample the pool every ``interval`` seconds until the task is cancelled (app shutdown)."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(RuntimeError):  # the pool is not open (yet, or any more)
                sample_pool(get_pool())
            await asyncio.sleep(interval)

    return asyncio.get_running_loop().create_task(loop(), name="crm-pool-metrics")


# --- values read from the observability views ------------------------------------------------------

@dataclass
class _ViewSnapshot:
    at: float = float("-inf")
    ok: bool = False
    lag: list[dict[str, Any]] = field(default_factory=list)
    staleness: dict[str, Any] | None = None


_snapshot = _ViewSnapshot()


def _cache_seconds() -> float:
    value = os.environ.get("METRICS_DB_CACHE_SECONDS", "").strip()
    return float(value) if value else 10.0


async def refresh_views(get_pool: Any, now: float | None = None) -> None:
    """Read outbox lag and projection staleness from the views unless the cached read is fresh.
    (Two scrapes arriving together while it is stale may both read: Prometheus scrapes one at a
    time, so no lock.)"""
    global _snapshot
    from db.pool import queries

    now = time.monotonic() if now is None else now
    if now - _snapshot.at < _cache_seconds():
        return
    try:
        async with get_pool().connection(timeout=2) as conn, conn.transaction():
            await queries.observability_session(conn)
            lag = [dict(r) async for r in queries.observability_outbox_lag(conn)]
            staleness = await queries.observability_projection_staleness(conn)
        _snapshot = _ViewSnapshot(time.monotonic(), True, lag, dict(staleness) if staleness else None)
    except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
        log.warning("metrics: the observability views could not be read (%s)", type(exc).__name__)
        _snapshot = _ViewSnapshot(time.monotonic(), False, [], None)


class ViewCollector:
    """Exposes the last snapshot of the observability views as gauges."""

    def collect(self) -> Iterator[Metric]:
        snap = _snapshot
        ok = GaugeMetricFamily(
            "crm_observability_views_up",
            "1 when the last read of the observability views (outbox lag, staleness) succeeded.",
        )
        ok.add_metric([], 1.0 if snap.ok else 0.0)
        yield ok
        if not snap.ok:
            return
        lag = GaugeMetricFamily(
            "crm_outbox_lag_seconds",
            "Age of the oldest outbox event a consumer has not got yet (0: up to date); "
            "kind PULL: feed checkpoint, WEBHOOK: subscription.",
            labels=["kind", "consumer"],
        )
        behind = GaugeMetricFamily(
            "crm_outbox_events_behind",
            "Outbox events after a consumer's checkpoint.",
            labels=["kind", "consumer"],
        )
        deliveries = GaugeMetricFamily(
            "crm_webhook_deliveries",
            "Webhook deliveries waiting to be sent (pending) or dead-lettered (dead), per subscription.",
            labels=["consumer", "status"],
        )
        for row in snap.lag:
            labels = [row["consumer_kind"], row["consumer"]]
            lag.add_metric(labels, float(row["lag_seconds"]))
            behind.add_metric(labels, float(row["events_behind"]))
            if row["consumer_kind"] == "WEBHOOK":
                deliveries.add_metric([row["consumer"], "pending"], float(row["pending_deliveries"]))
                deliveries.add_metric([row["consumer"], "dead"], float(row["dead_deliveries"]))
        yield lag
        yield behind
        yield deliveries
        if snap.staleness is not None:
            s = snap.staleness
            stale = GaugeMetricFamily(
                "crm_hot_projection_staleness_seconds",
                "The largest time a customer's search row (customer_hot) has been behind its customer; "
                "normally 0.",
            )
            stale.add_metric([], float(s["max_staleness_seconds"]))
            yield stale
            rows = GaugeMetricFamily(
                "crm_hot_projection_rows",
                "Customers by the state of their search row: current, behind or missing.",
                labels=["state"],
            )
            rows.add_metric(["current"], float(s["current_rows"]))
            rows.add_metric(["behind"], float(s["behind_rows"]))
            rows.add_metric(["missing"], float(s["missing_rows"]))
            yield rows


_VIEWS = ViewCollector()
REGISTRY.register(_VIEWS)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The text exposition: every process's metrics in multiprocess mode, else this process's."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(_VIEWS)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def render(get_pool: Any) -> bytes:
    await refresh_views(get_pool)
    # Reading every worker's files is file I/O: off the event loop.
    return await asyncio.to_thread(exposition)
