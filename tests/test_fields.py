"""Custom fields: /api/v1/field-definitions and /api/v1/customers/{customer_id}/fields."""

from __future__ import annotations

import pytest

from db import field_jobs
from tests.field_helpers import DEFS, SEARCH, define, make_hot, run_jobs, set_fields
from tests.helpers import assert_problem, create_chain, create_customer


@pytest.fixture(autouse=True)
def jobs_run_by_the_test(monkeypatch):
    """Field jobs run when a test says so (run_jobs), not in the app's background."""
    monkeypatch.setattr(field_jobs, "AUTO_RUN", False)


def fields_url(customer: dict) -> str:
    return f"/api/v1/customers/{customer['id']}/fields"


def stored(db, customer: dict) -> dict:
    return db.execute("select fields from customer where id = %s", (customer["id"],)).fetchone()["fields"]


class TestCreateFieldDefinition:
    @pytest.mark.parametrize(("data_type", "props"), [
        ("TEXT", {"max_length": 80, "pattern": "^[A-Z]"}),
        ("INTEGER", {"min": 0, "max": 500}),
        ("NUMBER", {"min": 0.5}),
        ("BOOLEAN", {}),
        ("DATE", {}),
        ("ENUM", {"options": ["ITALIAN", "GERMAN"]}),
        ("MULTI_ENUM", {"options": ["MON", "TUE"], "required": True}),
    ])
    def test_every_data_type(self, client, auth, data_type, props):
        r = client.post(DEFS, headers=auth("admin"), json={"key": "some_field", "label": "Some", "data_type": data_type,
                                                            **props})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["data_type"] == data_type
        assert body["hot"] is False and body["hot_status"] == "COLD" and body["backfill"] is None
        assert r.headers["etag"] == body["etag"]
        assert r.headers["location"] == "/api/v1/field-definitions/some_field"
        for name, value in props.items():
            assert body[name] == value

    def test_hot_on_create_queues_the_backfill(self, client, auth, dsn):
        body = define(client, auth("sales_manager"), "cuisine", "ENUM", options=["A"], hot=True)
        assert body["hot"] is True and body["hot_status"] == "BACKFILLING"
        assert body["backfill"]["status"] == "PENDING" and body["backfill"]["action"] == "MAKE_HOT"
        run_jobs(dsn)
        assert client.get(f"{DEFS}/cuisine", headers=auth("admin")).json()["hot_status"] == "HOT"

    @pytest.mark.parametrize(("body", "field"), [
        ({"data_type": "ENUM"}, "options"),
        ({"data_type": "MULTI_ENUM"}, "options"),
        ({"data_type": "TEXT", "options": ["A"]}, "options"),
        ({"data_type": "TEXT", "min": 1}, "min"),
        ({"data_type": "INTEGER", "min": 5, "max": 1}, "min"),
        ({"data_type": "INTEGER", "max_length": 10}, "max_length"),
        ({"data_type": "TEXT", "pattern": "(unclosed"}, "pattern"),
        ({"data_type": "TEXT", "key": "name"}, "key"),
    ])
    def test_inconsistent_definition_is_422_and_nothing_is_stored(self, client, auth, db, body, field):
        r = client.post(DEFS, headers=auth("admin"), json={"key": "f", "label": "F", **body})
        problem = assert_problem(r, 422, "/problems/invalid-field-definition")
        assert field in {e["field"] for e in problem["errors"]}
        assert db.execute("select count(*) as n from field_definition").fetchone()["n"] == 0

    def test_repeated_options_are_400(self, client, auth):
        r = client.post(DEFS, headers=auth("admin"), json={"key": "f", "label": "F", "data_type": "ENUM",
                                                            "options": ["A", "A"]})
        assert_problem(r, 400)

    @pytest.mark.parametrize("key", ["Cuisine", "1st", "a-b", "x" * 41, "name'; drop table customer; --", "ä"])
    def test_key_must_be_snake_case(self, client, auth, db, key):
        r = client.post(DEFS, headers=auth("admin"), json={"key": key, "label": "X", "data_type": "TEXT"})
        assert_problem(r, 400)
        assert db.execute("select count(*) as n from field_definition").fetchone()["n"] == 0

    def test_duplicate_key_is_409(self, client, auth):
        define(client, auth("admin"), "seats", "INTEGER")
        r = client.post(DEFS, headers=auth("admin"), json={"key": "seats", "label": "Other", "data_type": "TEXT"})
        body = assert_problem(r, 409)
        assert body["existing_id"] == "seats"

    def test_archived_key_cannot_be_reused(self, client, auth):
        h = auth("admin")
        d = define(client, h, "seats", "INTEGER")
        assert client.delete(f"{DEFS}/seats", headers={**h, "If-Match": d["etag"]}).status_code == 204
        r = client.post(DEFS, headers=h, json={"key": "seats", "label": "Seats", "data_type": "TEXT"})
        assert "archived" in assert_problem(r, 409)["detail"]

    @pytest.mark.parametrize("role", ["sales_rep", "chain_manager", "integration"])
    def test_only_admins_and_sales_managers_define_fields(self, client, auth, db, role):
        r = client.post(DEFS, headers=auth(role), json={"key": "seats", "label": "Seats", "data_type": "INTEGER"})
        assert_problem(r, 403)
        assert db.execute("select count(*) as n from field_definition").fetchone()["n"] == 0

    def test_idempotency_key_replays(self, client, auth, db):
        h = {**auth("admin"), "Idempotency-Key": "def-1"}
        body = {"key": "seats", "label": "Seats", "data_type": "INTEGER"}
        first, second = client.post(DEFS, json=body, headers=h), client.post(DEFS, json=body, headers=h)
        assert first.status_code == second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()


