"""Retention: what the CRM keeps, for how long, and what ``crm retention run`` removes.

Three classes, each counted from a row's own clock, plus the archive's grace period:

* ``30_DAYS``: delivered outbox events (every webhook subscription fanned them out, no delivery
  waits for them), settled webhook deliveries (their logs) and idempotency keys, created more
  than 30 days ago;
* ``2_YEARS``: a customer's activities and contacts (the personal data of the people there),
  2 calendar years after the customer's last activity: the latest change of the customer, of
  any of its activities (done or planned, by their time or their last change), contacts or
  sample requests;
* ``5_YEARS``: sample requests with their items (the tasting feedback) and history, commercial
  records, 5 calendar years after the last change of the request and its items;
* ``ARCHIVE``: rows the classes above removed, 30 days after they were archived.

Every removed row is first copied to ``archive.record`` (as JSON, with its class, source table
and key) and deleted in the same statement, in batches, each batch its own transaction: a crash
loses at most the batch in flight, which is rolled back whole (nothing archived and not deleted),
and the next run finds what is still due and continues. A run that finds nothing due changes
nothing. The archive is the safety net against a wrong policy or a bug: for 30 days a removed row
can be put back (``jsonb_populate_record``, see the README); then the same job deletes it for
good, and from then on it exists only in backups until they expire. Erasure requests reach the
archive too (``crm_erase_contact``).

Deletes still tell downstream systems what went (``contact.deleted``, ``activity.deleted``,
``sample_request.deleted`` events), with the payload cut down to the ids, so retention does not
send the data it removes out once more.

``now`` is a parameter so that the tests can move the clock; the command line uses the time of
the run. One run at a time (an advisory lock); each run is recorded in ``retention_run``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosql
import psycopg
from psycopg.rows import dict_row

queries = aiosql.from_path(Path(__file__).parent / "queries" / "retention.sql", "psycopg",
                           mandatory_parameters=False)

ARCHIVE_GRACE = timedelta(days=30)
EVENTS_AND_KEYS = timedelta(days=30)
BATCH_SIZE = 500


class RetentionBusy(RuntimeError):
    """Another retention run holds the lock."""


def years_before(moment: datetime, years: int) -> datetime:
    """The same instant ``years`` calendar years earlier (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


@dataclass
class TableCount:
    archived: int = 0
    deleted: int = 0


@dataclass
class RetentionReport:
    run_id: int
    as_of: datetime
    dry_run: bool
    # class -> table -> counts (in a dry run: what would be archived and deleted)
    counts: dict[str, dict[str, TableCount]] = field(default_factory=dict)

    def add(self, cls: str, table: str, archived: int, deleted: int) -> None:
        entry = self.counts.setdefault(cls, {}).setdefault(table, TableCount())
        entry.archived += int(archived)
        entry.deleted += int(deleted)

    def as_json(self) -> dict[str, dict[str, dict[str, int]]]:
        return {c: {t: {"archived": n.archived, "deleted": n.deleted} for t, n in tables.items()}
                for c, tables in self.counts.items()}

    def lines(self) -> list[str]:
        verb = ("would archive", "would delete") if self.dry_run else ("archived", "deleted")
        out = [f"retention run {self.run_id}{' (dry run)' if self.dry_run else ''}, "
               f"as of {self.as_of.isoformat(timespec='seconds')}"]
        for cls, tables in self.counts.items():
            for table, n in tables.items():
                if cls == "ARCHIVE":
                    out.append(f"  {cls:<9} {table:<24} {verb[1]} {n.deleted:>8} (grace period over)")
                else:
                    out.append(f"  {cls:<9} {table:<24} {verb[0]} {n.archived:>8}   {verb[1]} {n.deleted:>8}")
        return out


Hook = Callable[[str, str, int], None]


def run_retention(dsn: str, now: datetime | None = None, *, dry_run: bool = False,
                  batch_size: int = BATCH_SIZE, on_batch: Hook | None = None) -> RetentionReport:
    """Apply every retention class as of ``now`` (default: the current time); see the module."""
    as_of = now or datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row,
                         application_name="kundenmanagement-retention") as conn:
        if not queries.retention_lock(conn)["locked"]:
            raise RetentionBusy("another retention run is in progress")
        try:
            conn.execute("select set_config('crm.scope', 'all', false), set_config('crm.sub', 'retention', false)")
            run_id = queries.retention_start(conn, as_of=as_of, dry_run=dry_run)["id"]
            conn.execute("select set_config('crm.correlation_id', %s, false)", (f"retention-{run_id}",))
            report = RetentionReport(run_id, as_of, dry_run)
            job = _Job(conn, report, as_of, batch_size, on_batch or (lambda *_: None))
            job.thirty_days()
            job.two_years()
            job.five_years()
            job.archive()
            queries.retention_finish(conn, id=run_id, counts=json.dumps(report.as_json()))
            return report
        finally:
            queries.retention_unlock(conn)


