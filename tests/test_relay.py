"""``crm relay`` against real local HTTP receivers and a real PostgreSQL, faults included."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable

import httpcore
import psycopg
import pytest

from crm.relay import PublicTargetsBackend, Relay, RelayConfig
from tests.webhook_receiver import Receiver

FAST = RelayConfig(max_attempts=20, backoff_base=0.02, backoff_max=0.1, pause_after=1000, timeout=2,
                   poll_interval=0.05, batch_size=20, fanout_size=200, max_connections=20)
SECRET = "test-secret-0123456789"


def subscribe(conn, url: str, types: tuple[str, ...] = ("*",), secret: str = SECRET) -> str:
    row = conn.execute(
        "insert into webhook_subscription (owner, url, event_types, secret, position) "
        "values ('it', %s, %s, %s, coalesce((select max(position) from outbox), 0)) returning id",
        (url, list(types), secret)).fetchone()
    return str(row["id"] if isinstance(row, dict) else row[0])


def write_events(dsn: str, chains: int, updates: int = 0, correlation_id: str | None = None) -> list[str]:
    """``chains`` chains created, each updated ``updates`` times, in separate transactions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if correlation_id:
            conn.execute("select set_config('crm.correlation_id', %s, false)", (correlation_id,))
        ids = [str(conn.execute("insert into chain (name) values (%s) returning id", (f"c{i}-{time.time_ns()}",))
                   .fetchone()[0]) for i in range(chains)]
        for u in range(updates):
            for chain_id in ids:
                conn.execute("update chain set description = %s where id = %s", (str(u), chain_id))
        return [str(r[0]) for r in conn.execute("select id from outbox order by position")]


async def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


class running:
    """An in-process relay for the duration of an ``async with``."""

    def __init__(self, dsn: str, config: RelayConfig = FAST) -> None:
        self.relay = Relay(dsn, config)

    async def __aenter__(self) -> Relay:
        self.task = asyncio.create_task(self.relay.run())
        return self.relay

    async def __aexit__(self, *exc: object) -> None:
        self.relay.stop()
        await asyncio.wait_for(self.task, 10)


def per_aggregate_in_order(receiver: Receiver) -> bool:
    seen: dict[str, list[int]] = defaultdict(list)
    for r in receiver.accepted():
        seen[r.event["aggregateid"]].append(r.event["position"])
    return all(p == sorted(p) for p in seen.values())