class TestListFieldDefinitions:
    def test_pages_by_key_without_archived(self, client, auth):
        h = auth("admin")
        for key in ("e", "d", "c", "b", "a"):
            define(client, h, key, "TEXT")
        gone = client.get(f"{DEFS}/c", headers=h)
        client.delete(f"{DEFS}/c", headers={**h, "If-Match": gone.headers["etag"]})
        keys, cursor = [], None
        while True:
            page = client.get(DEFS, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                              headers=auth("sales_rep")).json()
            keys += [d["key"] for d in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert keys == ["a", "b", "d", "e"]


class TestGetFieldDefinition:
    def test_etag_and_not_modified(self, client, auth):
        h = auth("chain_manager")
        define(client, auth("admin"), "seats", "INTEGER")
        r = client.get(f"{DEFS}/seats", headers=h)
        assert r.status_code == 200 and r.headers["etag"] == r.json()["etag"]
        assert client.get(f"{DEFS}/seats", headers={**h, "If-None-Match": r.headers["etag"]}).status_code == 304

    def test_unknown_is_404(self, client, auth):
        assert_problem(client.get(f"{DEFS}/nope", headers=auth("admin")), 404)


class TestUpdateFieldDefinition:
    @pytest.fixture
    def cuisine(self, client, auth):
        h = auth("admin")
        d = define(client, h, "cuisine", "ENUM", options=["ITALIAN", "GERMAN", "THAI"])
        customers = [create_customer(client, h, f"K-{i}") for i in range(4)]
        for c, value in zip(customers, ["ITALIAN", "GERMAN", "THAI", None], strict=True):
            if value:
                set_fields(client, h, c["id"], {"cuisine": value})
        return d, customers

    def _patch(self, client, auth, key, body, etag=None):
        h = auth("admin")
        etag = etag or client.get(f"{DEFS}/{key}", headers=h).headers["etag"]
        return client.patch(f"{DEFS}/{key}", json=body, headers={**h, "If-Match": etag})

    def test_label_changes_with_if_match(self, client, auth, cuisine):
        d, _ = cuisine
        r = self._patch(client, auth, "cuisine", {"label": "Küche", "description": "Hauptküche"}, d["etag"])
        assert r.status_code == 200, r.text
        assert r.json()["label"] == "Küche" and r.json()["etag"] != d["etag"]

    def test_if_match_missing_is_428_and_stale_is_412(self, client, auth, cuisine):
        d, _ = cuisine
        assert_problem(client.patch(f"{DEFS}/cuisine", json={"label": "X"}, headers=auth("admin")), 428)
        self._patch(client, auth, "cuisine", {"label": "Y"}, d["etag"])
        body = assert_problem(self._patch(client, auth, "cuisine", {"label": "Z"}, d["etag"]), 412)
        assert body["current_etag"]

    @pytest.mark.parametrize("body", [{"key": "other"}, {"data_type": "TEXT"}])
    def test_key_and_data_type_are_immutable(self, client, auth, cuisine, body):
        assert_problem(self._patch(client, auth, "cuisine", body), 400)

    def test_sales_rep_cannot_change(self, client, auth, cuisine):
        d, _ = cuisine
        r = client.patch(f"{DEFS}/cuisine", json={"label": "X"}, headers={**auth("sales_rep"), "If-Match": d["etag"]})
        assert_problem(r, 403)

    def test_adding_options_needs_no_migration(self, client, auth, cuisine):
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN", "GERMAN", "THAI", "FRENCH"]})
        assert r.status_code == 200 and r.json()["options"][-1] == "FRENCH"

    def test_narrowing_options_is_409_with_the_count_and_changes_nothing(self, client, auth, db, cuisine):
        before = db.execute("select options, version from field_definition").fetchone()
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN"]})
        body = assert_problem(r, 409, "/problems/field-values-conflict")
        assert body["offending_customers"] == 2 and body["invalid_values"] == 2 and body["missing_values"] == 0
        assert db.execute("select options, version from field_definition").fetchone() == before

    def test_map_options_migrates_the_values(self, client, auth, db, cuisine):
        _, customers = cuisine
        migration = {"map_options": {"GERMAN": "ITALIAN", "THAI": "ASIAN"}}
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN", "ASIAN"], "migration": migration})
        assert r.status_code == 200, r.text
        assert [stored(db, c).get("cuisine") for c in customers] == ["ITALIAN", "ITALIAN", "ASIAN", None]
        got = client.get(f"/api/v1/customers/{customers[1]['id']}", headers=auth("admin")).json()
        assert got["fields"] == {"cuisine": "ITALIAN"}

    def test_unset_invalid_removes_what_still_breaks(self, client, auth, db, cuisine):
        _, customers = cuisine
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN"], "migration": {"invalid": "UNSET"}})
        assert r.status_code == 200, r.text
        assert [stored(db, c) for c in customers] == [{"cuisine": "ITALIAN"}, {}, {}, {}]

    def test_replace_invalid(self, client, auth, db, cuisine):
        _, customers = cuisine
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN", "OTHER"],
                                                   "migration": {"invalid": "REPLACE", "replacement": "OTHER"}})
        assert r.status_code == 200, r.text
        assert [stored(db, c).get("cuisine") for c in customers] == ["ITALIAN", "OTHER", "OTHER", None]

    def test_replacement_must_fit_the_new_definition(self, client, auth, db, cuisine):
        r = self._patch(client, auth, "cuisine", {"options": ["ITALIAN"],
                                                   "migration": {"invalid": "REPLACE", "replacement": "GERMAN"}})
        body = assert_problem(r, 422)
        assert body["errors"][0]["field"] == "migration.replacement"

    def test_multi_enum_unset_keeps_the_valid_options(self, client, auth, db):
        h = auth("admin")
        define(client, h, "days", "MULTI_ENUM", options=["MON", "TUE", "WED"])
        a, b = create_customer(client, h, "K-1"), create_customer(client, h, "K-2")
        set_fields(client, h, a["id"], {"days": ["MON", "WED"]})
        set_fields(client, h, b["id"], {"days": ["WED"]})
        r = self._patch(client, auth, "days", {"options": ["MON", "TUE"], "migration": {"invalid": "UNSET"}})
        assert r.status_code == 200, r.text
        assert stored(db, a) == {"days": ["MON"]} and stored(db, b) == {}

    def test_new_required_is_409_counting_customers_without_a_value(self, client, auth, db, cuisine):
        body = assert_problem(self._patch(client, auth, "cuisine", {"required": True}), 409)
        assert body["offending_customers"] == 1 and body["missing_values"] == 1
        assert db.execute("select required from field_definition").fetchone()["required"] is False

    def test_fill_missing_makes_required_possible(self, client, auth, db, cuisine):
        _, customers = cuisine
        r = self._patch(client, auth, "cuisine", {"required": True, "migration": {"fill_missing": "GERMAN"}})
        assert r.status_code == 200, r.text
        assert stored(db, customers[3]) == {"cuisine": "GERMAN"}

    def test_required_ignores_archived_customers(self, client, auth, db, cuisine):
        _, customers = cuisine
        h = auth("admin")
        c = client.get(f"/api/v1/customers/{customers[3]['id']}", headers=h).json()
        client.delete(f"/api/v1/customers/{c['id']}", headers={**h, "If-Match": c["etag"]})
        assert self._patch(client, auth, "cuisine", {"required": True}).status_code == 200

    def test_tighter_bounds_are_checked(self, client, auth, db):
        h = auth("admin")
        define(client, h, "seats", "INTEGER", min=0, max=1000)
        c = create_customer(client, h)
        set_fields(client, h, c["id"], {"seats": 500})
        assert assert_problem(self._patch(client, auth, "seats", {"max": 400}), 409)["offending_customers"] == 1
        assert self._patch(client, auth, "seats", {"max": 600}).status_code == 200
        assert self._patch(client, auth, "seats", {"min": 100}).status_code == 200

    def test_new_pattern_is_checked(self, client, auth, db):
        h = auth("admin")
        define(client, h, "code", "TEXT")
        c = create_customer(client, h)
        set_fields(client, h, c["id"], {"code": "abc"})
        assert assert_problem(self._patch(client, auth, "code", {"pattern": "^[0-9]+$"}), 409)["invalid_values"] == 1
        assert self._patch(client, auth, "code", {"pattern": "^[a-z]+$"}).status_code == 200

    def test_unknown_is_404(self, client, auth):
        r = client.patch(f"{DEFS}/nope", json={"label": "X"}, headers={**auth("admin"), "If-Match": '"x"'})
        assert_problem(r, 404)


