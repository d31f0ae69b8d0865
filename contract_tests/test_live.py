"""A bounded Schemathesis run against the app served the way production serves it: gunicorn with
two uvicorn workers, on a database of its own, driven by the ``st`` CLI over real HTTP.

The CLI reads ``schemathesis.toml`` from the repository root (expected statuses); the command
line sets the volume. Any failed check makes ``st`` exit non-zero, which fails the test with its
report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crm.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "crm_contract_live"
STARTUP_TIMEOUT = 30
RUN_TIMEOUT = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} was not ready within {STARTUP_TIMEOUT}s:\n{log.read_text()[-3000:]}")


def _errors(log: Path) -> list[str]:
    """The server log without access-log lines and Connexion's per-request content-type notes."""
    return [
        line for line in log.read_text(errors="replace").splitlines()
        if not line.startswith("{") and "accepts multiple content types" not in line
    ]


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


@pytest.fixture
def live_server(pg_server, tmp_path):
    """gunicorn serving the app on a free port of 127.0.0.1 and a freshly migrated database:
    ``(base URL, log file)``."""
    from db.migrate import migrate

    pg_server.drop_database(DATABASE)
    pg_server.create_database(DATABASE)
    dsn = pg_server.dsn(DATABASE)
    migrate(dsn)
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": os.environ["JWT_SECRET"],
        "CRM_DATA_DIR": str(tmp_path / "data"),
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "crm.app:asgi_app()",
                "-k", "uvicorn_worker.UvicornWorker", "-w", "2",
                "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
            ],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/health/ready", server, log)
        yield base, log
    finally:
        _stop(server)


def test_live_server_conforms(live_server):
    base, log = live_server
    token = issue_token("contract-live", ["admin"])
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{base}/api/v1/openapi.json",
        "--url", base,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        # Coverage (the systematic invalid-input phase) runs in-process, over every operation, in
        # test_schema.py; here the point is the production stack: gunicorn, two workers, real HTTP.
        "--phases", "examples,fuzzing,stateful",
        "--max-examples", "10",
        "--workers", "2",
        "--request-timeout", "10",
        # The in-process tests send U+0000 and accept the 400 it gets (contract_tests/inprocess.py);
        # the CLI cannot be told that, so it leaves the NUL character out.
        "--generation-allow-x00", "false",
        "--no-color",
    ]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"st run took longer than {RUN_TIMEOUT}s:\n{output[-5000:]}")
    report = result.stdout[-20000:] + result.stderr[-3000:]
    server_log = "\n".join(_errors(log)[-80:])
    assert result.returncode == 0, f"st run failed ({result.returncode}):\n{report}\n--- gunicorn ---\n{server_log}"
