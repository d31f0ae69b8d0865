"""The hot projection: triggers, recompute_customer_hot, and making fields hot on a live system."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from db import field_jobs
from tests.field_helpers import (
    DEFS,
    define,
    expected_hot_values,
    hot_values,
    make_hot,
    projection,
    recomputed,
    run_jobs,
    search,
    set_fields,
)
from tests.helpers import assert_problem, create_customer

FIELDS = {  # key: (data_type, options, value generator)
    "cuisine": ("ENUM", ["ITALIAN", "GERMAN", "THAI", "FRENCH"], lambda r: r.choice(["ITALIAN", "GERMAN", "THAI"])),
    "seats": ("INTEGER", None, lambda r: r.randint(0, 400)),
    "revenue": ("NUMBER", None, lambda r: round(r.uniform(0, 99999), 2)),
    "opened": ("DATE", None, lambda r: f"{r.randint(1950, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"),
    "days": ("MULTI_ENUM", ["MON", "TUE", "WED", "THU"], lambda r: r.sample(["MON", "TUE", "WED", "THU"],
                                                                             r.randint(1, 3))),
    "supplier": ("TEXT", None, lambda r: r.choice(["Metro", "Transgourmet", "Chefs Culinar", "O'Reilly; --"])),
    "terrace": ("BOOLEAN", None, lambda r: r.random() < 0.5),
}


@pytest.fixture(autouse=True)
def jobs_run_by_the_test(monkeypatch):
    monkeypatch.setattr(field_jobs, "AUTO_RUN", False)


def insert_definitions(db, hot: set[str]) -> None:
    for key, (data_type, options, _) in FIELDS.items():
        db.execute("insert into field_definition (key, label, data_type, options, hot) values (%s, %s, %s, %s, %s)",
                   (key, key, data_type, options, key in hot))
        if key in hot:
            db.execute("insert into field_job (field_key, action) values (%s, 'MAKE_HOT')", (key,))


def insert_customers(db, count: int, rng: random.Random, chain_id: str | None = None) -> list[str]:
    ids = []
    prefix = "C" if chain_id else "N"
    for i in range(count):
        values = {k: gen(rng) for k, (_, _, gen) in FIELDS.items() if rng.random() < 0.8}
        ids.append(db.execute(
            "insert into customer (customer_number, name, type, chain_id, fields) "
            "values (%s, %s, 'RESTAURANT', %s, %s) returning id::text as id",
            (f"K-{prefix}{i}", f"Kunde {i}", chain_id, json.dumps(values)),
        ).fetchone()["id"])
    return ids


def assert_consistent(db) -> None:
    """Every projection row equals what recompute_customer_hot makes of its customer, and its hot
    columns equal the customer's values (an oracle independent of the trigger SQL)."""
    before = projection(db)
    assert set(before) == {r["id"] for r in db.execute("select id::text as id from customer")}
    assert hot_values(db) == expected_hot_values(db)
    assert recomputed(db) == before
    assert projection(db) == before