class TestArchiveFieldDefinition:
    def test_values_are_kept_but_leave_every_read(self, client, auth, db, dsn):
        h = auth("admin")
        d = define(client, h, "notes", "TEXT")
        define(client, h, "seats", "INTEGER")
        c = create_customer(client, h)
        set_fields(client, h, c["id"], {"notes": "Ruhetag Montag", "seats": 40})
        before = client.get(f"/api/v1/customers/{c['id']}", headers=h).json()
        assert_problem(client.delete(f"{DEFS}/notes", headers=h), 428)
        assert client.delete(f"{DEFS}/notes", headers={**h, "If-Match": d["etag"]}).status_code == 204
        assert_problem(client.get(f"{DEFS}/notes", headers=h), 404)
        assert client.get(f"/api/v1/customers/{c['id']}", headers=h).json()["fields"] == {"seats": 40}
        assert client.get(fields_url(c), headers=h).json()["fields"] == {"seats": 40}
        assert stored(db, c) == {"notes": "Ruhetag Montag", "seats": 40}
        run_jobs(dsn)  # the archive job gives the customers that held a value a new version
        after = client.get(f"/api/v1/customers/{c['id']}", headers=h).json()
        assert after["etag"] != before["etag"]
        r = client.patch(fields_url(c), json={"notes": "x"},
                         headers={**h, "If-Match": client.get(fields_url(c), headers=h).headers["etag"]})
        assert assert_problem(r, 422)["errors"] == [{"field": "notes", "message": "is not a defined field"}]


