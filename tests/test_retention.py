"""Retention (db/retention.py, ``crm retention run``) with the clock moved: what is inside its
window stays untouched, what is outside is archived, then deleted; the counts add up; a rerun is a
no-op; a run that crashes in the middle of a batch loses nothing and the next one completes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from db.retention import RetentionBusy, run_retention, years_before

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)

# What each table holds of the world below, and what retention as of NOW must remove.
DUE = {
    ("30_DAYS", "outbox"): 4,
    ("30_DAYS", "webhook_delivery"): 2,
    ("30_DAYS", "idempotency_key"): 1,
    ("2_YEARS", "activity"): 2,
    ("2_YEARS", "contact"): 2,
    ("5_YEARS", "sample_request"): 1,
    ("5_YEARS", "sample_item"): 1,
    ("5_YEARS", "sample_request_history"): 2,
}
TABLES = ("outbox", "webhook_delivery", "idempotency_key", "activity", "contact", "sample_request",
          "sample_item", "sample_request_history", "customer")


class World:
    """Rows of every class, each with the age the test gives it (timestamps written directly)."""

    def __init__(self, db) -> None:
        self.db = db
        self.ids: dict[str, str] = {}
        ex = db.execute
        # Keep the setup's own events and their positions apart from the ones under test.
        ex("set session_replication_role = replica")
        try:
            self._build(ex)
        finally:
            ex("reset session_replication_role")

    def _id(self, name: str, row) -> str:
        self.ids[name] = str(row.fetchone()["id"])
        return self.ids[name]

    def _build(self, ex) -> None:
        old, recent = NOW - 40 * DAY, NOW - 10 * DAY
        # 30 days: events (4 old ones, one of which a pending delivery still needs: kept), deliveries, keys
        for i, created in enumerate((old, old, old, old, old, recent, recent)):
            self._id(f"event{i}", ex(
                "insert into outbox (aggregatetype, aggregateid, type, payload, created_at) values"
                " ('customer', %s, 'customer.updated', '{}', %s) returning id", (f"agg-{i}", created)))
        position = ex("select max(position) as p from outbox").fetchone()["p"]
        sub = self._id("subscription", ex(
            "insert into webhook_subscription (owner, url, event_types, secret, position) values"
            " ('integration', 'https://erp.example/hook', '{*}', 's', %s) returning id", (position,)))
        for name, event, status, created in (
            ("delivered_old", "event0", "DELIVERED", old), ("dead_old", "event1", "DEAD", old),
            ("pending_old", "event4", "PENDING", old), ("delivered_recent", "event5", "DELIVERED", recent),
        ):
            self._id(name, ex(
                "insert into webhook_delivery (subscription_id, event_id, event_position, event_type, aggregatetype,"
                " aggregateid, status, created_at) select %s, o.id, o.position, o.type, o.aggregatetype,"
                " o.aggregateid, %s, %s from outbox as o where o.id = %s returning id",
                (sub, status, created, self.ids[event])))
        for key, created in (("old-key", old), ("new-key", NOW - DAY)):
            ex("insert into idempotency_key (principal, operation, key, request_hash, status, created_at)"
               " values ('rep', 'customers.create_customer', %s, 'h', 201, %s)", (key, created))

        # 2 years: a dormant customer (last activity 2.5 years ago), an active one (a call last
        # year), one whose only recent sign of life is a planned visit, one with a recent contact change
        years = lambda n: NOW - timedelta(days=round(365.25 * n))  # noqa: E731
        for name, updated in (("dormant", years(3)), ("active", years(3)), ("planned", years(3)),
                              ("touched", years(3))):
            self._id(name, ex(
                "insert into customer (customer_number, name, type, created_at, updated_at)"
                " values (%s, %s, 'RESTAURANT', %s, %s) returning id", (f"K-{name}", f"Gasthaus {name}", updated,
                                                                         updated)))
        for customer, contact_updated in (("dormant", years(3)), ("dormant", years(2.5)), ("active", years(3)),
                                          ("planned", years(3)), ("touched", NOW - 30 * DAY)):
            ex("insert into contact (customer_id, last_name, email, email_address, created_at, updated_at)"
               " values (%s, 'Koch', 'koch@example.org', 'koch@example.org', %s, %s)",
               (self.ids[customer], years(3), contact_updated))
        for customer, occurred in (("dormant", years(2.5)), ("dormant", years(2.6)), ("active", years(1)),
                                   ("touched", years(3))):
            ex("insert into activity (type, customer_id, status, occurred_at, owner, created_by, direction,"
               " created_at, updated_at) values ('CALL', %s, 'DONE', %s, 'rep', 'rep', 'OUTBOUND', %s, %s)",
               (self.ids[customer], occurred, occurred, occurred))
        ex("insert into activity (type, customer_id, status, planned_at, owner, created_by, visit_kind,"
           " created_at, updated_at) values ('VISIT', %s, 'PLANNED', %s, 'rep', 'rep', 'TASTING', %s, %s)",
           (self.ids["planned"], NOW + 10 * DAY, years(3), years(3)))

        # 5 years: a request untouched for 6 years (one item with feedback, two history rows), one 4 years
        product = self._id("product", ex(
            "insert into product (sku, name, category, pack_size, unit) values ('SOUP-1', 'Suppe', 'SOUPS', 1, 'KG')"
            " returning id"))
        for name, updated in (("request_old", years(6)), ("request_recent", years(4))):
            request = self._id(name, ex(
                "insert into sample_request (customer_id, requested_by, status, created_at, updated_at)"
                " values (%s, 'rep', 'CLOSED', %s, %s) returning id", (self.ids["active"], updated, updated)))
            ex("insert into sample_item (request_id, product_id, quantity, feedback_rating, feedback_listing_decision,"
               " feedback_at, created_at, updated_at) values (%s, %s, 1, 5, 'LISTED', %s, %s, %s)",
               (request, product, updated, updated, updated))
            for status in ("DRAFT", "REQUESTED"):
                ex("insert into sample_request_history (request_id, to_status, actor, at) values (%s, %s, 'rep', %s)",
                   (request, status, updated))

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every row of the tables retention works on, by key, as JSON text."""
        out = {}
        for table in TABLES:
            key = "jsonb_build_array(principal, operation, key)::text" if table == "idempotency_key" else "id::text"
            query = sql.SQL("select {} as k, to_jsonb(t)::text as j from {} as t").format(
                sql.SQL(key), sql.Identifier(table))
            out[table] = {r["k"]: r["j"] for r in self.db.execute(query)}
        return out


