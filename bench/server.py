"""The system under test: a dedicated embedded PostgreSQL with 100,000 customers, and the API
served by gunicorn with uvicorn workers — both private to one benchmark run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

from bench.stats import BenchError
from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from db.seed import seed

DATABASE = "crm_bench"
WORKERS = 2
READY_TIMEOUT_S = 60
# Warnings and errors only, to the log file: no per-request access log line, neither the app's JSON
# one (crm.access, INFO; with a root handler configured here the app's logging.basicConfig() leaves
# logging alone) nor uvicorn's (it borrows gunicorn.access's handlers). gunicorn merges this over
# its defaults key by key, so both of its loggers are given.
LOG_CONFIG = {
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "WARNING", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}


def start_database(data_dir: Path) -> EmbeddedPostgres:
    """Start PostgreSQL (normal durability) in ``data_dir``; the caller stops it."""
    server = EmbeddedPostgres(data_dir, fast=False)
    server.start()
    return server


def prepare_database(server: EmbeddedPostgres, customers: int, sample: int) -> str:
    """Create, migrate and seed the database, sample ``sample`` customer ids into ``bench_ids``."""
    server.create_database(DATABASE)
    dsn = server.dsn(DATABASE)
    migrate(dsn)
    seed(dsn, customers=customers)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table bench_ids (k integer primary key, id uuid not null)")
        conn.execute(
            "insert into bench_ids (k, id) "
            "select row_number() over (), s.id from (select id from customer order by random() limit %s) as s",
            (sample,),
        )
        conn.execute("vacuum analyze")
    return dsn


def customer_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [str(row[0]) for row in conn.execute("select id from bench_ids order by k")]


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select current_setting('server_version')").fetchone()
    return str(row[0]) if row else "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(dsn: str, jwt_secret: str, port: int, work_dir: Path) -> subprocess.Popen[bytes]:
    """gunicorn in its own session (Ctrl-C reaches us, and we stop it); output → work_dir/gunicorn.log."""
    log_config = work_dir / "gunicorn-logging.json"
    log_config.write_text(json.dumps(LOG_CONFIG))
    env = {**os.environ, "DATABASE_URL": dsn, "JWT_SECRET": jwt_secret, "CRM_DATA_DIR": str(work_dir)}
    cmd = [sys.executable, "-m", "gunicorn", "crm.app:asgi_app()", "-k", "uvicorn_worker.UvicornWorker",
           "-w", str(WORKERS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
           "--log-config-json", str(log_config)]
    with (work_dir / "gunicorn.log").open("wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parent.parent)


def wait_ready(api: subprocess.Popen[bytes], base_url: str, log_file: Path) -> None:
    """Poll /health/ready: connection refused and 503 mean "not yet", any other answer is an error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise BenchError(f"gunicorn exited with {api.returncode}:\n{_tail(log_file)}")
        try:
            with urllib.request.urlopen(f"{base_url}/health/ready", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise BenchError(f"/health/ready answered {exc.code}: {exc.read()[:500]!r}\n"
                                 f"--- {log_file} ---\n{_tail(log_file)}") from None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BenchError(f"the API was not ready after {READY_TIMEOUT_S} s:\n{_tail(log_file)}")


def stop_api(api: subprocess.Popen[bytes]) -> None:
    if api.poll() is None:
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:  # take the workers down with the master
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
