"""Sample-request writes: ``.venv/bin/python -m bench.samples`` (part of ``make bench``).

A private embedded PostgreSQL (temporary data dir, normal durability) with the seeded customers
and the Cook&Fresh catalogue; the API served by gunicorn with uvicorn workers, as in ``make bench``.
wrk (bench/samples.lua) measures, at 8 connections by default:

1. create: ``POST /api/v1/sample-requests``, a DRAFT with two items, for a random customer;
2. submit: ``POST .../transitions {"to": "REQUESTED"}`` with If-Match — validation, the quota
   check under its advisory lock, the status change, the history row and its outbox event;
3. approve: ``POST .../transitions {"to": "APPROVED"}`` on the requests just submitted.

Each transition request works on its own sample request (the drafts made by an unmeasured fill
run and by the create run), so every answer is a 200 and not a 412. Quotas are raised for the run,
so every submit passes its quota check (the check itself still runs). Any non-2xx answer fails the
benchmark. Prints a Markdown table with the command; everything started is stopped and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import cpu, server, wrk
from bench.stats import BenchError, Measurement
from crm.auth import issue_token

LUA_SCRIPT = Path(__file__).resolve().parent / "samples.lua"
_started = time.monotonic()


@dataclass(frozen=True)
class Result:
    case: str
    connections: int
    measurement: Measurement
    cpu: cpu.CpuPerRequest


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:5.0f} s] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--customers", type=int, default=100_000, help="customers to seed (default 100000)")
    parser.add_argument("--fill", type=int, default=20, help="seconds of unmeasured creates first (default 20)")
    return parser.parse_args(argv)


def _wrk(wrk_path: str, url: str, token: str, connections: int, seconds: int, env: dict[str, str]) -> Measurement:
    """One wrk run with bench/samples.lua; any socket error or non-2xx answer fails the benchmark."""
    return wrk.run(wrk_path, url, token, connections, seconds, None, script=LUA_SCRIPT, extra_env=env)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _requests_in(dsn: str, status: str) -> list[str]:
    """``<id> <etag>`` of every sample request in ``status``, in a random order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select id, crm_etag(id, version) from sample_request where status = %s order by random()", (status,)
        ).fetchall()
    return [f"{row[0]} {row[1]}" for row in rows]


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select status::text, count(*) from sample_request group by 1").fetchall()
        history = conn.execute("select count(*) from sample_request_history").fetchone()
        events = conn.execute("select count(*) from outbox where aggregatetype = 'sample_request'").fetchone()
    return {**{row[0]: int(row[1]) for row in rows}, "history rows": int(history[0]), "outbox events": int(events[0])}


def run(args: argparse.Namespace, command: str) -> str:
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-samples-"))
    os.environ["JWT_SECRET"] = secrets.token_urlsafe(48)
    os.environ["CRM_DATA_DIR"] = str(tmp / "work")
    work = tmp / "work"
    work.mkdir()
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        wrk_path = wrk.ensure_wrk()
        log("starting PostgreSQL")
        database = server.start_database(tmp)
        stack.callback(database.stop)
        log(f"migrating, seeding {args.customers:,} customers and the catalogue, VACUUM ANALYZE")
        with contextlib.redirect_stdout(sys.stderr):
            dsn = server.prepare_database(database, args.customers, 2_000)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("update sample_quota set max_units = 1000000000")
            products = [str(r[0]) for r in conn.execute(
                "select id from product where sample_available order by sku").fetchall()]
        create_file = _write_lines(work / "create.txt", [*server.customer_ids(dsn), "--", *products])
        port = server.free_port()
        log(f"starting gunicorn on 127.0.0.1:{port}")
        api = server.start_api(dsn, os.environ["JWT_SECRET"], port, work)
        stack.callback(server.stop_api, api)
        base = f"http://127.0.0.1:{port}/api/v1/sample-requests"
        server.wait_ready(api, f"http://127.0.0.1:{port}", work / "gunicorn.log")
        token = issue_token("bench", ["admin"], expires_in=3600)
        meter = cpu.CpuMeter(api.pid, cpu.postmaster_pid(database.pgdata))
        create_env = {"BENCH_MODE": "create", "BENCH_FILE": str(create_file)}

        log(f"fill: {args.fill} s of unmeasured creates")
        _wrk(wrk_path, base, token, args.connections, args.fill, create_env)

        def measured(case: str, env: dict[str, str]) -> None:
            log(f"{case}: wrk, {args.connections} connections, {args.duration} s")
            before = meter.sample()
            result = _wrk(wrk_path, base if env["BENCH_MODE"] == "create" else base + "/",
                          token, args.connections, args.duration, env)
            results.append(Result(case, args.connections, result,
                                  cpu.per_request(meter.sample() - before, result.requests)))

        measured("create (POST /sample-requests, 2 items)", create_env)
        drafts = _write_lines(work / "drafts.txt", _requests_in(dsn, "DRAFT"))
        measured("submit (transition DRAFT → REQUESTED)",
                 {"BENCH_MODE": "transition", "BENCH_FILE": str(drafts), "BENCH_TO": "REQUESTED"})
        submitted = _write_lines(work / "submitted.txt", _requests_in(dsn, "REQUESTED"))
        measured("approve (transition REQUESTED → APPROVED)",
                 {"BENCH_MODE": "transition", "BENCH_FILE": str(submitted), "BENCH_TO": "APPROVED"})
        counts = _counts(dsn)
        version = server.server_version(dsn)
        log("stopping gunicorn and PostgreSQL")
    facts = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{len(os.sched_getaffinity(0))} CPUs (nproc); wrk shares them with the servers; "
                   f"load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after",
        "PostgreSQL": f"{version} (embedded, private temp data dir, fsync on)",
        "API": f"gunicorn {server.WORKERS} workers (uvicorn_worker.UvicornWorker), access log off",
        "data": f"{args.customers:,} customers, {len(products)} sample-available products; "
                f"after the run: {json.dumps(counts)}",
        "load": f"{wrk.version(wrk_path)} --threads {wrk.THREADS}, {args.connections} connections, "
                f"{args.duration} s per measured run after {args.fill} s of unmeasured creates; latencies in ms",
    }
    return document(command, facts, results)


def document(command: str, facts: dict[str, str], results: list[Result]) -> str:
    lines = [f"Command: `{command}`\n\n", *[f"- {key}: {value}\n" for key, value in facts.items()], "\n"]
    lines.append("| case | connections | requests | req/s | p50 | p95 | p99 (ms) "
                 "| CPU ms/request: gunicorn | PostgreSQL |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
    for r in results:
        m = r.measurement
        lines.append(f"| {r.case} | {r.connections} | {m.requests:,} | {m.rate:,.0f} | {m.p50_ms:.2f} "
                     f"| {m.p95_ms:.2f} | {m.p99_ms:.2f} | {r.cpu.server_ms:.2f} | {r.cpu.database_ms:.2f} |\n")
    return "".join(lines)


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "-m", "bench.samples", *argv])
    signal.signal(signal.SIGTERM, _terminate)
    try:
        text = run(args, command)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; cleaned up", file=sys.stderr)
        return 130
    print(text + f"\nTotal run time: {time.monotonic() - _started:.0f} s.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
