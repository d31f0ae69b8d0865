"""The observability views (migration 0050) and the Grafana role: what they report, that they see
every row despite forced row-level security, and that crm_grafana reads them and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

VIEWS = ("sample_metrics_daily", "hot_projection_staleness", "hot_projection_staleness_summary", "outbox_lag",
         "activity_metrics_daily")


def grafana_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"crm_grafana@{parts.hostname}:{parts.port}"))


@pytest.fixture
def grafana(dsn, db) -> Iterator[psycopg.Connection]:
    """A connection logged in as crm_grafana (trust authentication in the embedded server): no
    claims set, so row-level security alone would show it nothing."""
    with psycopg.connect(grafana_dsn(dsn), autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _customer(db, number: str) -> str:
    return str(db.execute(
        "insert into customer (customer_number, name, type) values (%s, %s, 'RESTAURANT') returning id",
        (number, f"Gasthaus {number}"),
    ).fetchone()["id"])


def _product(db) -> str:
    return str(db.execute(
        "insert into product (sku, name, category, pack_size, unit) values ('CF-OBS1', 'Suppe', 'SOUPS', 2, 'KG') "
        "returning id"
    ).fetchone()["id"])


def _request(db, customer_id: str, product_id: str, moves: list[tuple[str, datetime]],
             feedback: list[tuple[int, str, datetime]] = ()) -> str:
    """A sample request with a history of ``(to_status, at)`` and items with ``(rating, decision, at)``
    feedback, written directly so the times are known."""
    request_id = str(db.execute(
        "insert into sample_request (customer_id, requested_by) values (%s, 'anna') returning id", (customer_id,)
    ).fetchone()["id"])
    previous = "DRAFT"
    for to_status, at in moves:
        db.execute(
            "insert into sample_request_history (request_id, from_status, to_status, actor, at) "
            "values (%s, %s, %s, 'anna', %s)", (request_id, previous, to_status, at))
        previous = to_status
    for rating, decision, at in feedback:
        db.execute(
            "insert into sample_item (request_id, product_id, quantity, feedback_rating, feedback_listing_decision, "
            "feedback_at) values (%s, %s, 1, %s, %s, %s)",
            (request_id, product_id, rating, decision, at))
        product_id = _product_copy(db, product_id)
    return request_id


def _product_copy(db, product_id: str) -> str:
    sku = f"CF-{uuid.uuid4().hex[:8].upper()}"
    return str(db.execute(
        "insert into product (sku, name, category, pack_size, unit) select %s, name, category, pack_size, unit "
        "from product where id = %s returning id", (sku, product_id)
    ).fetchone()["id"])


class TestGrafanaRole:
    def test_reads_the_views_with_the_documented_queries(self, grafana, db):
        assert grafana.execute("show search_path").fetchone()["search_path"] == "observability"
        grafana.execute("SELECT * FROM sample_metrics_daily WHERE day >= CURRENT_DATE - INTERVAL '30 days'")
        grafana.execute("SELECT * FROM hot_projection_staleness WHERE staleness_seconds > 900")
        for view in VIEWS:
            grafana.execute(sql.SQL("select * from {} limit 1").format(sql.Identifier(view)))

    @pytest.mark.parametrize("table", ["customer", "contact", "customer_hot", "outbox", "sample_request",
                                       "webhook_subscription", "event_consumer"])
    def test_base_tables_are_refused(self, grafana, table):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            grafana.execute(sql.SQL("select * from {} limit 1").format(sql.Identifier("public", table)))

    def test_read_only_and_nothing_else(self, grafana):
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            grafana.execute("create temporary table t (x int)")
        role = grafana.execute(
            "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = 'crm_grafana'"
        ).fetchone()
        assert not any(role.values())
        # what it may select: the views of the observability schema, nothing in public
        tables = grafana.execute(
            "select table_schema, table_name from information_schema.table_privileges "
            "where grantee = 'crm_grafana' and privilege_type = 'SELECT' order by 1, 2"
        ).fetchall()
        assert {t["table_schema"] for t in tables} == {"observability"}
        assert {"sample_metrics_daily", "outbox_lag"} <= {t["table_name"] for t in tables}

    def test_views_see_every_row_despite_forced_row_level_security(self, grafana, db):
        for n in range(3):
            _customer(db, f"K-RLS-{n}")
        # crm_grafana sets no claims: the views see the rows because their owner bypasses RLS
        assert grafana.execute("select customers from hot_projection_staleness_summary").fetchone()["customers"] == 3
        owner = db.execute(
            "select r.rolbypassrls, r.rolsuper, r.rolcanlogin from pg_class c join pg_roles r on r.oid = c.relowner "
            "where c.oid = 'observability.outbox_lag'::regclass"
        ).fetchone()
        assert owner == {"rolbypassrls": True, "rolsuper": False, "rolcanlogin": False}

    def test_every_column_is_documented(self, db):
        undocumented = db.execute(
            "select c.relname, a.attname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
            "where n.nspname = 'observability' and col_description(c.oid, a.attnum) is null"
        ).fetchall()
        assert undocumented == []


class TestSampleMetricsDaily:
    def test_funnel_ratings_listing_rate_and_median_delivery_time(self, db, grafana):
        customer, product = _customer(db, "K-S1"), _product(db)
        today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
        # three requests submitted on day 1 (UTC); two delivered that day after 10 h and 20 h, one rejected
        _request(db, customer, product, [("REQUESTED", day1 - timedelta(hours=4)), ("APPROVED", day1),
                                         ("SHIPPED", day1 + timedelta(hours=1)),
                                         ("DELIVERED", day1 + timedelta(hours=6))],
                 feedback=[(5, "LISTED", day2), (2, "NOT_LISTED", day2)])
        _request(db, customer, product, [("REQUESTED", day1 - timedelta(hours=10)), ("APPROVED", day1),
                                         ("SHIPPED", day1 + timedelta(hours=2)),
                                         ("DELIVERED", day1 + timedelta(hours=10))],
                 feedback=[(4, "UNDECIDED", day2)])
        _request(db, customer, product, [("REQUESTED", day1 - timedelta(hours=1)), ("REJECTED", day1)])
        rows = {r["day"]: r for r in grafana.execute(
            "select * from sample_metrics_daily where day >= current_date - interval '30 days' order by day")}
        d1 = rows[day1.date()]
        assert (d1["requested"], d1["approved"], d1["rejected"], d1["shipped"], d1["delivered"]) == (3, 2, 1, 2, 2)
        # requested -> delivered: 4+6 = 10 h and 10+10 = 20 h; median 15 h
        assert d1["median_hours_request_to_delivery"] == Decimal("15.00")
        assert d1["feedback_count"] == 0 and d1["average_rating"] is None and d1["listing_rate"] is None
        d2 = rows[day2.date()]
        assert d2["feedback_count"] == 3
        assert d2["average_rating"] == Decimal("3.67")
        assert d2["listing_rate"] == Decimal("0.3333")
        assert d2["requested"] == 0 and d2["median_hours_request_to_delivery"] is None
        # every day from the first activity to today, days without activity included
        assert max(rows) == datetime.now(UTC).date()
        assert all(isinstance(d, date) for d in rows)

    def test_no_samples_no_rows(self, grafana, db):
        assert grafana.execute("select count(*) as n from sample_metrics_daily").fetchone()["n"] == 0


class TestHotProjectionStaleness:
    def test_current_rows_are_zero(self, grafana, db):
        customer = _customer(db, "K-H1")
        db.execute("update customer set city = 'Köln' where id = %s", (customer,))
        row = grafana.execute("select * from hot_projection_staleness where customer_id = %s", (customer,)).fetchone()
        assert row["state"] == "CURRENT" and row["staleness_seconds"] == 0
        assert row["customer_version"] == row["projected_version"] == 2
        assert grafana.execute("select count(*) as n from hot_projection_staleness where staleness_seconds > 900"
                               ).fetchone()["n"] == 0

    def test_a_change_not_projected_shows_its_age(self, grafana, db):
        behind, missing, current = _customer(db, "K-H2"), _customer(db, "K-H3"), _customer(db, "K-H4")
        # the projection falls behind: changes made while no trigger ran (20 and 5 minutes ago)
        db.execute("set session_replication_role = replica")
        try:
            db.execute("update customer set city = 'Bonn', version = version + 1, "
                       "updated_at = now() - interval '20 minutes' where id = %s", (behind,))
            db.execute("update customer set updated_at = now() - interval '5 minutes' where id = %s", (missing,))
            db.execute("delete from customer_hot where customer_id = %s", (missing,))
        finally:
            db.execute("reset session_replication_role")
        stale = {r["customer_id"]: r for r in grafana.execute(
            "SELECT * FROM hot_projection_staleness WHERE staleness_seconds > 900")}
        assert list(stale) == [uuid.UUID(behind)]
        assert stale[uuid.UUID(behind)]["state"] == "BEHIND"
        assert 1200 <= stale[uuid.UUID(behind)]["staleness_seconds"] < 1300
        rows = {str(r["customer_id"]): r for r in grafana.execute("select * from hot_projection_staleness")}
        assert rows[missing]["state"] == "MISSING" and 300 <= rows[missing]["staleness_seconds"] < 400
        assert rows[current]["state"] == "CURRENT"
        summary = grafana.execute("select * from hot_projection_staleness_summary").fetchone()
        assert (summary["customers"], summary["current_rows"], summary["behind_rows"], summary["missing_rows"]) == (
            3, 1, 1, 1)
        assert abs(summary["max_staleness_seconds"] - stale[uuid.UUID(behind)]["staleness_seconds"]) < 5
        # recomputing the row catches it up: 0 again
        db.execute("select recompute_customer_hot(%s)", (behind,))
        assert grafana.execute("select staleness_seconds from hot_projection_staleness where customer_id = %s",
                               (behind,)).fetchone()["staleness_seconds"] == 0


class TestOutboxLag:
    def _event(self, db, type_: str, age_seconds: int) -> int:
        return db.execute(
            "insert into outbox (aggregatetype, aggregateid, type, payload, created_at) "
            "values ('customer', gen_random_uuid()::text, %s, '{}', now() - make_interval(secs => %s)) "
            "returning position", (type_, age_seconds)).fetchone()["position"]

    def test_pull_consumers_and_webhook_subscriptions(self, grafana, db):
        p1 = self._event(db, "customer.created", 600)
        p2 = self._event(db, "sample_request.requested", 300)
        p3 = self._event(db, "customer.updated", 60)
        db.execute("insert into event_consumer (name, position) values ('dwh', %s), ('erp', %s)", (p1, p3))
        # subscribed to sample requests only, checkpoint at the start: p2 not fanned out yet
        sub_new = db.execute(
            "insert into webhook_subscription (owner, url, event_types, secret, position) "
            "values ('int', 'https://example.test/a', '{sample_request.*}', 's', 0) returning id").fetchone()["id"]
        # fanned out to p3; the delivery of p1 is pending, an older one dead
        sub_pending = db.execute(
            "insert into webhook_subscription (owner, url, event_types, secret, position) "
            "values ('int', 'https://example.test/b', '{*}', 's', %s) returning id", (p3,)).fetchone()["id"]
        for position, status in ((p1, "PENDING"), (p2, "DELIVERED"), (p3, "DEAD")):
            db.execute(
                "insert into webhook_delivery (subscription_id, event_id, event_position, event_type, aggregatetype, "
                "aggregateid, status) select %s, o.id, o.position, o.type, o.aggregatetype, o.aggregateid, %s "
                "from outbox o where o.position = %s", (sub_pending, status, position))
        rows = {r["consumer"]: r for r in grafana.execute("select * from outbox_lag")}
        assert set(rows) == {"dwh", "erp", str(sub_new), str(sub_pending)}
        dwh, erp = rows["dwh"], rows["erp"]
        assert dwh["consumer_kind"] == "PULL" and dwh["events_behind"] == 2 and 300 <= dwh["lag_seconds"] < 360
        assert erp["events_behind"] == 0 and erp["lag_seconds"] == 0 and erp["oldest_undelivered_at"] is None
        new = rows[str(sub_new)]
        assert new["consumer_kind"] == "WEBHOOK" and new["pending_deliveries"] == 0
        assert 300 <= new["lag_seconds"] < 360  # p2 matches sample_request.*; p1 does not
        pending = rows[str(sub_pending)]
        assert (pending["pending_deliveries"], pending["dead_deliveries"], pending["events_behind"]) == (1, 1, 0)
        assert 600 <= pending["lag_seconds"] < 660


class TestActivityMetricsDaily:
    def _activity(self, db, customer: str, **fields) -> None:
        columns = sql.SQL(", ").join(map(sql.Identifier, ["customer_id", "owner", "created_by", *fields]))
        values = sql.SQL(", ").join(sql.Placeholder() * (len(fields) + 3))
        db.execute(sql.SQL("insert into activity ({}) values ({})").format(columns, values),
                   (customer, "anna", "anna", *fields.values()))

    def test_per_day_type_and_owner(self, db, grafana):
        a, b = _customer(db, "K-A1"), _customer(db, "K-A2")
        day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)
        self._activity(db, a, type="CALL", status="DONE", occurred_at=day, direction="OUTBOUND",
                       duration_seconds=600, reached=True, outcome="POSITIVE", follow_up_at=day + timedelta(days=7))
        self._activity(db, b, type="CALL", status="DONE", occurred_at=day + timedelta(hours=1), direction="OUTBOUND",
                       duration_seconds=60, reached=False, outcome="NEUTRAL")
        self._activity(db, a, type="VISIT", status="PLANNED", planned_at=day, visit_kind="TASTING")
        self._activity(db, a, type="VISIT", status="CANCELLED", planned_at=day, visit_kind="KITCHEN_VISIT",
                       follow_up_at=day + timedelta(days=1))
        rows = {(r["type"], r["owner"]): r for r in grafana.execute(
            "select * from activity_metrics_daily where day = %s", (day.date(),))}
        assert set(rows) == {("CALL", "anna"), ("VISIT", "anna")}
        call, visit = rows[("CALL", "anna")], rows[("VISIT", "anna")]
        assert (call["activities"], call["done"], call["customers"], call["positive"], call["neutral"]) == (
            2, 2, 2, 1, 1)
        assert call["reach_rate"] == Decimal("0.5000") and call["call_minutes"] == Decimal("11.0")
        assert call["with_follow_up"] == 1
        assert (visit["activities"], visit["planned"], visit["cancelled"], visit["done"]) == (2, 1, 1, 0)
        assert visit["reach_rate"] is None and visit["call_minutes"] is None
        assert visit["with_follow_up"] == 0  # the cancelled one's follow-up does not count