class TestTriggers:
    def test_insert_and_update_project_in_the_same_transaction(self, db):
        insert_definitions(db, set())
        with db.transaction():
            cid = db.execute("insert into customer (customer_number, name, type) values ('K-1', 'Linde', 'HOTEL') "
                             "returning id").fetchone()["id"]
            row = db.execute("select name, type::text, source_version from customer_hot where customer_id = %s",
                             (cid,)).fetchone()
            assert row == {"name": "Linde", "type": "HOTEL", "source_version": 1}
            db.execute("update customer set name = 'Krone', status = 'ACTIVE' where id = %s", (cid,))
            row = db.execute("select name, status::text, source_version from customer_hot where customer_id = %s",
                             (cid,)).fetchone()
            assert row == {"name": "Krone", "status": "ACTIVE", "source_version": 2}

    def test_rows_record_source_version_and_projection_time(self, client, auth, db, dsn):
        h = auth("admin")
        define(client, h, "seats", "INTEGER")
        make_hot(client, h, dsn, "seats")
        c = create_customer(client, h)
        started = db.execute("select clock_timestamp() as t").fetchone()["t"]
        set_fields(client, h, c["id"], {"seats": 10})
        row = db.execute("select h.source_version, h.projected_at, c.version, c.updated_at, h.f_seats "
                         "from customer_hot as h join customer as c on c.id = h.customer_id").fetchone()
        assert row["source_version"] == row["version"] == 2
        assert row["projected_at"] >= row["updated_at"] and row["projected_at"] >= started
        assert row["f_seats"] == 10

    def test_a_write_with_triggers_off_is_repaired_by_recompute(self, db):
        insert_definitions(db, set())
        cid = insert_customers(db, 1, random.Random(1))[0]
        db.execute("set session_replication_role = replica")
        db.execute("update customer set name = 'Ohne Trigger', version = version + 1 where id = %s", (cid,))
        db.execute("set session_replication_role = origin")
        assert db.execute("select name from customer_hot").fetchone()["name"] != "Ohne Trigger"
        row = db.execute("select recompute_customer_hot(%s) as r", (cid,)).fetchone()["r"]
        assert row["name"] == "Ohne Trigger" and row["source_version"] == 2
        assert db.execute("select recompute_customer_hot(%s) as r", (cid,)).fetchone()["r"] == row  # idempotent

    def test_recompute_is_not_for_the_api_role(self, db):
        insert_definitions(db, set())
        cid = insert_customers(db, 1, random.Random(1))[0]
        with db.transaction():
            db.execute("select set_config('role', 'crm_api', true), set_config('crm.scope', 'all', true)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("select recompute_customer_hot(%s)", (cid,))
        assert db.execute("select recompute_customer_hot('00000000-0000-4000-8000-000000000000') as r"
                          ).fetchone()["r"] is None

    def test_api_roles_read_only_the_views(self, db):
        insert_definitions(db, set())
        chain = db.execute("insert into chain (name) values ('K') returning id::text as id").fetchone()["id"]
        insert_customers(db, 2, random.Random(1))
        insert_customers(db, 1, random.Random(1), chain)

        def count(role: str, scope: str, view: str, chains: str = "") -> int:
            with db.transaction():
                db.execute("select set_config('role', %s, true), set_config('crm.scope', %s, true), "
                           "set_config('crm.chain_ids', %s, true)", (role, scope, chains))
                return db.execute(sql.SQL("select count(*) as n from {}").format(sql.Identifier(view))).fetchone()["n"]

        assert count("crm_api_all", "all", "customer_search_all") == 3
        assert count("crm_api", "all", "customer_search") == 3
        assert count("crm_api", "chains", "customer_search", chain) == 1
        assert count("crm_api", "none", "customer_search") == 0
        for role, relation in [("crm_api", "customer_search_all"), ("crm_api", "customer_hot"),
                               ("crm_api_all", "customer_hot")]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                count(role, "all", relation)


class TestRecomputeEquivalence:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_randomised_writes(self, client, auth, db, dsn, seed):
        """Random value writes, unsets, customer changes, hot toggles and archiving; after each
        round the projection equals recompute and the customers' values."""
        rng = random.Random(seed)
        h = auth("admin")
        insert_definitions(db, {"cuisine", "seats", "days"})
        chain = db.execute("insert into chain (name) values ('Kette') returning id::text as id").fetchone()["id"]
        ids = insert_customers(db, 12, rng) + insert_customers(db, 4, rng, chain)
        run_jobs(dsn)
        assert_consistent(db)
        archived: set[str] = set()
        for _round in range(6):
            for _ in range(15):
                cid = rng.choice(ids)
                action = rng.random()
                live = [k for k in FIELDS if k not in archived]
                if action < 0.55:
                    keys = rng.sample(live, rng.randint(1, 3))
                    patch = {k: (None if rng.random() < 0.25 else FIELDS[k][2](rng)) for k in keys}
                    current = client.get(f"/api/v1/customers/{cid}/fields", headers=h)
                    r = client.patch(f"/api/v1/customers/{cid}/fields", json=patch,
                                     headers={**h, "If-Match": current.headers["etag"]})
                    assert r.status_code == 200, r.text
                elif action < 0.75:
                    db.execute("update customer set status = %s, name = %s where id = %s",
                               (rng.choice(["LEAD", "ACTIVE", "ARCHIVED"]), f"N{rng.randint(0, 99)}", cid))
                elif action < 0.85:
                    db.execute("update customer set chain_id = %s where id = %s",
                               (rng.choice([chain, None]), cid))
                else:  # several customers in one statement
                    key = rng.choice(live)
                    db.execute("update customer set fields = fields || jsonb_build_object(%s::text, %s::jsonb) "
                               "where id = any(%s::uuid[])",
                               (key, json.dumps(FIELDS[key][2](rng)), rng.sample(ids, 5)))
            key = rng.choice([k for k in FIELDS if k not in archived])
            d = client.get(f"{DEFS}/{key}", headers=h)
            if rng.random() < 0.15:
                assert client.delete(f"{DEFS}/{key}", headers={**h, "If-Match": d.headers["etag"]}).status_code == 204
                archived.add(key)
            else:
                r = client.patch(f"{DEFS}/{key}", json={"hot": not d.json()["hot"]},
                                 headers={**h, "If-Match": d.headers["etag"]})
                assert r.status_code == 200, r.text
            if rng.random() < 0.7:
                run_jobs(dsn, batch_size=rng.choice([3, 5, 100]))
            assert_consistent(db)


class TestConcurrentWriters:
    def test_projection_never_diverges(self, client, auth, db, dsn):
        """Eight threads with their own connections write values and customer changes to the same
        twelve customers while a field is being made hot; afterwards the projection equals
        recompute and the values for every customer."""
        h = auth("admin")
        insert_definitions(db, {"cuisine", "seats"})
        ids = insert_customers(db, 12, random.Random(7))
        run_jobs(dsn)
        d = client.get(f"{DEFS}/supplier", headers=h)
        client.patch(f"{DEFS}/supplier", json={"hot": True}, headers={**h, "If-Match": d.headers["etag"]})
        stop = threading.Event()
        failures: list[psycopg.Error] = []
        writes = [0]

        def writer(n: int) -> None:
            rng = random.Random(n)
            try:
                with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                    while not stop.is_set():
                        with conn.transaction():
                            conn.execute("select set_config('role', 'crm_api', true), "
                                         "set_config('crm.scope', 'all', true)")
                            for cid in sorted(rng.sample(ids, 3)):  # one lock order: no deadlock among writers
                                if rng.random() < 0.8:
                                    patch = {k: FIELDS[k][2](rng) for k in rng.sample(list(FIELDS), 2)}
                                    if rng.random() < 0.2:
                                        patch[rng.choice(list(FIELDS))] = None
                                    conn.execute("update customer set fields = jsonb_strip_nulls(fields || %s), "
                                                 "fields_version = fields_version + 1 where id = %s",
                                                 (json.dumps(patch), cid))
                                else:
                                    conn.execute("update customer set name = %s where id = %s",
                                                 (f"N{rng.randint(0, 9)}", cid))
                            time.sleep(rng.random() / 500)
                        writes[0] += 1
            except psycopg.Error as exc:  # reported by the test thread below
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            assert run_jobs(dsn, batch_size=2) == {3: "DONE"}  # the backfill runs under the writers
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures, failures
        assert writes[0] > 50
        assert_consistent(db)


def _race(dsn: str, db, customer_id: str, stale_writer) -> None:
    """A customer write that has projected its row but not committed yet; ``stale_writer``
    (in a thread) starts from a snapshot without it and has to wait for its row lock; then the
    write commits. Returns when ``stale_writer`` is done."""
    with psycopg.connect(dsn) as writer:
        writer.execute("select set_config('crm.scope', 'all', true)")
        writer.execute("update customer set fields = fields || '{\"supplier\": \"new\", \"seats\": 99}' "
                       "where id = %s", (customer_id,))
        failures: list[psycopg.Error] = []

        def run() -> None:
            try:
                stale_writer()
            except psycopg.Error as exc:
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 10
        while not db.execute("select exists (select 1 from pg_locks where not granted and locktype = 'transactionid')"
                             " as waiting").fetchone()["waiting"]:
            assert time.monotonic() < deadline and thread.is_alive(), "the stale writer never waited"
            time.sleep(0.01)
        writer.commit()
    thread.join()
    assert not failures, failures


class TestRaces:
    """Deterministic versions of the races the concurrent test can only hit by chance."""

    @pytest.fixture
    def customer(self, client, auth, db, dsn):
        insert_definitions(db, {"seats"})
        cid = db.execute("insert into customer (customer_number, name, type, fields) values "
                         "('K-1', 'Linde', 'HOTEL', '{\"supplier\": \"old\", \"seats\": 1}') returning id::text as id"
                         ).fetchone()["id"]
        run_jobs(dsn)
        return cid

    def test_a_backfill_batch_never_overwrites_a_newer_write(self, client, auth, db, dsn, customer):
        h = auth("admin")
        d = client.get(f"{DEFS}/supplier", headers=h)
        client.patch(f"{DEFS}/supplier", json={"hot": True}, headers={**h, "If-Match": d.headers["etag"]})
        assert run_jobs(dsn, max_batches=0) == {2: "STOPPED"}  # column added, field BACKFILLING
        _race(dsn, db, customer, lambda: run_jobs(dsn))
        row = db.execute("select f_supplier, f_seats from customer_hot").fetchone()
        assert row == {"f_supplier": "new", "f_seats": 99}
        assert_consistent(db)

    def test_a_recompute_never_overwrites_a_newer_write(self, db, dsn, customer):
        def recompute() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("select set_config('crm.scope', 'all', false)")
                conn.execute("select recompute_customer_hot(%s)", (customer,))

        _race(dsn, db, customer, recompute)
        assert db.execute("select f_seats from customer_hot").fetchone()["f_seats"] == 99
        assert_consistent(db)


class TestMakeHotBackfill:
    @pytest.fixture
    def customers(self, client, auth, db):
        insert_definitions(db, set())
        return insert_customers(db, 23, random.Random(3))

    def _make_hot(self, client, auth, key):
        h = auth("admin")
        d = client.get(f"{DEFS}/{key}", headers=h)
        r = client.patch(f"{DEFS}/{key}", json={"hot": True}, headers={**h, "If-Match": d.headers["etag"]})
        assert r.status_code == 200, r.text
        return r.json()

    def test_runs_in_batches_and_reports_progress(self, client, auth, db, dsn, customers):
        body = self._make_hot(client, auth, "seats")
        assert body["hot_status"] == "BACKFILLING" and body["backfill"]["status"] == "PENDING"
        seen = []
        assert run_jobs(dsn, batch_size=5, on_progress=seen.append) == {1: "DONE"}
        backfill = [(p.phase, p.processed) for p in seen if p.phase == "BACKFILL"]
        assert backfill == [("BACKFILL", 5), ("BACKFILL", 10), ("BACKFILL", 15), ("BACKFILL", 20), ("BACKFILL", 23)]
        assert seen[-1].phase == "DONE" and seen[-1].total == 23
        got = client.get(f"{DEFS}/seats", headers=auth("admin")).json()
        assert got["hot_status"] == "HOT"
        assert got["backfill"] | {"started_at": None, "finished_at": None} == {
            "action": "MAKE_HOT", "status": "DONE", "phase": "DONE", "processed": 23, "total": 23,
            "error": None, "started_at": None, "finished_at": None}
        indexes = {r["indexname"] for r in db.execute("select indexname from pg_indexes where tablename = "
                                                      "'customer_hot' and indexname like 'customer_hot_f_seats%'")}
        assert indexes == {"customer_hot_f_seats_idx"}
        assert_consistent(db)

    def test_resumes_after_a_crash(self, client, auth, db, dsn, customers):
        self._make_hot(client, auth, "supplier")
        assert run_jobs(dsn, batch_size=4, max_batches=3) == {1: "STOPPED"}  # as if killed after 3 batches
        job = db.execute("select status::text, phase, processed, last_customer_id from field_job").fetchone()
        assert (job["status"], job["phase"], job["processed"]) == ("RUNNING", "BACKFILL", 12)
        got = client.get(f"{DEFS}/supplier", headers=auth("admin")).json()
        assert got["hot_status"] == "BACKFILLING" and got["backfill"]["processed"] == 12
        r = search(client, auth("admin"), filter={"field": "supplier", "op": "contains", "value": "metro"})
        assert_problem(r, 409, "/problems/field-not-yet-hot")
        seen = []
        assert run_jobs(dsn, batch_size=4, on_progress=seen.append) == {1: "DONE"}
        assert [p.processed for p in seen if p.phase == "BACKFILL"] == [12, 16, 20, 23]  # went on after #12
        assert_consistent(db)
        expected = sum(1 for r in db.execute("select fields ->> 'supplier' as s from customer")
                       if r["s"] and "metro" in r["s"].lower())
        r = search(client, auth("admin"), filter={"field": "supplier", "op": "contains", "value": "metro"}, limit=200)
        assert len(r.json()["items"]) == expected > 0

    def test_a_killed_runner_releases_the_field(self, client, auth, db, dsn, customers):
        self._make_hot(client, auth, "cuisine")

        async def killed_mid_way() -> None:
            def progress(p: field_jobs.Progress) -> None:
                if p.processed >= 3:
                    asyncio.current_task().cancel()  # the runner dies at its next await

            task = asyncio.create_task(field_jobs.run_jobs(dsn, batch_size=1, on_progress=progress))
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(killed_mid_way())
        assert db.execute("select status::text from field_job").fetchone()["status"] == "RUNNING"
        assert run_jobs(dsn) == {1: "DONE"}
        assert_consistent(db)

    def test_one_runner_per_field(self, client, auth, db, dsn, customers):
        self._make_hot(client, auth, "cuisine")
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("select pg_advisory_lock(hashtext('crm.field_job'), hashtext('cuisine'))")
            assert run_jobs(dsn) == {}
        assert run_jobs(dsn) == {1: "DONE"}

    def test_a_newer_change_cancels_the_running_job(self, client, auth, db, dsn, customers):
        self._make_hot(client, auth, "seats")
        run_jobs(dsn, batch_size=5, max_batches=1)
        h = auth("admin")
        d = client.get(f"{DEFS}/seats", headers=h)
        client.patch(f"{DEFS}/seats", json={"hot": False}, headers={**h, "If-Match": d.headers["etag"]})
        assert run_jobs(dsn) == {2: "DONE"}
        assert [r["status"] for r in db.execute("select status::text from field_job order by id")] == [
            "CANCELLED", "DONE"]
        assert db.execute("select count(*) as n from pg_attribute where attrelid = 'customer_hot'::regclass "
                          "and attname = 'f_seats' and not attisdropped").fetchone()["n"] == 0
        assert_consistent(db)

    def test_hot_again_before_the_column_was_dropped(self, client, auth, db, dsn, customers):
        h = auth("admin")
        make_hot(client, h, dsn, "seats")
        for hot in (False, True):
            d = client.get(f"{DEFS}/seats", headers=h)
            client.patch(f"{DEFS}/seats", json={"hot": hot}, headers={**h, "If-Match": d.headers["etag"]})
        db.execute("update customer set fields = fields || '{\"seats\": 7}'")  # while it is BACKFILLING
        assert set(run_jobs(dsn).values()) == {"DONE"}
        assert_consistent(db)
        assert len(search(client, h, filter={"field": "seats", "op": "eq", "value": 7}, limit=200).json()["items"]) \
            == 23

    def test_cli_runs_open_jobs_with_progress(self, client, auth, db, dsn, customers, monkeypatch, capsys):
        from crm.cli import main
        from crm.settings import get_settings

        self._make_hot(client, auth, "seats")
        monkeypatch.setenv("DATABASE_URL", dsn)
        get_settings.cache_clear()
        try:
            assert main(["fields", "backfill", "--batch-size", "10"]) == 0
        finally:
            monkeypatch.delenv("DATABASE_URL")
            get_settings.cache_clear()
        out = capsys.readouterr().out
        assert "job 1 MAKE_HOT seats: BACKFILL 10/23 customers" in out
        assert "job 1: DONE" in out
        assert client.get(f"{DEFS}/seats", headers=auth("admin")).json()["hot_status"] == "HOT"

    def test_background_run_after_an_api_change(self, client, auth, db, customers, monkeypatch):
        monkeypatch.setattr(field_jobs, "AUTO_RUN", True)
        self._make_hot(client, auth, "terrace")
        deadline = time.monotonic() + 30
        while client.get(f"{DEFS}/terrace", headers=auth("admin")).json()["hot_status"] != "HOT":
            assert time.monotonic() < deadline, "the background job did not finish"
            time.sleep(0.05)
        client.portal.call(field_jobs.wait_for_background)
        assert_consistent(db)
        r = search(client, auth("admin"), filter={"field": "terrace", "op": "eq", "value": True})
        assert r.status_code == 200
