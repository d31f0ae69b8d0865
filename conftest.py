"""Shared pytest fixtures: a real PostgreSQL (embedded, started once per session), the app on it,
a clean database per test, and tokens for each role."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import psycopg
import pytest

os.environ.setdefault("JWT_SECRET", "test-secret-" + "x" * 32)
os.environ.pop("JWT_JWKS_URL", None)
os.environ.pop("DATABASE_URL", None)

TABLES = (
    "webhook_delivery", "webhook_subscription", "event_consumer", "outbox_retention",
    "idempotency_key", "outbox", "activity", "customer_change",
    "erasure_log", "retention_run", "archive.record",
    "sample_request_history", "sample_item", "sample_request", "product",
    "customer_hot", "field_job", "field_definition",
    "contact", "customer", "chain",
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    from db.embedded import EmbeddedPostgres

    folder = tempfile.mkdtemp(prefix="crm-test-")
    server = EmbeddedPostgres(folder, fast=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def dsn(pg_server) -> str:
    from db.migrate import migrate

    pg_server.create_database("crm_test")
    url = pg_server.dsn("crm_test")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def app(dsn):
    from crm.app import create_app

    return create_app(dsn)


@pytest.fixture(scope="session")
def _session_client(app):
    with app.test_client() as client:
        yield client


def _truncate(dsn: str) -> None:
    from crm import feature_flags

    with psycopg.connect(dsn, autocommit=True) as conn:
        # Flags come from migrations: switched back off (before the truncate, which clears their
        # events too), not removed; the workers' cache forgets what it held.
        conn.execute("update feature_flag set enabled = false, updated_by = null where enabled")
        conn.execute("truncate " + ", ".join(TABLES) + " restart identity cascade")
    feature_flags.invalidate()


@pytest.fixture
def db(dsn) -> Iterator[psycopg.Connection]:
    """A clean database, and a connection to it that sees every row (crm.scope = all)."""
    _truncate(dsn)
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("select set_config('crm.scope', 'all', false)")
        yield conn


@pytest.fixture
def client(_session_client, db):
    """The app's test client on a clean database."""
    return _session_client


@pytest.fixture
def auth() -> Callable[..., dict[str, str]]:
    """``auth("admin")`` → headers with a bearer token for that role."""
    from crm.auth import issue_token

    def make(*roles: str, sub: str | None = None, chains: list[str] | None = None, **kw) -> dict[str, str]:
        token = issue_token(sub or f"{roles[0]}-user", list(roles), chains or [], **kw)
        return {"Authorization": f"Bearer {token}"}

    return make