@dataclass
class _Job:
    conn: psycopg.Connection
    report: RetentionReport
    as_of: datetime
    batch_size: int
    on_batch: Hook

    @property
    def dry(self) -> bool:
        return self.report.dry_run

    def _params(self, cutoff: datetime) -> dict[str, Any]:
        return {"cutoff": cutoff, "as_of": self.as_of, "purge_after": self.as_of + ARCHIVE_GRACE,
                "run_id": self.report.run_id, "batch_size": self.batch_size}

    def _batches(self, cls: str, table: str, batch: Callable[..., dict], params: dict[str, Any]) -> None:
        while True:
            with self.conn.transaction():
                row = batch(self.conn, **params)
            self.report.add(cls, table, row["archived"], row["deleted"])
            self.on_batch(cls, table, row["deleted"])
            if row["deleted"] == 0:
                return

    def thirty_days(self) -> None:
        cls, params = "30_DAYS", self._params(self.as_of - EVENTS_AND_KEYS)
        steps = (("outbox", queries.retention_outbox_due, queries.retention_outbox_batch),
                 ("webhook_delivery", queries.retention_deliveries_due, queries.retention_deliveries_batch),
                 ("idempotency_key", queries.retention_idempotency_due, queries.retention_idempotency_batch))
        for table, due, batch in steps:
            if self.dry:
                n = due(self.conn, cutoff=params["cutoff"])["n"]
                self.report.add(cls, table, n, n)
            else:
                self._batches(cls, table, batch, params)

    def two_years(self) -> None:
        cls, params = "2_YEARS", self._params(years_before(self.as_of, 2))
        self.report.add(cls, "activity", 0, 0)
        self.report.add(cls, "contact", 0, 0)
        after = None
        while True:
            with self.conn.transaction():
                ids = [str(r["id"]) for r in queries.retention_dormant_customers(
                    self.conn, after_id=after, cutoff=params["cutoff"], batch_size=self.batch_size)]
                if not ids:
                    return
                after = ids[-1]
                if self.dry:
                    due = queries.retention_dormant_due(self.conn, ids=ids)
                    self.report.add(cls, "activity", due["activities"], due["activities"])
                    self.report.add(cls, "contact", due["contacts"], due["contacts"])
                    continue
                for table, batch in (("activity", queries.retention_activities_batch),
                                     ("contact", queries.retention_contacts_batch)):
                    row = batch(self.conn, ids=ids, **params)
                    if row["ids"]:
                        queries.retention_quiet_deleted_events(self.conn, aggregatetype=table, ids=row["ids"])
                    self.report.add(cls, table, row["archived"], row["deleted"])
            self.on_batch(cls, "customers", len(ids))

    def five_years(self) -> None:
        cls, params = "5_YEARS", self._params(years_before(self.as_of, 5))
        if self.dry:
            due = queries.retention_samples_due(self.conn, cutoff=params["cutoff"])
            self.report.add(cls, "sample_request", due["requests"], due["requests"])
            self.report.add(cls, "sample_item", due["items"], due["items"])
            self.report.add(cls, "sample_request_history", due["history"], due["history"])
            return
        while True:
            with self.conn.transaction():
                row = queries.retention_samples_batch(self.conn, **params)
                if row["ids"]:
                    queries.retention_quiet_deleted_events(self.conn, aggregatetype="sample_request", ids=row["ids"])
            # items and history are deleted with their request (on delete cascade)
            self.report.add(cls, "sample_request", row["archived"], row["deleted"])
            self.report.add(cls, "sample_item", row["items"], row["items"])
            self.report.add(cls, "sample_request_history", row["history"], row["history"])
            self.on_batch(cls, "sample_request", row["deleted"])
            if row["deleted"] == 0:
                return

    def archive(self) -> None:
        cls = "ARCHIVE"
        if self.dry:
            n = queries.retention_archive_due(self.conn, as_of=self.as_of)["n"]
            self.report.add(cls, "archive.record", 0, n)
            return
        self.report.add(cls, "archive.record", 0, 0)
        while True:
            with self.conn.transaction():
                row = queries.retention_archive_batch(self.conn, as_of=self.as_of, batch_size=self.batch_size)
            self.report.add(cls, "archive.record", 0, row["deleted"])
            self.on_batch(cls, "archive.record", row["deleted"])
            if row["deleted"] == 0:
                return
