"""Helpers of the ecosystem tests (tests/test_ecosystem*.py): where the Node tools and Chromium are,
and a gunicorn server of the app on a database of its own, as contract_tests/test_live.py runs it.

The Node tools come from ``npm ci`` (package.json, package-lock.json) and Chromium from Debian's
package; ``make test`` installs both first (``make tools``). Run alone, a test whose tool is
missing is skipped with the command that installs it — unless ``CI`` or ``CRM_REQUIRE_TOOLS`` is
set (``make test`` and ``.ci/run`` set them), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract_tests.test_live import _free_port, _stop, _wait_ready

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"
OUTPUT = ROOT / "build" / "test-output"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Keep the Node tools from calling home: Redocly's telemetry and update notice.
NODE_ENV = {
    **os.environ,
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_UPDATE_NOTIFIER": "1",
    "NO_COLOR": "1",
}


def _missing(what: str, install: str) -> None:
    message = f"{what} is not installed: run `{install}`"
    if os.environ.get("CI") or os.environ.get("CRM_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def node_tool(name: str) -> str:
    """The path of a tool from node_modules/.bin (skips or fails when missing, see above)."""
    path = NODE_BIN / name
    if not path.exists():
        _missing(f"node_modules/.bin/{name}", "make node")
    return str(path)


def node_package(name: str) -> Path:
    """A package installed by npm ci, e.g. playwright-core (skips or fails when missing)."""
    path = ROOT / "node_modules" / name
    if not (path / "package.json").exists():
        _missing(f"node_modules/{name}", "make node")
    return path


def node() -> str:
    path = shutil.which("node")
    if path is None:
        _missing("node", "apt-get install nodejs")
    return path


def chromium() -> str:
    if not Path(CHROMIUM).exists():
        _missing(CHROMIUM, "make chromium")
    return CHROMIUM


def output_dir(name: str) -> Path:
    """A folder under build/test-output/ (git-ignored) for what a test leaves to look at."""
    folder = OUTPUT / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def serve(pg_server, database: str, tmp: Path) -> Iterator[str]:
    """gunicorn (two uvicorn workers) serving the app on a freshly migrated, empty ``database``;
    yields the base URL. Webhook targets on loopback are allowed, as in ``make run``."""
    from db.migrate import migrate

    pg_server.drop_database(database)
    pg_server.create_database(database)
    dsn = pg_server.dsn(database)
    migrate(dsn)
    port = _free_port()
    log = tmp / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": os.environ["JWT_SECRET"],
        "CRM_DATA_DIR": str(tmp / "data"),
        "WEBHOOK_ALLOW_PRIVATE": "1",
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
        yield base
    finally:
        _stop(server)
