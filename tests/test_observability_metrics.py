"""``/metrics``: Prometheus exposition of request counts and latency, pool usage, outbox lag and
projection staleness — in-process, and live under gunicorn with several workers, where the counts
of all workers must add up whichever worker answers the scrape."""

from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from crm import metrics
from crm.settings import get_settings
from tests.live_server import crm_serve


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture
def fresh_views(monkeypatch):
    """Every scrape reads the views again (no cache)."""
    monkeypatch.setenv("METRICS_DB_CACHE_SECONDS", "0")


class TestMetricsEndpoint:
    def test_no_authentication_and_the_text_format(self, client):
        r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["x-correlation-id"]
        assert "# TYPE crm_http_requests_total counter" in r.text

    def test_requests_per_operation_and_status_class(self, client, auth):
        h = auth("admin")
        before = scrape(client)
        client.get(f"/api/v1/customers/{uuid.uuid4()}", headers=h)  # 404
        client.get("/api/v1/customers/not-a-uuid", headers=h)  # 400
        client.get("/api/v1/customers?limit=1", headers=h)  # 200
        client.get("/api/v1/customers")  # 401
        client.get("/no/such/path")  # 404, no operation
        after = scrape(client)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        get4, list2 = ("customers.get_customer", "4xx"), ("customers.list_customers", "2xx")
        assert delta("crm_http_requests_total", operation=get4[0], status_class=get4[1]) == 2
        assert delta("crm_http_requests_total", operation=list2[0], status_class=list2[1]) == 1
        assert delta("crm_http_requests_total", operation="customers.list_customers", status_class="4xx") == 1
        assert delta("crm_http_requests_total", operation="none", status_class="4xx") == 1
        assert delta("crm_http_request_duration_seconds_count", operation=get4[0], status_class=get4[1]) == 2
        # the SLO bound (200 ms) is a bucket bound
        assert ("crm_http_request_duration_seconds_bucket", frozenset(
            {"operation": list2[0], "status_class": list2[1], "le": "0.2"}.items())) in samples(after)

    def test_pool_usage(self, client):
        deadline = time.monotonic() + 10
        while value(scrape(client), "crm_db_pool_max_connections") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        text = scrape(client)
        assert value(text, "crm_db_pool_max_connections") == get_settings().pool_max
        assert value(text, "crm_db_pool_connections", state="idle") + value(
            text, "crm_db_pool_connections", state="in_use") >= 1
        assert "crm_db_pool_wait_seconds_total" in text

    def test_outbox_lag_and_projection_staleness_from_the_views(self, client, auth, db, fresh_views):
        h = auth("admin")
        for n in range(3):
            assert client.post("/api/v1/customers", headers=h,
                               json={"customer_number": f"K-M{n}", "name": "Hof", "type": "HOTEL"}).status_code == 201
        db.execute("insert into event_consumer (name, position) values ('dwh', 0)")
        db.execute("update outbox set created_at = now() - interval '10 minutes'")
        text = scrape(client)
        assert value(text, "crm_observability_views_up") == 1
        assert 600 <= value(text, "crm_outbox_lag_seconds", kind="PULL", consumer="dwh") < 700
        assert value(text, "crm_outbox_events_behind", kind="PULL", consumer="dwh") == 3
        assert value(text, "crm_hot_projection_rows", state="current") == 3
        assert value(text, "crm_hot_projection_staleness_seconds") == 0
        db.execute("update event_consumer set position = (select max(position) from outbox)")
        assert value(scrape(client), "crm_outbox_lag_seconds", kind="PULL", consumer="dwh") == 0

    def test_views_are_read_at_most_once_per_cache_period(self, client, db, monkeypatch):
        monkeypatch.setenv("METRICS_DB_CACHE_SECONDS", "3600")
        monkeypatch.setattr(metrics, "_snapshot", metrics._ViewSnapshot())
        scrape(client)
        db.execute("insert into event_consumer (name, position) values ('late', 0)")
        assert 'consumer="late"' not in scrape(client)  # cached
        monkeypatch.setenv("METRICS_DB_CACHE_SECONDS", "0")
        assert 'consumer="late"' in scrape(client)

    async def test_scrape_answers_when_the_views_cannot_be_read(self, monkeypatch):
        monkeypatch.setattr(metrics, "_snapshot", metrics._ViewSnapshot())

        def no_pool():
            raise RuntimeError("the database pool is not open")

        await metrics.refresh_views(no_pool)
        text = metrics.exposition().decode()
        assert value(text, "crm_observability_views_up") == 0
        assert "crm_outbox_lag_seconds" not in text
        assert "crm_http_requests_total" in text


def _count_in_file(path: str, operation: str) -> float:
    total = 0.0
    for family in MultiProcessCollector.merge([path], accumulate=True):
        for s in family.samples:
            if s.name == "crm_http_requests_total" and s.labels.get("operation") == operation:
                total += s.value
    return total


class TestSeveralWorkers:
    def test_counts_add_up_across_workers_and_a_dead_workers_gauges_go(self, pg_server, tmp_path):
        with crm_serve(pg_server, tmp_path, "crm_metrics_live", workers=3, relay=False) as live:
            workers = live.workers()
            assert len(workers) == 3

            def per_worker() -> dict[int, float]:
                return {pid: _count_in_file(str(live.metrics_dir / f"counter_{pid}.db"), "health.live")
                        for pid in workers}

            # Which worker accepts a connection is up to the kernel: send batches (a new connection
            # per request, 12 at a time) until at least two workers have answered some.
            n = 0
            with ThreadPoolExecutor(12) as pool:
                for _ in range(20):
                    statuses = list(pool.map(lambda _: live.request("GET", "/health/live")[0], range(60)))
                    assert statuses == [200] * 60
                    n += 60
                    if sum(1 for c in per_worker().values() if c > 0) >= 2:
                        break
            assert sum(1 for c in per_worker().values() if c > 0) >= 2, per_worker()
            # a request is counted when its response is complete, just after the client got it
            deadline = time.monotonic() + 5
            while sum(per_worker().values()) != n and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sum(per_worker().values()) == n
            # whichever worker answers the scrape, the sum over all of them
            for _ in range(8):
                assert value(live.metrics(), "crm_http_requests_total", operation="health.live",
                             status_class="2xx") == n

            def pool_max() -> float:
                return value(live.metrics(), "crm_db_pool_max_connections")

            deadline = time.monotonic() + 20
            while pool_max() != 3 * get_settings().pool_max and time.monotonic() < deadline:
                time.sleep(0.5)
            assert pool_max() == 3 * get_settings().pool_max

            # a worker dies: gunicorn replaces it; its counts stay, its live gauges go (child_exit)
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while (victim in live.workers() or len(live.workers()) < 3) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert victim not in live.workers() and len(live.workers()) == 3
            while (live.metrics_dir / f"gauge_livesum_{victim}.db").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not (live.metrics_dir / f"gauge_livesum_{victim}.db").exists()
            assert (live.metrics_dir / f"counter_{victim}.db").exists()
            assert value(live.metrics(), "crm_http_requests_total", operation="health.live", status_class="2xx") == n
            deadline = time.monotonic() + 20
            while pool_max() != 3 * get_settings().pool_max and time.monotonic() < deadline:
                time.sleep(0.5)
            assert pool_max() == 3 * get_settings().pool_max
