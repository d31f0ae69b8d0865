"""The customer timeline: GET /api/v1/customers/{customer_id}/timeline merges activities, sample
request transitions and customer changes, newest first, with a cursor that stays stable while new
entries are written — against the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.helpers import assert_problem, create_chain, create_customer

ACTIVITIES = "/api/v1/activities"
NIL = "00000000-0000-4000-8000-000000000000"


def ts(delta: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timeline_url(customer: dict[str, Any]) -> str:
    return f"/api/v1/customers/{customer['id']}/timeline"


def log_call(client, headers, customer, occurred_at: str, **fields) -> dict[str, Any]:
    body = {"type": "CALL", "customer_id": customer["id"], "occurred_at": occurred_at, "subject": "Follow-up", **fields}
    r = client.post(ACTIVITIES, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def all_pages(client, headers, customer, limit: int, between=None) -> list[dict[str, Any]]:
    """Every entry, page by page; ``between(n, last)`` runs after page n was read (``last``: its
    last entry, where the cursor continues)."""
    entries, cursor, n = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get(timeline_url(customer), params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        entries += page["items"]
        cursor = page["next_cursor"]
        n += 1
        if cursor is None:
            return entries
        if between:
            between(n, page["items"][-1])


def key(entry: dict[str, Any]) -> tuple[dt.datetime, str, str]:
    return dt.datetime.fromisoformat(entry["at"]), entry["kind"], entry["id"]


def key_of(activity: dict[str, Any]) -> tuple[dt.datetime, str, str]:
    """The timeline key of an activity."""
    return dt.datetime.fromisoformat(activity["occurred_at"] or activity["planned_at"]), "ACTIVITY", activity["id"]


@pytest.fixture
def customer(client, auth) -> dict[str, Any]:
    h = auth("admin")
    chain = create_chain(client, h, "Alpenblick Hotels")
    return create_customer(client, h, "K-1", name="Alpenblick Garmisch", chain_id=chain["id"], status="LEAD",
                           address={"street": "Marktplatz 1", "postal_code": "82467", "city": "Garmisch",
                                    "country": "DE"})


class TestTimeline:
    def test_merges_the_three_sources_newest_first_with_links(self, client, auth, customer):
        rep = auth("sales_rep", sub="anna")
        first_call = log_call(client, rep, customer, ts(-dt.timedelta(days=3)))
        r = client.patch(f"/api/v1/customers/{customer['id']}", json={"status": "PROSPECT", "owner": "anna"},
                         headers={**rep, "If-Match": customer["etag"], "X-Correlation-ID": "promote-1"})
        assert r.status_code == 200, r.text
        product = client.post("/api/v1/products", headers=auth("admin"), json={
            "sku": "CF-1001", "name": "Kartoffelcremesuppe", "category": "SOUPS", "pack_size": 2.5, "unit": "KG"})
        request = client.post("/api/v1/sample-requests", headers=rep, json={
            "customer_id": customer["id"], "items": [{"product_id": product.json()["id"], "quantity": 2}]}).json()
        submitted = client.post(f"/api/v1/sample-requests/{request['id']}/transitions", json={"to": "REQUESTED"},
                                headers={**rep, "If-Match": request["etag"]})
        assert submitted.status_code == 200, submitted.text
        tasting = client.post(ACTIVITIES, headers=rep, json={
            "type": "VISIT", "customer_id": customer["id"], "visit_kind": "TASTING", "status": "PLANNED",
            "planned_at": ts(dt.timedelta(days=7)), "subject": "Tasting", "sample_request_id": request["id"]}).json()

        r = client.get(timeline_url(customer), headers=rep)
        assert r.status_code == 200, r.text
        entries = r.json()["items"]
        assert r.json()["next_cursor"] is None
        assert [(e["kind"], e["summary"]) for e in entries] == [
            ("ACTIVITY", "Tasting (planned): Tasting"),
            ("SAMPLE_REQUEST_TRANSITION", "Sample request DRAFT → REQUESTED"),
            ("SAMPLE_REQUEST_TRANSITION", "Sample request created"),
            ("CUSTOMER_CHANGE", "Customer changed: owner, status"),
            ("CUSTOMER_CHANGE", "Customer created"),
            ("ACTIVITY", "Outbound call: Follow-up"),
        ]
        assert [key(e) for e in entries] == sorted((key(e) for e in entries), reverse=True)
        assert entries[0]["activity"] == tasting and entries[0]["actor"] == "anna"
        assert entries[-1]["activity"] == first_call
        assert entries[1]["transition"]["to"] == "REQUESTED" and entries[1]["actor"] == "anna"
        change = entries[3]["change"]
        assert change == {"action": "UPDATED", "correlation_id": "promote-1", "changes": {
            "status": {"from": "LEAD", "to": "PROSPECT"}, "owner": {"from": None, "to": "anna"}}}
        assert entries[3]["actor"] == "anna" and entries[4]["actor"] == "admin-user"
        for entry in entries:  # every link leads to its source
            assert client.get(entry["link"], headers=rep).status_code == 200, entry["link"]
        assert {e["link"] for e in entries} == {
            f"{ACTIVITIES}/{tasting['id']}", f"{ACTIVITIES}/{first_call['id']}",
            f"/api/v1/sample-requests/{request['id']}", f"/api/v1/customers/{customer['id']}"}

    def test_field_changes_and_archiving_are_entries(self, client, auth, customer):
        h = auth("admin")
        r = client.post("/api/v1/field-definitions", headers=h,
                        json={"key": "seats", "label": "Seats", "data_type": "INTEGER"})
        assert r.status_code == 201, r.text
        fields = client.get(f"/api/v1/customers/{customer['id']}/fields", headers=h)
        r = client.patch(f"/api/v1/customers/{customer['id']}/fields", json={"seats": 80},
                         headers={**h, "If-Match": fields.headers["etag"]})
        assert r.status_code == 200, r.text
        current = client.get(f"/api/v1/customers/{customer['id']}", headers=h).json()
        r = client.delete(f"/api/v1/customers/{customer['id']}", headers={**h, "If-Match": current["etag"]})
        assert r.status_code == 204
        entries = client.get(timeline_url(customer), headers=h).json()["items"]
        assert [e["change"]["action"] for e in entries] == ["ARCHIVED", "UPDATED", "CREATED"]
        assert entries[0]["change"]["changes"] == {"status": {"from": "LEAD", "to": "ARCHIVED"}}
        assert entries[1]["change"]["changes"] == {"fields.seats": {"from": None, "to": 80}}
        assert entries[1]["summary"] == "Customer changed: fields.seats"

    def test_pages_stay_stable_while_new_entries_are_written(self, client, auth, customer):
        rep = auth("sales_rep", sub="anna")
        base = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
        same = (base + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for n in range(12):  # a day apart, and four at one and the same instant (ties broken by id)
            log_call(client, rep, customer, (base + dt.timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        for _ in range(4):
            log_call(client, rep, customer, same)
        before = client.get(timeline_url(customer), params={"limit": 200}, headers=rep).json()["items"]
        assert len(before) == 17  # 16 calls and the customer's creation
        written: list[tuple[dict[str, Any], tuple]] = []  # (activity, the cursor's key when written)

        def write_meanwhile(page: int, last: dict[str, Any]) -> None:
            # newer than every page read so far, older than the cursor, and at the ties' instant
            for at in (ts(), (base - dt.timedelta(days=page)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), same):
                written.append((log_call(client, rep, customer, at), key(last)))

        seen = all_pages(client, rep, customer, limit=3, between=write_meanwhile)
        ids = [(e["kind"], e["id"]) for e in seen]
        assert len(ids) == len(set(ids)), "an entry appeared twice"
        assert {(e["kind"], e["id"]) for e in before} <= set(ids), "an older entry was skipped"
        assert [key(e) for e in seen] == sorted((key(e) for e in seen), reverse=True)
        # what was written meanwhile: behind the cursor on a later page, ahead of it after a restart
        ids_seen = {e["id"] for e in seen}
        for activity, cursor in written:
            behind = key_of(activity) < cursor
            assert (activity["id"] in ids_seen) == behind, (activity, cursor)
        assert {key_of(a) < c for a, c in written} == {True, False}  # both kinds were written
        restart = client.get(timeline_url(customer), params={"limit": 200}, headers=rep).json()["items"]
        assert len(restart) == 17 + len(written)

    def test_the_cursor_is_bound_to_the_customer(self, client, auth, customer):
        h = auth("admin")
        other = create_customer(client, h, "K-2")
        for n in range(3):
            log_call(client, h, customer, ts(-dt.timedelta(hours=n + 1)))
        page = client.get(timeline_url(customer), params={"limit": 2}, headers=h).json()
        assert page["next_cursor"]
        r = client.get(timeline_url(other), params={"cursor": page["next_cursor"]}, headers=h)
        assert_problem(r, 400, "/problems/invalid-cursor")

    def test_scope(self, client, auth, customer):
        admin = auth("admin")
        chain_b = create_chain(client, admin, "Pasta Fresca")
        outlet_b = create_customer(client, admin, "K-9", chain_id=chain_b["id"])
        log_call(client, admin, outlet_b, ts(-dt.timedelta(hours=1)))
        cm = auth("chain_manager", sub="cm-alpen", chains=[customer["chain_id"]])
        assert client.get(timeline_url(customer), headers=cm).status_code == 200
        own = create_customer(client, cm, "K-5", chain_id=customer["chain_id"])  # logged under its scope
        r = client.patch(f"/api/v1/customers/{own['id']}", json={"name": "Alpenblick Mittenwald"},
                         headers={**cm, "If-Match": own["etag"]})
        assert r.status_code == 200, r.text
        entries = client.get(timeline_url(own), headers=cm).json()["items"]
        assert [(e["change"]["action"], e["actor"]) for e in entries] == [("UPDATED", "cm-alpen"),
                                                                          ("CREATED", "cm-alpen")]
        assert_problem(client.get(timeline_url(outlet_b), headers=cm), 404)
        assert_problem(client.get(timeline_url({"id": NIL}), headers=admin), 404)
        assert_problem(client.get(timeline_url(customer), headers=auth("integration")), 403)
