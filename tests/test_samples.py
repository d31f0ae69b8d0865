"""Cook&Fresh sample requests: /api/v1/sample-requests, their items, transitions, feedback, history,
quotas and who may do what — against the real PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import assert_problem, create_chain, create_customer

REQUESTS = "/api/v1/sample-requests"
ADDRESS = {"street": "Marktplatz 1", "postal_code": "80331", "city": "München", "country": "DE"}
SHIPMENT = {"carrier": "DHL", "tracking_number": "00340434161094042557"}


# --- fixtures and helpers -----------------------------------------------------------------------


@dataclass
class World:
    """Two chains with one outlet each, an independent customer, and a small catalogue."""

    chain_a: dict[str, Any]
    chain_b: dict[str, Any]
    outlet_a: dict[str, Any]
    outlet_a2: dict[str, Any]
    outlet_b: dict[str, Any]
    independent: dict[str, Any]
    soup: dict[str, Any]
    sauce: dict[str, Any]
    dessert: dict[str, Any]
    not_for_samples: dict[str, Any]


def _product(client, h, sku: str, name: str, **fields) -> dict[str, Any]:
    body = {"sku": sku, "name": name, "category": "SOUPS", "pack_size": 2.5, "unit": "KG", **fields}
    r = client.post("/api/v1/products", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def world(client, auth) -> World:
    h = auth("admin")
    chain_a, chain_b = create_chain(client, h, "Alpenblick Hotels"), create_chain(client, h, "Pasta Fresca")
    return World(
        chain_a=chain_a,
        chain_b=chain_b,
        outlet_a=create_customer(client, h, "K-1", name="Alpenblick Garmisch", chain_id=chain_a["id"],
                                 status="ACTIVE", address=ADDRESS),
        outlet_a2=create_customer(client, h, "K-2", name="Alpenblick Oberstdorf", chain_id=chain_a["id"],
                                  status="ACTIVE", address=ADDRESS),
        outlet_b=create_customer(client, h, "K-3", name="Pasta Fresca Köln", chain_id=chain_b["id"],
                                 status="ACTIVE", address=ADDRESS),
        independent=create_customer(client, h, "K-4", name="Gasthaus Zur Linde", status="ACTIVE", address=ADDRESS),
        soup=_product(client, h, "CF-1001", "Kartoffelcremesuppe", max_sample_quantity=3),
        sauce=_product(client, h, "CF-2001", "Sauce Hollandaise", category="SAUCES", max_sample_quantity=5),
        dessert=_product(client, h, "CF-8001", "Mousse au Chocolat", category="DESSERTS", max_sample_quantity=5),
        not_for_samples=_product(client, h, "CF-5005", "Gemüse-Lasagne", category="READY_MEALS",
                                 sample_available=False),
    )


@pytest.fixture
def quotas(db):
    """Set the sample quotas for one test: ``quotas(customer=6, chain=8)``; restored afterwards."""
    saved = db.execute("select subject::text, max_units, window_days from sample_quota").fetchall()

    def configure(customer: int | None = None, chain: int | None = None, window_days: int = 90) -> None:
        for subject, limit in (("CUSTOMER", customer), ("CHAIN", chain)):
            if limit is not None:
                db.execute("update sample_quota set max_units = %s, window_days = %s where subject = %s",
                           (limit, window_days, subject))

    yield configure
    db.execute("delete from sample_quota")
    for row in saved:
        db.execute("insert into sample_quota (subject, max_units, window_days) values (%s, %s, %s)",
                   (row["subject"], row["max_units"], row["window_days"]))


def rep(auth, sub: str = "anna"):
    return auth("sales_rep", sub=sub)


def manager(auth):
    return auth("sales_manager", sub="mia")


def partner(auth):
    return auth("integration", sub="fulfilment-partner")


def create_request(client, headers, customer, *items, **fields) -> dict[str, Any]:
    body = {"customer_id": customer["id"], "items": [{"product_id": p["id"], "quantity": q} for p, q in items],
            **fields}
    r = client.post(REQUESTS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def move(client, headers, request: dict[str, Any], to: str, expect: int = 200, **body) -> dict[str, Any]:
    r = client.post(f"{REQUESTS}/{request['id']}/transitions", json={"to": to, **body},
                    headers={**headers, "If-Match": request["etag"]})
    assert r.status_code == expect, r.text
    if expect == 200:
        assert r.headers["etag"] == r.json()["etag"] != request["etag"]
    return r.json()


def shipment_for(request: dict[str, Any], best_before: str = "2031-03-31") -> dict[str, Any]:
    return {**SHIPMENT, "items": [{"item_id": i["id"], "lot_number": f"L24-{n}", "best_before": best_before}
                                  for n, i in enumerate(request["items"])]}


def feedback(client, headers, request, item, expect: int = 200, **body) -> dict[str, Any]:
    payload = {"rating": 4, "listing_decision": "LISTED", **body}
    r = client.put(f"{REQUESTS}/{request['id']}/items/{item['id']}/feedback", json=payload, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def approved(client, auth, world, *items) -> dict[str, Any]:
    request = create_request(client, rep(auth), world.independent, *(items or [(world.soup, 2)]))
    request = move(client, rep(auth), request, "REQUESTED")
    return move(client, manager(auth), request, "APPROVED")


def delivered(client, auth, world, *items) -> dict[str, Any]:
    request = approved(client, auth, world, *items)
    request = move(client, partner(auth), request, "SHIPPED", shipment=shipment_for(request))
    return move(client, partner(auth), request, "DELIVERED")


def history(db, request_id: str) -> list[dict[str, Any]]:
    return db.execute(
        "select from_status::text as from_status, to_status::text as to_status, actor, reason, automatic, "
        "quota_override, correlation_id from sample_request_history where request_id = %s order by id",
        (request_id,),
    ).fetchall()


def events(db, request_id: str) -> list[str]:
    rows = db.execute(
        "select type from outbox where aggregatetype = 'sample_request' and aggregateid = %s order by position",
        (request_id,),
    )
    return [r["type"] for r in rows]


def status_in_db(db, request_id: str) -> str:
    return db.execute("select status::text as s from sample_request where id = %s", (request_id,)).fetchone()["s"]


def counts(db) -> dict[str, int]:
    tables = ("sample_request", "sample_item", "sample_request_history", "outbox")
    query = sql.SQL("select count(*) as n from {}")
    return {t: db.execute(query.format(sql.Identifier(t))).fetchone()["n"] for t in tables}


# --- create -------------------------------------------------------------------------------------


class TestCreateSampleRequest:
    def test_creates_a_draft_with_the_customers_address(self, client, auth, world, db):
        h = {**rep(auth), "X-Correlation-ID": "visit-0815"}
        r = client.post(REQUESTS, headers=h, json={
            "customer_id": world.outlet_a["id"], "purpose": "Neue Herbstkarte",
            "desired_delivery_date": "2030-10-01",
            "items": [{"product_id": world.soup["id"], "quantity": 2},
                      {"product_id": world.sauce["id"], "quantity": 1}],
        })
        assert r.status_code == 201, r.text
        body = r.json()
        assert r.headers["location"] == f"{REQUESTS}/{body['id']}"
        assert r.headers["etag"] == body["etag"]
        assert body["status"] == "DRAFT"
        assert body["next_statuses"] == ["REQUESTED", "CANCELLED"]
        assert body["requested_by"] == "anna"
        assert body["chain_id"] == world.chain_a["id"]
        assert body["delivery_address"] == {"name": "Alpenblick Garmisch", **ADDRESS}
        assert [(i["sku"], i["quantity"]) for i in body["items"]] == [("CF-1001", 2), ("CF-2001", 1)]
        assert body["submitted_at"] is None and body["decision"] is None and body["shipment"] is None
        assert history(db, body["id"]) == [{"from_status": None, "to_status": "DRAFT", "actor": "anna", "reason": None,
                                            "automatic": False, "quota_override": False,
                                            "correlation_id": "visit-0815"}]
        assert events(db, body["id"]) == ["sample_request.created"]

    def test_given_delivery_address_fields_replace_the_customers(self, client, auth, world):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1),
                                 delivery_address={"name": "Küche, z. Hd. Herrn Koch", "street": "Hintereingang 3"})
        assert created["delivery_address"] == {**ADDRESS, "name": "Küche, z. Hd. Herrn Koch",
                                               "street": "Hintereingang 3"}

    def test_product_not_available_as_sample_is_422(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": world.independent["id"],
            "items": [{"product_id": world.soup["id"], "quantity": 1},
                      {"product_id": world.not_for_samples["id"], "quantity": 1}]})
        body = assert_problem(r, 422, "/problems/sample-rules-violated")
        assert body["errors"] == [{"field": "items.1.product_id", "message": "CF-5005 is not available as a sample"}]
        assert counts(db)["sample_request"] == 0

    def test_quantity_above_the_products_maximum_is_422(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": world.independent["id"], "items": [{"product_id": world.soup["id"], "quantity": 4}]})
        body = assert_problem(r, 422)
        assert body["errors"][0]["field"] == "items.0.quantity"
        assert counts(db)["sample_request"] == 0

    def test_quantity_outside_the_schema_range_is_400(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": world.independent["id"], "items": [{"product_id": world.soup["id"], "quantity": 0}]})
        assert_problem(r, 400)
        assert counts(db)["sample_request"] == 0

    def test_archived_customer_is_422(self, client, auth, world, db):
        c = world.independent
        assert client.delete(f"/api/v1/customers/{c['id']}", headers={**auth("admin"), "If-Match": c["etag"]}
                             ).status_code == 204
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": c["id"], "items": [{"product_id": world.soup["id"], "quantity": 1}]})
        body = assert_problem(r, 422)
        assert body["errors"] == [{"field": "customer_id", "message": "the customer is archived"}]
        assert counts(db)["sample_request"] == 0

    def test_unknown_customer_and_product_are_422(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": "00000000-0000-4000-8000-000000000000",
            "items": [{"product_id": "00000000-0000-4000-8000-000000000001", "quantity": 1}]})
        body = assert_problem(r, 422)
        assert {e["field"] for e in body["errors"]} == {"customer_id", "items.0.product_id"}
        assert counts(db)["sample_request"] == 0

    def test_a_product_listed_twice_is_422(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=rep(auth), json={
            "customer_id": world.independent["id"],
            "items": [{"product_id": world.soup["id"], "quantity": 1},
                      {"product_id": world.soup["id"], "quantity": 2}]})
        assert assert_problem(r, 422)["errors"][0]["field"] == "items.1.product_id"
        assert counts(db)["sample_request"] == 0

    def test_chain_manager_requests_for_own_outlets_only(self, client, auth, world, db):
        h = auth("chain_manager", sub="cm-alpen", chains=[world.chain_a["id"]])
        own = create_request(client, h, world.outlet_a, (world.soup, 1))
        assert own["requested_by"] == "cm-alpen"
        for other in (world.outlet_b, world.independent):
            r = client.post(REQUESTS, headers=h, json={
                "customer_id": other["id"], "items": [{"product_id": world.soup["id"], "quantity": 1}]})
            body = assert_problem(r, 422)
            assert body["errors"][0]["field"] == "customer_id"
        assert counts(db)["sample_request"] == 1

    def test_integration_cannot_create(self, client, auth, world, db):
        r = client.post(REQUESTS, headers=partner(auth), json={
            "customer_id": world.independent["id"], "items": [{"product_id": world.soup["id"], "quantity": 1}]})
        assert_problem(r, 403)
        assert counts(db)["sample_request"] == 0


class TestIdempotentCreate:
    def body(self, world) -> dict[str, Any]:
        return {"customer_id": world.independent["id"], "items": [{"product_id": world.soup["id"], "quantity": 1}]}

    def test_double_submit_with_the_same_key_creates_one_request(self, client, auth, world, db):
        h = {**rep(auth), "Idempotency-Key": "visit-42"}
        first = client.post(REQUESTS, json=self.body(world), headers=h)
        second = client.post(REQUESTS, json=self.body(world), headers=h)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert counts(db)["sample_request"] == 1

    def test_same_key_with_another_body_is_422(self, client, auth, world, db):
        h = {**rep(auth), "Idempotency-Key": "visit-43"}
        assert client.post(REQUESTS, json=self.body(world), headers=h).status_code == 201
        other = {**self.body(world), "purpose": "anders"}
        assert_problem(client.post(REQUESTS, json=other, headers=h), 422, "/problems/idempotency-key-reused")
        assert counts(db)["sample_request"] == 1

    def test_concurrent_double_submit_creates_one_request(self, client, auth, world, db):
        """Both attempts pass the stored-key lookup before either has stored its response: the
        customer row is held locked so both are inside their insert at the same time."""
        h = {**rep(auth), "Idempotency-Key": "double-click"}
        responses = while_locked(db, "select 1 from customer where id = %s for update", world.independent["id"],
                                 lambda: client.post(REQUESTS, json=self.body(world), headers=h),
                                 lambda: client.post(REQUESTS, json=self.body(world), headers=h))
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 201
        assert statuses[1] in (201, 409)
        assert counts(db)["sample_request"] == 1


def while_locked(db, lock_sql: str, row_id: str, *calls) -> list[Any]:
    """Run ``calls`` in parallel threads while the test holds a row lock (``lock_sql``), release it
    once every call waits for that lock (so all of them are in flight at once), return the results.

    The lock is released in any case before the threads are joined; a call that never reaches the
    lock fails the test after a timeout instead of hanging it."""
    pool = ThreadPoolExecutor(len(calls))
    blocked = False
    try:
        with db.transaction():
            db.execute(lock_sql, (row_id,))
            futures = [pool.submit(call) for call in calls]
            deadline = time.monotonic() + 10
            while not blocked and time.monotonic() < deadline:
                waiting = db.execute(
                    "select count(*) as n from pg_stat_activity "
                    "where application_name = 'kundenmanagement' and wait_event_type = 'Lock'"
                ).fetchone()["n"]
                blocked = waiting >= len(calls)
                time.sleep(0.02)
        return [f.result(timeout=30) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        assert blocked, f"the {len(calls)} requests did not all wait for the lock"


# --- read ---------------------------------------------------------------------------------------


class TestListSampleRequests:
    @pytest.fixture
    def requests(self, client, auth, world, db):
        anna, jonas = rep(auth), rep(auth, "jonas")
        made = {
            "a": create_request(client, anna, world.outlet_a, (world.soup, 1)),
            "a2": create_request(client, jonas, world.outlet_a2, (world.sauce, 1)),
            "b": create_request(client, anna, world.outlet_b, (world.soup, 1)),
            "ind": create_request(client, jonas, world.independent, (world.dessert, 1)),
        }
        made["a"] = move(client, anna, made["a"], "REQUESTED")
        made["ind"] = move(client, jonas, made["ind"], "REQUESTED")
        made["ind"] = move(client, manager(auth), made["ind"], "APPROVED")
        db.execute("update sample_request set created_at = created_at - interval '10 days' where id = %s",
                   (made["b"]["id"],))
        return made

    def _ids(self, client, h, **params) -> list[str]:
        r = client.get(REQUESTS, params=params, headers=h)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    def test_newest_first_and_filters(self, client, auth, world, requests, db):
        h = manager(auth)
        ids = {k: v["id"] for k, v in requests.items()}
        assert self._ids(client, h) == [ids["ind"], ids["a2"], ids["a"], ids["b"]]
        assert self._ids(client, h, status="REQUESTED") == [ids["a"]]
        assert self._ids(client, h, customer_id=world.outlet_a2["id"]) == [ids["a2"]]
        assert self._ids(client, h, chain_id=world.chain_a["id"]) == [ids["a2"], ids["a"]]
        assert self._ids(client, h, requested_by="jonas") == [ids["ind"], ids["a2"]]
        since = db.execute("select to_char(now() - interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SSOF:00') as t"
                           ).fetchone()["t"]
        assert self._ids(client, h, created_from=since) == [ids["ind"], ids["a2"], ids["a"]]
        assert self._ids(client, h, created_to=since) == [ids["b"]]

    def test_pages(self, client, auth, requests):
        h = manager(auth)
        seen, cursor = [], None
        while True:
            page = client.get(REQUESTS, params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=h).json()
            seen += [x["id"] for x in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == self._ids(client, h)
        assert len(seen) == 4

    def test_chain_manager_sees_own_chains_only(self, client, auth, world, requests):
        h = auth("chain_manager", chains=[world.chain_a["id"]])
        assert set(self._ids(client, h)) == {requests["a"]["id"], requests["a2"]["id"]}
        assert self._ids(client, h, chain_id=world.chain_b["id"]) == []

    def test_fulfilment_sees_approved_requests_only(self, client, auth, requests):
        assert self._ids(client, partner(auth)) == [requests["ind"]["id"]]


class TestGetSampleRequest:
    def test_get_with_etag_and_not_modified(self, client, auth, world):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1))
        r = client.get(f"{REQUESTS}/{created['id']}", headers=rep(auth))
        assert r.status_code == 200
        assert r.json() == created
        assert r.headers["etag"] == created["etag"]
        assert client.get(f"{REQUESTS}/{created['id']}",
                          headers={**rep(auth), "If-None-Match": created["etag"]}).status_code == 304

    def test_chain_manager_gets_404_for_other_chains(self, client, auth, world):
        other = create_request(client, rep(auth), world.outlet_b, (world.soup, 1))
        independent = create_request(client, rep(auth), world.independent, (world.soup, 1))
        h = auth("chain_manager", chains=[world.chain_a["id"]])
        for request in (other, independent):
            assert_problem(client.get(f"{REQUESTS}/{request['id']}", headers=h), 404)
            assert_problem(client.get(f"{REQUESTS}/{request['id']}/items", headers=h), 404)
            assert_problem(client.get(f"{REQUESTS}/{request['id']}/history", headers=h), 404)

    def test_fulfilment_cannot_see_drafts_or_customers(self, client, auth, world):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        assert_problem(client.get(f"{REQUESTS}/{draft['id']}", headers=partner(auth)), 404)
        request = approved(client, auth, world)
        fetched = client.get(f"{REQUESTS}/{request['id']}", headers=partner(auth))
        assert fetched.status_code == 200
        assert fetched.json()["delivery_address"] == {"name": "Gasthaus Zur Linde", **ADDRESS}
        assert_problem(client.get(f"/api/v1/customers/{world.independent['id']}", headers=partner(auth)), 403)
        assert_problem(client.get(f"/api/v1/customers/{world.independent['id']}/contacts",
                                  headers=partner(auth)), 403)

    def test_fulfilment_scope_sees_no_customer_rows_in_the_database(self, client, auth, world, db):
        approved(client, auth, world)
        with db.transaction():
            db.execute("select set_config('role', 'crm_api', true), set_config('crm.scope', 'fulfilment', true)")
            assert db.execute("select count(*) as n from customer").fetchone()["n"] == 0
            assert db.execute("select count(*) as n from contact").fetchone()["n"] == 0
            assert db.execute("select count(*) as n from sample_request").fetchone()["n"] == 1


# --- change and delete drafts -------------------------------------------------------------------


class TestUpdateSampleRequest:
    def test_merge_patch_of_a_draft(self, client, auth, world, db):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1), purpose="alt")
        r = client.patch(f"{REQUESTS}/{created['id']}", headers={**rep(auth), "If-Match": created["etag"]},
                         json={"purpose": None, "delivery_address": {"city": "Garching", "postal_code": "85748"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["purpose"] is None
        assert body["delivery_address"] == {**ADDRESS, "name": "Gasthaus Zur Linde", "city": "Garching",
                                            "postal_code": "85748"}
        assert r.headers["etag"] == body["etag"] != created["etag"]
        assert events(db, created["id"]) == ["sample_request.created", "sample_request.updated"]

    def test_only_a_draft_can_be_changed(self, client, auth, world):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        r = client.patch(f"{REQUESTS}/{request['id']}", headers={**rep(auth), "If-Match": request["etag"]},
                         json={"purpose": "neu"})
        assert assert_problem(r, 409, "/problems/wrong-state")["current_status"] == "REQUESTED"

    def test_needs_a_current_if_match(self, client, auth, world):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1))
        url = f"{REQUESTS}/{created['id']}"
        assert_problem(client.patch(url, headers=rep(auth), json={"purpose": "x"}), 428)
        body = assert_problem(client.patch(url, headers={**rep(auth), "If-Match": '"old"'}, json={"purpose": "x"}), 412)
        assert body["current_etag"] == created["etag"]

    def test_another_rep_may_not_change_it(self, client, auth, world):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1))
        r = client.patch(f"{REQUESTS}/{created['id']}", headers={**rep(auth, "jonas"), "If-Match": created["etag"]},
                         json={"purpose": "x"})
        assert_problem(r, 403, "/problems/transition-forbidden")


class TestDeleteSampleRequest:
    def test_deletes_a_draft_with_its_items(self, client, auth, world, db):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1), (world.sauce, 2))
        r = client.delete(f"{REQUESTS}/{created['id']}", headers={**rep(auth), "If-Match": created["etag"]})
        assert r.status_code == 204
        assert counts(db)["sample_request"] == counts(db)["sample_item"] == 0
        assert events(db, created["id"]) == ["sample_request.created", "sample_request.deleted"]
        assert_problem(client.get(f"{REQUESTS}/{created['id']}", headers=rep(auth)), 404)

    def test_a_submitted_request_is_cancelled_not_deleted(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        r = client.delete(f"{REQUESTS}/{request['id']}", headers={**rep(auth), "If-Match": request["etag"]})
        assert_problem(r, 409, "/problems/wrong-state")
        assert counts(db)["sample_request"] == 1


# --- items --------------------------------------------------------------------------------------


class TestSampleItems:
    def test_add_list_get_remove(self, client, auth, world, db):
        h = rep(auth)
        created = create_request(client, h, world.independent, (world.soup, 1))
        r = client.post(f"{REQUESTS}/{created['id']}/items", json={"product_id": world.sauce["id"], "quantity": 2},
                        headers=h)
        assert r.status_code == 201, r.text
        item = r.json()
        assert r.headers["location"] == f"{REQUESTS}/{created['id']}/items/{item['id']}"
        assert (item["sku"], item["quantity"], item["feedback"]) == ("CF-2001", 2, None)

        listed = client.get(f"{REQUESTS}/{created['id']}/items", headers=h).json()
        assert [i["sku"] for i in listed["items"]] == ["CF-1001", "CF-2001"]
        fetched = client.get(f"{REQUESTS}/{created['id']}/items/{item['id']}", headers=h)
        assert fetched.json() == item and fetched.headers["etag"] == item["etag"]
        request = client.get(f"{REQUESTS}/{created['id']}", headers=h).json()
        assert request["etag"] != created["etag"]  # the request changed with its items

        r = client.delete(f"{REQUESTS}/{created['id']}/items/{item['id']}", headers={**h, "If-Match": item["etag"]})
        assert r.status_code == 204
        assert counts(db)["sample_item"] == 1

    def test_item_pages(self, client, auth, world):
        h = rep(auth)
        created = create_request(client, h, world.independent, (world.soup, 1), (world.sauce, 1), (world.dessert, 1))
        first = client.get(f"{REQUESTS}/{created['id']}/items", params={"limit": 2}, headers=h).json()
        second = client.get(f"{REQUESTS}/{created['id']}/items", params={"limit": 2, "cursor": first["next_cursor"]},
                            headers=h).json()
        assert [i["sku"] for i in first["items"] + second["items"]] == ["CF-1001", "CF-2001", "CF-8001"]
        assert second["next_cursor"] is None

    def test_a_product_already_in_the_request_is_409(self, client, auth, world, db):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1))
        r = client.post(f"{REQUESTS}/{created['id']}/items", json={"product_id": world.soup["id"], "quantity": 1},
                        headers=rep(auth))
        assert assert_problem(r, 409)["existing_id"] == created["items"][0]["id"]
        assert counts(db)["sample_item"] == 1

    def test_sample_rules_apply_to_added_items(self, client, auth, world, db):
        created = create_request(client, rep(auth), world.independent, (world.soup, 1))
        url = f"{REQUESTS}/{created['id']}/items"
        r = client.post(url, json={"product_id": world.not_for_samples["id"], "quantity": 1}, headers=rep(auth))
        assert assert_problem(r, 422)["errors"][0]["field"] == "product_id"
        r = client.post(url, json={"product_id": world.sauce["id"], "quantity": 6}, headers=rep(auth))
        assert assert_problem(r, 422)["errors"][0]["field"] == "quantity"
        assert counts(db)["sample_item"] == 1

    def test_items_of_a_submitted_request_are_fixed(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        r = client.post(f"{REQUESTS}/{request['id']}/items", json={"product_id": world.sauce["id"], "quantity": 1},
                        headers=rep(auth))
        assert_problem(r, 409, "/problems/wrong-state")
        item = request["items"][0]
        r = client.delete(f"{REQUESTS}/{request['id']}/items/{item['id']}",
                          headers={**rep(auth), "If-Match": item["etag"]})
        assert_problem(r, 409, "/problems/wrong-state")
        assert counts(db)["sample_item"] == 1

    def test_an_item_of_another_request_is_404(self, client, auth, world, db):
        one = create_request(client, rep(auth), world.independent, (world.soup, 1))
        other = create_request(client, rep(auth), world.independent, (world.sauce, 1))
        item = other["items"][0]
        assert_problem(client.get(f"{REQUESTS}/{one['id']}/items/{item['id']}", headers=rep(auth)), 404)
        r = client.delete(f"{REQUESTS}/{one['id']}/items/{item['id']}", headers={**rep(auth), "If-Match": item["etag"]})
        assert_problem(r, 404)
        assert counts(db)["sample_item"] == 2


# --- the lifecycle ------------------------------------------------------------------------------


class TestTransitions:
    def test_full_happy_path(self, client, auth, world, db):
        anna = {**rep(auth), "X-Correlation-ID": "corr-1"}
        draft = create_request(client, anna, world.outlet_a, (world.soup, 2), (world.sauce, 1))

        requested = move(client, anna, draft, "REQUESTED")
        assert requested["status"] == "REQUESTED"
        assert requested["submitted_at"] is not None
        assert requested["next_statuses"] == ["APPROVED", "REJECTED", "CANCELLED"]

        approved_ = move(client, manager(auth), requested, "APPROVED", reason="Passt zur Herbstkarte")
        assert approved_["decision"]["outcome"] == "APPROVED"
        assert approved_["decision"]["by"] == "mia"
        assert approved_["decision"]["reason"] == "Passt zur Herbstkarte"

        shipped = move(client, partner(auth), approved_, "SHIPPED", shipment=shipment_for(approved_))
        assert shipped["shipment"]["carrier"] == "DHL"
        assert shipped["shipment"]["tracking_number"] == SHIPMENT["tracking_number"]
        assert [(i["lot_number"], i["best_before"]) for i in shipped["items"]] == [
            ("L24-0", "2031-03-31"), ("L24-1", "2031-03-31")]

        delivered_ = move(client, partner(auth), shipped, "DELIVERED")
        assert delivered_["shipment"]["delivered_at"] is not None
        assert delivered_["next_statuses"] == ["FEEDBACK_RECEIVED"]

        item1, item2 = delivered_["items"]
        feedback(client, anna, delivered_, item1, rating=5, taste=5, handling=4, price_perception="ACCEPTABLE",
                 comment="Schnell zubereitet")
        assert status_in_db(db, draft["id"]) == "DELIVERED"
        given = feedback(client, anna, delivered_, item2, rating=2, listing_decision="NOT_LISTED")
        assert given["feedback"]["listing_decision"] == "NOT_LISTED"
        received = client.get(f"{REQUESTS}/{draft['id']}", headers=anna).json()
        assert received["status"] == "FEEDBACK_RECEIVED"
        assert received["next_statuses"] == ["CLOSED"]

        closed = move(client, anna, received, "CLOSED")
        assert closed["status"] == "CLOSED" and closed["next_statuses"] == []

        steps = [(h["from_status"], h["to_status"], h["actor"], h["automatic"]) for h in history(db, draft["id"])]
        assert steps == [
            (None, "DRAFT", "anna", False),
            ("DRAFT", "REQUESTED", "anna", False),
            ("REQUESTED", "APPROVED", "mia", False),
            ("APPROVED", "SHIPPED", "fulfilment-partner", False),
            ("SHIPPED", "DELIVERED", "fulfilment-partner", False),
            ("DELIVERED", "FEEDBACK_RECEIVED", "anna", True),
            ("FEEDBACK_RECEIVED", "CLOSED", "anna", False),
        ]
        assert [e for e in events(db, draft["id"]) if e != "sample_request.updated"] == [
            "sample_request.created", "sample_request.requested", "sample_request.approved",
            "sample_request.shipped", "sample_request.delivered", "sample_request.feedback_received",
            "sample_request.closed",
        ]

    def test_history_endpoint(self, client, auth, world):
        h = {**rep(auth), "X-Correlation-ID": "corr-7"}
        request = move(client, h, create_request(client, h, world.independent, (world.soup, 1)), "REQUESTED")
        move(client, manager(auth), request, "REJECTED", reason="Budget ausgeschöpft")
        r = client.get(f"{REQUESTS}/{request['id']}/history", headers=rep(auth))
        assert r.status_code == 200
        entries = r.json()["items"]
        assert [(e["from"], e["to"], e["actor"]) for e in entries] == [
            (None, "DRAFT", "anna"), ("DRAFT", "REQUESTED", "anna"), ("REQUESTED", "REJECTED", "mia")]
        assert entries[1]["correlation_id"] == "corr-7"
        assert entries[2]["reason"] == "Budget ausgeschöpft"
        assert all(e["at"].endswith("Z") for e in entries)
        first = client.get(f"{REQUESTS}/{request['id']}/history", params={"limit": 2}, headers=rep(auth)).json()
        rest = client.get(f"{REQUESTS}/{request['id']}/history",
                          params={"limit": 2, "cursor": first["next_cursor"]}, headers=rep(auth)).json()
        assert first["items"] + rest["items"] == entries

    def test_rejection_needs_a_reason(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        body = move(client, manager(auth), request, "REJECTED", expect=422)
        assert body["errors"] == [{"field": "reason", "message": "a rejection needs a reason"}]
        move(client, manager(auth), request, "REJECTED", expect=422, reason="   ")
        assert status_in_db(db, request["id"]) == "REQUESTED"
        rejected = move(client, manager(auth), request, "REJECTED", reason="Kunde hat gerade erst getestet")
        assert rejected["decision"] == {"outcome": "REJECTED", "by": "mia", "at": rejected["decision"]["at"],
                                        "reason": "Kunde hat gerade erst getestet"}
        assert rejected["next_statuses"] == []
        body = move(client, rep(auth), rejected, "REQUESTED", expect=409)
        assert body["allowed"] == []
        assert events(db, request["id"])[-1] == "sample_request.rejected"

    @pytest.mark.parametrize("at", ["DRAFT", "REQUESTED", "APPROVED"])
    def test_cancellation(self, client, auth, world, db, at):
        request = create_request(client, rep(auth), world.independent, (world.soup, 1))
        if at != "DRAFT":
            request = move(client, rep(auth), request, "REQUESTED")
        if at == "APPROVED":
            request = move(client, manager(auth), request, "APPROVED")
        cancelled = move(client, rep(auth), request, "CANCELLED", reason="Betrieb schließt")
        assert cancelled["status"] == "CANCELLED"
        assert history(db, request["id"])[-1]["reason"] == "Betrieb schließt"
        assert events(db, request["id"])[-1] == "sample_request.cancelled"

    def test_shipped_requests_cannot_be_cancelled(self, client, auth, world, db):
        request = approved(client, auth, world)
        shipped = move(client, partner(auth), request, "SHIPPED", shipment=shipment_for(request))
        body = move(client, manager(auth), shipped, "CANCELLED", expect=409)
        assert body["type"] == "/problems/illegal-transition"
        assert body["allowed"] == ["DELIVERED"]
        assert body["current_status"] == "SHIPPED"
        assert status_in_db(db, request["id"]) == "SHIPPED"

    def test_illegal_transition_names_the_allowed_next_states(self, client, auth, world, db):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        body = move(client, auth("admin"), draft, "SHIPPED", expect=409, shipment=shipment_for(draft))
        assert body["allowed"] == ["REQUESTED", "CANCELLED"]
        assert "REQUESTED, CANCELLED" in body["detail"]
        assert status_in_db(db, draft["id"]) == "DRAFT"

    def test_if_match_is_required_and_must_be_current(self, client, auth, world, db):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        url = f"{REQUESTS}/{draft['id']}/transitions"
        assert_problem(client.post(url, json={"to": "REQUESTED"}, headers=rep(auth)), 428)
        body = assert_problem(client.post(url, json={"to": "REQUESTED"}, headers={**rep(auth), "If-Match": '"x"'}), 412)
        assert body["current_etag"] == draft["etag"]
        assert status_in_db(db, draft["id"]) == "DRAFT"

    def test_concurrent_transitions_exactly_one_wins(self, client, auth, world, db):
        """Two clients submit the same draft with the same If-Match at once. The draft's row is held
        locked until both requests wait for it, so both are in flight together."""
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        url = f"{REQUESTS}/{draft['id']}/transitions"
        h = {**rep(auth), "If-Match": draft["etag"]}
        responses = while_locked(db, "select 1 from sample_request where id = %s for update", draft["id"],
                                 lambda: client.post(url, json={"to": "REQUESTED"}, headers=h),
                                 lambda: client.post(url, json={"to": "CANCELLED"}, headers=h))
        assert sorted(r.status_code for r in responses) == [200, 412]
        loser = next(r for r in responses if r.status_code == 412)
        winner = next(r for r in responses if r.status_code == 200)
        assert loser.json()["current_etag"] == winner.json()["etag"]
        assert [h["to_status"] for h in history(db, draft["id"])] == ["DRAFT", winner.json()["status"]]

    def test_submit_is_refused_with_422_when_the_rules_broke_since_the_draft(self, client, auth, world, db):
        admin = auth("admin")
        draft = create_request(client, rep(auth), world.independent, (world.soup, 3), (world.sauce, 1))
        soup = client.get(f"/api/v1/products/{world.soup['id']}", headers=admin).json()
        client.patch(f"/api/v1/products/{soup['id']}", json={"max_sample_quantity": 2},
                     headers={**admin, "If-Match": soup["etag"]})
        sauce = client.get(f"/api/v1/products/{world.sauce['id']}", headers=admin).json()
        client.patch(f"/api/v1/products/{sauce['id']}", json={"sample_available": False},
                     headers={**admin, "If-Match": sauce["etag"]})
        customer = client.get(f"/api/v1/customers/{world.independent['id']}", headers=admin).json()
        client.delete(f"/api/v1/customers/{customer['id']}", headers={**admin, "If-Match": customer["etag"]})
        before = counts(db)

        body = move(client, rep(auth), draft, "REQUESTED", expect=422)
        assert body["type"] == "/problems/sample-rules-violated"
        assert {(e["field"], e["message"]) for e in body["errors"]} == {
            ("customer_id", "the customer is archived"),
            ("items.0.quantity", "at most 2 packs of CF-1001 per sample request"),
            ("items.1.product_id", "CF-2001 is not available as a sample"),
        }
        assert status_in_db(db, draft["id"]) == "DRAFT"
        assert counts(db) == before

    def test_submit_needs_items_and_a_delivery_address(self, client, auth, world):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1), delivery_address={"street": None})
        item = draft["items"][0]
        client.delete(f"{REQUESTS}/{draft['id']}/items/{item['id']}", headers={**rep(auth), "If-Match": item["etag"]})
        draft = client.get(f"{REQUESTS}/{draft['id']}", headers=rep(auth)).json()
        body = move(client, rep(auth), draft, "REQUESTED", expect=422)
        assert {e["field"] for e in body["errors"]} == {"items", "delivery_address.street"}

    def test_shipment_rules(self, client, auth, world, db):
        request = approved(client, auth, world, (world.soup, 1), (world.sauce, 1))
        body = move(client, partner(auth), request, "SHIPPED", expect=422)
        assert body["errors"][0]["field"] == "shipment"
        partial = {**SHIPMENT, "items": [{"item_id": request["items"][0]["id"], "lot_number": "L1",
                                          "best_before": "2031-01-01"}]}
        body = move(client, partner(auth), request, "SHIPPED", expect=422, shipment=partial)
        assert "missing for item" in body["errors"][0]["message"]
        body = move(client, partner(auth), request, "SHIPPED", expect=422,
                    shipment=shipment_for(request, best_before="2020-01-01"))
        assert body["errors"][0]["field"] == "shipment.items.0.best_before"
        body = move(client, manager(auth), request, "CANCELLED", expect=422, shipment=shipment_for(request))
        assert body["errors"][0]["message"] == "only a move to SHIPPED takes a shipment"
        assert status_in_db(db, request["id"]) == "APPROVED"
        assert db.execute("select count(*) as n from sample_item where lot_number is not null").fetchone()["n"] == 0


class TestTransitionRoles:
    def test_rep_cannot_approve(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        body = move(client, rep(auth), request, "APPROVED", expect=403)
        assert body["type"] == "/problems/transition-forbidden"
        assert body["required_scope"] == "samples:approve"
        assert status_in_db(db, request["id"]) == "REQUESTED"

    def test_integration_ships_and_delivers_but_cannot_approve_or_cancel(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        assert_problem(client.get(f"{REQUESTS}/{request['id']}", headers=partner(auth)), 404)  # not yet approved
        request = move(client, manager(auth), request, "APPROVED")
        move(client, partner(auth), request, "CANCELLED", expect=403)
        shipped = move(client, partner(auth), request, "SHIPPED", shipment=shipment_for(request))
        delivered_ = move(client, partner(auth), shipped, "DELIVERED")
        assert delivered_["status"] == "DELIVERED"
        feedback(client, partner(auth), delivered_, delivered_["items"][0], expect=403)

    def test_integration_cannot_approve(self, client, auth, world, db):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        # invisible before approval, so the answer does not even reveal the request
        move(client, partner(auth), request, "APPROVED", expect=404)
        assert status_in_db(db, request["id"]) == "REQUESTED"

    def test_sales_staff_cannot_ship(self, client, auth, world, db):
        request = approved(client, auth, world)
        for h in (rep(auth), manager(auth)):
            move(client, h, request, "SHIPPED", expect=403, shipment=shipment_for(request))
        assert status_in_db(db, request["id"]) == "APPROVED"

    def test_only_the_requester_or_a_manager_submits_and_cancels(self, client, auth, world, db):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        move(client, rep(auth, "jonas"), draft, "REQUESTED", expect=403)
        move(client, rep(auth, "jonas"), draft, "CANCELLED", expect=403)
        assert status_in_db(db, draft["id"]) == "DRAFT"
        submitted = move(client, manager(auth), draft, "REQUESTED")
        assert history(db, draft["id"])[-1]["actor"] == "mia"
        move(client, manager(auth), submitted, "CANCELLED")

    def test_chain_manager_moves_own_requests_and_gets_404_for_other_chains(self, client, auth, world, db):
        cm = auth("chain_manager", sub="cm-alpen", chains=[world.chain_a["id"]])
        own = create_request(client, cm, world.outlet_a, (world.soup, 1))
        own = move(client, cm, own, "REQUESTED")
        move(client, cm, own, "APPROVED", expect=403)
        other = create_request(client, rep(auth), world.outlet_b, (world.soup, 1))
        move(client, cm, other, "CANCELLED", expect=404)
        r = client.post(f"{REQUESTS}/{other['id']}/items", json={"product_id": world.sauce["id"], "quantity": 1},
                        headers=cm)
        assert_problem(r, 404)
        assert status_in_db(db, other["id"]) == "DRAFT"
        assert counts(db)["sample_item"] == 2


# --- feedback -----------------------------------------------------------------------------------


class TestFeedback:
    def test_not_before_delivery(self, client, auth, world, db):
        request = approved(client, auth, world)
        body = feedback(client, rep(auth), request, request["items"][0], expect=409)
        assert body["type"] == "/problems/wrong-state"
        assert db.execute("select count(*) as n from sample_item where feedback_at is not null").fetchone()["n"] == 0

    def test_feedback_on_an_item_of_another_request_changes_nothing(self, client, auth, world, db):
        one = delivered(client, auth, world, (world.soup, 1))
        other = delivered(client, auth, world, (world.sauce, 1))
        before = counts(db)
        items_before = db.execute("select id, version, feedback_at from sample_item order by id").fetchall()
        body = feedback(client, rep(auth), one, other["items"][0], expect=404)
        assert body["type"] == "/problems/not-found"
        assert counts(db) == before
        assert db.execute("select id, version, feedback_at from sample_item order by id").fetchall() == items_before
        assert status_in_db(db, one["id"]) == status_in_db(db, other["id"]) == "DELIVERED"

    def test_last_feedback_moves_the_request_to_feedback_received(self, client, auth, world, db):
        request = delivered(client, auth, world, (world.soup, 1), (world.sauce, 1))
        first, second = request["items"]
        given = feedback(client, rep(auth), request, first, taste=4, handling=5, comment="Gute Bindung")
        assert given["feedback"]["given_by"] == "anna"
        assert given["feedback"]["handling"] == 5
        assert status_in_db(db, request["id"]) == "DELIVERED"
        feedback(client, auth("sales_rep", sub="jonas"), request, second, rating=3, listing_decision="UNDECIDED")
        assert status_in_db(db, request["id"]) == "FEEDBACK_RECEIVED"
        last = history(db, request["id"])[-1]
        assert (last["from_status"], last["to_status"], last["actor"], last["automatic"]) == (
            "DELIVERED", "FEEDBACK_RECEIVED", "jonas", True)
        assert events(db, request["id"])[-1] == "sample_request.feedback_received"
        entries = client.get(f"{REQUESTS}/{request['id']}/history", headers=rep(auth)).json()["items"]
        assert entries[-1]["automatic"] is True

    def test_feedback_can_be_corrected_until_closed(self, client, auth, world, db):
        request = delivered(client, auth, world, (world.soup, 1))
        item = feedback(client, rep(auth), request, request["items"][0], listing_decision="UNDECIDED")
        corrected = feedback(client, rep(auth), request, item, listing_decision="LISTED")
        assert corrected["feedback"]["listing_decision"] == "LISTED"
        assert corrected["feedback"]["comment"] is None
        assert [h["to_status"] for h in history(db, request["id"])].count("FEEDBACK_RECEIVED") == 1
        received = client.get(f"{REQUESTS}/{request['id']}", headers=rep(auth)).json()
        move(client, rep(auth), received, "CLOSED")
        feedback(client, rep(auth), request, item, expect=409)

    def test_stale_if_match_is_412(self, client, auth, world, db):
        request = delivered(client, auth, world, (world.soup, 1))
        item = request["items"][0]
        r = client.put(f"{REQUESTS}/{request['id']}/items/{item['id']}/feedback",
                       json={"rating": 4, "listing_decision": "LISTED"}, headers={**rep(auth), "If-Match": '"old"'})
        assert assert_problem(r, 412)["current_etag"] == item["etag"]
        assert status_in_db(db, request["id"]) == "DELIVERED"

    def test_rating_out_of_range_is_400(self, client, auth, world):
        request = delivered(client, auth, world, (world.soup, 1))
        feedback(client, rep(auth), request, request["items"][0], expect=400, rating=6)

    def test_feedback_received_cannot_be_set_by_hand_while_feedback_is_missing(self, client, auth, world, db):
        request = delivered(client, auth, world, (world.soup, 1))
        body = move(client, rep(auth), request, "FEEDBACK_RECEIVED", expect=409)
        assert body["type"] == "/problems/feedback-incomplete"
        assert body["missing_feedback"] == [request["items"][0]["id"]]
        assert status_in_db(db, request["id"]) == "DELIVERED"


# --- quotas -------------------------------------------------------------------------------------


class TestQuotas:
    def submitted(self, client, auth, customer, *items, sub: str = "anna") -> dict[str, Any]:
        h = rep(auth, sub)
        return move(client, h, create_request(client, h, customer, *items), "REQUESTED")

    def test_customer_quota_refuses_a_submit_with_the_usage(self, client, auth, world, db, quotas):
        quotas(customer=6, chain=100)
        self.submitted(client, auth, world.independent, (world.soup, 3), (world.sauce, 2))
        draft = create_request(client, rep(auth), world.independent, (world.dessert, 2))
        before = counts(db)
        body = move(client, rep(auth), draft, "REQUESTED", expect=409)
        assert body["type"] == "/problems/sample-quota-exceeded"
        assert body["exceeded"] == ["customer"]
        assert body["usage"]["customer"] == {"limit": 6, "used": 5, "requested": 2, "window_days": 90}
        assert body["usage"]["chain"] is None  # an independent customer
        assert status_in_db(db, draft["id"]) == "DRAFT"
        assert counts(db) == before

    def test_chain_quota_counts_all_outlets(self, client, auth, world, db, quotas):
        quotas(customer=100, chain=5)
        self.submitted(client, auth, world.outlet_a, (world.soup, 3))
        draft = create_request(client, rep(auth, "jonas"), world.outlet_a2, (world.sauce, 3))
        body = move(client, rep(auth, "jonas"), draft, "REQUESTED", expect=409)
        assert body["exceeded"] == ["chain"]
        assert body["usage"]["chain"] == {"limit": 5, "used": 3, "requested": 3, "window_days": 90,
                                          "chain_id": world.chain_a["id"]}
        assert body["usage"]["customer"]["used"] == 0
        # the other chain is not affected
        self.submitted(client, auth, world.outlet_b, (world.sauce, 3))

    def test_rejected_cancelled_and_old_requests_do_not_count(self, client, auth, world, db, quotas):
        quotas(customer=4, chain=100)
        rejected = self.submitted(client, auth, world.independent, (world.soup, 3))
        move(client, manager(auth), rejected, "REJECTED", reason="nein")
        cancelled = self.submitted(client, auth, world.independent, (world.soup, 3))
        move(client, rep(auth), cancelled, "CANCELLED")
        old = self.submitted(client, auth, world.independent, (world.sauce, 3))
        db.execute("update sample_request set submitted_at = now() - interval '91 days' where id = %s", (old["id"],))
        self.submitted(client, auth, world.independent, (world.dessert, 4))

    def test_rep_cannot_override(self, client, auth, world, db, quotas):
        quotas(customer=2)
        draft = create_request(client, rep(auth), world.independent, (world.soup, 3))
        body = move(client, rep(auth), draft, "REQUESTED", expect=403, quota_override=True, reason="Großkunde")
        assert body["required_scope"] == "samples:approve"
        assert status_in_db(db, draft["id"]) == "DRAFT"

    def test_sales_manager_overrides_with_a_reason_and_it_is_recorded(self, client, auth, world, db, quotas):
        quotas(customer=2)
        draft = create_request(client, rep(auth), world.independent, (world.soup, 3))
        move(client, rep(auth), draft, "REQUESTED", expect=409)
        body = move(client, manager(auth), draft, "REQUESTED", expect=422, quota_override=True)
        assert body["errors"] == [{"field": "reason", "message": "a quota override needs a reason"}]

        submitted = move(client, manager(auth), draft, "REQUESTED", quota_override=True,
                         reason="Neueröffnung, Menüumstellung")
        override = submitted["quota_override"]
        assert override["by"] == "mia"
        assert override["reason"] == "Neueröffnung, Menüumstellung"
        assert override["usage"]["customer"] == {"limit": 2, "used": 0, "requested": 3, "window_days": 90}
        last = history(db, draft["id"])[-1]
        assert (last["to_status"], last["actor"], last["quota_override"], last["reason"]) == (
            "REQUESTED", "mia", True, "Neueröffnung, Menüumstellung")
        event = db.execute(
            "select payload from outbox where type = 'sample_request.requested' and aggregateid = %s", (draft["id"],)
        ).fetchone()["payload"]
        assert event["transition"]["quota_override"] is True
        assert event["sample_request"]["quota_override"]["by"] == "mia"

        approved_ = move(client, manager(auth), submitted, "APPROVED")
        assert approved_["quota_override"] == override

    def test_override_only_when_submitting(self, client, auth, world, quotas):
        request = move(client, rep(auth), create_request(client, rep(auth), world.independent, (world.soup, 1)),
                       "REQUESTED")
        body = move(client, manager(auth), request, "APPROVED", expect=422, quota_override=True, reason="x")
        assert body["errors"][0]["field"] == "quota_override"

    def test_an_unneeded_override_is_not_recorded(self, client, auth, world, db, quotas):
        quotas(customer=10)
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        submitted = move(client, manager(auth), draft, "REQUESTED", quota_override=True, reason="sicher ist sicher")
        assert submitted["quota_override"] is None
        assert history(db, draft["id"])[-1]["quota_override"] is False


# --- the schema ---------------------------------------------------------------------------------


class TestSampleSchema:
    TABLES = ("product", "sample_request", "sample_item", "sample_request_history", "sample_quota")

    def test_row_level_security_is_forced_on_every_sample_table(self, db):
        rows = db.execute(
            "select relname from pg_class where relrowsecurity and relforcerowsecurity and relname = any(%s)",
            (list(self.TABLES),),
        ).fetchall()
        assert {r["relname"] for r in rows} == set(self.TABLES)

    def test_the_database_refuses_a_status_change_outside_the_lifecycle(self, client, auth, world, db):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1))
        with pytest.raises(psycopg.errors.CheckViolation, match="cannot move from DRAFT to SHIPPED"):
            db.execute("update sample_request set status = 'SHIPPED' where id = %s", (draft["id"],))
        assert status_in_db(db, draft["id"]) == "DRAFT"

    def test_items_go_with_their_request(self, client, auth, world, db):
        draft = create_request(client, rep(auth), world.independent, (world.soup, 1), (world.sauce, 1))
        db.execute("delete from sample_request where id = %s", (draft["id"],))
        assert counts(db)["sample_item"] == counts(db)["sample_request_history"] == 0
