"""Apply the SQL migrations in ``db/migrations`` with yoyo, recorded in ``_yoyo_migration``.

Files are applied in name order. A file with ``-- transactional: false`` runs outside a
transaction (``CREATE INDEX CONCURRENTLY``); every file sets ``lock_timeout`` and
``statement_timeout``. See the README's "Migrations" section for the zero-downtime rules.
"""

from __future__ import annotations

from pathlib import Path

from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _yoyo_url(dsn: str) -> str:
    _scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def migration_ids() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql") if not p.stem.endswith(".rollback"))


def migrate(dsn: str) -> list[str]:
    """Apply what is pending; return the ids applied now."""
    backend = get_backend(_yoyo_url(dsn))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]
