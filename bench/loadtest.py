"""``make loadtest``: the SLOs under a realistic mix — p95 < 200 ms per operation, errors < 0.5 %.

By default the API is started the way ``make run`` starts it — ``crm serve --seed`` (embedded
PostgreSQL with normal durability, gunicorn with ``WEB_CONCURRENCY`` uvicorn workers, the webhook
relay beside it) — in a throwaway data directory on free ports, and stopped afterwards. With
``--url`` (and ``--token``) it drives a server that is already running instead.

The load is **open-loop**: requests start at the stated rate (Poisson arrivals, a fixed seed)
whether or not earlier ones have finished, and each latency is measured from the moment its
request was due to start, so a slow server cannot slow the load down and hide its own queueing
(no coordinated omission). The mix, by share of arrivals:

| share | what |
|--:|---|
| 24 % | read one customer (``customers.get_customer``) |
| 14 % | list customers by status and type (``customers.list_customers``) |
| 8 % | list customers by a name fragment (``customers.list_customers`` with ``q``) |
| 10 % | search by hot fields, sorted (``search.search_customers``) |
| 10 % | write 2 field values (``fields.update_customer_fields``) |
| 12 % | the next step of a sample request's lifecycle: create, submit, approve, ship, deliver, feedback |
| 4 % | list sample requests; 4 % list products |
| 10 % | record a call or a visit (``activities.create_activity``); 4 % read a customer timeline |

Errors are 5xx answers and requests that got no answer (timeout, connection error); other
non-2xx answers are counted apart (a realistic mix has a few, e.g. 412 on a concurrent change).
The server's own view — p95 from ``crm_http_request_duration_seconds`` on ``/metrics``, interpolated
within buckets like PromQL's ``histogram_quantile`` — is shown beside the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.stats import BenchError, percentile

ROOT = Path(__file__).resolve().parent.parent
SLO_P95_MS = 200.0
SLO_ERROR_RATE = 0.005
READY_TIMEOUT_S = 180
_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:5.0f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Record:
    operation: str
    status: int | None  # None: no answer
    latency_ms: float


@dataclass
class Sample:
    """A sample request moving through its lifecycle, one step per arrival."""

    id: str
    etag: str
    status: str
    items: list[str]
    busy: bool = False


@dataclass
class World:
    customers: list[dict[str, Any]]
    fragments: list[str]
    products: list[str]
    enum_fields: list[tuple[str, list[str]]]
    sort_fields: list[str]
    operations: set[str]
    activities: bool
    samples: deque[Sample] = field(default_factory=deque)


class Load:
    def __init__(self, client: httpx.AsyncClient, world: World, seed: int) -> None:
        self.client = client
        self.world = world
        self.random = random.Random(seed)
        self.records: list[Record] = []
        self.measuring = False

    async def call(self, operation: str, due: float, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        status: int | None = None
        response = None
        try:
            response = await self.client.request(method, path, **kwargs)
            status = response.status_code
        except httpx.HTTPError:
            pass
        if self.measuring:
            self.records.append(Record(operation, status, (time.perf_counter() - due) * 1000))
        return response

    # --- the mix ---------------------------------------------------------------------------------

    def scenarios(self) -> list[tuple[float, Any]]:
        mix = [
            (24, self.get_customer), (14, self.list_customers), (8, self.list_by_name), (10, self.search),
            (10, self.write_fields), (12, self.sample_step), (4, self.list_samples), (4, self.list_products),
        ]
        if self.world.activities:
            mix += [(10, self.record_activity), (4, self.timeline)]
        return mix

    def customer(self) -> dict[str, Any]:
        return self.random.choice(self.world.customers)

    async def get_customer(self, due: float) -> None:
        await self.call("customers.get_customer", due, "GET", f"/api/v1/customers/{self.customer()['id']}")

    async def list_customers(self, due: float) -> None:
        status = self.random.choice(["ACTIVE", "PROSPECT", "LEAD"])
        kind = self.random.choice(["RESTAURANT", "HOTEL", "CANTEEN", "CATERING"])
        await self.call("customers.list_customers", due, "GET", "/api/v1/customers",
                        params={"status": status, "type": kind, "limit": 50})

    async def list_by_name(self, due: float) -> None:
        await self.call("customers.list_customers", due, "GET", "/api/v1/customers",
                        params={"q": self.random.choice(self.world.fragments), "limit": 20})

    async def search(self, due: float) -> None:
        body: dict[str, Any] = {"limit": 20}
        if self.world.enum_fields:
            key, options = self.random.choice(self.world.enum_fields)
            body["filter"] = {"field": key, "op": "eq", "value": self.random.choice(options)}
        else:
            body["filter"] = {"field": "status", "op": "eq", "value": "ACTIVE"}
        if self.world.sort_fields:
            body["sort"] = [{"field": self.random.choice(self.world.sort_fields), "direction": "desc"}]
        await self.call("search.search_customers", due, "POST", "/api/v1/customers/search", json=body)

    async def write_fields(self, due: float) -> None:
        values: dict[str, Any] = {}
        for key, options in self.random.sample(self.world.enum_fields, min(2, len(self.world.enum_fields))):
            values[key] = self.random.choice(options)
        await self.call("fields.update_customer_fields", due, "PATCH",
                        f"/api/v1/customers/{self.customer()['id']}/fields", json=values,
                        headers={"If-Match": "*", "Content-Type": "application/merge-patch+json"})

    async def list_samples(self, due: float) -> None:
        await self.call("samples.list_sample_requests", due, "GET", "/api/v1/sample-requests", params={"limit": 20})

    async def list_products(self, due: float) -> None:
        await self.call("products.list_products", due, "GET", "/api/v1/products", params={"sample_available": "true"})

    async def record_activity(self, due: float) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        body: dict[str, Any] = {"customer_id": self.customer()["id"], "status": "DONE",
                                "occurred_at": now.isoformat().replace("+00:00", "Z"),
                                "subject": "Menüberatung", "outcome": self.random.choice(["POSITIVE", "NEUTRAL"])}
        if self.random.random() < 0.6:
            body |= {"type": "CALL", "direction": "OUTBOUND", "duration_seconds": self.random.randint(60, 1200),
                     "reached": True}
        else:
            body |= {"type": "VISIT", "visit_kind": self.random.choice(["KITCHEN_VISIT", "TASTING"])}
        await self.call("activities.create_activity", due, "POST", "/api/v1/activities", json=body)

    async def timeline(self, due: float) -> None:
        await self.call("activities.list_customer_timeline", due, "GET",
                        f"/api/v1/customers/{self.customer()['id']}/timeline", params={"limit": 20})

    async def sample_step(self, due: float) -> None:
        """Advance the oldest idle sample request by one step, or start a new one."""
        sample = next((s for s in self.world.samples if not s.busy), None)
        if sample is None or len(self.world.samples) < 8:
            await self.create_sample(due)
            return
        sample.busy = True
        try:
            await self.advance(sample, due)
        finally:
            sample.busy = False

    async def create_sample(self, due: float) -> None:
        customer = self.customer()
        body = {"customer_id": customer["id"], "items": [{"product_id": self.random.choice(self.world.products),
                                                          "quantity": 1}]}
        r = await self.call("samples.create_sample_request", due, "POST", "/api/v1/sample-requests", json=body)
        if r is not None and r.status_code == 201:
            data = r.json()
            self.world.samples.append(Sample(data["id"], data["etag"], data["status"],
                                              [i["id"] for i in data["items"]]))

    async def advance(self, sample: Sample, due: float) -> None:
        path = f"/api/v1/sample-requests/{sample.id}"
        following = {"DRAFT": "REQUESTED", "REQUESTED": "APPROVED", "APPROVED": "SHIPPED", "SHIPPED": "DELIVERED"}
        if sample.status in following:
            body: dict[str, Any] = {"to": following[sample.status]}
            if body["to"] == "SHIPPED":
                body["shipment"] = {"carrier": "DHL", "tracking_number": f"00340434{self.random.randint(0, 10**9)}",
                                    "items": [{"item_id": i, "lot_number": "L24-1", "best_before": "2031-03-31"}
                                              for i in sample.items]}
            r = await self.call("samples.transition_sample_request", due, "POST", f"{path}/transitions", json=body,
                                headers={"If-Match": sample.etag})
            if r is not None and r.status_code == 200:
                data = r.json()
                sample.etag, sample.status = data["etag"], data["status"]
            else:
                self.world.samples.remove(sample)
            return
        # DELIVERED: the tasting feedback of its item closes the loop
        await self.call("samples.put_sample_feedback", due, "PUT", f"{path}/items/{sample.items[0]}/feedback",
                        json={"rating": self.random.randint(2, 5),
                              "listing_decision": self.random.choice(["LISTED", "NOT_LISTED", "UNDECIDED"])})
        self.world.samples.remove(sample)

    # --- the open-loop driver --------------------------------------------------------------------

    async def run(self, rate: float, warmup: float, duration: float, on_measure: Any) -> dict[str, float]:
        mix = self.scenarios()
        weights = [w for w, _ in mix]
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        due = start
        end_warmup, end = start + warmup, start + warmup + duration
        late_ms: list[float] = []
        while due < end:
            if not self.measuring and due >= end_warmup:
                await on_measure()
                self.measuring = True
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.measuring:
                late_ms.append(max(time.perf_counter() - due, 0.0) * 1000)
            scenario = self.random.choices(mix, weights)[0][1]
            task = asyncio.create_task(scenario(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += self.random.expovariate(rate)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        late_ms.sort()
        return {"late_p95_ms": percentile(late_ms, 95) if late_ms else 0.0,
                "late_max_ms": late_ms[-1] if late_ms else 0.0}


# --- the server ------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, customers: int, workers: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``crm serve --seed`` as ``make run`` runs it, on free ports, data in ``data_dir``."""
    port, pg_port = _free_port(), _free_port()
    log_file = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"CRM_DATA_DIR": str(data_dir), "CRM_PG_PORT": str(pg_port), "PORT": str(port), "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(workers), "WEBHOOK_ALLOW_PRIVATE": "1"}
    with log_file.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "crm.cli", "serve", "--seed", "--customers", str(customers)],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"crm serve exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return process, base, log_file
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise BenchError(f"the API was not ready after {READY_TIMEOUT_S} s:\n{log_file.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # crm serve stops gunicorn, the relay and PostgreSQL
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def jwt_secret(data_dir: Path) -> str:
    from crm.settings import jwt_secret as read_secret

    return read_secret(data_dir)


# --- the world the load works on -------------------------------------------------------------------

async def discover(client: httpx.AsyncClient) -> World:
    spec = (await client.get("/api/v1/openapi.json")).json()
    operations = {op["operationId"] for item in spec["paths"].values() for op in item.values()
                  if isinstance(op, dict) and "operationId" in op}
    customers: list[dict[str, Any]] = []
    cursor = None
    while len(customers) < 2000:
        params: dict[str, Any] = {"status": "ACTIVE", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/customers", params=params)).raise_for_status().json()
        customers += [c for c in page["items"] if (c.get("address") or {}).get("city")]
        cursor = page["next_cursor"]
        if not cursor:
            break
    if not customers:
        raise BenchError("no ACTIVE customers with an address to work on (seed the database)")
    words = {w.lower() for c in customers for w in c["name"].replace("-", " ").split() if len(w) >= 5}
    fragments = sorted({w[:4] for w in words}) or ["gast"]
    products = [p["id"] for p in (await client.get("/api/v1/products", params={"sample_available": "true",
                                                                               "limit": 200})).json()["items"]]
    definitions = (await client.get("/api/v1/field-definitions", params={"limit": 200})).json()["items"]
    hot = [d for d in definitions if d.get("hot_status") == "HOT"]
    enum_fields = [(d["key"], d["options"]) for d in hot if d["data_type"] == "ENUM" and d.get("options")]
    sort_fields = [d["key"] for d in hot if d["data_type"] in ("INTEGER", "NUMBER")]
    return World(customers, fragments, products, enum_fields, sort_fields, operations,
                 activities="activities.create_activity" in operations)


# --- the server's view: /metrics -----------------------------------------------------------------

def histograms(text: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of crm_http_request_duration_seconds per operation."""
    out: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "crm_http_request_duration_seconds_bucket":
                out[s.labels["operation"]][float(s.labels["le"])] += s.value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile over cumulative buckets (linear within the bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count,
                                                                                             1e-9)
        previous_bound, previous_count = bound, count
    return bounds[-2] if len(bounds) > 1 else None


async def scrape(client: httpx.AsyncClient) -> str:
    with contextlib.suppress(httpx.HTTPError):
        r = await client.get("/metrics")
        if r.status_code == 200:
            return r.text
    return ""


# --- the report ----------------------------------------------------------------------------------

def report(command: str, facts: dict[str, str], records: list[Record], server_p95: dict[str, float | None],
           duration: float) -> tuple[str, bool]:
    by_op: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_op[r.operation].append(r)

    def row(name: str, rs: list[Record], server: float | None) -> tuple[str, bool, bool]:
        latencies = sorted(r.latency_ms for r in rs)
        errors = sum(1 for r in rs if r.status is None or r.status >= 500)
        other = sum(1 for r in rs if r.status is not None and not 200 <= r.status < 400 and r.status < 500)
        p95 = percentile(latencies, 95)
        error_rate = errors / len(rs)
        p95_ok, errors_ok = p95 < SLO_P95_MS, error_rate < SLO_ERROR_RATE
        server_text = f"{server * 1000:.1f}" if server is not None else "–"
        line = (f"| {name} | {len(rs):,} | {len(rs) / duration:.1f} | {percentile(latencies, 50):.1f} "
                f"| **{p95:.1f}** | {percentile(latencies, 99):.1f} | {server_text} | {errors} ({error_rate:.2%}) "
                f"| {other} | {'yes' if p95_ok else '**no**'} | {'yes' if errors_ok else '**no**'} |\n")
        return line, p95_ok, errors_ok

    lines = [f"Command: `{command}`\n\n", *[f"- {k}: {v}\n" for k, v in facts.items()], "\n",
             "| operation | requests | req/s | p50 | p95 | p99 (ms, client) | p95 server (ms) | errors | other non-2xx "
             "| p95 < 200 ms | errors < 0.5 % |\n",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|:-:|:-:|\n"]
    all_ok = True
    for name in sorted(by_op):
        line, p95_ok, errors_ok = row(f"`{name}`", by_op[name], server_p95.get(name))
        lines.append(line)
        all_ok = all_ok and p95_ok and errors_ok
    line, p95_ok, errors_ok = row("**all**", records, server_p95.get("*"))
    lines.append(line)
    all_ok = all_ok and p95_ok and errors_ok
    verdict = "met" if all_ok else "NOT met"
    lines.append(f"\nSLOs (p95 < {SLO_P95_MS:.0f} ms per operation, errors < {SLO_ERROR_RATE:.1%}): **{verdict}**.\n")
    return "".join(lines), all_ok


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40, help="requests per second, open loop (default 40)")
    parser.add_argument("--duration", type=float, default=60, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=10, help="unmeasured seconds first (default 10)")
    parser.add_argument("--customers", type=int, default=1000, help="demo customers to seed (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2, as make run)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the arrivals and the mix")
    parser.add_argument("--url", help="drive this running server instead of starting one")
    parser.add_argument("--token", help="with --url: an admin bearer token (crm token --sub load --role admin)")
    parser.add_argument("--check", action="store_true", help="exit with 3 when an SLO is not met")
    return parser.parse_args(argv)


async def drive(args: argparse.Namespace, base: str, token: str) -> tuple[list[Record], dict[str, Any]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10,
                                 limits=limits) as client:
        world = await discover(client)
        load = Load(client, world, args.seed)
        before: dict[str, str] = {}

        async def on_measure() -> None:
            before["metrics"] = await scrape(client)

        log(f"{len(world.customers)} customers, {len(world.products)} products, "
            f"{len(world.enum_fields)} hot ENUM fields; activities: {'yes' if world.activities else 'no'}")
        log(f"load: {args.rate:g} req/s for {args.warmup:g} s warm-up + {args.duration:g} s measured")
        lateness = await load.run(args.rate, args.warmup, args.duration, on_measure)
        after = await scrape(client)
    first, last = histograms(before.get("metrics", "")), histograms(after)
    server_p95: dict[str, float | None] = {}
    total: dict[float, float] = defaultdict(float)
    for operation, buckets in last.items():
        delta = {le: count - first.get(operation, {}).get(le, 0.0) for le, count in buckets.items()}
        server_p95[operation] = quantile(0.95, delta)
        if operation not in ("metrics.metrics", "health.live", "health.ready"):
            for le, count in delta.items():
                total[le] += count
    server_p95["*"] = quantile(0.95, total)
    return load.records, {"lateness": lateness, "activities": world.activities, "server_p95": server_p95}


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "-m", "bench.loadtest", *argv])
    load_before = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, _terminate)
    with contextlib.ExitStack() as stack:
        try:
            if args.url:
                base, token = args.url.rstrip("/"), args.token or os.environ.get("TOKEN", "")
                if not token:
                    raise BenchError("--url needs --token (or TOKEN in the environment)")
                where = f"the running server at {base}"
            else:
                data_dir = Path(tempfile.mkdtemp(prefix="crm-loadtest-"))
                stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
                log(f"starting crm serve --seed --customers {args.customers} (as make run) in {data_dir}")
                process, base, _log = start_server(data_dir, args.customers, args.workers)
                stack.callback(stop_server, process)
                os.environ["CRM_DATA_DIR"] = str(data_dir)
                from crm.auth import issue_token

                os.environ["JWT_SECRET"] = jwt_secret(data_dir)
                token = issue_token("loadtest", ["admin"], expires_in=3600)
                where = (f"`crm serve --seed --customers {args.customers}` as `make run` starts it: embedded "
                         f"PostgreSQL (fsync on), gunicorn {args.workers} uvicorn workers, relay, access log on")
            records, info = asyncio.run(drive(args, base, token))
        except BenchError as exc:
            print(f"loadtest failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("loadtest interrupted; cleaned up", file=sys.stderr)
            return 130
        log("stopping")
    if not records:
        print("loadtest failed: no requests measured", file=sys.stderr)
        return 1
    late = info["lateness"]
    facts = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "server": where,
        "machine": f"{len(os.sched_getaffinity(0))} CPUs (nproc), shared by the load generator, the API and "
                   f"PostgreSQL; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        "load": f"open loop, Poisson arrivals at {args.rate:g} req/s, {args.warmup:g} s warm-up then "
                f"{args.duration:g} s measured (seed {args.seed}); latency from each request's due time; "
                f"generator lateness p95 {late['late_p95_ms']:.1f} ms, max {late['late_max_ms']:.1f} ms",
        "mix": "reads 24 %, lists 22 %, hot-field search 10 %, field writes 10 %, sample lifecycle 12 %, "
               "sample/product lists 8 %" + (", activity writes 10 %, timelines 4 %" if info["activities"]
                                           else " (no activities endpoints on this server)"),
    }
    text, ok = report(command, facts, records, info["server_p95"], args.duration)
    print(text + f"\nTotal run time: {time.monotonic() - _started:.0f} s.\n")
    return 3 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