class TestCreateCustomerWithFields:
    def test_values_are_stored_with_the_customer_and_projected(self, client, auth, db, dsn):
        h = auth("sales_rep")
        define(client, auth("admin"), "seats", "INTEGER", min=0)
        define(client, auth("admin"), "days", "MULTI_ENUM", options=["MON", "TUE"])
        make_hot(client, auth("admin"), dsn, "seats")
        c = create_customer(client, h, fields={"seats": 40, "days": ["TUE"]})
        assert c["fields"] == {"seats": 40, "days": ["TUE"]}
        assert client.get(f"/api/v1/customers/{c['id']}", headers=h).json() == c
        assert stored(db, c) == {"seats": 40, "days": ["TUE"]}
        found = client.post(SEARCH, headers=h, json={"filter": {"field": "seats", "op": "eq", "value": 40}})
        assert found.status_code == 200, found.text
        assert [x["id"] for x in found.json()["items"]] == [c["id"]]

    def test_all_errors_in_one_422_and_nothing_stored(self, client, auth, db):
        h = auth("admin")
        define(client, h, "seats", "INTEGER", min=0)
        define(client, h, "cuisine", "ENUM", options=["A"], required=True)
        r = client.post("/api/v1/customers", headers=h, json={
            "customer_number": "K-1", "name": "Gasthaus", "type": "RESTAURANT",
            "fields": {"seats": -1, "nope": 1},
        })
        body = assert_problem(r, 422, "/problems/invalid-field-values")
        assert body["errors"] == [
            {"field": "fields.cuisine", "message": "is required"},
            {"field": "fields.nope", "message": "is not a defined field"},
            {"field": "fields.seats", "message": body["errors"][2]["message"]},
        ]
        assert "0" in body["errors"][2]["message"]
        assert db.execute("select count(*) as n from customer").fetchone()["n"] == 0
        assert db.execute("select count(*) as n from outbox where aggregatetype = 'customer'").fetchone()["n"] == 0
        ok = create_customer(client, h, "K-2", fields={"cuisine": "A"})
        assert ok["fields"] == {"cuisine": "A"}

    def test_without_fields_when_none_is_required(self, client, auth):
        define(client, auth("admin"), "seats", "INTEGER")
        assert create_customer(client, auth("admin"))["fields"] == {}


