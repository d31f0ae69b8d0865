"""``crm serve`` as a subprocess for tests that need the production stack: gunicorn with several
uvicorn workers (``crm/gunicorn_conf.py``), the relay beside it, a database of its own."""

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    base: str
    log: Path
    metrics_dir: Path
    process: subprocess.Popen
    dsn: str

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    def metrics(self) -> str:
        status, _headers, body = self.request("GET", "/metrics")
        assert status == 200, body
        return body.decode()

    def gunicorn_master(self) -> int:
        return next(pid for pid in children(self.process.pid) if "gunicorn" in cmdline(pid))

    def workers(self) -> list[int]:
        return children(self.gunicorn_master())


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def _wait_ready(live: Live) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            raise AssertionError(f"crm serve exited with {live.process.returncode}:\n{live.log.read_text()[-3000:]}")
        try:
            if live.request("GET", "/health/ready", timeout=2)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {STARTUP_TIMEOUT}s:\n{live.log.read_text()[-3000:]}")


@contextmanager
def crm_serve(pg_server: Any, folder: Path, database: str, workers: int = 2, relay: bool = True,
              env: dict[str, str] | None = None) -> Iterator[Live]:
    """``crm serve`` on a free port and a fresh database (migrated by ``crm serve`` itself)."""
    pg_server.drop_database(database)
    pg_server.create_database(database)
    dsn = pg_server.dsn(database)
    folder.mkdir(parents=True, exist_ok=True)
    metrics_dir = folder / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    environment = {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": os.environ["JWT_SECRET"],
        "CRM_DATA_DIR": str(folder / "data"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "RELAY_POLL_INTERVAL": "0.2",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "serve", *([] if relay else ["--no-relay"])],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )
    live = Live(f"http://127.0.0.1:{port}", log, metrics_dir, process, dsn)
    try:
        _wait_ready(live)
        yield live
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
