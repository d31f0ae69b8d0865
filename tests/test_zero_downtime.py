"""The zero-downtime playbook (docs/deploy.md) on a real change: contact.email (text) moves to
contact.email_address (citext).

The previous release (``tests/previous_release``: its contact SQL as of the last commit before the
change, on its own long-lived connection) and this release (the app, through HTTP) run against the
same database at every step — expand, backfill, dual-write, read-switch, contract — and at each
one both keep working and see each other's writes; then the step is rolled back and both keep
working again. The contract step, which the previous release cannot survive, is applied from
``db/pending/`` by this test only.

The test moves the session database through the steps and leaves it fully migrated (contract
rolled back, flags off) whatever happens, so the tests after it see the usual schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from yoyo import get_backend, read_migrations

from db.migrate import MIGRATIONS_DIR, _yoyo_url
from tests.helpers import create_customer
from tests.previous_release import PreviousRelease

PENDING_DIR = MIGRATIONS_DIR.parent / "pending"
EXPAND, BACKFILL = "0061_contact_email_address", "0062_contact_email_address_backfill"
CONTRACT = "0069_contact_email_address_contract"
DUAL_WRITE, READ = "contact_email_dual_write", "contact_email_read"


class Schema:
    """Applies and rolls back single migrations (with their .rollback.sql) through yoyo."""

    def __init__(self, dsn: str) -> None:
        self.backend = get_backend(_yoyo_url(dsn))

    def _pick(self, *ids: str):
        return read_migrations(str(MIGRATIONS_DIR), str(PENDING_DIR)).filter(lambda m: m.id in ids)

    def apply(self, *ids: str) -> None:
        with self.backend.lock():
            self.backend.apply_migrations(self.backend.to_apply(self._pick(*ids)))

    def rollback(self, *ids: str) -> None:
        with self.backend.lock():
            self.backend.rollback_migrations(self.backend.to_rollback(self._pick(*ids)))

    def applied(self, migration_id: str) -> bool:
        return migration_id in {m.id for m in self.backend.to_rollback(self._pick(migration_id))}


@pytest.fixture
def schema(dsn, db) -> Iterator[Schema]:
    schema = Schema(dsn)
    try:
        yield schema
    finally:
        db.execute("update feature_flag set enabled = false where enabled")
        schema.rollback(CONTRACT)
        schema.apply(EXPAND, BACKFILL)


@pytest.fixture
def previous(dsn) -> Iterator[PreviousRelease]:
    release = PreviousRelease(dsn)
    try:
        yield release
    finally:
        release.close()


class World:
    """Both releases, and what the test needs to drive them."""

    def __init__(self, client, auth, db, previous: PreviousRelease) -> None:
        self.client, self.db, self.previous = client, db, previous
        self.rep = auth("sales_rep", sub="rep-current")
        self.admin = auth("admin", sub="ops-admin")
        self.customer = create_customer(client, self.admin, "K-200001")["id"]

    # -- this release, through its API ------------------------------------------------------------
    def create(self, **body) -> dict:
        r = self.client.post(f"/api/v1/customers/{self.customer}/contacts", json=body, headers=self.rep)
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, contact_id: str) -> dict:
        r = self.client.get(f"/api/v1/contacts/{contact_id}", headers=self.rep)
        assert r.status_code == 200, r.text
        return r.json()

    def patch(self, contact: dict, **changes) -> dict:
        r = self.client.patch(f"/api/v1/contacts/{contact['id']}", json=changes,
                              headers={**self.rep, "If-Match": contact["etag"]})
        assert r.status_code == 200, r.text
        return r.json()

    def listed(self) -> list[dict]:
        r = self.client.get(f"/api/v1/customers/{self.customer}/contacts?limit=200", headers=self.rep)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def switch(self, flag: str, enabled: bool) -> None:
        etag = self.client.get(f"/api/v1/feature-flags/{flag}", headers=self.admin).headers["etag"]
        r = self.client.patch(f"/api/v1/feature-flags/{flag}", json={"enabled": enabled},
                              headers={**self.admin, "If-Match": etag})
        assert r.status_code == 200, r.text

    # -- the database ----------------------------------------------------------------------------
    def columns(self) -> set[str]:
        rows = self.db.execute(
            "select attname from pg_attribute where attrelid = 'contact'::regclass and attnum > 0"
            " and not attisdropped").fetchall()
        return {r["attname"] for r in rows}

    def assert_columns_agree(self, ids: list[str] | None = None) -> None:
        """Both columns hold the same address (of the contacts ``ids``, or of all)."""
        if {"email", "email_address"} <= self.columns():
            differ = self.db.execute(
                "select count(*) as n from contact where email_address::text is distinct from email"
                " and (cast(%(ids)s as uuid[]) is null or id = any (cast(%(ids)s as uuid[])))",
                {"ids": ids}).fetchone()
            assert differ["n"] == 0

    # -- the check run at every step --------------------------------------------------------------
    def both_work(self, step: str) -> None:
        """Each release writes, changes and reads; the other sees exactly the same contact."""
        old = self.previous.create_contact(self.customer, last_name=f"Alt {step}", email=f"Alt.{step}@Example.org")
        assert self.get(old["id"]) == old
        new = self.create(last_name=f"Neu {step}", email=f"Neu.{step}@Example.org", phone="+49 89 1234")
        assert self.previous.get_contact(new["id"]) == new

        # Each changes the other's contact, with the entity tag the other handed out; a change of
        # case only must reach the other column too (citext would call it "no change").
        old = self.patch(old, email=f"alt.{step}@example.org")
        assert self.previous.get_contact(old["id"]) == old
        new = self.previous.update_contact(new["id"], new["etag"], email=f"neu.{step}@example.org")
        assert self.get(new["id"]) == new
        assert (old["email"], new["email"]) == (f"alt.{step}@example.org", f"neu.{step}@example.org")

        assert self.listed() == self.previous.list_contacts(self.customer)
        self.assert_columns_agree([old["id"], new["id"]])

    def new_release_works(self, step: str) -> None:
        contact = self.create(last_name=f"Neu {step}", email=f"Neu.{step}@Example.org")
        contact = self.patch(contact, email=f"neu.{step}@example.org", phone="+49 30 555")
        assert self.get(contact["id"]) == contact
        assert contact in self.listed()


@pytest.fixture
def world(client, auth, db, previous, schema) -> World:
    return World(client, auth, db, previous)


def test_every_step_keeps_both_releases_working(world: World, schema: Schema):
    w = world
    # 0. Before the change: the previous release alone (this one needs the expand step). Its
    #    contacts are what the backfill will have to copy.
    schema.rollback(EXPAND, BACKFILL)
    assert "email_address" not in w.columns()
    early = [w.previous.create_contact(w.customer, last_name=f"Früh {i}", email=f"Frueh.{i}@Example.org")
             for i in range(3)]

    # 1. Expand: new column, sync trigger, flags. The previous release's writes reach both columns.
    schema.apply(EXPAND)
    w.both_work("expand")
    assert w.db.execute("select count(*) as n from contact where email_address is null").fetchone()["n"] == 3
    # rollback: drop it all again; the previous release never knew it
    schema.rollback(EXPAND)
    w.previous.create_contact(w.customer, last_name="Nach Rückbau", email="Nach.Rueckbau@Example.org")
    assert w.previous.get_contact(early[0]["id"]) == early[0]
    schema.apply(EXPAND)

    # 2. Backfill: the rows from before the trigger get the new column, without a version bump
    #    (the entity tags clients hold stay valid) and without an event per row.
    events_before = w.db.execute("select count(*) as n from outbox").fetchone()["n"]
    schema.apply(BACKFILL)
    w.assert_columns_agree()
    assert [w.previous.get_contact(c["id"]) for c in early] == early
    assert w.db.execute("select count(*) as n from outbox").fetchone()["n"] == events_before
    w.both_work("backfill")
    # rollback: a backfill has nothing to undo (the expand's rollback drops the column); running it
    # again is a no-op
    schema.rollback(BACKFILL)
    schema.apply(BACKFILL)
    assert [w.get(c["id"]) for c in early] == early

    # 3. Dual-write: this release writes email_address; the trigger keeps email for the previous one.
    w.switch(DUAL_WRITE, True)
    w.both_work("dual-write")
    written = w.create(last_name="Nur Neu", email="Nur.Neu@Example.org")
    row = w.db.execute("select email, email_address::text as address from contact where id = %s",
                       (written["id"],)).fetchone()
    assert row == {"email": "Nur.Neu@Example.org", "address": "Nur.Neu@Example.org"}
    # rollback: the flag off, this release writes email again
    w.switch(DUAL_WRITE, False)
    w.both_work("dual-write-off")
    w.switch(DUAL_WRITE, True)

    # 4. Read-switch: this release reads email_address.
    w.switch(READ, True)
    w.both_work("read-switch")
    # rollback: the flag off, this release reads email again
    w.switch(READ, False)
    w.both_work("read-switch-off")
    w.switch(READ, True)

    # 5. Contract: contact.email is gone. This release (flags on) keeps working; the previous one
    #    can still read (contact_json now reads the new column) but no longer write, so the
    #    contract ships only when the previous release is no longer deployed (docs/deploy.md).
    schema.apply(CONTRACT)
    assert "email" not in w.columns()
    w.new_release_works("contract")
    assert w.previous.get_contact(written["id"]) == w.get(written["id"])
    with pytest.raises(psycopg.errors.UndefinedColumn):
        w.previous.create_contact(w.customer, last_name="Zu Spät", email="zu.spaet@example.org")
    # the erasure function names only the new column: it survives the contract unchanged
    erased = w.client.post(f"/api/v1/contacts/{written['id']}/erasure", headers={**w.admin, "If-Match": "*"})
    assert erased.status_code == 200, erased.text
    assert w.get(written["id"])["email"] is None
    # rollback: contact.email back, filled from email_address, with its trigger: both work again
    schema.rollback(CONTRACT)
    w.assert_columns_agree()
    w.both_work("contract-rolled-back")


def test_the_contract_refuses_while_a_flag_is_off(world: World, schema: Schema):
    world.switch(DUAL_WRITE, True)  # the read-switch is still off
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="must both be on"):
        schema.apply(CONTRACT)
    assert not schema.applied(CONTRACT)
    assert "email" in world.columns()
    world.both_work("refused")


def test_the_contract_refuses_when_the_columns_differ(world: World, schema: Schema):
    contact = world.create(last_name="Abweichend", email="a@example.org")
    world.switch(DUAL_WRITE, True)
    world.switch(READ, True)
    # A write that bypassed the trigger (as a restore from an old dump could) leaves them apart.
    world.db.execute("set session_replication_role = replica")
    world.db.execute("update contact set email = 'b@example.org' where id = %s", (contact["id"],))
    world.db.execute("reset session_replication_role")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="differ"):
        schema.apply(CONTRACT)
    assert "email" in world.columns()
    world.db.execute("update contact set email = 'a@example.org' where id = %s", (contact["id"],))