class TestDelivery:
    async def test_signed_deliveries_with_ids_and_correlation(self, db, dsn):
        with Receiver(SECRET) as receiver:
            sub = subscribe(db, receiver.url, ("chain.created",))
            async with running(dsn):
                await asyncio.to_thread(write_events, dsn, 3, 1, "req-99")
                await wait_for(lambda: len(receiver.accepted()) == 3)
                await asyncio.sleep(0.2)
        assert len(receiver.requests) == 3  # the updates were not subscribed to
        assert receiver.signatures_valid()
        for r in receiver.requests:
            assert r.headers["X-Event-Id"] == r.event["id"]
            assert r.headers["X-Correlation-ID"] == "req-99"
            assert r.headers["X-Event-Type"] == "chain.created"
        rows = db.execute("select status, attempts, last_status_code, last_latency_ms from webhook_delivery "
                          "where subscription_id = %s", (sub,)).fetchall()
        assert {(r["status"], r["attempts"], r["last_status_code"]) for r in rows} == {("DELIVERED", 1, 200)}
        assert all(r["last_latency_ms"] is not None for r in rows)

    async def test_a_host_that_turned_private_is_not_contacted(self, db, dsn, monkeypatch):
        """DNS rebinding: the subscription was accepted for a public host, which now resolves to a
        loopback address. The relay checks at delivery time and never connects."""
        monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE")
        with Receiver(SECRET) as receiver:
            rebound = receiver.url.replace("127.0.0.1", "localhost")
            sub = subscribe(db, rebound)
            config = RelayConfig(**{**FAST.__dict__, "max_attempts": 2})
            async with running(dsn, config):
                await asyncio.to_thread(write_events, dsn, 1)
                await wait_for(lambda: db.execute(
                    "select count(*) as n from webhook_delivery where subscription_id = %s and status = 'DEAD'",
                    (sub,)).fetchone()["n"] == 1)
        assert receiver.requests == []
        row = db.execute("select last_error from webhook_delivery where subscription_id = %s", (sub,)).fetchone()
        assert "private, loopback or link-local" in row["last_error"]

    async def test_private_addresses_are_refused_before_connecting(self):
        with pytest.raises(httpcore.ConnectError, match="private"):
            await PublicTargetsBackend().connect_tcp("127.0.0.1", 9, timeout=1)
        with pytest.raises(httpcore.ConnectError, match="private"):
            await PublicTargetsBackend().connect_tcp("::ffff:10.0.0.1", 9, timeout=1)

    async def test_a_tampered_body_fails_verification(self):
        from crm.relay import sign, verify

        ts = str(int(time.time()))
        signature = sign(SECRET, ts, b'{"a":1}')
        assert verify(SECRET, ts, b'{"a":1}', signature)
        assert not verify(SECRET, ts, b'{"a":2}', signature)
        assert not verify("other-secret-xxxxxxxx", ts, b'{"a":1}', signature)
        assert not verify(SECRET, str(int(time.time()) - 3600), b'{"a":1}', sign(SECRET, str(int(time.time()) - 3600),
                                                                                      b'{"a":1}'))

    async def test_receiver_errors_and_timeouts_are_retried_in_order_per_aggregate(self, db, dsn):
        recovered = time.time() + 1.0

        def flaky(n, event):
            if time.time() < recovered:
                return (500, 0) if n % 3 else (200, 3)  # 500s, and timeouts (the relay waits 2 s)
            return 200, 0

        with Receiver(SECRET, flaky) as receiver:
            subscribe(db, receiver.url)
            async with running(dsn):
                ids = await asyncio.to_thread(write_events, dsn, 4, 3)
                await wait_for(lambda: receiver.accepted_ids() == set(ids), 20)
        assert any(r.status == 500 for r in receiver.requests)
        assert per_aggregate_in_order(receiver)

    async def test_dead_letter_then_pause_then_resume(self, db, dsn, client, auth):
        status = {"code": 500}
        with Receiver(SECRET, lambda n, e: (status["code"], 0)) as receiver:
            sub = subscribe(db, receiver.url)
            config = RelayConfig(**{**FAST.__dict__, "max_attempts": 3, "pause_after": 7})
            async with running(dsn, config):
                await asyncio.to_thread(write_events, dsn, 1)
                await wait_for(lambda: db.execute("select status from webhook_delivery").fetchone()
                               and db.execute("select status from webhook_delivery").fetchone()["status"] == "DEAD")
                h = auth("admin")
                deliveries = client.get(f"/api/v1/webhook-subscriptions/{sub}/deliveries", headers=h).json()["items"]
                assert deliveries[0]["attempts"] == 3 and deliveries[0]["last_status_code"] == 500
                assert [a["status_code"] for a in deliveries[0]["attempt_log"]] == [500, 500, 500]
                await asyncio.to_thread(write_events, dsn, 3)
                await wait_for(lambda: db.execute("select active from webhook_subscription").fetchone()["active"]
                               is False)
                got = client.get(f"/api/v1/webhook-subscriptions/{sub}", headers=h)
                assert "7 failed deliveries in a row" in got.json()["paused_reason"]
                attempts = len(receiver.requests)
                await asyncio.sleep(0.3)
                assert len(receiver.requests) == attempts  # paused: nothing more is sent
                status["code"] = 200
                r = client.patch(f"/api/v1/webhook-subscriptions/{sub}", json={"active": True},
                                 headers={**h, "If-Match": got.headers["ETag"]})
                assert r.status_code == 200 and r.json()["paused_reason"] is None
                redeliver = client.post(f"/api/v1/webhook-subscriptions/{sub}/redeliver", json={}, headers=h)
                assert redeliver.status_code == 202
                await wait_for(lambda: len(receiver.accepted_ids()) == 4)
        assert per_aggregate_in_order(receiver)

    async def test_a_slow_receiver_does_not_block_another_subscription(self, db, dsn):
        with Receiver(SECRET, lambda n, e: (200, 1.5)) as slow, Receiver(SECRET) as fast:
            subscribe(db, slow.url)
            subscribe(db, fast.url)
            async with running(dsn, RelayConfig(**{**FAST.__dict__, "timeout": 5})):
                ids = await asyncio.to_thread(write_events, dsn, 1, 9)  # one aggregate: strictly one at a time
                started = time.monotonic()
                await wait_for(lambda: fast.accepted_ids() == set(ids), 5)
                assert time.monotonic() - started < 3
                assert len(slow.requests) <= 3

    async def test_two_relays_do_not_deliver_twice(self, db, dsn):
        with Receiver(SECRET, lambda n, e: (200, 0.005)) as receiver:
            subscribe(db, receiver.url)
            async with running(dsn), running(dsn):
                ids = await asyncio.to_thread(write_events, dsn, 40, 2)
                await wait_for(lambda: receiver.accepted_ids() == set(ids), 20)
                await asyncio.sleep(0.3)
        assert len(receiver.requests) == len(ids)
        assert per_aggregate_in_order(receiver)