@pytest.fixture
def world(db) -> World:
    return World(db)


def counts(report) -> dict[tuple[str, str], tuple[int, int]]:
    return {(c, t): (n.archived, n.deleted) for c, tables in report.counts.items() for t, n in tables.items()
            if n.archived or n.deleted}


class TestRetention:
    def test_due_rows_are_archived_then_deleted_and_nothing_else_is_touched(self, dsn, db, world):
        before = world.snapshot()
        dry = run_retention(dsn, NOW, dry_run=True, batch_size=2)
        assert world.snapshot() == before  # a dry run changes nothing
        assert counts(dry) == {k: (n, n) for k, n in DUE.items()}

        report = run_retention(dsn, NOW, batch_size=2)
        assert counts(report) == counts(dry)  # the dry run said what the run did

        after = world.snapshot()
        archive = {(r["source_table"], r["source_key"]): r for r in db.execute("select * from archive.record")}
        for table in TABLES:
            gone = set(before[table]) - set(after[table])
            assert len(gone) == sum(n for (_, t), n in DUE.items() if t == table)
            for key in gone:  # every removed row is in the archive, exactly as it was
                record = archive[(table, key)]
                assert record["row_data"] == db.execute("select %s::jsonb as j", (before[table][key],)).fetchone()["j"]
                assert record["archived_at"] == NOW and record["purge_after"] == NOW + timedelta(days=30)
            for key in set(after[table]) & set(before[table]):  # what stays is unchanged
                assert after[table][key] == before[table][key], (table, key)
        assert len(archive) == sum(DUE.values())

        ids = world.ids
        # the event a pending delivery still waits for is kept, and so is that delivery
        assert {ids["event4"], ids["event5"], ids["event6"]} <= set(after["outbox"])
        assert set(after["webhook_delivery"]) == {ids["pending_old"], ids["delivered_recent"]}
        # only the dormant customer lost its activities and contacts
        owners = db.execute("select distinct customer_id::text as c from contact union"
                            " select distinct customer_id::text from activity").fetchall()
        assert ids["dormant"] not in {r["c"] for r in owners}
        assert set(after["sample_request"]) == {ids["request_recent"]}
        # the feed now answers 410 below what went
        purged = db.execute("select purged_through from outbox_retention").fetchone()["purged_through"]
        assert purged == db.execute("select position from outbox where id = %s", (ids["event4"],)).fetchone()[
            "position"] - 1
        # retention's deletes tell downstream what went, without the data
        deleted = db.execute("select type, payload from outbox where actor = 'retention' order by position").fetchall()
        assert sorted(e["type"] for e in deleted) == ["activity.deleted"] * 2 + ["contact.deleted"] * 2 + [
            "sample_request.deleted"]
        assert all(set(e["payload"]) == {"id", "customer_id", "removed_by"} for e in deleted)
        run = db.execute("select * from retention_run where id = %s", (report.run_id,)).fetchone()
        assert run["finished_at"] is not None and run["counts"]["2_YEARS"]["contact"] == {"archived": 2, "deleted": 2}

    def test_a_rerun_is_a_no_op(self, dsn, world):
        run_retention(dsn, NOW, batch_size=2)
        before = world.snapshot()
        archived = world.db.execute("select count(*) as n from archive.record").fetchone()["n"]
        assert counts(run_retention(dsn, NOW, batch_size=2)) == {}
        assert world.snapshot() == before
        assert world.db.execute("select count(*) as n from archive.record").fetchone()["n"] == archived

    def test_nothing_inside_its_window_is_touched(self, dsn, world):
        before = world.snapshot()
        # 1.1 years earlier every row is inside its window: the 30-day rows do not exist yet, the
        # dormant customer's last activity is 1.4 years old, the old sample request 4.9 years.
        assert counts(run_retention(dsn, NOW - timedelta(days=402), batch_size=2)) == {}
        assert world.snapshot() == before
        # 11 days earlier the oldest events, deliveries and keys are 29 days old: still kept.
        report = run_retention(dsn, NOW - 11 * DAY, batch_size=2)
        assert counts(report) == {k: (n, n) for k, n in DUE.items() if k[0] != "30_DAYS"}
        after = world.snapshot()
        for table in ("outbox", "webhook_delivery", "idempotency_key"):
            assert set(after[table]) >= set(before[table]), table

    def test_the_archive_is_purged_after_its_grace_period(self, dsn, db, world):
        run_retention(dsn, NOW, batch_size=2)
        archived = db.execute("select count(*) as n from archive.record where run_id is not null").fetchone()["n"]
        assert counts(run_retention(dsn, NOW + 29 * DAY, dry_run=True)).get(("ARCHIVE", "archive.record")) is None
        later = run_retention(dsn, NOW + 31 * DAY, batch_size=2)
        assert counts(later)[("ARCHIVE", "archive.record")] == (0, archived)
        # what that later run archived itself (the events the first run's deletes wrote, and the
        # deliveries and keys now 30 days old) waits its own 30 days
        left = db.execute("select archived_at, count(*) as n from archive.record group by archived_at").fetchall()
        assert [(r["archived_at"], r["n"]) for r in left] == [
            (NOW + 31 * DAY, sum(a for (c, _), (a, _) in counts(later).items() if c != "ARCHIVE"))]

    def test_an_archived_row_can_be_restored_within_the_grace_period(self, dsn, db, world):
        before = world.snapshot()["contact"]
        run_retention(dsn, NOW, batch_size=2)
        key = db.execute("select source_key from archive.record where source_table = 'contact' limit 1").fetchone()
        # the statement the README gives
        db.execute("insert into contact select (jsonb_populate_record(null::contact, row_data)).*"
                   " from archive.record where source_table = 'contact' and source_key = %s", (key["source_key"],))
        restored = world.snapshot()["contact"][key["source_key"]]
        assert restored == before[key["source_key"]]

    def test_a_crash_in_the_middle_of_a_batch_loses_nothing(self, dsn, db, world):
        before = world.snapshot()
        # The dormant customers' batch fails at the contacts, after that same transaction archived
        # and deleted their activities: all of it must be rolled back.
        db.execute("""
            create function test_crash() returns trigger language plpgsql as $$
            begin
                raise exception 'simulated crash';
            end $$""")
        db.execute("create trigger test_crash before delete on contact for each row execute function test_crash()")
        try:
            with pytest.raises(psycopg.errors.RaiseException, match="simulated crash"):
                run_retention(dsn, NOW, batch_size=2)
        finally:
            db.execute("drop trigger test_crash on contact")
            db.execute("drop function test_crash()")
        middle = world.snapshot()
        # the 30-day class had finished; the dormant customer's batch was rolled back whole
        assert set(middle["activity"]) == set(before["activity"])
        assert set(middle["contact"]) == set(before["contact"])
        assert len(middle["outbox"]) < len(before["outbox"])
        assert not db.execute("select 1 from archive.record where source_table in ('activity', 'contact')").fetchall()
        crashed = db.execute("select finished_at from retention_run order by id").fetchall()
        assert [r["finished_at"] for r in crashed] == [None]

        report = run_retention(dsn, NOW, batch_size=2)
        assert counts(report)[("2_YEARS", "activity")] == (2, 2)
        assert counts(report)[("2_YEARS", "contact")] == (2, 2)
        assert ("30_DAYS", "outbox") not in counts(report)  # done by the crashed run already
        after = world.snapshot()
        for table in TABLES:
            gone = set(before[table]) - set(after[table])
            assert len(gone) == sum(n for (_, t), n in DUE.items() if t == table), table
        # each removed row archived once
        assert db.execute("select count(*) as n from archive.record").fetchone()["n"] == sum(DUE.values())

    def test_one_run_at_a_time(self, dsn, db):
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("select pg_advisory_lock(hashtext('crm.retention'))")
            with pytest.raises(RetentionBusy):
                run_retention(dsn, NOW)

    def test_years_are_calendar_years(self):
        assert years_before(datetime(2030, 6, 1, tzinfo=UTC), 2) == datetime(2028, 6, 1, tzinfo=UTC)
        assert years_before(datetime(2028, 2, 29, tzinfo=UTC), 5) == datetime(2023, 2, 28, tzinfo=UTC)


class TestCommandLine:
    @staticmethod
    def crm(dsn, *args):
        return subprocess.run([sys.executable, "-m", "crm.cli", "retention", "run", *args],
                              env={**os.environ, "DATABASE_URL": dsn}, capture_output=True, text=True, timeout=120)

    def test_crm_retention_run_prints_what_it_did_per_class(self, dsn, world):
        dry = self.crm(dsn, "--dry-run", "--as-of", NOW.isoformat())
        assert dry.returncode == 0, dry.stderr
        assert "(dry run)" in dry.stdout
        assert re.search(r"2_YEARS +contact +would archive +2 +would delete +2", dry.stdout)
        real = self.crm(dsn)
        assert real.returncode == 0, real.stderr
        assert re.search(r"30_DAYS +idempotency_key +archived +1 +deleted +1", real.stdout)
        assert re.search(r"5_YEARS +sample_item +archived +1 +deleted +1", real.stdout)

    def test_as_of_only_with_dry_run(self, dsn):
        out = self.crm(dsn, "--as-of", "2030-01-01T00:00:00+00:00")
        assert out.returncode == 2 and "--as-of only with --dry-run" in out.stderr
