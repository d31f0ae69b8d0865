"""Customer search: POST /api/v1/customers/search over core properties and hot fields."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from db import field_jobs, search
from tests.field_helpers import DEFS, run_jobs, set_fields
from tests.field_helpers import search as post_search
from tests.helpers import assert_problem

HOT = {
    "cuisine": ("ENUM", ["ITALIAN", "GERMAN", "THAI"]),
    "seats": ("INTEGER", None),
    "revenue": ("NUMBER", None),
    "opened": ("DATE", None),
    "days": ("MULTI_ENUM", ["MON", "TUE", "WED"]),
    "supplier": ("TEXT", None),
    "terrace": ("BOOLEAN", None),
}
# number: (name, type, status, chain, values)
CUSTOMERS = {
    1: ("Trattoria Roma", "RESTAURANT", "ACTIVE", "a", {
        "cuisine": "ITALIAN", "seats": 40, "revenue": 1000.5, "opened": "2001-05-01", "days": ["MON", "TUE"],
        "supplier": "Metro Cash & Carry", "terrace": True}),
    2: ("Gasthaus Linde", "RESTAURANT", "ACTIVE", "b", {
        "cuisine": "GERMAN", "seats": 80, "revenue": 2500, "opened": "1990-01-15", "days": ["WED"],
        "supplier": "Transgourmet", "terrace": False}),
    3: ("Thai Orchid", "RESTAURANT", "LEAD", "a", {
        "cuisine": "THAI", "seats": 25, "revenue": 800.25, "opened": "2015-09-30", "days": ["MON"],
        "supplier": "metro", "terrace": True}),
    4: ("Kantine Nord", "CANTEEN", "ACTIVE", None, {
        "cuisine": "GERMAN", "seats": 300, "revenue": 50000, "opened": "1975-03-01", "days": ["MON", "TUE", "WED"],
        "supplier": "Chefs Culinar", "notes": "Großküche"}),
    5: ("Hotel Sonne", "HOTEL", "PROSPECT", None, {}),
    6: ("Bistro 100% Bio_Laden", "RESTAURANT", "ACTIVE", None, {
        "cuisine": "ITALIAN", "seats": 40, "revenue": 1000.5, "opened": "2001-05-01", "days": ["TUE"],
        "supplier": "50% off_supplier", "terrace": False}),
    7: ("Alte Post", "RESTAURANT", "ARCHIVED", None, {"cuisine": "GERMAN", "seats": 50}),
}


@pytest.fixture(autouse=True)
def jobs_run_by_the_test(monkeypatch):
    monkeypatch.setattr(field_jobs, "AUTO_RUN", False)


@pytest.fixture
def world(db, dsn):
    """Seven customers K-1..K-7 (K-7 archived) in two chains, seven hot fields and a cold one."""
    chains = {}
    for name in ("a", "b"):
        chains[name] = db.execute("insert into chain (name) values (%s) returning id::text as id",
                                  (f"Chain {name}",)).fetchone()["id"]
    for key, (data_type, options) in HOT.items():
        db.execute("insert into field_definition (key, label, data_type, options, hot) values (%s, %s, %s, %s, true)",
                   (key, key, data_type, options))
        db.execute("insert into field_job (field_key, action) values (%s, 'MAKE_HOT')", (key,))
    db.execute("insert into field_definition (key, label, data_type) values ('notes', 'Notes', 'TEXT')")
    ids = {}
    for number, (name, type_, status, chain, values) in CUSTOMERS.items():
        ids[number] = db.execute(
            "insert into customer (customer_number, name, type, status, chain_id, fields) "
            "values (%s, %s, %s, %s, %s, %s) returning id::text as id",
            (f"K-{number}", name, type_, status, chains.get(chain), json.dumps(values)),
        ).fetchone()["id"]
    assert set(run_jobs(dsn).values()) == {"DONE"}
    return SimpleNamespace(ids=ids, numbers={v: k for k, v in ids.items()}, chains=chains)


def numbers(world, response) -> list[int]:
    assert response.status_code == 200, response.text
    return [world.numbers[c["id"]] for c in response.json()["items"]]


def found(client, auth, world, flt) -> set[int]:
    return set(numbers(world, post_search(client, auth("admin"), filter=flt, limit=200)))


class TestSearchOperators:
    @pytest.mark.parametrize(("flt", "expected"), [
        ({"field": "cuisine", "op": "eq", "value": "GERMAN"}, {2, 4}),
        ({"field": "cuisine", "op": "ne", "value": "GERMAN"}, {1, 3, 5, 6}),
        ({"field": "cuisine", "op": "in", "value": ["ITALIAN", "THAI"]}, {1, 3, 6}),
        ({"field": "cuisine", "op": "not_in", "value": ["ITALIAN", "THAI"]}, {2, 4, 5}),
        ({"field": "cuisine", "op": "is_null", "value": True}, {5}),
        ({"field": "cuisine", "op": "is_null", "value": False}, {1, 2, 3, 4, 6}),
        ({"field": "seats", "op": "lt", "value": 40}, {3}),
        ({"field": "seats", "op": "lte", "value": 40}, {1, 3, 6}),
        ({"field": "seats", "op": "gt", "value": 40}, {2, 4}),
        ({"field": "seats", "op": "gte", "value": 80}, {2, 4}),
        ({"field": "seats", "op": "between", "value": [25, 40]}, {1, 3, 6}),
        ({"field": "seats", "op": "in", "value": [25, 300]}, {3, 4}),
        ({"field": "revenue", "op": "eq", "value": 1000.5}, {1, 6}),
        ({"field": "revenue", "op": "gt", "value": 1000.5}, {2, 4}),
        ({"field": "revenue", "op": "between", "value": [800, 1000.5]}, {1, 3, 6}),
        ({"field": "opened", "op": "lt", "value": "2000-01-01"}, {2, 4}),
        ({"field": "opened", "op": "between", "value": ["2001-05-01", "2015-09-30"]}, {1, 3, 6}),
        ({"field": "opened", "op": "eq", "value": "2015-09-30"}, {3}),
        ({"field": "days", "op": "has_any", "value": ["WED"]}, {2, 4}),
        ({"field": "days", "op": "has_all", "value": ["MON", "TUE"]}, {1, 4}),
        ({"field": "days", "op": "is_null", "value": True}, {5}),
        ({"field": "supplier", "op": "contains", "value": "METRO"}, {1, 3}),
        ({"field": "supplier", "op": "starts_with", "value": "metro"}, {1, 3}),
        ({"field": "supplier", "op": "eq", "value": "metro"}, {3}),
        ({"field": "supplier", "op": "contains", "value": "%"}, {6}),
        ({"field": "supplier", "op": "contains", "value": "f_s"}, {6}),
        ({"field": "supplier", "op": "lt", "value": "M"}, {4, 6}),
        ({"field": "terrace", "op": "eq", "value": True}, {1, 3}),
        ({"field": "terrace", "op": "ne", "value": True}, {2, 4, 5, 6}),
        ({"field": "terrace", "op": "is_null", "value": True}, {4, 5}),
        ({"field": "name", "op": "contains", "value": "linde"}, {2}),
        ({"field": "name", "op": "contains", "value": "100%"}, {6}),
        ({"field": "type", "op": "eq", "value": "CANTEEN"}, {4}),
        ({"field": "status", "op": "in", "value": ["LEAD", "PROSPECT"]}, {3, 5}),
        ({"field": "customer_number", "op": "starts_with", "value": "K-4"}, {4}),
        ({"field": "city", "op": "is_null", "value": True}, {1, 2, 3, 4, 5, 6}),
        ({"field": "created_at", "op": "gte", "value": "2000-01-01T00:00:00Z"}, {1, 2, 3, 4, 5, 6}),
        ({"field": "created_at", "op": "lt", "value": "2000-01-01T00:00:00+01:00"}, set()),
    ])
    def test_operator(self, client, auth, world, flt, expected):
        assert found(client, auth, world, flt) == expected

    def test_chain_id(self, client, auth, world):
        assert found(client, auth, world, {"field": "chain_id", "op": "eq", "value": world.chains["a"]}) == {1, 3}
        assert found(client, auth, world, {"field": "chain_id", "op": "is_null", "value": True}) == {4, 5, 6}

    def test_no_filter_finds_every_active_customer_by_name(self, client, auth, world):
        r = post_search(client, auth("sales_rep"))
        assert numbers(world, r) == [6, 2, 5, 4, 3, 1]  # by name
        assert r.json()["next_cursor"] is None

    def test_integral_numbers_written_with_a_fraction(self, client, auth, world):
        r = post_search(client, auth("admin"), limit=2.0, filter={"field": "seats", "op": "eq", "value": 40.0})
        assert numbers(world, r) == [6, 1]
        assert r.json()["next_cursor"] is None

    def test_include_archived(self, client, auth, world):
        r = post_search(client, auth("admin"), filter={"field": "seats", "op": "eq", "value": 50},
                        include_archived=True)
        assert numbers(world, r) == [7]
        assert found(client, auth, world, {"field": "seats", "op": "eq", "value": 50}) == set()

    def test_items_are_customers_with_their_fields(self, client, auth, world):
        r = post_search(client, auth("admin"), filter={"field": "customer_number", "op": "eq", "value": "K-4"})
        (item,) = r.json()["items"]
        assert item == client.get(f"/api/v1/customers/{world.ids[4]}", headers=auth("admin")).json()
        assert item["fields"]["notes"] == "Großküche"


class TestSearchGroups:
    @pytest.mark.parametrize(("flt", "expected"), [
        ({"all": [{"field": "cuisine", "op": "eq", "value": "ITALIAN"}, {"field": "days", "op": "has_any",
                                                                           "value": ["MON"]}]}, {1}),
        ({"any": [{"field": "cuisine", "op": "eq", "value": "THAI"}, {"field": "seats", "op": "gte", "value": 300}]},
         {3, 4}),
        ({"all": [{"any": [{"field": "cuisine", "op": "eq", "value": "THAI"},
                           {"field": "seats", "op": "gte", "value": 300}]},
                  {"not": {"field": "terrace", "op": "eq", "value": True}}]}, {4}),
        ({"not": {"all": [{"field": "cuisine", "op": "eq", "value": "ITALIAN"},
                          {"field": "seats", "op": "eq", "value": 40}]}}, {2, 3, 4, 5}),
        ({"not": {"any": [{"field": "cuisine", "op": "eq", "value": "ITALIAN"},
                          {"field": "seats", "op": "lt", "value": 30}]}}, {2, 4, 5}),
        ({"not": {"not": {"field": "terrace", "op": "eq", "value": True}}}, {1, 3}),
        ({"not": {"field": "days", "op": "has_any", "value": ["MON"]}}, {2, 5, 6}),
        ({"not": {"field": "cuisine", "op": "is_null", "value": True}}, {1, 2, 3, 4, 6}),
        ({"not": {"field": "seats", "op": "between", "value": [30, 100]}}, {3, 4, 5}),
    ])
    def test_nested(self, client, auth, world, flt, expected):
        assert found(client, auth, world, flt) == expected

    def test_five_levels_are_allowed(self, client, auth, world):
        leaf = {"field": "cuisine", "op": "eq", "value": "THAI"}
        flt = {"all": [{"any": [{"all": [{"any": [{"all": [leaf]}]}]}]}]}
        assert found(client, auth, world, flt) == {3}


class TestSearchSort:
    def _all_pages(self, client, auth, world, **body) -> list[int]:
        got, cursor = [], None
        while True:
            r = post_search(client, auth("admin"), limit=2, **body, **({"cursor": cursor} if cursor else {}))
            got += numbers(world, r)
            if not (cursor := r.json()["next_cursor"]):
                return got

    def test_descending_with_missing_values_first_and_ties_by_id(self, client, auth, world):
        order = numbers(world, post_search(client, auth("admin"), sort=[{"field": "seats", "direction": "desc"}]))
        tie = sorted([1, 6], key=lambda n: world.ids[n], reverse=True)
        assert order == [5, 4, 2, *tie, 3]

    def test_ascending_with_missing_values_last(self, client, auth, world):
        order = numbers(world, post_search(client, auth("admin"), sort=[{"field": "opened"}]))
        tie = sorted([1, 6], key=lambda n: world.ids[n])
        assert order == [4, 2, *tie, 3, 5]

    @pytest.mark.parametrize("sort", [
        [{"field": "seats", "direction": "desc"}],
        [{"field": "seats"}],
        [{"field": "cuisine"}, {"field": "revenue", "direction": "desc"}],
        [{"field": "terrace", "direction": "desc"}, {"field": "name"}],
        [{"field": "opened"}, {"field": "supplier", "direction": "desc"}, {"field": "updated_at"}],
        [{"field": "status", "direction": "desc"}],
        [{"field": "customer_number"}],
    ])
    def test_pages_are_stable_and_complete(self, client, auth, world, sort):
        whole = numbers(world, post_search(client, auth("admin"), sort=sort, limit=200))
        assert sorted(whole) == [1, 2, 3, 4, 5, 6]
        assert self._all_pages(client, auth, world, sort=sort) == whole

    def test_pages_with_a_filter(self, client, auth, world):
        flt = {"field": "cuisine", "op": "ne", "value": "THAI"}
        tie = sorted([1, 6], key=lambda n: world.ids[n])
        assert self._all_pages(client, auth, world, filter=flt, sort=[{"field": "revenue"}]) == [*tie, 2, 4, 5]

    def test_cursor_is_bound_to_filter_and_sort(self, client, auth, world):
        h = auth("admin")
        first = post_search(client, h, limit=2, sort=[{"field": "seats"}]).json()
        r = post_search(client, h, limit=2, sort=[{"field": "seats", "direction": "desc"}],
                        cursor=first["next_cursor"])
        assert_problem(r, 400, "/problems/invalid-cursor")
        r = post_search(client, h, limit=2, sort=[{"field": "seats"}], cursor=first["next_cursor"],
                        filter={"field": "seats", "op": "gt", "value": 0})
        assert_problem(r, 400, "/problems/invalid-cursor")
        assert_problem(post_search(client, h, cursor=first["next_cursor"][:-2] + "xx", sort=[{"field": "seats"}]), 400)


class TestSearchRejects:
    @pytest.mark.parametrize(("body", "path", "words"), [
        ({"filter": {"field": "notes", "op": "eq", "value": "x"}}, "filter.field", "'notes' is not a hot field"),
        ({"sort": [{"field": "notes"}]}, "sort.0.field", "'notes' is not a hot field"),
        ({"filter": {"field": "nope", "op": "eq", "value": 1}}, "filter.field", "'nope' is not"),
        ({"filter": {"field": "terrace", "op": "gt", "value": True}}, "filter.op", "'gt' does not apply to BOOLEAN"),
        ({"filter": {"field": "seats", "op": "contains", "value": "4"}}, "filter.op", "does not apply to INTEGER"),
        ({"filter": {"field": "cuisine", "op": "has_any", "value": ["THAI"]}}, "filter.op", "does not apply"),
        ({"filter": {"field": "days", "op": "eq", "value": "MON"}}, "filter.op", "does not apply to MULTI_ENUM"),
        ({"filter": {"field": "type", "op": "lt", "value": "HOTEL"}}, "filter.op", "does not apply to ENUM"),
        ({"filter": {"field": "seats", "op": "eq", "value": "40"}}, "filter.value", "must be an integer"),
        ({"filter": {"field": "seats", "op": "eq", "value": 4.5}}, "filter.value", "must be an integer"),
        ({"filter": {"field": "revenue", "op": "gt", "value": True}}, "filter.value", "must be a number"),
        ({"filter": {"field": "opened", "op": "eq", "value": "2024-02-30"}}, "filter.value", "must be a date"),
        ({"filter": {"field": "opened", "op": "eq", "value": "01.05.2001"}}, "filter.value", "must be a date"),
        ({"filter": {"field": "cuisine", "op": "eq", "value": "FRENCH"}}, "filter.value", "is not an option"),
        ({"filter": {"field": "days", "op": "has_any", "value": ["SUN"]}}, "filter.value.0", "is not an option"),
        ({"filter": {"field": "status", "op": "eq", "value": "DELETED"}}, "filter.value", "is not an option"),
        ({"filter": {"field": "chain_id", "op": "eq", "value": "not-a-uuid"}}, "filter.value", "must be a UUID"),
        ({"filter": {"field": "created_at", "op": "gt", "value": "2024-01-01T00:00:00"}}, "filter.value",
         "time zone"),
        ({"filter": {"field": "seats", "op": "between", "value": [1, 2, 3]}}, "filter.value", "[low, high]"),
        ({"filter": {"field": "seats", "op": "between", "value": [9, 1]}}, "filter.value", "greater than"),
        ({"filter": {"field": "seats", "op": "in", "value": []}}, "filter.value", "non-empty list"),
        ({"filter": {"field": "seats", "op": "eq", "value": [1]}}, "filter.value", "single value"),
        ({"filter": {"field": "seats", "op": "is_null", "value": 1}}, "filter.value", "true (no value)"),
        ({"filter": {"field": "supplier", "op": "contains", "value": ""}}, "filter.value", "non-empty"),
        ({"sort": [{"field": "days"}]}, "sort.0.field", "cannot be sorted on"),
        ({"sort": [{"field": "chain_id"}]}, "sort.0.field", "cannot be sorted on"),
        ({"sort": [{"field": "seats"}, {"field": "seats", "direction": "desc"}]}, "sort.1.field", "named twice"),
        ({"filter": {"field": "name'; drop table customer; --", "op": "eq", "value": 1}}, "filter.field",
         "is not a customer property or field"),
        ({"filter": {"field": "seats\"", "op": "eq", "value": 1}}, "filter.field", "is not a customer property"),
    ])
    def test_422_names_the_problem(self, client, auth, db, world, body, path, words):
        r = post_search(client, auth("admin"), **body)
        problem = assert_problem(r, 422, "/problems/invalid-search")
        assert any(e["field"] == path and words in e["message"] for e in problem["errors"]), problem
        assert db.execute("select count(*) as n from customer").fetchone()["n"] == 7

    def test_every_problem_is_listed(self, client, auth, world):
        flt = {"all": [{"field": "notes", "op": "eq", "value": "x"}, {"field": "terrace", "op": "gt", "value": 1},
                       {"field": "nope", "op": "eq", "value": 1}]}
        problem = assert_problem(post_search(client, auth("admin"), filter=flt), 422)
        assert [e["field"] for e in problem["errors"]] == ["filter.all.0.field", "filter.all.1.op",
                                                           "filter.all.2.field"]

    def test_too_deep(self, client, auth, world):
        flt: dict = {"field": "cuisine", "op": "eq", "value": "THAI"}
        for _ in range(6):
            flt = {"not": flt}
        problem = assert_problem(post_search(client, auth("admin"), filter=flt), 422)
        assert "5 levels" in problem["errors"][0]["message"]

    def test_far_too_deep(self, client, auth, world):
        flt: dict = {"field": "cuisine", "op": "eq", "value": "THAI"}
        for _ in range(300):
            flt = {"all": [flt]}
        assert_problem(post_search(client, auth("admin"), filter=flt), 422)

    def test_too_many_predicates(self, client, auth, world):
        leaf = {"field": "seats", "op": "gt", "value": 1}
        assert found(client, auth, world, {"all": [{"all": [leaf] * 15}, {"all": [leaf] * 15}]}) == {1, 2, 3, 4, 6}
        flt = {"all": [{"all": [leaf] * 16}, {"all": [leaf] * 15}]}
        problem = assert_problem(post_search(client, auth("admin"), filter=flt), 422)
        assert problem["errors"] == [{"field": "filter", "message": "a filter has at most 30 predicates"}]

    @pytest.mark.parametrize("body", [
        {"filter": {"field": "seats", "op": "like", "value": 1}},
        {"filter": {"all": []}},
        {"filter": {"all": [], "any": []}},
        {"limit": 0},
        {"limit": 201},
        {"unknown": 1},
        {"sort": [{"field": "seats", "direction": "up"}]},
    ])
    def test_malformed_body_is_400(self, client, auth, world, body):
        assert_problem(post_search(client, auth("admin"), **body), 400)

    def test_needs_customers_read(self, client, auth, world):
        assert_problem(post_search(client, auth("integration")), 403)


class TestSearchConsistency:
    def test_a_write_is_found_by_the_next_search(self, client, auth, world):
        h = auth("sales_rep")
        set_fields(client, h, world.ids[5], {"cuisine": "THAI", "seats": 12})
        assert found(client, auth, world, {"field": "cuisine", "op": "eq", "value": "THAI"}) == {3, 5}
        set_fields(client, h, world.ids[5], {"cuisine": None})
        assert found(client, auth, world, {"field": "cuisine", "op": "eq", "value": "THAI"}) == {3}
        assert found(client, auth, world, {"field": "seats", "op": "lt", "value": 20}) == {5}

    def test_a_customer_change_is_found_by_the_next_search(self, client, auth, world):
        h = auth("admin")
        c = client.get(f"/api/v1/customers/{world.ids[5]}", headers=h)
        client.patch(f"/api/v1/customers/{world.ids[5]}", json={"name": "Zum Schwan", "status": "ACTIVE"},
                     headers={**h, "If-Match": c.headers["etag"]})
        assert found(client, auth, world, {"field": "name", "op": "starts_with", "value": "zum"}) == {5}
        client.delete(f"/api/v1/customers/{world.ids[5]}",
                      headers={**h, "If-Match": client.get(f"/api/v1/customers/{world.ids[5]}", headers=h).headers[
                          "etag"]})
        assert found(client, auth, world, {"field": "name", "op": "starts_with", "value": "zum"}) == set()


class TestSearchScope:
    def test_chain_manager_finds_own_outlets_only(self, client, auth, world):
        manager = auth("chain_manager", chains=[world.chains["a"]])
        assert numbers(world, post_search(client, manager)) == [3, 1]
        r = post_search(client, manager, filter={"field": "cuisine", "op": "in", "value": ["ITALIAN", "GERMAN"]})
        assert numbers(world, r) == [1]
        r = post_search(client, manager, filter={"field": "chain_id", "op": "eq", "value": world.chains["b"]})
        assert numbers(world, r) == []

    def test_manager_without_chains_finds_nothing(self, client, auth, world):
        assert numbers(world, post_search(client, auth("chain_manager"))) == []

    def test_moving_an_outlet_moves_it_out_of_scope(self, client, auth, world):
        h = auth("admin")
        c = client.get(f"/api/v1/customers/{world.ids[3]}", headers=h)
        client.patch(f"/api/v1/customers/{world.ids[3]}", json={"chain_id": world.chains["b"]},
                     headers={**h, "If-Match": c.headers["etag"]})
        assert numbers(world, post_search(client, auth("chain_manager", chains=[world.chains["a"]]))) == [1]


class TestFieldNotYetHot:
    def test_409_until_the_backfill_finished(self, client, auth, db, dsn, world):
        h = auth("admin")
        d = client.get(f"{DEFS}/notes", headers=h)
        client.patch(f"{DEFS}/notes", json={"hot": True}, headers={**h, "If-Match": d.headers["etag"]})
        r = post_search(client, h, filter={"field": "notes", "op": "contains", "value": "küche"})
        problem = assert_problem(r, 409, "/problems/field-not-yet-hot")
        assert problem["fields"] == [{"key": "notes", "processed": 0, "total": None}]
        assert_problem(post_search(client, h, sort=[{"field": "notes"}]), 409)
        run_jobs(dsn, batch_size=2, max_batches=2)
        problem = assert_problem(post_search(client, h, sort=[{"field": "notes"}]), 409)
        assert problem["fields"][0]["processed"] == 4 and problem["fields"][0]["total"] == 7
        run_jobs(dsn, batch_size=2)
        assert found(client, auth, world, {"field": "notes", "op": "contains", "value": "KÜCHE"}) == {4}

    def test_an_invalid_filter_is_422_even_on_a_pending_field(self, client, auth, world):
        h = auth("admin")
        d = client.get(f"{DEFS}/notes", headers=h)
        client.patch(f"{DEFS}/notes", json={"hot": True}, headers={**h, "If-Match": d.headers["etag"]})
        flt = {"all": [{"field": "notes", "op": "eq", "value": "x"}, {"field": "nope", "op": "eq", "value": 1}]}
        assert_problem(post_search(client, h, filter=flt), 422)

    def test_a_field_made_cold_leaves_the_search_at_once(self, client, auth, db, dsn, world):
        h = auth("admin")
        d = client.get(f"{DEFS}/seats", headers=h)
        r = client.patch(f"{DEFS}/seats", json={"hot": False}, headers={**h, "If-Match": d.headers["etag"]})
        assert r.json()["hot_status"] == "COLD"
        assert_problem(post_search(client, h, filter={"field": "seats", "op": "gt", "value": 1}), 422)
        assert run_jobs(dsn) == {8: "DONE"}
        assert db.execute("select count(*) as n from pg_attribute where attrelid = 'customer_hot'::regclass "
                          "and attname = 'f_seats' and not attisdropped").fetchone()["n"] == 0
        assert found(client, auth, world, {"field": "cuisine", "op": "eq", "value": "THAI"}) == {3}


def test_core_enum_options_match_the_database(db):
    got = db.execute("select enum_range(null::customer_type)::text[] as t, "
                     "enum_range(null::customer_status)::text[] as s").fetchone()
    assert (tuple(got["t"]), tuple(got["s"])) == (search.CUSTOMER_TYPES, search.CUSTOMER_STATUSES)


class TestSearchUsesIndexes:
    """The projection is read through a view, not under a row-level-security policy: with a
    policy, PostgreSQL refuses index scans for operators that are not leakproof (ILIKE, &&,
    numeric comparison). Here the planner may use each column's index as the API role."""

    @pytest.mark.parametrize(("flt", "index"), [
        ({"field": "supplier", "op": "contains", "value": "metro"}, "customer_hot_f_supplier_trgm"),
        ({"field": "days", "op": "has_all", "value": ["MON", "TUE"]}, "customer_hot_f_days_idx"),
        ({"field": "revenue", "op": "gt", "value": 100}, "customer_hot_f_revenue_idx"),
        ({"field": "cuisine", "op": "eq", "value": "THAI"}, "customer_hot_f_cuisine_idx"),
        ({"field": "name", "op": "contains", "value": "linde"}, "customer_hot_name_trgm_idx"),
    ])
    @pytest.mark.parametrize(("role", "all_rows"), [("crm_api_all", True), ("crm_api", False)])
    def test_index_is_usable_as_api_role(self, db, world, flt, index, role, all_rows):
        states = db.execute(
            "select key, data_type::text, options, hot, projection::text, null::bigint as processed, "
            "null::bigint as total from field_definition"
        ).fetchall()
        compiled = search.plan({"filter": flt, "sort": [{"field": "customer_number"}]}, states, all_rows)
        with db.transaction():
            db.execute("select set_config('role', %s, true), set_config('crm.scope', 'all', true), "
                       "set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true)",
                       (role,))
            plan = "\n".join(r["QUERY PLAN"] for r in db.execute(b"explain " + compiled.statement.as_bytes(db),
                                                                  compiled.params))
        assert index in plan, plan
