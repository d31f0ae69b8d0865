"""``make bench``: the API under wrk against the bare database under pgbench, same SQL, same run.

A private embedded PostgreSQL (temporary data dir, normal durability) gets 100,000 customers; the
API is served by gunicorn with uvicorn workers. Each case runs with 8 and 32 connections, first
through the API (wrk), then as the equivalent SQL transaction (pgbench, see bench/pgbench.py). The
Markdown report goes to stdout and to bench/results/latest.md; progress goes to stderr.
Everything started is stopped and the temporary directory removed, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from bench import cpu, pgbench, report, server, wrk
from bench.cases import CASES, CONNECTIONS, Case
from bench.stats import BenchError, Measurement
from crm.auth import issue_token
from crm.settings import get_settings
from db.embedded import EmbeddedPostgresError

TOKEN_SUB = "bench"
_started = time.monotonic()


@dataclass(frozen=True)
class Target:
    """Where and how to reach the system under test."""

    wrk: str
    base_url: str
    token: str
    dsn: str
    work_dir: Path
    ids_file: Path
    claims: pgbench.Claims
    meter: cpu.CpuMeter


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:5.0f} s] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per case (default 2)")
    parser.add_argument("--customers", type=int, default=100_000, help="customers to seed (default 100000)")
    return parser.parse_args(argv)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _get(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise BenchError(f"GET {url} answered {exc.code}: {exc.read()[:500]!r}") from None


def smoke_check(target: Target, some_id: str) -> None:
    """One request per case before the load: right answer and shape, so the load measures real work."""
    for case in CASES:
        body = _get(target.base_url + case.path + (some_id if case.by_id else ""), target.token)
        if case.by_id and body.get("id") != some_id:
            raise BenchError(f"{case.name}: the answer is not customer {some_id}: {body}")
        if not case.by_id and len(body.get("items", [])) != 50:
            raise BenchError(f"{case.name}: expected a full page of 50 items, got {body}"[:1000])


def write_script(case: Case, target: Target, index: int) -> tuple[Path, dict[str, str]]:
    script = pgbench.render(case, target.claims)
    path = target.work_dir / f"case{index}.sql"
    path.write_text(script.text)
    return path, script.variables


def measure(case: Case, index: int, target: Target, seconds: int, warmup: int) -> list[report.Row]:
    url = target.base_url + case.path
    ids_file = target.ids_file if case.by_id else None
    script, variables = write_script(case, target, index)
    if warmup:
        log(f"{case.name}: warm-up")
        wrk.run(target.wrk, url, target.token, max(CONNECTIONS), warmup, ids_file)
        pgbench.run(script, target.dsn, max(CONNECTIONS), warmup, variables, label="warmup")
    rows = []
    for connections in CONNECTIONS:
        log(f"{case.name}: wrk, {connections} connections, {seconds} s")
        api, api_cpu = metered(target.meter, partial(
            wrk.run, target.wrk, url, target.token, connections, seconds, ids_file), settle=False)
        log(f"{case.name}: pgbench, {connections} clients, {seconds} s")
        sql, sql_cpu = metered(target.meter, partial(
            pgbench.run, script, target.dsn, connections, seconds, variables, label=f"c{connections}"), settle=True)
        rows.append(report.Row(case.name, connections, api, sql, api_cpu, sql_cpu))
    return rows


def metered(meter: cpu.CpuMeter, load: Callable[[], Measurement],
            settle: bool) -> tuple[Measurement, cpu.CpuPerRequest]:
    """Run ``load`` and the CPU per request it caused; ``settle`` waits for its backends to exit."""
    backends = meter.backends()
    before = meter.sample()
    result = load()
    if settle:
        meter.settle(backends)
    return result, cpu.per_request(meter.sample() - before, result.requests)


def machine_facts(target: Target, args: argparse.Namespace, load_before: float) -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{report.nproc()} CPUs (nproc), {report.cpu_model()}; load generators share it with the servers; "
                   f"load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after",
        "PostgreSQL": f"{server.server_version(target.dsn)} (embedded, private temp data dir, fsync on)",
        "API": f"gunicorn {server.WORKERS} workers (uvicorn_worker.UvicornWorker), "
               f"pool up to {get_settings().pool_max} connections per worker, access log off, "
               f"Python {platform.python_version()}",
        "data": f"{args.customers:,} customers; GET one draws from {pgbench.ID_SAMPLE:,} random customer ids",
        "load": f"{wrk.version(target.wrk)} --threads {wrk.THREADS} --latency, "
                f"pgbench -M prepared -j {pgbench.THREADS}; {args.duration} s per run after {args.warmup} s warm-up "
                "per case; latencies in ms",
    }


def setup(stack: contextlib.ExitStack, tmp: Path, args: argparse.Namespace) -> Target:
    work_dir = tmp / "work"
    work_dir.mkdir()
    wrk_path = wrk.ensure_wrk()
    log("starting PostgreSQL")
    database = server.start_database(tmp)
    stack.callback(database.stop)
    log(f"migrating, seeding {args.customers:,} customers, VACUUM ANALYZE")
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the report; migrations may print
        dsn = server.prepare_database(database, args.customers, pgbench.ID_SAMPLE)
    ids = server.customer_ids(dsn)
    ids_file = work_dir / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    port = server.free_port()
    log(f"starting gunicorn on 127.0.0.1:{port}")
    api = server.start_api(dsn, os.environ["JWT_SECRET"], port, work_dir)
    stack.callback(server.stop_api, api)
    base_url = f"http://127.0.0.1:{port}"
    server.wait_ready(api, base_url, work_dir / "gunicorn.log")
    token = issue_token(TOKEN_SUB, ["admin"], expires_in=3600)
    claims = pgbench.Claims(
        role="crm_api_all", scope="all", chain_ids="", sub=TOKEN_SUB, correlation_id=str(uuid.uuid4())
    )
    meter = cpu.CpuMeter(api.pid, cpu.postmaster_pid(database.pgdata))
    target = Target(wrk_path, base_url, token, dsn, work_dir, ids_file, claims, meter)
    smoke_check(target, ids[0])
    return target


def run(args: argparse.Namespace, command: str) -> str:
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    # Before anything reads the (cached) settings: a fresh secret, and the dev data dir left alone.
    os.environ["JWT_SECRET"] = secrets.token_urlsafe(48)
    os.environ["CRM_DATA_DIR"] = str(tmp / "work")
    with contextlib.ExitStack() as stack:
        stack.callback(signal.signal, signal.SIGINT, signal.getsignal(signal.SIGINT))
        stack.callback(signal.signal, signal.SIGTERM, signal.getsignal(signal.SIGTERM))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        try:
            target = setup(stack, tmp, args)
            rows = [row for index, case in enumerate(CASES, 1)
                    for row in measure(case, index, target, args.duration, args.warmup)]
            facts = machine_facts(target, args, load_before)
            log("stopping gunicorn and PostgreSQL")
        finally:  # a second Ctrl-C or a SIGTERM must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return report.document(command, facts, rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = "make bench" if not argv else shlex.join(["python", "-m", "bench", *argv])
    signal.signal(signal.SIGTERM, _terminate)
    try:
        text = run(args, command)
    except (BenchError, EmbeddedPostgresError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; cleaned up", file=sys.stderr)
        return 130
    text += f"\nTotal run time: {time.monotonic() - _started:.0f} s.\n"
    print(text)
    log(f"wrote {report.write(text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
