"""Migrations: applied by the runner, recorded, rerunnable, written in the zero-downtime style."""

from __future__ import annotations

import re

import pytest

from db.migrate import MIGRATIONS_DIR, migrate, migration_ids

FILES = sorted(MIGRATIONS_DIR.glob("*.sql"))


def test_all_recorded_and_rerun_applies_nothing(dsn, db):
    recorded = {r["migration_id"] for r in db.execute("select migration_id from _yoyo_migration")}
    assert recorded == set(migration_ids())
    assert migrate(dsn) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_style(path):
    text = path.read_text()
    assert "set lock_timeout" in text
    assert "set statement_timeout" in text
    creates_index = re.search(r"create (unique )?index", text)
    if creates_index:
        assert "-- transactional: false" in text
        assert all("concurrently" in line for line in text.splitlines() if re.search(r"create (unique )?index", line))


def test_api_role_cannot_bypass_row_level_security(db):
    role = db.execute("select rolsuper, rolbypassrls from pg_roles where rolname = 'crm_api'").fetchone()
    assert role == {"rolsuper": False, "rolbypassrls": False}
    forced = db.execute(
        "select relname from pg_class where relforcerowsecurity and relname in ('chain', 'customer', 'contact')"
    ).fetchall()
    assert len(forced) == 3