def _relay_process(dsn: str, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": dsn, "RELAY_POLL_INTERVAL": "0.05", "RELAY_BACKOFF_BASE": "0.02",
           "RELAY_BACKOFF_MAX": "0.1", "RELAY_MAX_ATTEMPTS": "50", "RELAY_BATCH_SIZE": "10", **extra_env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "crm.cli", "relay"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class TestStandaloneRelay:
    async def test_a_relay_of_its_own_serves_its_metrics(self, db, dsn):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with Receiver(SECRET) as receiver:
            subscribe(db, receiver.url)
            ids = await asyncio.to_thread(write_events, dsn, 3)
            relay = _relay_process(dsn, RELAY_METRICS_PORT=str(port))
            try:
                await wait_for(lambda: receiver.accepted_ids() == set(ids), 20)
                text = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            finally:
                relay.terminate()
                relay.wait(10)
        delivered = [line for line in text.splitlines()
                     if line.startswith('crm_relay_deliveries_total{outcome="delivered"}')]
        assert delivered and float(delivered[0].split()[-1]) == 3.0, text[-2000:]


class TestFaults:
    async def test_kill_9_mid_burst_then_restart_delivers_everything(self, db, dsn):
        with Receiver(SECRET, lambda n, e: (200, 0.01)) as receiver:
            subscribe(db, receiver.url)
            ids = await asyncio.to_thread(write_events, dsn, 100, 1)
            relay = _relay_process(dsn)
            try:
                await wait_for(lambda: len(receiver.requests) >= 40, 20)
                relay.send_signal(signal.SIGKILL)
                relay.wait(5)
                assert len(receiver.accepted_ids()) < len(ids)  # it died mid-burst
                relay = _relay_process(dsn)
                await wait_for(lambda: receiver.accepted_ids() == set(ids), 30)
            finally:
                relay.send_signal(signal.SIGTERM)
                relay.wait(10)
        received_ids = [r.headers["X-Event-Id"] for r in receiver.requests]
        assert set(received_ids) == set(ids)  # none lost; any duplicate carries the same event id
        assert per_aggregate_in_order(receiver)
        assert relay.returncode == 0  # SIGTERM stops it cleanly

    async def test_database_restart_during_delivery(self):
        from db.embedded import EmbeddedPostgres
        from db.migrate import migrate

        folder = tempfile.mkdtemp(prefix="crm-relay-restart-")
        server = EmbeddedPostgres(folder, fast=True)
        server.start()
        try:
            server.create_database("relay")
            dsn = server.dsn("relay")
            await asyncio.to_thread(migrate, dsn)
            with Receiver(SECRET, lambda n, e: (200, 0.02)) as receiver:
                with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
                    subscribe(conn, receiver.url)
                async with running(dsn):
                    first = await asyncio.to_thread(write_events, dsn, 30)
                    await wait_for(lambda: len(receiver.requests) >= 5, 15)
                    await asyncio.to_thread(server.stop)
                    await asyncio.sleep(0.5)
                    await asyncio.to_thread(server.start)
                    more = await asyncio.to_thread(write_events, dsn, 10)
                    await wait_for(lambda: receiver.accepted_ids() == set(first) | set(more), 30)
            assert per_aggregate_in_order(receiver)
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _private(monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
