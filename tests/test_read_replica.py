"""Past one machine: read-only operations on a streaming replica (``DATABASE_READ_URL``), writes on
the primary, and read-your-writes through the position cookie (docs/scaling.md).

A second embedded PostgreSQL is started as a streaming replica of the session's server
(``pg_basebackup -R`` from the same binaries). Which server answered a read is made visible by
pausing the replica's WAL replay: a change made on the primary afterwards is then missing on the
replica only, so a read that returns the old value came from the replica, the new one from the
primary.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator

import psycopg
import pytest

from crm.auth import SYSTEM
from crm.consistency import COOKIE
from db.embedded import EmbeddedPostgres
from db.pool import close_read_pool, lsn_value, open_read_pool, read_transaction


@pytest.fixture(scope="module")
def replica(pg_server, dsn) -> Iterator[EmbeddedPostgres]:
    """A hot standby of the session's server, streaming from it (the test database included)."""
    folder = tempfile.mkdtemp(prefix="crm-replica-")
    server = EmbeddedPostgres(folder, fast=True)
    try:
        server.init_standby(pg_server)
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def standby(replica) -> Iterator[psycopg.Connection]:
    """A connection to the replica's copy of the test database (replay resumed afterwards)."""
    with psycopg.connect(replica.dsn("crm_test"), autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        try:
            yield conn
        finally:
            conn.execute("select pg_wal_replay_resume()")


@pytest.fixture
def read_pool(client, replica) -> Iterator[None]:
    """The session's app with DATABASE_READ_URL pointing at the replica."""
    client.cookies.clear()
    client.portal.call(open_read_pool, replica.dsn("crm_test"))
    try:
        yield
    finally:
        client.portal.call(close_read_pool)
        client.cookies.clear()


def caught_up(db, standby, timeout: float = 20.0) -> None:
    target = db.execute("select pg_current_wal_insert_lsn()::text as lsn").fetchone()["lsn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn as ok", (target,)).fetchone()["ok"]:
            return
        time.sleep(0.05)
    raise AssertionError("the replica did not catch up")


def pause(standby, db) -> None:
    """Pause the replica's replay; it pauses before the next WAL record, so give it one."""
    standby.execute("select pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while standby.execute("select pg_get_wal_replay_pause_state() as s").fetchone()["s"] != "paused":
        assert time.monotonic() < deadline, "the replica did not pause"
        db.execute("select pg_current_xact_id()")
        time.sleep(0.05)


def resume(standby) -> None:
    standby.execute("select pg_wal_replay_resume()")


class TestReplica:
    def test_the_read_pool_is_a_replica(self, client, read_pool, replica, standby):
        async def probe():
            async with read_transaction(SYSTEM) as conn:
                return await (await conn.execute(
                    "select pg_is_in_recovery() as in_recovery, inet_server_port() as port")).fetchone()

        assert client.portal.call(probe) == {"in_recovery": True, "port": replica.port}
        names = {r["application_name"] for r in standby.execute("select application_name from pg_stat_activity")}
        assert "kundenmanagement-read" in names

    def test_reads_go_to_the_replica_and_writes_to_the_primary(self, client, auth, db, read_pool, standby):
        h = auth("sales_rep", sub="rep-eva")
        r = client.post("/api/v1/customers", headers=h,
                        json={"customer_number": "K-300001", "name": "Gasthaus Post", "type": "RESTAURANT"})
        assert r.status_code == 201
        customer = r.json()
        assert f"{COOKIE}=" in r.headers["set-cookie"]
        caught_up(db, standby)
        pause(standby, db)

        # A change the paused replica does not have.
        db.execute("update customer set name = 'Gasthaus Neu' where id = %s", (customer["id"],))
        client.cookies.clear()  # a client that wrote nothing (or whose marker expired)
        got = client.get(f"/api/v1/customers/{customer['id']}", headers=h)
        assert got.json()["name"] == "Gasthaus Post"  # the replica answered
        assert "set-cookie" not in got.headers  # a read from the replica hands out no marker
        listed = client.get("/api/v1/customers?q=Gasthaus", headers=h).json()["items"]
        assert [c["name"] for c in listed] == ["Gasthaus Post"]

        # A write while the replica is paused (and read-only): it went to the primary.
        patched = client.patch(f"/api/v1/customers/{customer['id']}", json={"status": "ACTIVE"},
                               headers={**h, "If-Match": "*"})
        assert patched.status_code == 200, patched.text
        assert db.execute("select status from customer where id = %s", (customer["id"],)).fetchone() == {
            "status": "ACTIVE"}

        # Its author reads it back (the cookie names a position the replica has not replayed: the
        # primary answers, If-None-Match included) ...
        mine = client.get(f"/api/v1/customers/{customer['id']}", headers=h)
        assert (mine.json()["name"], mine.json()["status"]) == ("Gasthaus Neu", "ACTIVE")
        assert client.get(f"/api/v1/customers/{customer['id']}",
                          headers={**h, "If-None-Match": patched.headers["etag"]}).status_code == 304
        # ... while a client without the cookie still reads the replica.
        client.cookies.clear()
        theirs = client.get(f"/api/v1/customers/{customer['id']}", headers=h)
        assert theirs.json()["status"] == "LEAD"

        resume(standby)
        caught_up(db, standby)
        assert client.get(f"/api/v1/customers/{customer['id']}", headers=h).json()["status"] == "ACTIVE"

    def test_a_marker_the_replica_has_replayed_reads_the_replica(self, client, auth, db, read_pool, standby):
        h = auth("sales_rep")
        customer = client.post("/api/v1/customers", headers=h, json={
            "customer_number": "K-300002", "name": "Alte Post", "type": "HOTEL"}).json()
        assert client.cookies.get(COOKIE)
        caught_up(db, standby)
        pause(standby, db)
        db.execute("update customer set name = 'Neue Post' where id = %s", (customer["id"],))
        # The marker (still sent) is behind what the replica has: no reason to bother the primary.
        assert client.get(f"/api/v1/customers/{customer['id']}", headers=h).json()["name"] == "Alte Post"

    def test_contacts_and_feature_flags_read_the_replica_too(self, client, auth, db, read_pool, standby):
        h = auth("admin")
        customer = client.post("/api/v1/customers", headers=h, json={
            "customer_number": "K-300003", "name": "Kantine Süd", "type": "CANTEEN"}).json()
        contact = client.post(f"/api/v1/customers/{customer['id']}/contacts", headers=h,
                              json={"last_name": "Koch"}).json()
        caught_up(db, standby)
        pause(standby, db)
        db.execute("update contact set last_name = 'Köchin' where id = %s", (contact["id"],))
        original = db.execute("select description from feature_flag where key = 'contact_email_read'").fetchone()
        db.execute("update feature_flag set description = 'geändert' where key = 'contact_email_read'")
        client.cookies.clear()
        assert client.get(f"/api/v1/contacts/{contact['id']}", headers=h).json()["last_name"] == "Koch"
        listed = client.get(f"/api/v1/customers/{customer['id']}/contacts", headers=h).json()["items"]
        assert [c["last_name"] for c in listed] == ["Koch"]
        flag = client.get("/api/v1/feature-flags/contact_email_read", headers=h).json()
        assert flag["description"] != "geändert"
        resume(standby)
        caught_up(db, standby)
        db.execute("update feature_flag set description = %(description)s where key = 'contact_email_read'",
                   original)

    def test_activities_samples_products_and_fields_read_the_replica_too(self, client, auth, db, read_pool,
                                                                         standby):
        h = auth("admin")
        customer = client.post("/api/v1/customers", headers=h, json={
            "customer_number": "K-300004", "name": "Bistro Nord", "type": "RESTAURANT"}).json()
        activity = client.post("/api/v1/activities", headers=h, json={
            "type": "CALL", "customer_id": customer["id"], "status": "DONE",
            "occurred_at": "2026-01-05T10:00:00Z", "subject": "Erstanruf", "direction": "OUTBOUND"}).json()
        product = client.post("/api/v1/products", headers=h, json={
            "sku": "CF-REPL-1", "name": "Rinderfond", "category": "SAUCES", "pack_size": 1,
            "unit": "KG"}).json()
        definition = client.post("/api/v1/field-definitions", headers=h, json={
            "key": "seats", "label": "Sitzplätze", "data_type": "INTEGER"}).json()
        assert "etag" in activity and "etag" in product and "etag" in definition, (activity, product, definition)
        caught_up(db, standby)
        pause(standby, db)
        db.execute("update activity set subject = 'geändert' where id = %s", (activity["id"],))
        db.execute("update product set name = 'geändert' where id = %s", (product["id"],))
        db.execute("update field_definition set label = 'geändert' where key = 'seats'")
        client.cookies.clear()
        reads = [f"/api/v1/activities/{activity['id']}", f"/api/v1/activities?customer_id={customer['id']}",
                 f"/api/v1/customers/{customer['id']}/timeline", f"/api/v1/products/{product['id']}",
                 "/api/v1/products?q=Rinderfond", "/api/v1/field-definitions/seats", "/api/v1/field-definitions"]
        for url in reads:
            r = client.get(url, headers=h)
            assert r.status_code == 200, (url, r.text)
            text = json.dumps(r.json(), ensure_ascii=False)
            assert "Erstanruf" in text or "Rinderfond" in text or "Sitzplätze" in text, (url, text)
            assert "geändert" not in text, url
        # The caller's own write is seen at once: with its marker the reads go to the primary.
        patched = client.patch(f"/api/v1/activities/{activity['id']}", headers={**h, "If-Match": "*"},
                               json={"notes": "Rückruf vereinbart"})
        assert patched.status_code == 200, patched.text
        assert client.get(f"/api/v1/activities/{activity['id']}", headers=h).json()["notes"] == "Rückruf vereinbart"
        resume(standby)
        caught_up(db, standby)


class TestReplicaDown:
    @pytest.fixture
    def dead_read_pool(self, client) -> Iterator[None]:
        from db.embedded import _free_port

        client.cookies.clear()
        client.portal.call(open_read_pool, f"postgresql://crm@127.0.0.1:{_free_port()}/crm_test")
        try:
            yield
        finally:
            client.portal.call(close_read_pool)
            client.cookies.clear()

    def test_reads_fall_back_to_the_primary(self, client, auth, dead_read_pool, caplog):
        h = auth("sales_rep")
        with caplog.at_level(logging.WARNING, logger="crm.pool"):
            customer = client.post("/api/v1/customers", headers=h, json={
                "customer_number": "K-300004", "name": "Ersatzweg", "type": "CATERING"}).json()
            client.cookies.clear()
            for _ in range(3):  # the first waits for the replica, the next skip it for a while
                assert client.get(f"/api/v1/customers/{customer['id']}", headers=h).status_code == 200
        assert [r.message for r in caplog.records if "replica unavailable" in r.message]


class TestCookie:
    def test_lsn_values_compare_as_wal_positions(self):
        assert lsn_value("0/16B3748") < lsn_value("0/16B3750") < lsn_value("1/0")
        assert lsn_value("1/0") == 1 << 32
        for bad in (None, "", "x/1", "1", "1/2/3", "123456789/0"):
            assert lsn_value(bad) is None

    def test_no_cookie_without_a_read_pool(self, client, auth):
        r = client.post("/api/v1/chains", headers=auth("admin"), json={"name": "Ohne Replica"})
        assert r.status_code == 201
        assert "set-cookie" not in r.headers

    def test_the_cookie(self, client, auth, read_pool):
        r = client.post("/api/v1/chains", headers=auth("admin"), json={"name": "Mit Replica"})
        cookie = r.headers["set-cookie"]
        value = cookie.split(";")[0].split("=", 1)[1]
        assert lsn_value(value) is not None
        assert {"Max-Age=60", "Path=/api/", "HttpOnly", "SameSite=Strict"} <= {p.strip() for p in cookie.split(";")}

    def test_a_malformed_cookie_is_ignored(self, client, auth, db, read_pool, standby):
        h = auth("admin")
        chain = client.post("/api/v1/chains", headers=h, json={"name": "Kaputt"}).json()
        caught_up(db, standby)
        client.cookies.clear()
        r = client.get(f"/api/v1/chains/{chain['id']}", headers={**h, "Cookie": f"{COOKIE}=not-a-position"})
        assert r.status_code == 200
