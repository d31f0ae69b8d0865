"""Events and webhooks: ``.venv/bin/python -m bench.events``.

A private embedded PostgreSQL (temporary data dir, normal durability) and a local receiver (a
minimal HTTP/1.1 keep-alive server on asyncio, in a thread of this process); ``crm relay`` runs as
its own process, as in production. Measured:

1. relay throughput: events written first, then the relay started; deliveries per second from
   the first receipt to the last, with 1, 4 and 16 subscriptions (every event to every one);
2. the feed's latency for 500-event pages (``GET /api/v1/events?after=..&limit=500`` through
   gunicorn with 2 uvicorn workers, sequential requests at random positions), p50 / p95;
3. end-to-end lag from commit to webhook receipt at a steady write load (one subscription).

Prints a Markdown table. Everything started is stopped and the temporary directory removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

from bench import server
from bench.stats import percentile
from crm.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent


class FastReceiver:
    """HTTP/1.1 with keep-alive on asyncio; records (receipt time, aggregate id) per request."""

    def __init__(self) -> None:
        self.receipts: list[tuple[float, str]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = server.free_port()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            srv.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.receipts.append((time.time(), json.loads(body)["aggregateid"]))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def start(self) -> str:
        self.thread.start()
        self.ready.wait(10)
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_relay(dsn: str, work_dir: Path) -> subprocess.Popen[bytes]:
    # the receiver is on 127.0.0.1: a target the relay refuses unless private targets are allowed
    env = {**os.environ, "DATABASE_URL": dsn, "CRM_DATA_DIR": str(work_dir), "RELAY_POLL_INTERVAL": "0.5",
           "WEBHOOK_ALLOW_PRIVATE": "1"}
    log_file = (work_dir / "relay.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "crm.cli", "relay"], env=env, stdout=log_file,
                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def stop_relay(relay: subprocess.Popen[bytes]) -> None:
    if relay.poll() is None:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()


def reset_subscriptions(conn: psycopg.Connection, url: str, n: int) -> None:
    conn.execute("truncate webhook_delivery, webhook_subscription")
    for _ in range(n):
        conn.execute(
            "insert into webhook_subscription (owner, url, event_types, secret, position) "
            "values ('bench', %s, '{*}', %s, coalesce((select max(position) from outbox), 0))",
            (url, secrets.token_urlsafe(24)))


def write_chains(conn: psycopg.Connection, n: int) -> None:
    """``n`` events on ``n`` aggregates, 100 per transaction."""
    for start in range(0, n, 100):
        with conn.transaction():
            conn.execute("insert into chain (name) select 'b-' || gen_random_uuid() from generate_series(1, %s)",
                         (min(100, n - start),))


def throughput(dsn: str, work_dir: Path, receiver: FastReceiver, url: str, subs: int, events: int) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reset_subscriptions(conn, url, subs)
        write_chains(conn, events)
    receiver.receipts.clear()
    relay = start_relay(dsn, work_dir)
    partial = False
    try:
        deadline = time.monotonic() + 180
        while len(receiver.receipts) < events * subs:
            if relay.poll() is not None:
                raise RuntimeError(f"the relay exited with {relay.returncode}; see {work_dir / 'relay.log'}")
            if time.monotonic() > deadline:
                partial = True  # report the rate of what arrived
                break
            time.sleep(0.05)
    finally:
        stop_relay(relay)
    times = sorted(t for t, _ in receiver.receipts)
    if len(times) < 2:
        raise RuntimeError("the relay delivered nothing")
    rate = (len(times) - 1) / (times[-1] - times[0])
    return f"{rate:,.0f}" + (f" (partial: {len(times)} of {events * subs} in 180 s)" if partial else "")


def feed_latency(dsn: str, work_dir: Path, requests: int) -> tuple[float, float]:
    jwt_secret = secrets.token_urlsafe(32)
    os.environ["JWT_SECRET"] = jwt_secret
    port = server.free_port()
    api = server.start_api(dsn, jwt_secret, port, work_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(api, base, work_dir / "gunicorn.log")
        headers = {"Authorization": f"Bearer {issue_token('bench', ['integration'])}"}
        with psycopg.connect(dsn) as conn:
            top = conn.execute("select max(position) from outbox").fetchone()[0]
        latencies = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            for i in range(requests + 10):
                after = random.randint(0, max(0, top - 1000))  # positions have gaps: stay clear of the end
                started = time.perf_counter()
                r = http.get("/api/v1/events", params={"after": after, "limit": 500})
                elapsed = time.perf_counter() - started
                if r.status_code != 200 or len(r.json()["items"]) != 500:
                    raise RuntimeError(f"feed answered {r.status_code}: {r.text[:300]}")
                if i >= 10:  # warm-up
                    latencies.append(elapsed * 1000)
    finally:
        server.stop_api(api)
    latencies.sort()
    return percentile(latencies, 50), percentile(latencies, 95)


def lag(dsn: str, work_dir: Path, receiver: FastReceiver, url: str, rate: int, seconds: float) -> tuple[float, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reset_subscriptions(conn, url, 1)
    relay = start_relay(dsn, work_dir)
    committed: dict[str, float] = {}
    try:
        time.sleep(2)  # let the relay start
        receiver.receipts.clear()
        with psycopg.connect(dsn, autocommit=True) as conn:
            interval = 1 / rate
            next_at = time.monotonic()
            end = next_at + seconds
            while time.monotonic() < end:
                row = conn.execute("insert into chain (name) values ('lag-' || gen_random_uuid()) returning id")
                committed[str(row.fetchone()[0])] = time.time()
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + 30
        while len(receiver.receipts) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_relay(relay)
    lags = sorted((t - committed[a]) * 1000 for t, a in receiver.receipts if a in committed)
    if len(lags) < len(committed):
        raise RuntimeError(f"only {len(lags)} of {len(committed)} events arrived")
    return percentile(lags, 50), percentile(lags, 95)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500, help="events per throughput run")
    parser.add_argument("--feed-requests", type=int, default=200)
    parser.add_argument("--rate", type=int, default=100, help="events/s for the lag run")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on SIGTERM too

    work_dir = Path(tempfile.mkdtemp(prefix="crm-bench-events-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="crm-bench-events-pg-"))  # a mkdtemp folder itself works as pgdata
    pg = server.start_database(pg_dir)
    receiver = FastReceiver()
    url = receiver.start()
    rows: list[tuple[str, str]] = []
    try:
        pg.create_database(server.DATABASE)
        dsn = pg.dsn(server.DATABASE)
        from db.migrate import migrate

        migrate(dsn)
        for subs in (1, 4, 16):
            log(f"relay throughput, {subs} subscription(s) ...")
            rate = throughput(dsn, work_dir, receiver, url, subs, args.events)
            rows.append((f"relay deliveries/s, {subs} subscription(s), {args.events} events each", rate))
            log(f"  {rate} deliveries/s")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("truncate webhook_delivery, webhook_subscription")
            write_chains(conn, 20000)
            conn.execute("vacuum analyze outbox")
        log("feed latency ...")
        p50, p95 = feed_latency(dsn, work_dir, args.feed_requests)
        rows.append(("feed, 500-event page: p50 / p95 (ms)", f"{p50:.1f} / {p95:.1f}"))
        log("end-to-end lag ...")
        l50, l95 = lag(dsn, work_dir, receiver, url, args.rate, args.seconds)
        rows.append((f"commit → webhook receipt at {args.rate} events/s: p50 / p95 (ms)", f"{l50:.0f} / {l95:.0f}"))
    finally:
        receiver.stop()
        pg.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(pg_dir, ignore_errors=True)
    print("| events and webhooks | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
