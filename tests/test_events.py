"""The event feed (safe against late commits), consumer checkpoints and the retention hook."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from db.events import purge_delivered_events
from tests.helpers import assert_problem, create_chain


def feed(client, headers, **params):
    r = client.get("/api/v1/events", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def read_all(client, headers, after=0):
    positions = []
    while True:
        page = feed(client, headers, after=after, limit=500)
        positions += [e["position"] for e in page["items"]]
        if not page["items"]:
            return positions, page["next_after"]
        after = page["next_after"]


class TestListEvents:
    def test_events_in_order_with_stable_ids_and_correlation(self, client, auth, db):
        h = {**auth("admin", sub="anna"), "X-Correlation-ID": "req-7"}
        chain = create_chain(client, h)
        client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "Neu"},
                     headers={**h, "If-Match": chain["etag"]})
        page = feed(client, auth("integration"))
        assert [e["type"] for e in page["items"]] == ["chain.created", "chain.updated"]
        first, second = page["items"]
        assert first["position"] < second["position"]
        assert first["aggregatetype"] == "chain" and first["aggregateid"] == chain["id"]
        assert first["correlation_id"] == "req-7" and first["actor"] == "anna"
        assert page["next_after"] >= second["position"]
        again = feed(client, auth("integration"))
        assert [e["id"] for e in again["items"]] == [first["id"], second["id"]]
        assert feed(client, auth("integration"), after=page["next_after"])["items"] == []

    def test_pages_with_limit_and_types_with_wildcards(self, client, auth, db):
        h = auth("admin")
        for i in range(5):
            create_chain(client, h, name=f"Kette {i}")
        chain = create_chain(client, h, name="Kette X")
        client.delete(f"/api/v1/chains/{chain['id']}", headers={**h, "If-Match": chain["etag"]})
        page = feed(client, h, limit=2)
        assert len(page["items"]) == 2 and page["next_after"] == page["items"][-1]["position"]
        rest = feed(client, h, after=page["next_after"], limit=100)
        assert len(rest["items"]) == 5
        deleted = feed(client, h, types="chain.deleted")
        assert [e["type"] for e in deleted["items"]] == ["chain.deleted"]
        assert len(feed(client, h, types="chain.*")["items"]) == 7
        assert feed(client, h, types="customer.*")["items"] == []
        # a filtered reader that found nothing may still move on to the safe position
        assert feed(client, h, types="customer.*")["next_after"] == rest["next_after"]

    def test_scopes(self, client, auth, db):
        assert_problem(client.get("/api/v1/events", headers=auth("sales_rep")), 403)
        assert_problem(client.get("/api/v1/events"), 401)
        assert_problem(client.get("/api/v1/events?limit=0", headers=auth("admin")), 400)
        assert_problem(client.get("/api/v1/events?types=A%25", headers=auth("admin")), 400)


class TestSafeFeed:
    """A transaction that took a position and commits late is never skipped."""

    def test_late_commit_of_a_lower_position_is_not_skipped(self, client, auth, db, dsn):
        h = auth("integration")
        with psycopg.connect(dsn) as late, psycopg.connect(dsn) as early:
            # `early` takes a transaction id first, so ordering by transaction id alone would fail too
            early.execute("insert into idempotency_key (principal, operation, key, request_hash, status) "
                          "values ('t', 'op', 'k', 'h', 200)")
            late.execute("insert into chain (name) values ('Spät')")
            late_position = late.execute("select max(position) from outbox").fetchone()[0]
            early.execute("insert into chain (name) values ('Früh')")
            early.commit()
            page = feed(client, h)
            assert page["items"] == []
            assert page["safe_position"] < late_position
            after = page["next_after"]
            late.commit()
        page = feed(client, h, after=after)
        names = [e["payload"]["name"] for e in page["items"]]
        assert names == ["Spät", "Früh"]

    def test_rolled_back_positions_do_not_block_the_feed(self, client, auth, db, dsn):
        with psycopg.connect(dsn) as conn:
            conn.execute("insert into chain (name) values ('Weg')")
            conn.rollback()
        create_chain(client, auth("admin"), name="Da")
        assert [e["payload"]["name"] for e in feed(client, auth("admin"))["items"]] == ["Da"]

    def test_concurrent_writers_never_make_a_reader_skip(self, client, auth, db, dsn):
        """Writers commit in random order after random delays while a reader keeps advancing."""
        h = auth("integration")
        stop = threading.Event()
        committed: list[int] = []
        lock = threading.Lock()

        def writer(n: int) -> None:
            rnd = random.Random(n)
            with psycopg.connect(dsn) as conn:
                for i in range(25):
                    conn.execute("insert into chain (name) values (%s)", (f"w{n}-{i}",))
                    time.sleep(rnd.random() * 0.01)
                    if rnd.random() < 0.15:
                        conn.rollback()
                        continue
                    positions = [r[0] for r in conn.execute(
                        "select position from outbox where payload->>'name' = %s", (f"w{n}-{i}",))]
                    conn.commit()
                    with lock:
                        committed.extend(positions)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        seen: list[int] = []
        after = 0
        while any(t.is_alive() for t in threads) or not stop.is_set():
            if not any(t.is_alive() for t in threads):
                stop.set()
            page = feed(client, h, after=after, limit=50)
            seen += [e["position"] for e in page["items"]]
            after = page["next_after"]
        rest, _ = read_all(client, h, after)
        seen += rest
        assert seen == sorted(seen)
        assert sorted(seen) == sorted(committed)


class TestCheckpoints:
    def test_create_read_move_with_if_match(self, client, auth, db):
        h = auth("integration")
        url = "/api/v1/consumers/erp-sync/checkpoint"
        assert_problem(client.get(url, headers=h), 404)
        r = client.put(url, json={"position": 5}, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["position"] == 5 and r.headers["ETag"] == r.json()["etag"]
        got = client.get(url, headers=h)
        assert got.status_code == 200 and got.json()["position"] == 5
        assert client.get(url, headers={**h, "If-None-Match": got.headers["ETag"]}).status_code == 304
        assert_problem(client.put(url, json={"position": 9}, headers=h), 428)
        moved = client.put(url, json={"position": 9}, headers={**h, "If-Match": got.headers["ETag"]})
        assert moved.status_code == 200 and moved.json()["position"] == 9
        stale = assert_problem(client.put(url, json={"position": 10}, headers={**h, "If-Match": got.headers["ETag"]}),
                               412)
        assert stale["current_etag"] == moved.headers["ETag"]

    def test_a_checkpoint_belongs_to_the_client_that_created_it(self, client, auth, db):
        erp, other = auth("integration", sub="erp-partner"), auth("integration", sub="other-partner")
        url = "/api/v1/consumers/erp-sync/checkpoint"
        created = client.put(url, json={"position": 5}, headers=erp)
        assert created.status_code == 201, created.text
        assert_problem(client.get(url, headers=other), 404)
        taken = assert_problem(client.put(url, json={"position": 9}, headers=other), 409)
        assert "taken" in taken["detail"]
        assert_problem(client.put(url, json={"position": 9}, headers={**other, "If-Match": "*"}), 409)
        assert client.get(url, headers=auth("admin")).json()["position"] == 5
        assert client.get(url, headers=erp).json()["position"] == 5
        assert db.execute("select owner from event_consumer").fetchone()["owner"] == "erp-partner"

    def test_a_consumer_resumes_from_its_checkpoint(self, client, auth, db):
        h = auth("integration")
        admin = auth("admin")
        for i in range(3):
            create_chain(client, admin, name=f"K{i}")
        page = feed(client, h, limit=2)
        url = "/api/v1/consumers/dwh/checkpoint"
        client.put(url, json={"position": page["next_after"]}, headers=h)
        # the consumer "crashes"; on restart it reads its checkpoint and continues
        resume = client.get(url, headers=h).json()["position"]
        rest = feed(client, h, after=resume)
        assert [e["payload"]["name"] for e in rest["items"]] == ["K2"]

    def test_bad_names_and_positions(self, client, auth, db):
        h = auth("integration")
        assert_problem(client.put("/api/v1/consumers/Bad Name/checkpoint", json={"position": 1}, headers=h), 400)
        assert_problem(client.put("/api/v1/consumers/ok/checkpoint", json={"position": -1}, headers=h), 400)
        assert_problem(client.get("/api/v1/consumers/ok/checkpoint", headers=auth("sales_manager")), 403)


class TestRetention:
    def test_purged_positions_answer_410(self, client, auth, db, dsn):
        h = auth("admin")
        for i in range(3):
            create_chain(client, h, name=f"Alt {i}")
        db.execute("update outbox set created_at = now() - interval '40 days'")
        create_chain(client, h, name="Neu")
        result = asyncio.run(purge_delivered_events(dsn, timedelta(days=30)))
        assert result["events"] == 3
        problem = assert_problem(client.get("/api/v1/events?after=0", headers=h), 410, "/problems/position-purged")
        assert problem["oldest_position"] == result["purged_through"]
        page = feed(client, h)  # without `after` the feed starts at the oldest kept event
        assert [e["payload"]["name"] for e in page["items"]] == ["Neu"]
        assert feed(client, h, after=result["purged_through"])["items"] == page["items"]

    def test_undelivered_events_are_kept(self, client, auth, db, dsn, monkeypatch):
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
        h = auth("admin")
        r = client.post("/api/v1/webhook-subscriptions", json={"url": "http://127.0.0.1:9/x", "event_types": ["*"]},
                        headers=h)
        assert r.status_code == 201
        create_chain(client, h, name="Wartet")
        db.execute("update outbox set created_at = now() - interval '40 days'")
        result = asyncio.run(purge_delivered_events(dsn, timedelta(days=30)))
        assert result["events"] == 0  # the subscription has not fanned it out yet


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE", raising=False)
