"""Idempotent creates with Idempotency-Key."""

from __future__ import annotations

from tests.helpers import assert_problem, count

BODY = {"customer_number": "K-500", "name": "Trattoria Roma", "type": "RESTAURANT"}


class TestIdempotentCreate:
    def test_retry_with_same_key_and_body_replays_the_first_response(self, client, auth, db):
        h = {**auth("sales_rep"), "Idempotency-Key": "abc-1"}
        first = client.post("/api/v1/customers", json=BODY, headers=h)
        second = client.post("/api/v1/customers", json=BODY, headers=h)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["etag"] == first.headers["etag"]
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["idempotent-replayed"] == "true"
        assert count(db, "customer") == 1
        assert count(db, "outbox") == 1

    def test_same_key_with_another_body_is_422(self, client, auth, db):
        h = {**auth("sales_rep"), "Idempotency-Key": "abc-2"}
        assert client.post("/api/v1/customers", json=BODY, headers=h).status_code == 201
        r = client.post("/api/v1/customers", json={**BODY, "name": "Other"}, headers=h)
        assert_problem(r, 422, "/problems/idempotency-key-reused")
        assert count(db, "customer") == 1

    def test_keys_are_per_caller(self, client, auth, db):
        key = {"Idempotency-Key": "shared"}
        assert client.post("/api/v1/customers", json=BODY, headers={**auth("admin", sub="a"), **key}).status_code == 201
        r = client.post("/api/v1/customers", json=BODY, headers={**auth("admin", sub="b"), **key})
        assert_problem(r, 409)  # b's first attempt really runs, and meets the business key

    def test_failed_attempt_is_not_stored(self, client, auth, db):
        h = {**auth("admin"), "Idempotency-Key": "k"}
        bad = {**BODY, "chain_id": "00000000-0000-4000-8000-000000000000"}
        assert client.post("/api/v1/customers", json=bad, headers=h).status_code == 422
        assert count(db, "idempotency_key") == 0
        assert client.post("/api/v1/customers", json=BODY, headers=h).status_code == 201
        assert count(db, "idempotency_key") == 1

    def test_keys_older_than_a_day_are_not_replayed(self, client, auth, db):
        h = {**auth("admin"), "Idempotency-Key": "old"}
        assert client.post("/api/v1/chains", json={"name": "A"}, headers=h).status_code == 201
        db.execute("update idempotency_key set created_at = now() - interval '25 hours'")
        r = client.post("/api/v1/chains", json={"name": "B"}, headers=h)
        assert r.status_code == 201
        assert r.json()["name"] == "B"
