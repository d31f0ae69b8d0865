"""``crm``: serve, migrate, seed, token, and the embedded database.

Without ``DATABASE_URL`` every command that needs a database starts the embedded PostgreSQL
(data in ``CRM_DATA_DIR``, port ``CRM_PG_PORT``) and, except ``crm db start``, stops it again
when it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import psycopg
from psycopg import sql

from crm.settings import get_settings

DEV_DATABASE = "kundenmanagement"


def _ensure_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def database(keep_running: bool = False) -> Iterator[str]:
    """Yield a DSN: ``DATABASE_URL``, or the embedded PostgreSQL started for the duration."""
    settings = get_settings()
    if settings.database_url:
        yield settings.database_url
        return
    from db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir, port=settings.pg_port, port_env="CRM_PG_PORT")
    server.start()
    try:
        _ensure_database(server.dsn(), DEV_DATABASE)
        yield server.dsn(DEV_DATABASE)
    finally:
        if not keep_running:
            server.stop()


def cmd_migrate(_args: argparse.Namespace) -> int:
    from db.migrate import migrate

    with database() as dsn:
        applied = migrate(dsn)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from db.migrate import migrate
    from db.seed import seed

    with database() as dsn:
        migrate(dsn)
        counts = seed(dsn, customers=args.customers)
    print("seeded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from crm.auth import issue_token

    print(issue_token(args.sub, args.role, args.chain or [], args.expires_in, args.scope))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from crm.auth import issue_token
    from db.migrate import migrate
    from db.seed import seed

    settings = get_settings()
    with database() as dsn:
        migrate(dsn)
        if args.seed:
            counts = seed(dsn, customers=args.customers)
            print("demo data: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        base = f"http://{settings.host}:{settings.port}"
        token = issue_token("admin", ["admin"], expires_in=7 * 24 * 3600)
        print(
            f"\nKundenmanagement API on {base}\n"
            f"  docs:    {base}/api/v1/docs\n"
            f"  spec:    {base}/api/v1/openapi.json\n"
            f"  token:   export TOKEN={token}\n"
            f"  try:     curl -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/customers?limit=2\n",
            flush=True,
        )
        # Prometheus multiprocess mode: the workers and the relay write their metrics into one
        # directory, and /metrics sums them (crm/metrics.py); a fresh one per run unless given.
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="crm-metrics-")
        env = {**os.environ, "DATABASE_URL": dsn, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        gunicorn = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "crm.app:asgi_app()",
                "--config", "python:crm.gunicorn_conf",
                "--worker-class", "uvicorn_worker.UvicornWorker",
                "--workers", str(settings.workers),
                "--bind", f"{settings.host}:{settings.port}",
                "--graceful-timeout", "10",
                "--log-level", "warning",
            ],
            env=env,
        )
        # The webhook relay runs beside the API and stops with it (``--no-relay`` leaves it out).
        relay = None if args.no_relay else subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "relay"], env=env
        )

        def forward(signum: int, _frame: object) -> None:
            gunicorn.send_signal(signal.SIGTERM)
            if relay is not None and relay.poll() is None:
                relay.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = gunicorn.wait()
        if relay is not None:
            if relay.poll() is None:
                relay.send_signal(signal.SIGTERM)
            try:
                relay.wait(timeout=15)
            except subprocess.TimeoutExpired:
                relay.kill()
        if metrics_dir != os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def cmd_relay(_args: argparse.Namespace) -> int:
    """``crm relay``: deliver outbox events to webhook subscriptions until SIGTERM/SIGINT."""
    import asyncio
    import logging

    from crm.relay import run_relay

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its line names the URL; ours does not
    from crm.logs import json_lines_to_stderr

    json_lines_to_stderr("crm.relay.delivery")  # one bare JSON line per delivery attempt
    port = os.environ.get("RELAY_METRICS_PORT", "").strip()
    if port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A relay deployed on its own (not started by `crm serve`, whose /metrics includes it):
        # its crm_relay_* metrics on http://RELAY_METRICS_HOST:RELAY_METRICS_PORT/metrics.
        from prometheus_client import start_http_server

        start_http_server(int(port), addr=os.environ.get("RELAY_METRICS_HOST", "127.0.0.1"))
    with database() as dsn:
        asyncio.run(run_relay(dsn))
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """``crm retention run [--dry-run]``: archive, then delete, what the retention classes say is
    due (db/retention.py), in batches; prints what it did per class. Safe to rerun or to run
    again after a crash: it continues with what is still due."""
    from datetime import datetime

    from db.migrate import migrate
    from db.retention import RetentionBusy, run_retention

    if args.as_of and not args.dry_run:
        print("--as-of only with --dry-run (a real run uses the current time)", file=sys.stderr)
        return 2
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else None
    if as_of is not None and as_of.tzinfo is None:
        print("--as-of needs a time zone, e.g. 2030-01-01T00:00:00+00:00", file=sys.stderr)
        return 2
    with database() as dsn:
        migrate(dsn)
        try:
            report = run_retention(dsn, as_of, dry_run=args.dry_run, batch_size=args.batch_size)
        except RetentionBusy as exc:
            print(f"retention: {exc}", file=sys.stderr)
            return 1
    print("\n".join(report.lines()))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """``crm db start`` leaves the embedded PostgreSQL running and prints its DSN; ``stop`` ends it."""
    settings = get_settings()
    from db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir, port=settings.pg_port, port_env="CRM_PG_PORT")
    if args.action == "stop":
        server.stop()
        return 0
    with database(keep_running=True) as dsn:
        from db.migrate import migrate

        migrate(dsn)
        print(dsn)
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    """``crm fields backfill``: run the open field jobs (make hot / cold, archive) to the end,
    printing progress; a job interrupted before continues where it stopped."""
    import asyncio

    from db.field_jobs import Progress, run_jobs
    from db.migrate import migrate

    def show(p: Progress) -> None:
        total = f"/{p.total:,}" if p.total is not None else ""
        print(f"job {p.job_id} {p.action} {p.key}: {p.phase} {p.processed:,}{total} customers", flush=True)

    with database() as dsn:
        migrate(dsn)
        outcomes = asyncio.run(run_jobs(dsn, key=args.key, batch_size=args.batch_size, on_progress=show))
    for job_id, outcome in outcomes.items():
        print(f"job {job_id}: {outcome}")
    if not outcomes:
        print("no open field jobs")
    return 1 if "FAILED" in outcomes.values() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm", description="Kundenmanagement API")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate and serve the API with gunicorn")
    serve.add_argument("--seed", action="store_true", help="load the demo data first (idempotent)")
    serve.add_argument("--customers", type=int, default=200, help="demo customers to seed")
    serve.add_argument("--no-relay", action="store_true", help="do not start the webhook relay beside the API")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("relay", help="deliver events to webhook subscriptions (crm serve starts it)").set_defaults(
        func=cmd_relay
    )

    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)

    seed_p = sub.add_parser("seed", help="load demo data (idempotent)")
    seed_p.add_argument("--customers", type=int, default=200)
    seed_p.set_defaults(func=cmd_seed)

    token = sub.add_parser("token", help="print a signed JWT for local use")
    token.add_argument("--sub", required=True)
    token.add_argument("--role", action="append", required=True,
                       choices=["admin", "sales_manager", "sales_rep", "chain_manager", "integration"])
    token.add_argument("--chain", action="append", metavar="CHAIN_ID")
    token.add_argument("--expires-in", type=int, default=8 * 3600, metavar="SECONDS")
    token.add_argument("--scope", help="space-separated scopes narrowing what the roles grant")
    token.set_defaults(func=cmd_token)

    fields = sub.add_parser("fields", help="custom fields: run the jobs that make fields hot or cold")
    fields.add_argument("action", choices=["backfill"])
    fields.add_argument("--key", help="only the jobs of this field")
    fields.add_argument("--batch-size", type=int, metavar="CUSTOMERS", help="customers per batch (default 5000)")
    fields.set_defaults(func=cmd_fields)

    retention = sub.add_parser("retention", help="GDPR retention: archive and delete what is past its time")
    retention.add_argument("action", choices=["run"])
    retention.add_argument("--dry-run", action="store_true", help="only count what is due")
    retention.add_argument("--batch-size", type=int, default=500, metavar="ROWS", help="rows per batch (500)")
    retention.add_argument("--as-of", metavar="TIMESTAMP", help="with --dry-run: count as of this instant")
    retention.set_defaults(func=cmd_retention)

    db = sub.add_parser("db", help="start or stop the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop"])
    db.set_defaults(func=cmd_db)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