class TestGetCustomerFields:
    def test_values_etag_and_not_modified(self, client, auth):
        h = auth("sales_rep")
        define(client, auth("admin"), "seats", "INTEGER")
        c = create_customer(client, h)
        r = client.get(fields_url(c), headers=h)
        assert r.status_code == 200
        assert r.json() == {"customer_id": c["id"], "fields": {}, "updated_at": r.json()["updated_at"],
                            "etag": r.headers["etag"]}
        assert client.get(fields_url(c), headers={**h, "If-None-Match": r.headers["etag"]}).status_code == 304

    def test_customer_resource_shows_the_values(self, client, auth):
        h = auth("admin")
        define(client, h, "seats", "INTEGER")
        c = create_customer(client, h)
        assert c["fields"] == {}
        set_fields(client, h, c["id"], {"seats": 12})
        got = client.get(f"/api/v1/customers/{c['id']}", headers=h)
        assert got.json()["fields"] == {"seats": 12}
        assert got.headers["etag"] != c["etag"]  # the customer's representation changed
        listed = client.get("/api/v1/customers", headers=h).json()["items"][0]
        assert listed["fields"] == {"seats": 12}

    def test_outside_chain_scope_is_404(self, client, auth):
        h = auth("admin")
        mine, other = create_chain(client, h, "Mine"), create_chain(client, h, "Other")
        c = create_customer(client, h, chain_id=other["id"])
        assert_problem(client.get(fields_url(c), headers=auth("chain_manager", chains=[mine["id"]])), 404)
        assert client.get(fields_url(c), headers=auth("chain_manager", chains=[other["id"]])).status_code == 200

    def test_unknown_customer_is_404(self, client, auth):
        assert_problem(client.get("/api/v1/customers/00000000-0000-4000-8000-000000000000/fields",
                                  headers=auth("admin")), 404)


