"""Customers: /api/v1/customers."""

from __future__ import annotations

import pytest

from tests.helpers import assert_problem, count, create_chain, create_customer


class TestCreateCustomer:
    def test_requires_only_number_name_type_and_defaults_to_lead(self, client, auth):
        r = client.post("/api/v1/customers", headers=auth("sales_rep"),
                        json={"customer_number": "K-100234", "name": "Hotel Sonne", "type": "HOTEL"})
        assert r.status_code == 201
        body = r.json()
        assert body["status"] == "LEAD"
        assert body["chain_id"] is None
        assert body["address"] == {"street": None, "postal_code": None, "city": None, "country": None}
        assert body["created_at"].endswith("Z")
        assert r.headers["etag"] == body["etag"]

    def test_full_body_round_trips(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        fields = {"status": "ACTIVE", "chain_id": chain["id"], "owner": "anna.schmidt",
                  "address": {"street": "Marktplatz 1", "postal_code": "80331", "city": "München", "country": "DE"}}
        created = create_customer(client, h, "K-1", **fields)
        fetched = client.get(f"/api/v1/customers/{created['id']}", headers=h).json()
        assert fetched == created
        assert {k: fetched[k] for k in fields} == fields

    def test_duplicate_number_is_409_naming_the_existing_id(self, client, auth, db):
        h = auth("admin")
        first = create_customer(client, h, "K-7")
        r = client.post("/api/v1/customers", headers=h,
                        json={"customer_number": "K-7", "name": "Other", "type": "CANTEEN"})
        body = assert_problem(r, 409)
        assert body["existing_id"] == first["id"]
        assert "K-7" in body["detail"]
        assert count(db, "customer") == 1

    def test_unknown_chain_is_422(self, client, auth, db):
        r = client.post("/api/v1/customers", headers=auth("admin"), json={
            "customer_number": "K-8", "name": "X", "type": "OTHER",
            "chain_id": "00000000-0000-4000-8000-000000000000"})
        body = assert_problem(r, 422)
        assert body["errors"][0]["field"] == "chain_id"
        assert count(db, "customer") == 0


class TestListCustomers:
    @pytest.fixture
    def customers(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        made = [
            create_customer(client, h, "K-1", name="Zur Linde", type="RESTAURANT", status="ACTIVE", owner="anna"),
            create_customer(client, h, "K-2", name="Kantine Nord", type="CANTEEN", status="LEAD", owner="jonas"),
            create_customer(client, h, "K-3", name="Hotel Linde", type="HOTEL", chain_id=chain["id"], owner="anna"),
            create_customer(client, h, "K-4", name="Alt", type="OTHER", status="ARCHIVED"),
        ]
        return chain, made

    def _names(self, client, h, **params):
        r = client.get("/api/v1/customers", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [c["name"] for c in r.json()["items"]]

    def test_filters(self, client, auth, customers):
        chain, _ = customers
        h = auth("admin")
        assert self._names(client, h) == ["Hotel Linde", "Kantine Nord", "Zur Linde"]
        assert self._names(client, h, chain_id=chain["id"]) == ["Hotel Linde"]
        assert self._names(client, h, type="CANTEEN") == ["Kantine Nord"]
        assert self._names(client, h, owner="anna") == ["Hotel Linde", "Zur Linde"]
        assert self._names(client, h, q="linde") == ["Hotel Linde", "Zur Linde"]
        assert self._names(client, h, status="ARCHIVED") == ["Alt"]
        assert self._names(client, h, status="ACTIVE") == ["Zur Linde"]

    def test_updated_since(self, client, auth, customers, db):
        h = auth("admin")
        db.execute("set session_replication_role = replica")  # keep the touch trigger out of this backdating
        db.execute("update customer set updated_at = now() - interval '2 days' where customer_number <> 'K-2'")
        db.execute("set session_replication_role = origin")
        since = db.execute(
            "select to_char(now() - interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SSOF:00') as t"
        ).fetchone()["t"]
        assert self._names(client, h, updated_since=since) == ["Kantine Nord"]

    def test_pagination_is_stable_and_complete(self, client, auth):
        h = auth("admin")
        for i in range(11):
            create_customer(client, h, f"K-{i + 10}", name="Same Name")  # ties broken by id
        ids, cursor = [], None
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/customers", params=params, headers=h).json()
            ids += [c["id"] for c in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert len(ids) == 11
        assert ids == sorted(ids)


class TestUpdateCustomer:
    def test_merge_patch_changes_only_what_is_sent(self, client, auth):
        h = auth("admin")
        c = create_customer(client, h, address={"street": "A 1", "city": "Köln", "country": "DE"})
        r = client.patch(f"/api/v1/customers/{c['id']}", headers={**h, "If-Match": c["etag"]},
                         json={"status": "PROSPECT", "address": {"city": "Bonn", "street": None}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "PROSPECT"
        assert body["address"] == {"street": None, "postal_code": None, "city": "Bonn", "country": "DE"}
        assert body["name"] == c["name"]
        assert r.headers["etag"] == body["etag"] != c["etag"]

    def test_customer_number_is_immutable(self, client, auth):
        h = auth("admin")
        c = create_customer(client, h)
        r = client.patch(f"/api/v1/customers/{c['id']}", headers={**h, "If-Match": c["etag"]},
                         json={"customer_number": "K-999"})
        assert_problem(r, 400)

    def test_unknown_customer_is_404(self, client, auth):
        r = client.patch("/api/v1/customers/00000000-0000-4000-8000-000000000000",
                         headers={**auth("admin"), "If-Match": '"x"'}, json={"name": "A"})
        assert_problem(r, 404)


class TestArchiveCustomer:
    def test_delete_archives_and_hides_from_lists(self, client, auth, db):
        h = auth("admin")
        c = create_customer(client, h)
        r = client.delete(f"/api/v1/customers/{c['id']}", headers={**h, "If-Match": c["etag"]})
        assert r.status_code == 204
        fetched = client.get(f"/api/v1/customers/{c['id']}", headers=h).json()
        assert fetched["status"] == "ARCHIVED"
        assert client.get("/api/v1/customers", headers=h).json()["items"] == []
        assert count(db, "customer") == 1

    def test_chain_manager_may_not_archive(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        c = create_customer(client, h, chain_id=chain["id"])
        r = client.delete(f"/api/v1/customers/{c['id']}",
                          headers={**auth("chain_manager", chains=[chain["id"]]), "If-Match": c["etag"]})
        assert_problem(r, 403)
