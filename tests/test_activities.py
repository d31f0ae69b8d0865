"""Activities (calls and visits): /api/v1/activities, the rules, who may see and do what, the outbox
events and the customer's sales-cycle facts — against the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import assert_problem, create_chain, create_customer

ACTIVITIES = "/api/v1/activities"
NIL = "00000000-0000-4000-8000-000000000000"


def ts(delta: dt.timedelta = dt.timedelta(0)) -> str:
    """An instant relative to now, as the API writes them."""
    return (dt.datetime.now(dt.UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


@dataclass
class World:
    """Two chains with an outlet each (with a contact), an independent customer with a contact,
    two products and a sample request of outlet A."""

    chain_a: dict[str, Any]
    chain_b: dict[str, Any]
    outlet_a: dict[str, Any]
    outlet_b: dict[str, Any]
    independent: dict[str, Any]
    chef_a: dict[str, Any]
    chef_b: dict[str, Any]
    soup: dict[str, Any]
    sauce: dict[str, Any]
    sample_a: dict[str, Any]
    sample_b: dict[str, Any]


def _contact(client, h, customer, last_name: str) -> dict[str, Any]:
    r = client.post(f"/api/v1/customers/{customer['id']}/contacts", headers=h,
                    json={"first_name": "Lena", "last_name": last_name, "job_role": "HEAD_CHEF"})
    assert r.status_code == 201, r.text
    return r.json()


def _product(client, h, sku: str, name: str) -> dict[str, Any]:
    r = client.post("/api/v1/products", headers=h,
                    json={"sku": sku, "name": name, "category": "SAUCES", "pack_size": 1, "unit": "L"})
    assert r.status_code == 201, r.text
    return r.json()


def _sample(client, h, customer, product) -> dict[str, Any]:
    r = client.post("/api/v1/sample-requests", headers=h,
                    json={"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 1}]})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def world(client, auth) -> World:
    h = auth("admin")
    chain_a, chain_b = create_chain(client, h, "Alpenblick Hotels"), create_chain(client, h, "Pasta Fresca")
    outlet_a = create_customer(client, h, "K-1", name="Alpenblick Garmisch", chain_id=chain_a["id"], status="PROSPECT")
    outlet_b = create_customer(client, h, "K-2", name="Pasta Fresca Köln", chain_id=chain_b["id"], status="PROSPECT")
    independent = create_customer(client, h, "K-3", name="Gasthaus Zur Linde", status="LEAD")
    soup = _product(client, h, "CF-1001", "Kartoffelcremesuppe")
    return World(
        chain_a=chain_a, chain_b=chain_b, outlet_a=outlet_a, outlet_b=outlet_b, independent=independent,
        chef_a=_contact(client, h, outlet_a, "Koch"), chef_b=_contact(client, h, outlet_b, "Brunner"),
        soup=soup, sauce=_product(client, h, "CF-2001", "Sauce Hollandaise"),
        sample_a=_sample(client, h, outlet_a, soup), sample_b=_sample(client, h, outlet_b, soup),
    )


def rep(auth, sub: str = "anna"):
    return auth("sales_rep", sub=sub)


def call(customer, **fields) -> dict[str, Any]:
    return {"type": "CALL", "customer_id": customer["id"], "occurred_at": ts(-dt.timedelta(hours=1)),
            "subject": "Menu change autumn", **fields}


def visit(customer, **fields) -> dict[str, Any]:
    return {"type": "VISIT", "customer_id": customer["id"], "visit_kind": "KITCHEN_VISIT",
            "occurred_at": ts(-dt.timedelta(hours=2)), "subject": "Kitchen visit", **fields}


def create(client, headers, body, expect: int = 201) -> dict[str, Any]:
    r = client.post(ACTIVITIES, json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def patch(client, headers, activity, changes, expect: int = 200) -> dict[str, Any]:
    r = client.patch(f"{ACTIVITIES}/{activity['id']}", json=changes,
                     headers={**headers, "If-Match": activity["etag"], "Content-Type": "application/merge-patch+json"})
    assert r.status_code == expect, r.text
    return r.json()


def events(db, activity_id: str) -> list[dict[str, Any]]:
    return db.execute(
        "select type, payload, correlation_id, actor from outbox where aggregatetype = 'activity' "
        "and aggregateid = %s order by position", (activity_id,),
    ).fetchall()


def counts(db) -> dict[str, int]:
    query = sql.SQL("select count(*) as n from {}")
    return {t: db.execute(query.format(sql.Identifier(t))).fetchone()["n"] for t in ("activity", "outbox")}


def facts(client, headers, customer) -> tuple[str | None, str | None, int]:
    r = client.get(f"/api/v1/customers/{customer['id']}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["last_activity_at"], body["next_follow_up_at"], body["activities_last_90_days"]


def projected(db, customer) -> tuple[Any, Any]:
    row = db.execute("select last_activity_at, next_follow_up_at from customer_hot where customer_id = %s",
                     (customer["id"],)).fetchone()
    return row["last_activity_at"], row["next_follow_up_at"]


def instant(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


# --- create -------------------------------------------------------------------------------------


class TestCreateActivity:
    def test_a_call_with_defaults_its_location_etag_and_event(self, client, auth, world, db):
        h = {**rep(auth), "X-Correlation-ID": "call-0815"}
        r = client.post(ACTIVITIES, headers=h, json=call(world.outlet_a, duration_seconds=420, reached=True,
                                                         outcome="POSITIVE", next_step="Send the price list"))
        assert r.status_code == 201, r.text
        body = r.json()
        assert r.headers["location"] == f"{ACTIVITIES}/{body['id']}"
        assert r.headers["etag"] == body["etag"]
        assert body["type"] == "CALL" and body["status"] == "DONE"
        assert body["owner"] == body["created_by"] == "anna"
        assert body["direction"] == "OUTBOUND" and body["duration_seconds"] == 420 and body["reached"] is True
        assert "visit_kind" not in body and "participants" not in body
        assert body["planned_at"] is None and body["follow_up_at"] is None
        [event] = events(db, body["id"])
        assert event["type"] == "activity.created"
        assert event["payload"] == body
        assert (event["correlation_id"], event["actor"]) == ("call-0815", "anna")

    def test_a_visit_with_participants_and_products(self, client, auth, world, db):
        body = create(client, rep(auth), visit(world.outlet_a, visit_kind="TASTING", location="Hotelküche",
                                               participants=[world.chef_a["id"]],
                                               products_presented=[world.soup["id"], world.sauce["id"]],
                                               sample_request_id=world.sample_a["id"],
                                               follow_up_at=ts(days(7))))
        assert body["type"] == "VISIT" and body["visit_kind"] == "TASTING"
        assert body["participants"] == [world.chef_a["id"]]
        assert body["products_presented"] == [world.soup["id"], world.sauce["id"]]
        assert body["sample_request_id"] == world.sample_a["id"]
        assert "direction" not in body and "duration_seconds" not in body
        fetched = client.get(f"{ACTIVITIES}/{body['id']}", headers=rep(auth))
        assert fetched.status_code == 200 and fetched.json() == body

    def test_a_planned_visit_for_another_owner(self, client, auth, world):
        planned = ts(days(14))
        body = create(client, auth("sales_manager", sub="mia"),
                      visit(world.independent, status="PLANNED", occurred_at=None, planned_at=planned,
                            owner="anna", visit_kind="HEAD_OFFICE"))
        assert body["status"] == "PLANNED" and body["occurred_at"] is None
        assert body["owner"] == "anna" and body["created_by"] == "mia"
        assert instant(body["planned_at"]) == instant(planned)

    def test_times_are_stored_in_utc(self, client, auth, world):
        body = create(client, rep(auth), call(world.outlet_a, occurred_at="2024-03-01T10:00:00+01:00",
                                              follow_up_at="2024-03-08T09:00:00-05:00"))
        assert body["occurred_at"] == "2024-03-01T09:00:00.000000Z"
        assert body["follow_up_at"] == "2024-03-08T14:00:00.000000Z"

    def test_idempotency_key_replays_and_refuses_another_body(self, client, auth, world, db):
        h = {**rep(auth), "Idempotency-Key": "call-1"}
        payload = call(world.outlet_a)
        first = client.post(ACTIVITIES, json=payload, headers=h)
        again = client.post(ACTIVITIES, json=payload, headers=h)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert counts(db)["activity"] == 1
        other = client.post(ACTIVITIES, json={**payload, "subject": "else"}, headers=h)
        assert_problem(other, 422, "/problems/idempotency-key-reused")
        assert counts(db)["activity"] == 1


# --- bad input: a problem, and nothing stored ------------------------------------------------


class TestBadInput:
    def refused(self, client, auth, db, body, status: int, *fields: str) -> dict[str, Any]:
        before = counts(db)
        problem = assert_problem(client.post(ACTIVITIES, json=body, headers=rep(auth)), status)
        named = {e["field"] for e in problem["errors"]}
        assert set(fields) <= named, problem
        assert all(set(e) == {"field", "message"} for e in problem["errors"])
        assert counts(db) == before
        return problem

    def test_follow_up_before_the_activity_is_422(self, client, auth, world, db):
        body = call(world.outlet_a, occurred_at=ts(-days(2)), follow_up_at=ts(-days(3)))
        problem = self.refused(client, auth, db, body, 422, "follow_up_at")
        assert problem["type"] == "/problems/activity-rules-violated"
        planned = visit(world.outlet_a, status="PLANNED", occurred_at=None, planned_at=ts(days(5)),
                        follow_up_at=ts(days(4)))
        self.refused(client, auth, db, planned, 422, "follow_up_at")

    def test_negative_duration_is_422(self, client, auth, world, db):
        problem = self.refused(client, auth, db, call(world.outlet_a, duration_seconds=-1), 422, "duration_seconds")
        assert problem["type"] == "/problems/validation-error"
        self.refused(client, auth, db, call(world.outlet_a, duration_seconds=86401), 422, "duration_seconds")

    def test_a_visit_with_call_fields_and_a_call_with_visit_fields(self, client, auth, world, db):
        problem = self.refused(client, auth, db, visit(world.outlet_a, direction="INBOUND"), 422, "body")
        assert "'direction' was unexpected" in problem["errors"][0]["message"]
        problem = self.refused(client, auth, db, call(world.outlet_a, participants=[]), 422, "body")
        assert "'participants' was unexpected" in problem["errors"][0]["message"]
        # the discriminator picks the variant: its own errors are reported, not "matches no schema"
        problem = self.refused(client, auth, db, visit(world.outlet_a, visit_kind="PICNIC"), 422, "visit_kind")
        self.refused(client, auth, db, {**visit(world.outlet_a), "type": "MEETING"}, 422)
        # not JSON at all is still a 400
        r = client.post(ACTIVITIES, content=b"{", headers={**rep(auth), "Content-Type": "application/json"})
        assert_problem(r, 400)

    def test_participants_must_be_contacts_of_the_customer(self, client, auth, world, db):
        body = visit(world.outlet_a, participants=[world.chef_a["id"], world.chef_b["id"], NIL])
        problem = self.refused(client, auth, db, body, 422, "participants.1", "participants.2")
        messages = {e["field"]: e["message"] for e in problem["errors"]}
        assert "another customer" in messages["participants.1"]
        assert "participants.0" not in messages

    def test_sample_request_of_another_customer_is_422(self, client, auth, world, db):
        self.refused(client, auth, db, call(world.outlet_a, sample_request_id=world.sample_b["id"]), 422,
                     "sample_request_id")
        self.refused(client, auth, db, call(world.outlet_a, sample_request_id=NIL), 422, "sample_request_id")

    def test_unknown_products_are_422(self, client, auth, world, db):
        body = visit(world.outlet_a, products_presented=[world.soup["id"], NIL])
        problem = self.refused(client, auth, db, body, 422, "products_presented.1")
        assert "products_presented.0" not in {e["field"] for e in problem["errors"]}

    def test_status_and_time_rules(self, client, auth, world, db):
        self.refused(client, auth, db, call(world.outlet_a, occurred_at=None), 422, "occurred_at")
        self.refused(client, auth, db, call(world.outlet_a, status="PLANNED"), 422, "planned_at", "occurred_at")
        self.refused(client, auth, db, call(world.outlet_a, status="CANCELLED", occurred_at=None), 422, "occurred_at")
        self.refused(client, auth, db, call(world.outlet_a, occurred_at=ts(days(1))), 422, "occurred_at")

    def test_unknown_and_archived_customers_are_422(self, client, auth, world, db):
        self.refused(client, auth, db, call({"id": NIL}), 422, "customer_id")
        h = auth("admin")
        current = client.get(f"/api/v1/customers/{world.independent['id']}", headers=h).json()
        r = client.delete(f"/api/v1/customers/{world.independent['id']}", headers={**h, "If-Match": current["etag"]})
        assert r.status_code == 204
        problem = self.refused(client, auth, db, call(world.independent), 422, "customer_id")
        assert "archived" in problem["errors"][0]["message"]

    def test_the_database_refuses_what_the_api_refuses(self, world, db):
        insert = ("insert into activity (type, customer_id, status, occurred_at, owner, created_by, visit_kind, {}) "
                  "values ('VISIT', %s, 'DONE', now(), 'x', 'x', 'TASTING', %s)")
        cases = [
            ("participants", [world.chef_b["id"]], "activity_participants_contacts"),
            ("products_presented", [NIL], "activity_products_known"),
            ("sample_request_id", world.sample_b["id"], "activity_sample_request_customer"),
            ("direction", "INBOUND", "activity_call_fields"),
            ("follow_up_at", dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "activity_follow_up_after"),
        ]
        for column, value, constraint in cases:
            with pytest.raises(psycopg.errors.CheckViolation) as raised:
                db.execute(sql.SQL(insert).format(sql.Identifier(column)), (world.outlet_a["id"], value))
            assert raised.value.diag.constraint_name == constraint


# --- read, change, delete -----------------------------------------------------------------------


class TestChangeActivity:
    def test_get_answers_304_for_the_current_etag(self, client, auth, world):
        body = create(client, rep(auth), call(world.outlet_a))
        r = client.get(f"{ACTIVITIES}/{body['id']}", headers={**rep(auth), "If-None-Match": body["etag"]})
        assert r.status_code == 304 and r.headers["etag"] == body["etag"]
        assert_problem(client.get(f"{ACTIVITIES}/{NIL}", headers=rep(auth)), 404)

    def test_merge_patch_changes_and_clears_fields(self, client, auth, world, db):
        created = create(client, rep(auth), call(world.outlet_a, follow_up_at=ts(days(3)), notes="Chef on holiday"))
        changed = patch(client, rep(auth, "jonas"), created,
                        {"notes": None, "follow_up_at": None, "outcome": "NEUTRAL", "reached": False,
                         "type": "CALL"})
        assert changed["notes"] is None and changed["follow_up_at"] is None
        assert changed["outcome"] == "NEUTRAL" and changed["reached"] is False
        assert changed["etag"] != created["etag"] and changed["updated_at"] > created["updated_at"]
        assert changed["subject"] == created["subject"] and changed["created_by"] == "anna"
        assert [e["type"] for e in events(db, created["id"])] == ["activity.created", "activity.updated"]
        assert events(db, created["id"])[-1]["payload"] == changed

    def test_a_planned_visit_becomes_done(self, client, auth, world):
        planned = create(client, rep(auth), visit(world.outlet_a, status="PLANNED", occurred_at=None,
                                                  planned_at=ts(-dt.timedelta(hours=3))))
        done = patch(client, rep(auth), planned, {"status": "DONE", "occurred_at": ts(-dt.timedelta(hours=2)),
                                                  "participants": [world.chef_a["id"]], "outcome": "POSITIVE"})
        assert done["status"] == "DONE" and done["planned_at"] == planned["planned_at"]
        assert done["participants"] == [world.chef_a["id"]]
        patch(client, rep(auth), done, {"status": "PLANNED"}, expect=422)  # it has occurred_at

    def test_type_cannot_change(self, client, auth, world, db):
        created = create(client, rep(auth), call(world.outlet_a))
        before = counts(db)
        problem = patch(client, rep(auth), created, {"type": "VISIT", "visit_kind": "TASTING"}, expect=422)
        assert {e["field"] for e in problem["errors"]} == {"type", "visit_kind"}
        assert counts(db) == before
        assert client.get(f"{ACTIVITIES}/{created['id']}", headers=rep(auth)).json() == created

    def test_fields_of_the_other_type_are_422(self, client, auth, world):
        created = create(client, rep(auth), visit(world.outlet_a))
        problem = patch(client, rep(auth), created, {"direction": "INBOUND", "duration_seconds": 60}, expect=422)
        assert {e["field"] for e in problem["errors"]} == {"direction", "duration_seconds"}
        problem = patch(client, rep(auth), created, {"visit_kind": None}, expect=422)
        assert problem["errors"][0]["field"] == "visit_kind"

    def test_changed_activity_keeps_the_rules(self, client, auth, world, db):
        created = create(client, rep(auth), visit(world.outlet_a, occurred_at=ts(-days(1)),
                                                  participants=[world.chef_a["id"]]))
        before = counts(db)
        problem = patch(client, rep(auth), created, {"follow_up_at": ts(-days(2))}, expect=422)
        assert problem["errors"][0]["field"] == "follow_up_at"
        problem = patch(client, rep(auth), created, {"participants": [world.chef_a["id"], world.chef_b["id"]]},
                        expect=422)
        assert problem["errors"][0]["field"] == "participants.1"
        patch(client, rep(auth), created, {"sample_request_id": world.sample_b["id"]}, expect=422)
        patch(client, rep(auth), created, {"products_presented": [NIL]}, expect=422)
        patch(client, rep(auth), created, {"occurred_at": None}, expect=422)
        r = client.patch(f"{ACTIVITIES}/{created['id']}", json={"duration_seconds": -5},
                         headers={**rep(auth), "If-Match": created["etag"]})
        assert_problem(r, 422)
        assert counts(db) == before

    def test_if_match_is_required_and_checked(self, client, auth, world):
        created = create(client, rep(auth), call(world.outlet_a))
        url = f"{ACTIVITIES}/{created['id']}"
        assert_problem(client.patch(url, json={"notes": "x"}, headers=rep(auth)), 428)
        changed = patch(client, rep(auth), created, {"notes": "x"})
        stale = client.patch(url, json={"notes": "y"}, headers={**rep(auth), "If-Match": created["etag"]})
        assert assert_problem(stale, 412)["current_etag"] == changed["etag"]
        assert_problem(client.delete(url, headers=rep(auth)), 428)
        assert_problem(client.delete(url, headers={**rep(auth), "If-Match": created["etag"]}), 412)

    def test_a_deleted_draft_sample_request_is_unlinked(self, client, auth, world, db):
        linked = create(client, rep(auth), call(world.outlet_a, sample_request_id=world.sample_a["id"]))
        admin = auth("admin")
        r = client.delete(f"/api/v1/sample-requests/{world.sample_a['id']}",
                          headers={**admin, "If-Match": world.sample_a["etag"]})
        assert r.status_code == 204, r.text
        after = client.get(f"{ACTIVITIES}/{linked['id']}", headers=rep(auth)).json()
        assert after["sample_request_id"] is None and after["etag"] != linked["etag"]
        assert events(db, linked["id"])[-1]["type"] == "activity.updated"

    def test_delete_emits_its_event_and_the_activity_is_gone(self, client, auth, world, db):
        created = create(client, rep(auth), call(world.outlet_a))
        r = client.delete(f"{ACTIVITIES}/{created['id']}", headers={**rep(auth), "If-Match": created["etag"]})
        assert r.status_code == 204
        assert_problem(client.get(f"{ACTIVITIES}/{created['id']}", headers=rep(auth)), 404)
        deleted = events(db, created["id"])[-1]
        assert deleted["type"] == "activity.deleted" and deleted["payload"]["id"] == created["id"]


# --- lists --------------------------------------------------------------------------------------


class TestListActivities:
    @pytest.fixture
    def logged(self, client, auth, world) -> dict[str, dict[str, Any]]:
        anna, jonas = rep(auth), rep(auth, "jonas")
        return {
            "old_call": create(client, anna, call(world.outlet_a, occurred_at=ts(-days(30)),
                                                  follow_up_at=ts(-days(2)))),
            "visit_b": create(client, jonas, visit(world.outlet_b, occurred_at=ts(-days(10)),
                                                   follow_up_at=ts(days(1)))),
            "call_ind": create(client, anna, call(world.independent, occurred_at=ts(-days(5)),
                                                  follow_up_at=ts(days(20)))),
            "planned": create(client, anna, visit(world.outlet_a, status="PLANNED", occurred_at=None,
                                                  planned_at=ts(days(3)))),
            "cancelled": create(client, jonas, call(world.outlet_a, status="CANCELLED", occurred_at=ts(-days(1)),
                                                    follow_up_at=ts(-dt.timedelta(hours=1)))),
        }

    def ids(self, client, headers, **params) -> list[str]:
        r = client.get(ACTIVITIES, params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["items"]]

    def test_newest_first_and_filters(self, client, auth, world, logged):
        h = rep(auth)
        order = ["planned", "cancelled", "call_ind", "visit_b", "old_call"]
        assert self.ids(client, h) == [logged[k]["id"] for k in order]
        assert self.ids(client, h, customer_id=world.outlet_a["id"]) == [logged[k]["id"] for k in
                                                                          ("planned", "cancelled", "old_call")]
        assert self.ids(client, h, chain_id=world.chain_b["id"]) == [logged["visit_b"]["id"]]
        assert self.ids(client, h, type="VISIT") == [logged[k]["id"] for k in ("planned", "visit_b")]
        assert self.ids(client, h, owner="jonas") == [logged[k]["id"] for k in ("cancelled", "visit_b")]
        assert self.ids(client, h, status="PLANNED") == [logged["planned"]["id"]]
        assert self.ids(client, h, occurred_from=ts(-days(11)), occurred_to=ts(-days(4))) == [
            logged[k]["id"] for k in ("call_ind", "visit_b")]

    def test_pages_follow_the_cursor_bound_to_the_filters(self, client, auth, logged):
        h = rep(auth)
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get(ACTIVITIES, params=params, headers=h).json()
            seen += [a["id"] for a in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == self.ids(client, h)
        first = client.get(ACTIVITIES, params={"limit": 2}, headers=h).json()
        other = client.get(ACTIVITIES, params={"limit": 2, "type": "CALL", "cursor": first["next_cursor"]}, headers=h)
        assert_problem(other, 400, "/problems/invalid-cursor")

    def test_what_is_due_earliest_follow_up_first(self, client, auth, logged):
        h = rep(auth)
        assert self.ids(client, h, follow_up_due_before=ts(days(7))) == [logged[k]["id"] for k in
                                                                         ("old_call", "visit_b")]
        assert self.ids(client, h, follow_up_due_before=ts(days(30)), owner="anna") == [
            logged[k]["id"] for k in ("old_call", "call_ind")]
        before = ts(days(30))
        page = client.get(ACTIVITIES, params={"follow_up_due_before": before, "limit": 1}, headers=h).json()
        rest = client.get(ACTIVITIES, params={"follow_up_due_before": before, "limit": 5,
                                              "cursor": page["next_cursor"]}, headers=h).json()
        assert [a["id"] for a in page["items"] + rest["items"]] == [logged[k]["id"] for k in
                                                                     ("old_call", "visit_b", "call_ind")]
        patch(client, h, logged["old_call"], {"follow_up_at": None})  # handled: off the list
        assert self.ids(client, h, follow_up_due_before=ts(days(7))) == [logged["visit_b"]["id"]]


# --- access -------------------------------------------------------------------------------------


class TestAccess:
    def test_chain_managers_read_their_chains_outlets_only(self, client, auth, world):
        a = create(client, rep(auth), call(world.outlet_a))
        b = create(client, rep(auth), call(world.outlet_b))
        ind = create(client, rep(auth), call(world.independent))
        cm = auth("chain_manager", sub="cm-alpen", chains=[world.chain_a["id"]])
        r = client.get(ACTIVITIES, headers=cm)
        assert r.status_code == 200 and [x["id"] for x in r.json()["items"]] == [a["id"]]
        assert client.get(ACTIVITIES, params={"customer_id": world.outlet_b["id"]}, headers=cm).json()["items"] == []
        assert client.get(f"{ACTIVITIES}/{a['id']}", headers=cm).status_code == 200
        for other in (b, ind):
            assert_problem(client.get(f"{ACTIVITIES}/{other['id']}", headers=cm), 404)
        assert_problem(client.post(ACTIVITIES, json=call(world.outlet_a), headers=cm), 403)
        assert_problem(client.patch(f"{ACTIVITIES}/{a['id']}", json={"notes": "x"},
                                    headers={**cm, "If-Match": a["etag"]}), 403)
        assert_problem(client.delete(f"{ACTIVITIES}/{a['id']}", headers={**cm, "If-Match": a["etag"]}), 403)

    def test_managers_and_admins_read_and_write_everything(self, client, auth, world):
        a = create(client, rep(auth), call(world.outlet_b))
        for role in ("sales_manager", "admin"):
            h = auth(role)
            assert client.get(f"{ACTIVITIES}/{a['id']}", headers=h).status_code == 200
            a = patch(client, h, a, {"notes": f"seen by {role}"})
            create(client, h, call(world.independent))

    def test_the_integration_role_gets_403_everywhere(self, client, auth, world):
        a = create(client, rep(auth), call(world.outlet_a))
        h = auth("integration", sub="fulfilment-partner")
        for response in (
            client.get(ACTIVITIES, headers=h),
            client.get(f"{ACTIVITIES}/{a['id']}", headers=h),
            client.post(ACTIVITIES, json=call(world.outlet_a), headers=h),
            client.patch(f"{ACTIVITIES}/{a['id']}", json={"notes": "x"}, headers={**h, "If-Match": a["etag"]}),
            client.delete(f"{ACTIVITIES}/{a['id']}", headers={**h, "If-Match": a["etag"]}),
            client.get(f"/api/v1/customers/{world.outlet_a['id']}/timeline", headers=h),
        ):
            body = assert_problem(response, 403)
            assert set(body["required_scopes"]) & {"activities:read", "activities:write"}

    def test_row_level_security_in_the_database(self, client, auth, world, db):
        create(client, rep(auth), call(world.outlet_a))
        create(client, rep(auth), call(world.outlet_b))
        with db.transaction():
            db.execute("select set_config('role', 'crm_api', true), set_config('crm.scope', 'chains', true), "
                       "set_config('crm.chain_ids', %s, true)", (world.chain_a["id"],))
            rows = db.execute("select customer_id::text as c from activity").fetchall()
            assert rows == [{"c": world.outlet_a["id"]}]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("insert into activity (type, customer_id, occurred_at, owner, created_by, direction) "
                           "values ('CALL', %s, now(), 'cm', 'cm', 'INBOUND')", (world.outlet_a["id"],))
        with db.transaction():
            db.execute("select set_config('role', 'crm_api', true), set_config('crm.scope', 'fulfilment', true)")
            assert db.execute("select count(*) as n from activity").fetchone()["n"] == 0
            assert db.execute("select count(*) as n from customer_change").fetchone()["n"] == 0
        forced = db.execute("select relname from pg_class where relforcerowsecurity "
                            "and relname in ('activity', 'customer_change')").fetchall()
        assert len(forced) == 2


# --- the customer's sales-cycle facts --------------------------------------------------------


class TestCustomerFacts:
    def test_facts_follow_the_activities(self, client, auth, world, db):
        h = rep(auth)
        assert facts(client, h, world.outlet_a) == (None, None, 0)
        assert projected(db, world.outlet_a) == (None, None)
        old = create(client, h, call(world.outlet_a, occurred_at=ts(-days(100))))
        recent = create(client, h, visit(world.outlet_a, occurred_at=ts(-days(3)), follow_up_at=ts(days(10))))
        planned = create(client, h, visit(world.outlet_a, status="PLANNED", occurred_at=None,
                                          planned_at=ts(days(5))))
        last, upcoming, count = facts(client, h, world.outlet_a)
        assert (last, upcoming, count) == (recent["occurred_at"], planned["planned_at"], 1)
        assert projected(db, world.outlet_a) == (instant(last), instant(upcoming))
        planned = patch(client, h, planned, {"status": "CANCELLED"})
        assert facts(client, h, world.outlet_a) == (recent["occurred_at"], recent["follow_up_at"], 1)
        recent_deleted = client.delete(f"{ACTIVITIES}/{recent['id']}", headers={**h, "If-Match": recent["etag"]})
        assert recent_deleted.status_code == 204
        assert facts(client, h, world.outlet_a) == (old["occurred_at"], None, 0)
        assert projected(db, world.outlet_a) == (instant(old["occurred_at"]), None)
        # an overdue follow-up stays the next one until it is handled
        overdue = create(client, h, call(world.outlet_a, occurred_at=ts(-days(9)), follow_up_at=ts(-days(2))))
        assert facts(client, h, world.outlet_a) == (overdue["occurred_at"], overdue["follow_up_at"], 1)
        patch(client, h, overdue, {"follow_up_at": None})
        assert facts(client, h, world.outlet_a)[1] is None
        assert facts(client, h, world.outlet_b) == (None, None, 0)

    def test_the_facts_are_not_part_of_the_customers_etag(self, client, auth, world):
        h = rep(auth)
        before = client.get(f"/api/v1/customers/{world.outlet_a['id']}", headers=h).json()
        create(client, h, call(world.outlet_a))
        after = client.get(f"/api/v1/customers/{world.outlet_a['id']}", headers=h).json()
        assert after["etag"] == before["etag"] and after["activities_last_90_days"] == 1
        r = client.patch(f"/api/v1/customers/{world.outlet_a['id']}", json={"owner": "anna"},
                         headers={**h, "If-Match": before["etag"]})
        assert r.status_code == 200 and r.json()["activities_last_90_days"] == 1

    def test_the_90_day_count_stays_right_as_time_passes(self, client, auth, world, db):
        h = rep(auth)
        create(client, h, call(world.outlet_a, occurred_at=ts(-days(90) + dt.timedelta(seconds=3))))
        create(client, h, call(world.outlet_a, occurred_at=ts(-days(40))))
        search = {"filter": {"field": "activities_last_90_days", "op": "gte", "value": 2}}
        assert facts(client, h, world.outlet_a)[2] == 2
        found = client.post("/api/v1/customers/search", json=search, headers=h).json()["items"]
        assert [c["id"] for c in found] == [world.outlet_a["id"]]
        writes = db.execute("select count(*) as n from outbox").fetchone()["n"]
        time.sleep(3.5)  # no write in between: the older call leaves the window
        assert facts(client, h, world.outlet_a)[2] == 1
        assert client.post("/api/v1/customers/search", json=search, headers=h).json()["items"] == []
        assert db.execute("select count(*) as n from outbox").fetchone()["n"] == writes

    def test_customer_search_filters_and_sorts_on_the_facts(self, client, auth, world):
        h = rep(auth)
        create(client, h, call(world.outlet_a, occurred_at=ts(-days(2)), follow_up_at=ts(days(8))))
        create(client, h, call(world.outlet_b, occurred_at=ts(-days(20)), follow_up_at=ts(days(2))))
        create(client, h, call(world.outlet_b, occurred_at=ts(-days(15))))

        def search(**body) -> list[str]:
            r = client.post("/api/v1/customers/search", json=body, headers=h)
            assert r.status_code == 200, r.text
            return [c["name"] for c in r.json()["items"]]

        due_soon = {"field": "next_follow_up_at", "op": "lt", "value": ts(days(5))}
        assert search(filter=due_soon) == ["Pasta Fresca Köln"]
        quiet = {"any": [{"field": "last_activity_at", "op": "lt", "value": ts(-days(10))},
                         {"field": "last_activity_at", "op": "is_null", "value": True}]}
        assert search(filter=quiet) == ["Gasthaus Zur Linde", "Pasta Fresca Köln"]
        assert search(sort=[{"field": "activities_last_90_days", "direction": "desc"}]) == [
            "Pasta Fresca Köln", "Alpenblick Garmisch", "Gasthaus Zur Linde"]
        assert search(sort=[{"field": "next_follow_up_at", "direction": "asc"}]) == [
            "Pasta Fresca Köln", "Alpenblick Garmisch", "Gasthaus Zur Linde"]
        first = client.post("/api/v1/customers/search", headers=h, json={
            "sort": [{"field": "activities_last_90_days", "direction": "desc"}], "limit": 1}).json()
        rest = client.post("/api/v1/customers/search", headers=h, json={
            "sort": [{"field": "activities_last_90_days", "direction": "desc"}], "limit": 5,
            "cursor": first["next_cursor"]}).json()
        assert [c["name"] for c in first["items"] + rest["items"]] == [
            "Pasta Fresca Köln", "Alpenblick Garmisch", "Gasthaus Zur Linde"]
        cm = auth("chain_manager", chains=[world.chain_b["id"]])
        r = client.post("/api/v1/customers/search", json={"filter": {
            "field": "activities_last_90_days", "op": "gte", "value": 1}}, headers=cm)
        assert [c["name"] for c in r.json()["items"]] == ["Pasta Fresca Köln"]

    def test_concurrent_writes_for_one_customer_leave_the_projection_right(self, world, db, dsn):
        """The second writer waits for the first one's projection row and then sees its activity."""
        def insert(conn, occurred: str) -> None:
            conn.execute("select set_config('crm.scope', 'all', true), set_config('role', 'crm_api_all', true)")
            conn.execute("insert into activity (type, customer_id, occurred_at, owner, created_by, direction) "
                         "values ('CALL', %s, %s, 'anna', 'anna', 'OUTBOUND')", (world.outlet_a["id"], occurred))

        later, earlier = ts(-days(1)), ts(-days(2))
        with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
            insert(first, later)  # holds the projection row
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    insert(second, earlier)
                    second.commit()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            time.sleep(0.5)
            assert thread.is_alive()  # waiting for the first writer
            first.commit()
            thread.join(10)
            assert not errors
        assert projected(db, world.outlet_a)[0] == instant(later)

    def test_the_projection_can_be_recomputed(self, client, auth, world, db):
        create(client, rep(auth), call(world.outlet_a, follow_up_at=ts(days(4))))
        expected = projected(db, world.outlet_a)
        db.execute("update customer_hot set last_activity_at = null, next_follow_up_at = null")
        assert db.execute("select crm_activity_facts_fill_batch(null, 2) as last").fetchone()["last"] is not None
        last = db.execute("select max(customer_id::text) as m from customer_hot").fetchone()["m"]
        assert db.execute("select crm_activity_facts_fill_batch(%s, 10) as last", (last,)).fetchone()["last"] is None
        db.execute("select crm_activity_facts_fill_batch(null, 10)")
        assert projected(db, world.outlet_a) == expected
        with db.transaction():
            db.execute("select set_config('role', 'crm_api_all', true)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("select crm_activity_facts_fill_batch(null, 10)")


def test_seed_records_a_sales_cycle_for_the_first_demo_customers(dsn, db):
    from db.seed import seed

    seed(dsn, customers=70)
    count = db.execute("select count(*) as n from activity").fetchone()["n"]
    assert count == 60 * 2 + 20  # a call and a visit each, a tasting planned for every third
    seed(dsn, customers=70)
    assert db.execute("select count(*) as n from activity").fetchone()["n"] == count
    stale = db.execute(
        "select count(*) as n from customer_hot as h cross join lateral crm_activity_facts(h.customer_id) as f "
        "where h.last_activity_at is distinct from f.last_activity_at "
        "or h.next_follow_up_at is distinct from f.next_follow_up_at"
    ).fetchone()["n"]
    assert stale == 0
    assert db.execute("select count(*) as n from customer_hot where next_follow_up_at is not null"
                      ).fetchone()["n"] == 60
    assert db.execute("select count(*) as n from outbox where type = 'activity.created'").fetchone()["n"] == count
