"""Malformed and hostile requests: each gets a problem response and changes nothing.

Every refusal is checked for its status, ``application/problem+json``, the problem fields
(``type``, ``title``, ``status``, ``detail``, ``instance``, ``correlation_id`` and, for validation
errors, ``errors: [{field, message}]``), the echoed ``X-Correlation-ID``, and — by counting and
reading rows in PostgreSQL — that nothing was stored or changed (outbox included).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from psycopg import sql

CUSTOMERS = "/api/v1/customers"
CHAINS = "/api/v1/chains"
CONTACTS = "/api/v1/contacts"
TABLES = ("chain", "customer", "contact", "outbox", "idempotency_key")
UUID_LENGTH = 36
SQL_INJECTION = "'; drop table customer; --"


# --- helpers ------------------------------------------------------------------------------------


def assert_problem(response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    for name in ("type", "title", "detail", "instance", "correlation_id"):
        assert isinstance(body.get(name), str) and body[name], f"problem without {name}: {body}"
    assert body["type"].startswith("/problems/")
    assert body["instance"] == response.request.url.path
    assert response.headers["x-correlation-id"] == body["correlation_id"]
    assert "Traceback" not in response.text and "psycopg" not in response.text
    if type_ is not None:
        assert body["type"] == type_
    return body


def assert_field_errors(body: dict[str, Any], *fields: str) -> list[dict[str, str]]:
    """The problem lists ``{field, message}`` errors naming each of ``fields``."""
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, body
    for error in errors:
        assert set(error) == {"field", "message"}, error
        assert isinstance(error["field"], str) and isinstance(error["message"], str) and error["message"]
    named = {e["field"] for e in errors}
    for field in fields:
        assert field in named, f"{field} not in {named}"
    return errors


def assert_bad_request(response, *fields: str, type_: str | None = None) -> dict[str, Any]:
    body = assert_problem(response, 400, type_)
    if fields:
        assert_field_errors(body, *fields)
    return body


def counts(db) -> dict[str, int]:
    query = sql.SQL("select count(*) as n from {}")
    return {t: db.execute(query.format(sql.Identifier(t))).fetchone()["n"] for t in TABLES}


def snapshot(db) -> dict[str, Any]:
    """Every row of every domain table, and the outbox size: equal snapshots mean nothing changed."""
    return {
        "chain": db.execute("select * from chain order by id").fetchall(),
        "customer": db.execute("select * from customer order by id").fetchall(),
        "contact": db.execute("select * from contact order by id").fetchall(),
        "outbox": db.execute("select count(*) as n from outbox").fetchone()["n"],
        "idempotency_key": db.execute("select count(*) as n from idempotency_key").fetchone()["n"],
    }


def valid_customer(**overrides: Any) -> dict[str, Any]:
    body = {
        "customer_number": "K-100234",
        "name": "Gasthaus Zur Linde",
        "type": "RESTAURANT",
        "status": "ACTIVE",
        "owner": "rep-1",
        "address": {"street": "Hauptstraße 1", "postal_code": "10115", "city": "Berlin", "country": "DE"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def admin(auth) -> dict[str, str]:
    return auth("admin")


@pytest.fixture
def existing(client, db, admin) -> dict[str, Any]:
    """One chain, one customer of it and one contact, created through the API."""
    chain = client.post(CHAINS, json={"name": "Alpha Burger"}, headers=admin)
    assert chain.status_code == 201, chain.text
    customer = client.post(CUSTOMERS, json=valid_customer(chain_id=chain.json()["id"]), headers=admin)
    assert customer.status_code == 201, customer.text
    contact = client.post(f"{CUSTOMERS}/{customer.json()['id']}/contacts", json={"last_name": "Albers"}, headers=admin)
    assert contact.status_code == 201, contact.text
    return {"chain": chain.json(), "customer": customer.json(), "contact": contact.json()}


# --- bodies -------------------------------------------------------------------------------------


class TestInvalidJson:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"customer_number": "K-1", "name": ',
            b"{customer_number: 'K-1'}",
            b'{"customer_number": "K-1", "name": "X", "type": "HOTEL"} trailing',
            b'{"customer_number": "K-1",}',
            b"'K-1'",
            b"\xef\xbb\xbf{}",  # a byte order mark
            b"{" * 1000,
        ],
        ids=["truncated", "unquoted", "trailing-garbage", "trailing-comma", "single-quotes", "bom", "unclosed"],
    )
    def test_syntax_errors(self, client, db, admin, raw):
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_deeply_nested_json(self, client, db, admin):
        raw = b"[" * 100_000 + b"]" * 100_000
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize("depth", [100, 900, 990])
    @pytest.mark.parametrize("where", ["name", "junk", "address"])
    def test_nested_value_in_a_field(self, client, db, admin, existing, depth, where):
        before = snapshot(db)
        deep = "[" * depth + "]" * depth
        for path in (CUSTOMERS, f"{CUSTOMERS}/{existing['customer']['id']}/contacts"):
            raw = f'{{"customer_number": "K-9", "type": "HOTEL", "last_name": "X", "name": "N", "{where}": {deep}}}'
            response = client.post(path, content=raw.encode(), headers={**admin, "Content-Type": "application/json"})
            assert_bad_request(response)
        assert snapshot(db) == before

    @pytest.mark.parametrize("raw", [b"null", b"[]", b'"a string"', b"42", b"true"])
    def test_body_is_not_an_object(self, client, db, admin, raw):
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_empty_body(self, client, db, admin):
        response = client.post(CUSTOMERS, content=b"", headers={**admin, "Content-Type": "application/json"})
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_invalid_json_in_a_patch_changes_nothing(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            content=b'{"name": "Neu"',
            headers={**admin, "If-Match": customer["etag"], "Content-Type": "application/merge-patch+json"},
        )
        assert_bad_request(response)
        assert snapshot(db) == before


class TestNonUtf8Bodies:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"customer_number": "K-1", "name": "Caf\xe9", "type": "HOTEL"}',  # Latin-1 é
            b'{"customer_number": "K-1", "name": "\xff\xfe", "type": "HOTEL"}',
            b'{"customer_number": "K-1", "name": "\xed\xa0\x80", "type": "HOTEL"}',  # encoded surrogate
            b'{"customer_number": "K-1", "name": "\xc3", "type": "HOTEL"}',  # truncated sequence
        ],
        ids=["latin-1", "invalid-bytes", "surrogate", "truncated"],
    )
    def test_invalid_utf8(self, client, db, admin, raw):
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        body = assert_bad_request(response)
        assert "utf-8" in body["detail"].lower()
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_utf16_body(self, client, db, admin):
        raw = json.dumps(valid_customer()).encode("utf-16")
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize("charset", ["latin-1", "iso-8859-15", "no-such-charset"])
    def test_declared_charset_does_not_make_other_bytes_acceptable(self, client, db, admin, charset):
        """JSON is UTF-8 (RFC 8259): a charset parameter does not change how the body is read."""
        raw = json.dumps(valid_customer(name="Café"), ensure_ascii=False).encode("latin-1")
        response = client.post(
            CUSTOMERS, content=raw, headers={**admin, "Content-Type": f"application/json;charset={charset}"}
        )
        assert "utf-8" in assert_bad_request(response)["detail"].lower()
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "latin-1", "no-such-charset"])
    def test_utf8_body_is_read_as_utf8_whatever_the_charset(self, client, db, admin, charset):
        raw = json.dumps(valid_customer(name="Café Größe"), ensure_ascii=False).encode()
        response = client.post(
            CUSTOMERS, content=raw, headers={**admin, "Content-Type": f"application/json;charset={charset}"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "Café Größe"
        assert db.execute("select name from customer").fetchone()["name"] == "Café Größe"

    @pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83d"], ids=["high", "low", "trailing-high"])
    def test_lone_surrogate_escape(self, client, db, admin, escape):
        """``"\\ud800"`` is valid JSON syntax but no Unicode text: refused, not a 500."""
        raw = b'{"customer_number": "K-1", "type": "HOTEL", "name": "' + escape.encode() + b'"}'
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        assert_problem(response, response.status_code)
        assert counts(db) == dict.fromkeys(TABLES, 0)


class TestWrongContentType:
    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
    )
    def test_create_with_another_media_type(self, client, db, admin, content_type):
        raw = json.dumps(valid_customer()).encode()
        response = client.post(CUSTOMERS, content=raw, headers={**admin, "Content-Type": content_type})
        body = assert_problem(response, 415, "/problems/unsupported-media-type")
        assert "application/json" in body["detail"]
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_patch_with_text_plain(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            content=b'{"name": "Neu"}',
            headers={**admin, "If-Match": customer["etag"], "Content-Type": "text/plain"},
        )
        assert_problem(response, 415)
        assert snapshot(db) == before

    def test_merge_patch_media_type_is_accepted(self, client, db, admin, existing):
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            content=b'{"name": "Neu"}',
            headers={**admin, "If-Match": customer["etag"], "Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 200, response.text
        assert db.execute("select name from customer").fetchone()["name"] == "Neu"


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("override", "field"),
        [
            ({"name": 123}, "name"),
            ({"name": None}, "name"),
            ({"name": ["Gasthaus"]}, "name"),
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"customer_number": 100234}, "customer_number"),
            ({"customer_number": "k 1"}, "customer_number"),
            ({"type": "restaurant"}, "type"),
            ({"type": "BAR"}, "type"),
            ({"status": ["ACTIVE"]}, "status"),
            ({"chain_id": "not-a-uuid"}, "chain_id"),
            ({"chain_id": 7}, "chain_id"),
            ({"owner": True}, "owner"),
            ({"owner": ""}, "owner"),
            ({"address": "Hauptstraße 1, Berlin"}, "address"),
            ({"address": {"country": "de"}}, "address.country"),
            ({"address": {"country": "DEU"}}, "address.country"),
            ({"address": {"postal_code": 10115}}, "address.postal_code"),
        ],
    )
    def test_customer_create(self, client, db, admin, override, field):
        response = client.post(CUSTOMERS, json=valid_customer(**override), headers=admin)
        assert_bad_request(response, field, type_="/problems/validation-error")
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize("missing", ["customer_number", "name", "type"])
    def test_required_field_missing(self, client, db, admin, missing):
        body = valid_customer()
        del body[missing]
        assert_bad_request(client.post(CUSTOMERS, json=body, headers=admin), missing)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_every_wrong_field_is_listed(self, client, db, admin):
        body = valid_customer(name=1, type="BAR", owner=False)
        assert_bad_request(client.post(CUSTOMERS, json=body, headers=admin), "name", "type", "owner")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"last_name": 5}, "last_name"),
            ({"last_name": "X", "email": "not-an-email"}, "email"),
            ({"last_name": "X", "phone": "call me"}, "phone"),
            ({"last_name": "X", "job_role": "COOK"}, "job_role"),
        ],
    )
    def test_contact_create(self, client, db, admin, existing, body, field):
        before = snapshot(db)
        response = client.post(f"{CUSTOMERS}/{existing['customer']['id']}/contacts", json=body, headers=admin)
        assert_bad_request(response, field)
        assert snapshot(db) == before

    @pytest.mark.parametrize(("patch", "field"), [({"name": 5}, "name"), ({"status": "DELETED"}, "status")])
    def test_customer_patch(self, client, db, admin, existing, patch, field):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json=patch, headers={**admin, "If-Match": customer["etag"]}
        )
        assert_bad_request(response, field)
        assert snapshot(db) == before

    def test_empty_patch(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={}, headers={**admin, "If-Match": customer["etag"]}
        )
        assert_bad_request(response)
        assert snapshot(db) == before


class TestUnknownFields:
    @pytest.mark.parametrize(
        ("override", "field"),
        [
            ({"colour": "blue"}, None),
            ({"id": str(uuid.uuid4())}, None),
            ({"etag": '"abc"'}, None),
            ({"created_at": "2024-01-01T00:00:00Z"}, None),
            ({"address": {"street": "Hauptstraße 1", "floor": 3}}, "address"),
        ],
        ids=["unknown", "id", "etag", "created_at", "nested"],
    )
    def test_customer_create(self, client, db, admin, override, field):
        response = client.post(CUSTOMERS, json=valid_customer(**override), headers=admin)
        body = assert_bad_request(response)
        errors = assert_field_errors(body)
        name = next(iter(override)) if field is None else "floor"
        assert any(name in e["message"] for e in errors), errors
        if field:
            assert field in {e["field"] for e in errors}
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_chain_create(self, client, db, admin):
        response = client.post(CHAINS, json={"name": "Alpha", "website": "https://example.test"}, headers=admin)
        assert_bad_request(response)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_contact_create(self, client, db, admin, existing):
        before = snapshot(db)
        response = client.post(
            f"{CUSTOMERS}/{existing['customer']['id']}/contacts",
            json={"last_name": "Albers", "birthday": "1970-01-01"},
            headers=admin,
        )
        assert_bad_request(response)
        assert snapshot(db) == before

    def test_contact_patch(self, client, db, admin, existing):
        before = snapshot(db)
        contact = existing["contact"]
        response = client.patch(
            f"{CONTACTS}/{contact['id']}", json={"customer_id": str(uuid.uuid4())},
            headers={**admin, "If-Match": contact["etag"]},
        )
        assert_bad_request(response)
        assert snapshot(db) == before

    def test_customer_number_is_immutable(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            json={"customer_number": "K-999999"},
            headers={**admin, "If-Match": customer["etag"]},
        )
        body = assert_bad_request(response)
        assert any("customer_number" in e["message"] for e in assert_field_errors(body))
        assert snapshot(db) == before
        assert db.execute("select customer_number from customer").fetchone()["customer_number"] == "K-100234"


class TestUnknownQueryParameters:
    @pytest.mark.parametrize(
        ("path", "query", "name"),
        [
            (CUSTOMERS, {"colour": "blue"}, "colour"),
            (CUSTOMERS, {"Limit": "5"}, "Limit"),
            (CUSTOMERS, {"sort": "name"}, "sort"),
            (CUSTOMERS, {"name": "Linde"}, "name"),
            (CHAINS, {"status": "ACTIVE"}, "status"),
        ],
    )
    def test_lists(self, client, db, admin, path, query, name):
        assert_bad_request(client.get(path, params=query, headers=admin), name)

    def test_unknown_parameter_on_a_create_changes_nothing(self, client, db, admin):
        response = client.post(CUSTOMERS, params={"dry_run": "true"}, json=valid_customer(), headers=admin)
        assert_bad_request(response, "dry_run")
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_single_resource_and_contacts(self, client, db, admin, existing):
        customer_id = existing["customer"]["id"]
        assert_bad_request(client.get(f"{CUSTOMERS}/{customer_id}", params={"expand": "contacts"}, headers=admin),
                           "expand")
        assert_bad_request(client.get(f"{CUSTOMERS}/{customer_id}/contacts", params={"q": "Al"}, headers=admin), "q")


class TestOverlongStrings:
    @pytest.mark.parametrize(
        ("override", "field"),
        [
            ({"name": "N" * 201}, "name"),
            ({"owner": "o" * 101}, "owner"),
            ({"address": {"street": "s" * 201}}, "address.street"),
            ({"address": {"postal_code": "1" * 21}}, "address.postal_code"),
            ({"address": {"city": "c" * 101}}, "address.city"),
        ],
    )
    def test_customer_create(self, client, db, admin, override, field):
        body = assert_bad_request(client.post(CUSTOMERS, json=valid_customer(**override), headers=admin), field)
        assert "too long" in " ".join(e["message"] for e in body["errors"])
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_customer_number(self, client, db, admin):
        response = client.post(CUSTOMERS, json=valid_customer(customer_number="K" + "1" * 32), headers=admin)
        assert_bad_request(response, "customer_number")
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_longest_allowed_name_is_stored(self, client, db, admin):
        response = client.post(CUSTOMERS, json=valid_customer(name="N" * 200), headers=admin)
        assert response.status_code == 201, response.text
        assert db.execute("select char_length(name) as n from customer").fetchone()["n"] == 200

    def test_length_counts_characters_not_bytes(self, client, db, admin):
        response = client.post(CUSTOMERS, json=valid_customer(name="ü" * 200), headers=admin)
        assert response.status_code == 201, response.text
        assert_bad_request(client.post(CUSTOMERS, json=valid_customer(customer_number="K-2", name="ü" * 201),
                                       headers=admin), "name")
        assert counts(db)["customer"] == 1

    def test_megabyte_name(self, client, db, admin):
        assert_bad_request(client.post(CUSTOMERS, json=valid_customer(name="N" * 1_000_000), headers=admin), "name")
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize(
        ("body", "field"),
        [({"name": "C" * 201}, "name"), ({"name": "Alpha", "description": "d" * 501}, "description")],
    )
    def test_chain_create(self, client, db, admin, body, field):
        assert_bad_request(client.post(CHAINS, json=body, headers=admin), field)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"last_name": "L" * 101}, "last_name"),
            ({"last_name": "L", "first_name": "F" * 101}, "first_name"),
            ({"last_name": "L", "email": "a" * 250 + "@x.de"}, "email"),
        ],
    )
    def test_contact_create(self, client, db, admin, existing, body, field):
        before = snapshot(db)
        response = client.post(f"{CUSTOMERS}/{existing['customer']['id']}/contacts", json=body, headers=admin)
        assert_bad_request(response, field)
        assert snapshot(db) == before

    def test_customer_patch(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "N" * 201}, headers={**admin, "If-Match": customer["etag"]}
        )
        assert_bad_request(response, "name")
        assert snapshot(db) == before

    @pytest.mark.parametrize(
        ("path", "query", "field"),
        [
            (CUSTOMERS, {"q": "q" * 101}, "q"),
            (CUSTOMERS, {"owner": "o" * 101}, "owner"),
            (CHAINS, {"q": "q" * 101}, "q"),
            (CUSTOMERS, {"cursor": "c" * 1001}, "cursor"),
        ],
    )
    def test_query_parameters(self, client, admin, path, query, field):
        assert_bad_request(client.get(path, params=query, headers=admin), field)

    def test_idempotency_key(self, client, db, admin):
        response = client.post(CUSTOMERS, json=valid_customer(), headers={**admin, "Idempotency-Key": "k" * 201})
        assert_bad_request(response, "Idempotency-Key")
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_if_match(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "Neu"}, headers={**admin, "If-Match": '"' + "e" * 250 + '"'}
        )
        assert_bad_request(response, "If-Match")
        assert snapshot(db) == before


class TestNulCharacters:
    @pytest.mark.parametrize(
        "override",
        [
            {"name": "Gast\u0000haus"},
            {"owner": "rep\u0000"},
            {"address": {"street": "\u0000", "city": "Berlin"}},
            {"address": {"city": "Ber\u0000lin"}},
        ],
        ids=["name", "owner", "street", "city"],
    )
    def test_customer_create(self, client, db, admin, override):
        response = client.post(CUSTOMERS, json=valid_customer(**override), headers=admin)
        body = assert_problem(response, 400)
        field = next(iter(override))
        if isinstance(override[field], dict):
            field += "." + next(k for k, v in override[field].items() if "\u0000" in v)
        assert body["errors"] == [{"field": field, "message": "must not contain the NUL character"}]
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_customer_create_with_idempotency_key(self, client, db, admin):
        response = client.post(
            CUSTOMERS, json=valid_customer(name="A\u0000B"), headers={**admin, "Idempotency-Key": "nul-1"}
        )
        assert 400 <= response.status_code < 500, response.text
        assert_problem(response, response.status_code)
        assert counts(db) == dict.fromkeys(TABLES, 0)

    def test_customer_patch(self, client, db, admin, existing):
        before = snapshot(db)
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "Neu\u0000"}, headers={**admin, "If-Match": customer["etag"]}
        )
        assert 400 <= response.status_code < 500, response.text
        assert_problem(response, response.status_code)
        assert snapshot(db) == before

    def test_chain_and_contact(self, client, db, admin, existing):
        before = snapshot(db)
        for path, body in [
            (CHAINS, {"name": "Al\u0000pha"}),
            (CHAINS, {"name": "Beta", "description": "\u0000"}),
            (f"{CUSTOMERS}/{existing['customer']['id']}/contacts", {"last_name": "Al\u0000bers"}),
        ]:
            response = client.post(path, json=body, headers=admin)
            assert 400 <= response.status_code < 500, response.text
            assert_problem(response, response.status_code)
        assert snapshot(db) == before

    @pytest.mark.parametrize(("path", "name"), [(CUSTOMERS, "q"), (CUSTOMERS, "owner"), (CHAINS, "q")])
    def test_query_parameter(self, client, admin, existing, path, name):
        response = client.get(path, params={name: "Al\u0000pha"}, headers=admin)
        assert 400 <= response.status_code < 500, response.text
        assert_problem(response, response.status_code)


class TestSqlMetacharacters:
    def test_every_customer_text_field_is_stored_verbatim(self, client, db, admin):
        body = valid_customer(
            name=SQL_INJECTION,
            owner="100%_\\ rep'--",
            address={"street": "O'Brien Str. 5; --", "postal_code": "%_\\'", "city": "Robert'); drop table chain;--"},
        )
        response = client.post(CUSTOMERS, json=body, headers=admin)
        assert response.status_code == 201, response.text
        created = response.json()
        for name in ("name", "owner"):
            assert created[name] == body[name]
        assert {k: created["address"][k] for k in ("street", "postal_code", "city")} == body["address"]

        row = db.execute("select * from customer").fetchone()
        assert (row["name"], row["owner"]) == (body["name"], body["owner"])
        assert (row["street"], row["postal_code"], row["city"]) == tuple(body["address"].values())

        fetched = client.get(f"{CUSTOMERS}/{created['id']}", headers=admin).json()
        assert fetched["name"] == SQL_INJECTION and fetched["address"] == created["address"]
        # the tables are all still there
        assert counts(db) == {"chain": 0, "customer": 1, "contact": 0, "outbox": 1, "idempotency_key": 0}

    def test_patch_with_metacharacters(self, client, db, admin, existing):
        customer = existing["customer"]
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            json={"name": "%", "owner": "_", "address": {"city": "\\"}},
            headers={**admin, "If-Match": customer["etag"]},
        )
        assert response.status_code == 200, response.text
        row = db.execute("select name, owner, city, street from customer").fetchone()
        assert row == {"name": "%", "owner": "_", "city": "\\", "street": "Hauptstraße 1"}

    def test_chain_and_contact_text_fields(self, client, db, admin):
        chain = client.post(CHAINS, json={"name": SQL_INJECTION, "description": "50% off_\\"}, headers=admin)
        assert chain.status_code == 201, chain.text
        assert chain.json()["description"] == "50% off_\\"
        customer = client.post(CUSTOMERS, json=valid_customer(chain_id=chain.json()["id"]), headers=admin).json()
        contact = client.post(
            f"{CUSTOMERS}/{customer['id']}/contacts",
            json={"first_name": "%_\\", "last_name": "O'Reilly\"; --"},
            headers=admin,
        )
        assert contact.status_code == 201, contact.text
        assert db.execute("select name, description from chain").fetchone() == {
            "name": SQL_INJECTION, "description": "50% off_\\"
        }
        assert db.execute("select first_name, last_name from contact").fetchone() == {
            "first_name": "%_\\", "last_name": "O'Reilly\"; --"
        }

    @pytest.fixture
    def names(self, client, admin) -> None:
        for number, name in [
            ("K-1", "100% Bio"), ("K-2", "Plain Kitchen"), ("K-3", "snake_case Bistro"),
            ("K-4", "Back\\slash Bar"), ("K-5", "O'Brien's Pub"), ("K-6", "Percent Free"),
        ]:
            response = client.post(CUSTOMERS, json=valid_customer(customer_number=number, name=name), headers=admin)
            assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("%", ["100% Bio"]),
            ("_", ["snake_case Bistro"]),
            ("\\", ["Back\\slash Bar"]),
            ("'", ["O'Brien's Pub"]),
            ("%%", []),
            ("a_e", []),
            ("1_0", []),
            (SQL_INJECTION, []),
            ("' or '1'='1", []),
        ],
    )
    def test_search_is_literal(self, client, db, admin, names, q, expected):
        response = client.get(CUSTOMERS, params={"q": q}, headers=admin)
        assert response.status_code == 200, response.text
        assert [c["name"] for c in response.json()["items"]] == expected
        assert counts(db)["customer"] == 6

    def test_owner_filter_is_literal(self, client, db, admin):
        for number, owner in [("K-1", "a%"), ("K-2", "ab"), ("K-3", "a_")]:
            client.post(CUSTOMERS, json=valid_customer(customer_number=number, owner=owner), headers=admin)
        for owner in ("a%", "a_"):
            items = client.get(CUSTOMERS, params={"owner": owner}, headers=admin).json()["items"]
            assert [c["owner"] for c in items] == [owner]

    def test_chain_search_is_literal(self, client, admin):
        for name in ("50% Pizza", "Pizza Plus", "Under_score"):
            assert client.post(CHAINS, json={"name": name}, headers=admin).status_code == 201
        assert [c["name"] for c in client.get(CHAINS, params={"q": "%"}, headers=admin).json()["items"]] == [
            "50% Pizza"
        ]
        assert [c["name"] for c in client.get(CHAINS, params={"q": "_"}, headers=admin).json()["items"]] == [
            "Under_score"
        ]


BAD_IDS = (
    "not-a-uuid",
    "123",
    "1 or 1=1",
    SQL_INJECTION,
    "00000000-0000-0000-0000-00000000000g",
    "0000000000000000000000000000000000000",
)


class TestIdsThatAreNotUuids:
    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_customer_paths(self, client, db, admin, existing, bad):
        before = snapshot(db)
        headers = {**admin, "If-Match": existing["customer"]["etag"]}
        assert_bad_request(client.get(f"{CUSTOMERS}/{bad}", headers=admin), "customer_id")
        assert_bad_request(client.patch(f"{CUSTOMERS}/{bad}", json={"name": "X"}, headers=headers), "customer_id")
        assert_bad_request(client.delete(f"{CUSTOMERS}/{bad}", headers=headers), "customer_id")
        assert_bad_request(client.get(f"{CUSTOMERS}/{bad}/contacts", headers=admin), "customer_id")
        assert_bad_request(client.post(f"{CUSTOMERS}/{bad}/contacts", json={"last_name": "X"}, headers=admin),
                           "customer_id")
        assert snapshot(db) == before

    @pytest.mark.parametrize("bad", BAD_IDS[:3])
    def test_chain_and_contact_paths(self, client, db, admin, existing, bad):
        before = snapshot(db)
        assert_bad_request(client.get(f"{CHAINS}/{bad}", headers=admin), "chain_id")
        assert_bad_request(client.delete(f"{CHAINS}/{bad}", headers={**admin, "If-Match": "*"}), "chain_id")
        assert_bad_request(client.get(f"{CONTACTS}/{bad}", headers=admin), "contact_id")
        assert_bad_request(
            client.patch(f"{CONTACTS}/{bad}", json={"last_name": "X"}, headers={**admin, "If-Match": "*"}),
            "contact_id",
        )
        assert snapshot(db) == before

    def test_chain_id_query_parameter(self, client, admin):
        assert_bad_request(client.get(CUSTOMERS, params={"chain_id": "abc"}, headers=admin), "chain_id")

    def test_unknown_but_well_formed_id_is_not_found(self, client, admin):
        assert_problem(client.get(f"{CUSTOMERS}/{uuid.uuid4()}", headers=admin), 404, "/problems/not-found")

    def test_chain_id_in_a_body_that_does_not_exist(self, client, db, admin):
        response = client.post(CUSTOMERS, json=valid_customer(chain_id=str(uuid.uuid4())), headers=admin)
        body = assert_problem(response, 422)
        assert_field_errors(body, "chain_id")
        assert counts(db) == dict.fromkeys(TABLES, 0)


class TestPagingParameters:
    @pytest.mark.parametrize("limit", ["0", "201", "abc", "-1", "1.5", "", "1e2", "99999999999999999999999"])
    def test_invalid_limit(self, client, admin, limit):
        assert_bad_request(client.get(CUSTOMERS, params={"limit": limit}, headers=admin), "limit")

    @pytest.mark.parametrize("path", [CHAINS, CUSTOMERS])
    def test_limit_bounds_are_accepted(self, client, admin, path):
        for limit in ("1", "200"):
            assert client.get(path, params={"limit": limit}, headers=admin).status_code == 200

    @pytest.mark.parametrize(
        ("name", "value"),
        [("status", "active"), ("status", "DELETED"), ("type", "PUB"), ("updated_since", "yesterday"),
         ("updated_since", "2024-13-45T00:00:00Z"), ("q", ""), ("owner", "")],
    )
    def test_invalid_filters(self, client, admin, name, value):
        assert_bad_request(client.get(CUSTOMERS, params={name: value}, headers=admin), name)


class TestCursors:
    @pytest.fixture
    def customers(self, client, admin) -> None:
        for i in range(5):
            for status in ("ACTIVE", "LEAD"):
                response = client.post(
                    CUSTOMERS,
                    json=valid_customer(customer_number=f"K-{status[0]}{i}", name=f"{status} {i}", status=status),
                    headers=admin,
                )
                assert response.status_code == 201, response.text

    def _cursor(self, client, admin, **params: str) -> str:
        response = client.get(CUSTOMERS, params={"limit": "2", **params}, headers=admin)
        assert response.status_code == 200, response.text
        cursor = response.json()["next_cursor"]
        assert cursor
        return cursor

    def test_cursor_continues_with_the_same_filters(self, client, admin, customers):
        cursor = self._cursor(client, admin, status="ACTIVE")
        response = client.get(CUSTOMERS, params={"limit": "2", "status": "ACTIVE", "cursor": cursor}, headers=admin)
        assert [c["name"] for c in response.json()["items"]] == ["ACTIVE 2", "ACTIVE 3"]

    @pytest.mark.parametrize(
        "other",
        [{"status": "LEAD"}, {}, {"status": "ACTIVE", "q": "ACTIVE"}, {"status": "ACTIVE", "type": "RESTAURANT"}],
        ids=["other-status", "filter-dropped", "filter-added", "other-type"],
    )
    def test_cursor_made_for_other_filters(self, client, admin, customers, other):
        cursor = self._cursor(client, admin, status="ACTIVE")
        response = client.get(CUSTOMERS, params={"limit": "2", **other, "cursor": cursor}, headers=admin)
        body = assert_bad_request(response, "cursor", type_="/problems/invalid-cursor")
        assert "filters" in body["detail"]

    def test_cursor_of_another_list(self, client, admin, customers):
        for name in ("A", "B", "C"):
            client.post(CHAINS, json={"name": name}, headers=admin)
        chain_cursor = client.get(CHAINS, params={"limit": "1"}, headers=admin).json()["next_cursor"]
        assert chain_cursor
        assert_bad_request(client.get(CUSTOMERS, params={"cursor": chain_cursor}, headers=admin), "cursor",
                           type_="/problems/invalid-cursor")

    def test_cursor_of_another_customers_contacts(self, client, admin, existing):
        customer_id = existing["customer"]["id"]
        for last_name in ("B", "C"):
            client.post(f"{CUSTOMERS}/{customer_id}/contacts", json={"last_name": last_name}, headers=admin)
        cursor = client.get(f"{CUSTOMERS}/{customer_id}/contacts", params={"limit": "1"}, headers=admin).json()[
            "next_cursor"
        ]
        other = client.post(CUSTOMERS, json=valid_customer(customer_number="K-2"), headers=admin).json()
        response = client.get(f"{CUSTOMERS}/{other['id']}/contacts", params={"cursor": cursor}, headers=admin)
        assert_bad_request(response, "cursor", type_="/problems/invalid-cursor")

    def test_tampered_cursors(self, client, admin, customers):
        cursor = self._cursor(client, admin, status="ACTIVE")
        other = self._cursor(client, admin, status="LEAD")
        payload, _, signature = cursor.partition(".")
        flip = "A" if payload[5] != "A" else "B"
        tampered = [
            payload[:5] + flip + payload[6:] + "." + signature,
            payload + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B"),
            payload,
            payload + ".",
            "." + signature,
            cursor[:-4],
            cursor + "x",
            other.partition(".")[0] + "." + signature,
            "not-a-cursor",
            "é.ü",
            "%00",
            "eyJrIjogWyJ4Il0sICJmIjogIngifQ.AAAAAAAAAAAAAAAAAAAAAA",
        ]
        for bad in tampered:
            response = client.get(CUSTOMERS, params={"limit": "2", "status": "ACTIVE", "cursor": bad}, headers=admin)
            assert_bad_request(response, "cursor", type_="/problems/invalid-cursor")
        # a NUL character never reaches the cursor check: parameter validation refuses it first
        response = client.get(CUSTOMERS, params={"limit": "2", "status": "ACTIVE", "cursor": "\x00"}, headers=admin)
        assert_bad_request(response, "cursor")

    def test_forged_sort_key_is_refused(self, client, admin, customers):
        cursor = self._cursor(client, admin, status="ACTIVE")
        payload, _, signature = cursor.partition(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        data["k"] = ["' or 1=1 --", str(uuid.uuid4())]
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
        response = client.get(
            CUSTOMERS, params={"limit": "2", "status": "ACTIVE", "cursor": f"{forged}.{signature}"}, headers=admin
        )
        assert_bad_request(response, "cursor", type_="/problems/invalid-cursor")


class TestIfMatch:
    def test_missing_on_customer_patch(self, client, db, admin, existing):
        before = snapshot(db)
        response = client.patch(f"{CUSTOMERS}/{existing['customer']['id']}", json={"name": "Neu"}, headers=admin)
        body = assert_problem(response, 428, "/problems/if-match-required")
        assert "If-Match" in body["detail"]
        assert snapshot(db) == before

    def test_blank_if_match(self, client, db, admin, existing):
        before = snapshot(db)
        response = client.patch(
            f"{CUSTOMERS}/{existing['customer']['id']}", json={"name": "Neu"}, headers={**admin, "If-Match": " "}
        )
        assert_problem(response, 428)
        assert snapshot(db) == before

    def test_stale_on_customer_patch(self, client, db, admin, existing):
        customer = existing["customer"]
        first = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "Erste"}, headers={**admin, "If-Match": customer["etag"]}
        )
        assert first.status_code == 200
        before = snapshot(db)
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "Zweite"}, headers={**admin, "If-Match": customer["etag"]}
        )
        body = assert_problem(response, 412, "/problems/etag-mismatch")
        assert body["current_etag"] == first.headers["etag"] == first.json()["etag"]
        assert snapshot(db) == before
        assert db.execute("select name from customer").fetchone()["name"] == "Erste"

    @pytest.mark.parametrize(
        "tag", ['"0123"', "garbage", "W/{etag}", "{bare}"], ids=["other", "garbage", "weak", "unquoted"]
    )
    def test_non_matching_tags(self, client, db, admin, existing, tag):
        customer = existing["customer"]
        tag = tag.format(etag=customer["etag"], bare=customer["etag"].strip('"'))
        before = snapshot(db)
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}", json={"name": "Neu"}, headers={**admin, "If-Match": tag}
        )
        assert_problem(response, 412, "/problems/etag-mismatch")
        assert snapshot(db) == before

    def test_customer_archive(self, client, db, admin, existing):
        customer = existing["customer"]
        before = snapshot(db)
        assert_problem(client.delete(f"{CUSTOMERS}/{customer['id']}", headers=admin), 428)
        assert_problem(client.delete(f"{CUSTOMERS}/{customer['id']}", headers={**admin, "If-Match": '"stale"'}), 412)
        assert snapshot(db) == before
        assert db.execute("select status::text as s from customer").fetchone()["s"] == "ACTIVE"

    def test_chain_and_contact(self, client, db, admin, existing):
        chain, contact = existing["chain"], existing["contact"]
        before = snapshot(db)
        for method, path, body in [
            ("PATCH", f"{CHAINS}/{chain['id']}", {"name": "Neu"}),
            ("DELETE", f"{CHAINS}/{chain['id']}", None),
            ("PATCH", f"{CONTACTS}/{contact['id']}", {"last_name": "Neu"}),
            ("DELETE", f"{CONTACTS}/{contact['id']}", None),
        ]:
            assert_problem(client.request(method, path, json=body, headers=admin), 428)
            stale = client.request(method, path, json=body, headers={**admin, "If-Match": '"stale"'})
            assert_problem(stale, 412)
        assert snapshot(db) == before

    def test_if_match_is_checked_before_anything_else_is_written(self, client, db, admin, existing):
        """A stale tag refuses a change that would otherwise break a rule: 412, not 422, nothing stored."""
        customer = existing["customer"]
        before = snapshot(db)
        response = client.patch(
            f"{CUSTOMERS}/{customer['id']}",
            json={"chain_id": str(uuid.uuid4())},
            headers={**admin, "If-Match": '"stale"'},
        )
        assert_problem(response, 412)
        assert snapshot(db) == before


class TestCorrelationId:
    def test_valid_id_is_echoed(self, client, db, admin):
        cid = "req-2024.01:abc_DEF-123"
        response = client.post(CUSTOMERS, json=valid_customer(), headers={**admin, "X-Correlation-ID": cid})
        assert response.status_code == 201
        assert response.headers["x-correlation-id"] == cid
        assert db.execute("select correlation_id from outbox").fetchone()["correlation_id"] == cid

    def test_valid_id_is_echoed_on_errors(self, client, db, admin):
        cid = "c" * 128
        response = client.post(CUSTOMERS, json={"name": 1}, headers={**admin, "X-Correlation-ID": cid})
        body = assert_bad_request(response)
        assert body["correlation_id"] == response.headers["x-correlation-id"] == cid

    def test_id_is_echoed_on_401_and_404(self, client, admin):
        response = client.get(CUSTOMERS, headers={"X-Correlation-ID": "no-token-1"})
        assert assert_problem(response, 401)["correlation_id"] == "no-token-1"
        response = client.get(f"{CUSTOMERS}/{uuid.uuid4()}", headers={**admin, "X-Correlation-ID": "nf-1"})
        assert assert_problem(response, 404)["correlation_id"] == "nf-1"

    @pytest.mark.parametrize(
        "given",
        ["c" * 129, "x" * 200, "has spaces in it", "semi;colon", "slash/id", "quote\"d", "<script>"],
        ids=["129-chars", "200-chars", "spaces", "semicolon", "slash", "quote", "markup"],
    )
    def test_invalid_id_is_replaced(self, client, db, admin, given):
        response = client.post(CUSTOMERS, json={"name": 1}, headers={**admin, "X-Correlation-ID": given})
        body = assert_bad_request(response)
        replaced = response.headers["x-correlation-id"]
        assert replaced != given
        assert uuid.UUID(replaced) and len(replaced) == UUID_LENGTH
        assert body["correlation_id"] == replaced

    def test_non_ascii_id_is_replaced(self, client, admin):
        response = client.get(CUSTOMERS, headers=[*admin.items(), ("X-Correlation-ID", "Grüße".encode())])
        assert response.status_code == 200
        assert uuid.UUID(response.headers["x-correlation-id"])

    def test_generated_when_absent_and_unique(self, client, admin):
        ids = {client.get(CUSTOMERS, headers=admin).headers["x-correlation-id"] for _ in range(3)}
        assert len(ids) == 3
        assert all(uuid.UUID(i) for i in ids)

    def test_traceparent_trace_id_is_used(self, client, db, admin):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = client.post(
            CUSTOMERS, json=valid_customer(), headers={**admin, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
        )
        assert response.status_code == 201
        assert response.headers["x-correlation-id"] == trace
        assert db.execute("select correlation_id from outbox").fetchone()["correlation_id"] == trace

    def test_traceparent_on_an_error(self, client, admin):
        trace = "0af7651916cd43dd8448eb211c80319c"
        response = client.get(f"{CUSTOMERS}/nope", headers={**admin, "traceparent": f"00-{trace}-b7ad6b7169203331-01"})
        assert assert_bad_request(response)["correlation_id"] == trace

    def test_client_id_wins_over_traceparent(self, client, admin):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = client.get(
            CUSTOMERS,
            headers={**admin, "X-Correlation-ID": "mine-1", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        assert response.headers["x-correlation-id"] == "mine-1"

    def test_invalid_client_id_falls_back_to_traceparent(self, client, admin):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = client.get(
            CUSTOMERS,
            headers={**admin, "X-Correlation-ID": "not valid", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        assert response.headers["x-correlation-id"] == trace

    @pytest.mark.parametrize(
        "traceparent",
        [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id is invalid
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # 31 hex digits
            "00-4bf92f3577b34da6a3ce929d0e0e4736zz-00f067aa0ba902b7-01",
        ],
        ids=["garbage", "zero-trace", "short", "non-hex"],
    )
    def test_invalid_traceparent_is_ignored(self, client, admin, traceparent):
        response = client.get(CUSTOMERS, headers={**admin, "traceparent": traceparent})
        assert response.status_code == 200
        assert uuid.UUID(response.headers["x-correlation-id"])


class TestBodySize:
    def test_a_body_over_one_mebibyte_is_413_and_stores_nothing(self, client, db, admin):
        body = valid_customer(name="A" * 100) | {"address": {"street": "x" * (1024 * 1024)}}
        response = client.post(CUSTOMERS, json=body, headers=admin)
        assert_problem(response, 413)
        assert counts(db) == dict.fromkeys(TABLES, 0)