class TestUpdateCustomerFields:
    @pytest.fixture
    def fields(self, client, auth):
        h = auth("admin")
        define(client, h, "notes", "TEXT", max_length=20, pattern="^[^#]*$")
        define(client, h, "seats", "INTEGER", min=0, max=500)
        define(client, h, "revenue", "NUMBER", min=0)
        define(client, h, "terrace", "BOOLEAN")
        define(client, h, "opened", "DATE")
        define(client, h, "cuisine", "ENUM", options=["ITALIAN", "GERMAN"])
        define(client, h, "days", "MULTI_ENUM", options=["MON", "TUE", "WED"])
        return create_customer(client, h)

    def _patch(self, client, headers, customer, body, etag=None):
        etag = etag or client.get(fields_url(customer), headers=headers).headers["etag"]
        return client.patch(fields_url(customer), json=body, headers={**headers, "If-Match": etag})

    def test_merge_patch_sets_several_and_null_unsets(self, client, auth, db, fields):
        h = auth("sales_rep")
        values = {"notes": "Ruhetag Mo", "seats": 40, "revenue": 1234.5, "terrace": True, "opened": "1998-04-01",
                  "cuisine": "ITALIAN", "days": ["MON", "WED"]}
        r = self._patch(client, h, fields, values)
        assert r.status_code == 200, r.text
        assert r.json()["fields"] == values and r.headers["etag"] == r.json()["etag"]
        r = self._patch(client, h, fields, {"seats": 42, "notes": None, "days": ["TUE"]})
        assert r.status_code == 200
        expected = {"seats": 42, "revenue": 1234.5, "terrace": True, "opened": "1998-04-01", "cuisine": "ITALIAN",
                    "days": ["TUE"]}
        assert r.json()["fields"] == expected
        assert stored(db, fields) == expected

    def test_all_errors_in_one_422_and_nothing_stored(self, client, auth, db, fields):
        h = auth("admin")
        self._patch(client, h, fields, {"seats": 10})
        r = self._patch(client, h, fields, {
            "notes": "x" * 21, "seats": 501, "revenue": "12", "terrace": "yes", "opened": "2024-02-30",
            "cuisine": "FRENCH", "days": ["MON", "MON"], "unknown_key": 1,
        })
        body = assert_problem(r, 422, "/problems/invalid-field-values")
        assert {e["field"]: e["message"] for e in body["errors"]} == {
            "notes": "must be at most 20 characters long",
            "seats": "must be at most 500",
            "revenue": "must be a number",
            "terrace": "must be true or false",
            "opened": "must be a date (YYYY-MM-DD)",
            "cuisine": "must be one of ITALIAN, GERMAN",
            "days": "must not name an option twice",
            "unknown_key": "is not a defined field",
        }
        assert stored(db, fields) == {"seats": 10}

    @pytest.mark.parametrize(("key", "value", "message"), [
        ("seats", 1.5, "must be an integer"),
        ("seats", True, "must be an integer"),
        ("seats", -1, "must be at least 0"),
        ("seats", 10**20, "must be an integer"),
        ("opened", "1.4.1998", "must be a date (YYYY-MM-DD)"),
        ("opened", "yesterday", "must be a date (YYYY-MM-DD)"),
        ("opened", "2023-02-29", "must be a date (YYYY-MM-DD)"),
        ("opened", 19980401, "must be a date (YYYY-MM-DD)"),
        ("notes", "# heading", "must match the pattern ^[^#]*$"),
        ("notes", 5, "must be a string"),
        ("cuisine", ["ITALIAN"], "must be one of ITALIAN, GERMAN"),
        ("days", "MON", "must be an array of options"),
        ("days", ["SUN"], "every element must be one of MON, TUE, WED"),
        ("terrace", 1, "must be true or false"),
    ])
    def test_value_of_the_wrong_kind(self, client, auth, db, fields, key, value, message):
        r = self._patch(client, auth("admin"), fields, {key: value})
        assert assert_problem(r, 422)["errors"] == [{"field": key, "message": message}]
        assert stored(db, fields) == {}

    def test_leap_day_is_a_date(self, client, auth, fields):
        assert self._patch(client, auth("admin"), fields, {"opened": "2024-02-29"}).status_code == 200

    def test_sql_metacharacters_are_stored_as_they_are(self, client, auth, db):
        h = auth("admin")
        define(client, h, "notes", "TEXT")
        c = create_customer(client, h)
        nasty = "'; drop table customer; -- 100% _x_ \\ \" $$"
        assert self._patch(client, h, c, {"notes": nasty}).status_code == 200
        assert stored(db, c) == {"notes": nasty}
        r = self._patch(client, h, c, {"x'); drop table customer; --": 1})
        assert assert_problem(r, 422)["errors"][0]["message"] == "is not a defined field"
        assert db.execute("select count(*) as n from customer").fetchone()["n"] == 1

    def test_required_field_cannot_be_unset_or_left_out(self, client, auth, db):
        h = auth("admin")
        define(client, h, "seats", "INTEGER")
        c = create_customer(client, h)
        define(client, h, "cuisine", "ENUM", options=["A"], required=True)  # no customer has values yet
        db.execute("update field_definition set required = false where key = 'cuisine'")
        self._patch(client, h, c, {"seats": 1})
        db.execute("update field_definition set required = true where key = 'cuisine'")
        r = self._patch(client, h, c, {"seats": 3})  # a customer from before the field was required
        assert assert_problem(r, 422)["errors"] == [{"field": "cuisine", "message": "is required"}]
        assert self._patch(client, h, c, {"seats": 3, "cuisine": "A"}).status_code == 200
        r = self._patch(client, h, c, {"cuisine": None})
        assert assert_problem(r, 422)["errors"] == [{"field": "cuisine", "message": "is required"}]

    def test_if_match_rules(self, client, auth, fields):
        h = auth("admin")
        assert_problem(client.patch(fields_url(fields), json={"seats": 1}, headers=h), 428)
        old = client.get(fields_url(fields), headers=h).headers["etag"]
        self._patch(client, h, fields, {"seats": 1}, old)
        assert_problem(self._patch(client, h, fields, {"seats": 2}, old), 412)
        customer_etag = client.get(f"/api/v1/customers/{fields['id']}", headers=h).headers["etag"]
        assert_problem(self._patch(client, h, fields, {"seats": 2}, customer_etag), 412)

    def test_empty_patch_is_400(self, client, auth, fields):
        assert_problem(self._patch(client, auth("admin"), fields, {}), 400)

    def test_chain_manager_writes_own_outlets_only(self, client, auth, db):
        h = auth("admin")
        define(client, h, "seats", "INTEGER")
        mine, other = create_chain(client, h, "Mine"), create_chain(client, h, "Other")
        own, foreign = create_customer(client, h, "K-1", chain_id=mine["id"]), create_customer(
            client, h, "K-2", chain_id=other["id"])
        manager = auth("chain_manager", chains=[mine["id"]])
        assert self._patch(client, manager, own, {"seats": 5}).status_code == 200
        etag = client.get(fields_url(foreign), headers=h).headers["etag"]
        assert_problem(self._patch(client, manager, foreign, {"seats": 5}, etag), 404)
        assert stored(db, foreign) == {}

    def test_integration_role_cannot_write(self, client, auth, fields):
        etag = client.get(fields_url(fields), headers=auth("admin")).headers["etag"]
        assert_problem(self._patch(client, auth("integration"), fields, {"seats": 1}, etag), 403)

    def test_write_emits_a_customer_event(self, client, auth, db, fields):
        h = {**auth("admin", sub="anna"), "X-Correlation-ID": "fields-1"}
        self._patch(client, h, fields, {"seats": 7})
        event = db.execute("select type, payload, correlation_id, actor from outbox order by position desc limit 1"
                           ).fetchone()
        assert event["type"] == "customer.updated" and event["payload"]["fields"] == {"seats": 7}
        assert (event["correlation_id"], event["actor"]) == ("fields-1", "anna")
