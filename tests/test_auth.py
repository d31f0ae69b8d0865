"""Authentication, scopes and chain-scoped row access, end to end against the app on PostgreSQL.

* Bearer tokens: HS256 with ``JWT_SECRET`` (issuer/audience from the settings), and in production
  mode RS256/ES256 keys from a JWKS (``JWT_JWKS_URL``) served here by a local ``http.server``.
  Every defect answers 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` and a problem.
* Roles grant scopes; a ``scope`` claim narrows them; a missing scope answers 403.
* Chain managers see and change the rows of their own chains only (row-level security);
  rows outside their scope answer 404, and refused writes change nothing in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from psycopg import sql

import crm.auth
from crm.settings import get_settings

CUSTOMERS = "/api/v1/customers"
CHAINS = "/api/v1/chains"
CHALLENGE = 'Bearer error="invalid_token"'


# --- helpers ------------------------------------------------------------------------------------


def assert_problem(response, status: int, type_: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with every field the API promises, and the correlation id echoed."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    for name in ("type", "title", "detail", "instance", "correlation_id"):
        assert isinstance(body.get(name), str) and body[name], f"problem without {name}: {body}"
    assert body["instance"] == response.request.url.path
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    assert "Traceback" not in response.text
    if type_ is not None:
        assert body["type"] == type_
    return body


def assert_unauthorized(response) -> dict[str, Any]:
    body = assert_problem(response, 401, "/problems/unauthorized")
    assert response.headers["www-authenticate"] == CHALLENGE
    return body


def assert_forbidden(response) -> dict[str, Any]:
    body = assert_problem(response, 403)
    if body["type"] == "/problems/forbidden":  # refused by scope: say which (RFC 6750 §3.1)
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert body["required_scopes"]
    return body


def bearer(token: str | bytes) -> dict[str, str]:
    if isinstance(token, bytes):
        token = token.decode()
    return {"Authorization": f"Bearer {token}"}


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for an admin under the configured issuer and audience; ``None`` drops a claim."""
    settings = get_settings()
    now = int(time.time())
    base = {
        "sub": "tester",
        "roles": ["admin"],
        "chain_ids": [],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(secret: str | None = None, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret or get_settings().jwt_secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for tokens a library refuses to produce)."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{_b64(signature)}"


def hmac_token(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def counts(db) -> dict[str, int]:
    return {
        table: db.execute(sql.SQL("select count(*) as n from {}").format(sql.Identifier(table))).fetchone()["n"]
        for table in ("chain", "customer", "contact", "outbox")
    }


@pytest.fixture
def env_settings() -> Iterator[Any]:
    """Set environment variables for one test; settings and key caches are rebuilt and restored."""
    saved: dict[str, str | None] = {}

    def set_env(name: str, value: str | None) -> None:
        saved.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        get_settings.cache_clear()
        crm.auth._jwks_client.cache_clear()

    try:
        yield set_env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        crm.auth._jwks_client.cache_clear()


# --- health needs no token ----------------------------------------------------------------------


class TestHealthNeedsNoToken:
    @pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
    def test_probe_answers_without_a_token(self, client, path):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "UP"
        assert response.headers["x-correlation-id"]

    @pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
    def test_probe_ignores_a_garbled_token(self, client, path):
        response = client.get(path, headers=bearer("garbage"))
        assert response.status_code == 200, response.text


# --- HS256 tokens -------------------------------------------------------------------------------


class TestAcceptedTokens:
    def test_token_from_issue_token_is_accepted(self, client, auth):
        response = client.get(CUSTOMERS, headers=auth("admin"))
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}

    def test_default_issuer_and_audience(self, client, env_settings):
        env_settings("JWT_ISSUER", None)
        env_settings("JWT_AUDIENCE", None)
        assert (get_settings().jwt_issuer, get_settings().jwt_audience) == ("kundenmanagement", "kundenmanagement-api")
        token = hs_token(iss="kundenmanagement", aud="kundenmanagement-api")
        assert client.get(CUSTOMERS, headers=bearer(token)).status_code == 200

    def test_configured_issuer_and_audience_replace_the_defaults(self, client, env_settings):
        env_settings("JWT_ISSUER", "https://login.example.test/")
        env_settings("JWT_AUDIENCE", "crm-prod")
        token = hs_token(iss="https://login.example.test/", aud="crm-prod")
        assert client.get(CUSTOMERS, headers=bearer(token)).status_code == 200
        old = hs_token(iss="kundenmanagement", aud="kundenmanagement-api")
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(old)))

    def test_a_verified_token_is_not_reused_under_other_settings(self, client, env_settings):
        token = hs_token(iss="kundenmanagement", aud="kundenmanagement-api")
        assert client.get(CUSTOMERS, headers=bearer(token)).status_code == 200  # verified and remembered
        env_settings("JWT_ISSUER", "https://login.example.test/")
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(token)))

    def test_audience_list_containing_ours_is_accepted(self, client):
        token = hs_token(aud=["another-api", get_settings().jwt_audience])
        assert client.get(CUSTOMERS, headers=bearer(token)).status_code == 200

    def test_scheme_name_is_case_insensitive(self, client):
        response = client.get(CUSTOMERS, headers={"Authorization": f"bearer {hs_token()}"})
        assert response.status_code == 200, response.text

    def test_clock_skew_within_leeway_is_tolerated(self, client):
        now = int(time.time())
        token = hs_token(nbf=now + 10, iat=now, exp=now + 600)
        assert client.get(CUSTOMERS, headers=bearer(token)).status_code == 200


class TestRejectedTokens:
    def test_missing_authorization_header(self, client, db):
        body = assert_unauthorized(client.get(CUSTOMERS))
        assert "token" in body["detail"].lower()

    def test_body_and_challenge_of_a_401(self, client):
        response = client.get(CUSTOMERS, headers={**bearer("x.y.z"), "X-Correlation-ID": "auth-test-1"})
        body = assert_unauthorized(response)
        assert body["title"] == "Unauthorized"
        assert body["correlation_id"] == "auth-test-1"
        assert response.headers["x-correlation-id"] == "auth-test-1"
        assert body["instance"] == CUSTOMERS

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Token abc",
            "Bearer not-a-jwt",
            "Bearer a.b.c",
            "Bearer a.b",
            "Bearer ....",
            "Bearer " + "A" * 5000,
            "Bearer eyJhbGciOiJIUzI1NiJ9.W10.c2ln",  # payload is a JSON array
        ],
        ids=["empty", "blank", "basic", "other-scheme", "no-dots", "garbage-segments", "two-segments",
             "dots-only", "very-long", "array-payload"],
    )
    def test_garbled_authorization(self, client, header):
        assert_unauthorized(client.get(CUSTOMERS, headers={"Authorization": header}))

    def test_non_ascii_bytes_in_token(self, client):
        response = client.get(CUSTOMERS, headers=[(b"Authorization", b"Bearer \xc3\xa9t\xc3\xa9.\xff.\x00")])
        assert_unauthorized(response)

    def test_bad_signature(self, client):
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(secret="another-secret-" + "y" * 32))))

    def test_tampered_payload(self, client):
        header, _, signature = hs_token().split(".")
        forged = _b64(json.dumps(claims(roles=["admin"], sub="mallory")).encode())
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(f"{header}.{forged}.{signature}")))

    def test_expired(self, client):
        now = int(time.time())
        body = assert_unauthorized(
            client.get(CUSTOMERS, headers=bearer(hs_token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)))
        )
        assert "expired" in body["detail"].lower()

    def test_not_yet_valid(self, client):
        now = int(time.time())
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(nbf=now + 3600, exp=now + 7200))))

    @pytest.mark.parametrize(
        "override",
        [{"iss": "someone-else"}, {"aud": "another-api"}, {"aud": ["another-api", "third-api"]}],
        ids=["issuer", "audience", "audience-list"],
    )
    def test_wrong_issuer_or_audience(self, client, override):
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(**override))))

    @pytest.mark.parametrize("claim", ["sub", "exp", "iss", "aud"])
    def test_required_claim_missing(self, client, claim):
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(**{claim: None}))))

    @pytest.mark.parametrize("alg", ["none", "None", "NONE"])
    def test_alg_none(self, client, alg):
        token = raw_token({"alg": alg, "typ": "JWT"}, claims())
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(token)))

    def test_alg_none_with_a_copied_signature(self, client):
        signature = hs_token().split(".")[2]
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims()).encode())
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(f"{header}.{payload}.{signature}")))

    @pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
    def test_hs512_with_the_right_secret_is_refused(self, client):
        token = jwt.encode(claims(), get_settings().jwt_secret, algorithm="HS512")
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(token)))

    @pytest.mark.parametrize(
        "override",
        [
            {"roles": "admin"},
            {"roles": ["superuser"]},
            {"roles": ["admin", "root"]},
            {"sub": ""},
            {"sub": "x" * 201},
            {"sub": 42},
            {"chain_ids": "not-a-list"},
            {"chain_ids": ["not-a-uuid"]},
            {"scope": ["customers:read"]},
        ],
        ids=["roles-string", "unknown-role", "one-unknown-role", "empty-sub", "long-sub", "numeric-sub",
             "chain-ids-string", "chain-ids-not-uuid", "scope-list"],
    )
    def test_malformed_claims(self, client, override):
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(**override))))

    def test_rejected_token_changes_nothing(self, client, db):
        before = counts(db)
        response = client.post(
            CUSTOMERS,
            json={"customer_number": "K-1", "name": "Kantine", "type": "CANTEEN"},
            headers=bearer(hs_token(secret="wrong-secret-" + "z" * 32)),
        )
        assert_unauthorized(response)
        assert counts(db) == before


# --- roles and scopes ---------------------------------------------------------------------------


def _create_chain(client, auth, name: str) -> dict[str, Any]:
    response = client.post(CHAINS, json={"name": name}, headers=auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def _create_customer(client, auth, number: str, name: str, chain_id: str | None = None) -> dict[str, Any]:
    body = {"customer_number": number, "name": name, "type": "RESTAURANT", "chain_id": chain_id}
    response = client.post(CUSTOMERS, json=body, headers=auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def _create_contact(client, auth, customer_id: str, last_name: str) -> dict[str, Any]:
    response = client.post(f"{CUSTOMERS}/{customer_id}/contacts", json={"last_name": last_name}, headers=auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()


class TestRoleScopes:
    def test_sales_rep_cannot_create_a_chain(self, client, auth, db):
        response = client.post(CHAINS, json={"name": "Burger Palast"}, headers=auth("sales_rep"))
        body = assert_forbidden(response)
        assert "chains:write" in body["detail"]
        assert body["required_scopes"] == ["chains:write"]
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert counts(db) == {"chain": 0, "customer": 0, "contact": 0, "outbox": 0}

    def test_sales_rep_can_create_a_customer(self, client, auth, db):
        body = {"customer_number": "K-100", "name": "Gasthaus", "type": "RESTAURANT"}
        assert client.post(CUSTOMERS, json=body, headers=auth("sales_rep")).status_code == 201
        assert counts(db)["customer"] == 1

    def test_chain_manager_cannot_delete_a_customer(self, client, auth, db):
        chain = _create_chain(client, auth, "Pasta Kette")
        customer = _create_customer(client, auth, "K-200", "Pasta Mitte", chain["id"])
        manager = auth("chain_manager", chains=[chain["id"]])
        response = client.delete(f"{CUSTOMERS}/{customer['id']}", headers={**manager, "If-Match": customer["etag"]})
        body = assert_forbidden(response)
        assert "customers:delete" in body["detail"]
        row = db.execute("select status, version from customer where id = %s", (customer["id"],)).fetchone()
        assert row == {"status": "LEAD", "version": 1}

    def test_chain_manager_cannot_change_a_chain(self, client, auth, db):
        chain = _create_chain(client, auth, "Pasta Kette")
        manager = auth("chain_manager", chains=[chain["id"]])
        response = client.patch(
            f"{CHAINS}/{chain['id']}", json={"name": "Renamed"}, headers={**manager, "If-Match": chain["etag"]}
        )
        assert_forbidden(response)
        assert db.execute("select name from chain").fetchone()["name"] == "Pasta Kette"

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", CUSTOMERS, None),
            ("GET", CHAINS, None),
            ("POST", CUSTOMERS, {"customer_number": "K-1", "name": "X", "type": "HOTEL"}),
            ("POST", CHAINS, {"name": "X"}),
        ],
    )
    def test_integration_role_has_no_access_to_customers_or_chains(self, client, auth, db, method, path, body):
        response = client.request(method, path, json=body, headers=auth("integration"))
        assert_forbidden(response)
        assert counts(db) == {"chain": 0, "customer": 0, "contact": 0, "outbox": 0}

    def test_token_without_roles_is_forbidden(self, client, auth):
        assert_forbidden(client.get(CUSTOMERS, headers=bearer(hs_token(roles=[]))))

    def test_roles_combine(self, client, auth):
        headers = bearer(hs_token(roles=["integration", "sales_rep"]))
        assert client.get(CUSTOMERS, headers=headers).status_code == 200


class TestScopeClaimNarrowsRoles:
    def test_read_scope_cannot_create(self, client, auth, db):
        headers = auth("admin", scope="customers:read")
        assert client.get(CUSTOMERS, headers=headers).status_code == 200
        body = {"customer_number": "K-300", "name": "Hotel Post", "type": "HOTEL"}
        problem = assert_forbidden(client.post(CUSTOMERS, json=body, headers=headers))
        assert "customers:write" in problem["detail"]
        assert counts(db)["customer"] == 0

    def test_scope_limits_to_the_named_resources(self, client, auth):
        headers = auth("admin", scope="customers:read")
        assert_forbidden(client.get(CHAINS, headers=headers))

    def test_scope_cannot_widen_a_role(self, client, auth, db):
        headers = auth("sales_rep", scope="chains:write chains:read")
        assert_forbidden(client.post(CHAINS, json={"name": "Widened"}, headers=headers))
        assert client.get(CHAINS, headers=headers).status_code == 200
        assert counts(db)["chain"] == 0

    def test_several_scopes(self, client, auth, db):
        headers = auth("admin", scope="customers:read customers:write")
        body = {"customer_number": "K-301", "name": "Hotel Post", "type": "HOTEL"}
        assert client.post(CUSTOMERS, json=body, headers=headers).status_code == 201
        assert counts(db)["customer"] == 1


# --- chain scope (row-level security) -----------------------------------------------------------


@pytest.fixture
def two_chains(client, auth, db) -> dict[str, Any]:
    """Chains A and B, an outlet of each, an independent customer, one contact at each customer."""
    chain_a = _create_chain(client, auth, "Alpha Burger")
    chain_b = _create_chain(client, auth, "Beta Pizza")
    outlet_a = _create_customer(client, auth, "K-A1", "Alpha Burger Mitte", chain_a["id"])
    outlet_b = _create_customer(client, auth, "K-B1", "Beta Pizza Ost", chain_b["id"])
    independent = _create_customer(client, auth, "K-N1", "Gasthof Krone")
    return {
        "chain_a": chain_a,
        "chain_b": chain_b,
        "outlet_a": outlet_a,
        "outlet_b": outlet_b,
        "independent": independent,
        "contact_a": _create_contact(client, auth, outlet_a["id"], "Albers"),
        "contact_b": _create_contact(client, auth, outlet_b["id"], "Bauer"),
        "contact_n": _create_contact(client, auth, independent["id"], "Neumann"),
        "manager": auth("chain_manager", sub="manager-a", chains=[chain_a["id"]]),
    }


def _snapshot(db) -> dict[str, Any]:
    return {
        "customer": db.execute("select id, chain_id, name, status, version from customer order by id").fetchall(),
        "contact": db.execute("select id, last_name, version from contact order by id").fetchall(),
        "chain": db.execute("select id, name, version from chain order by id").fetchall(),
        "outbox": db.execute("select count(*) as n from outbox").fetchone()["n"],
    }


class TestChainScopedReads:
    def test_list_shows_own_chain_only(self, client, two_chains):
        response = client.get(CUSTOMERS, headers=two_chains["manager"])
        assert response.status_code == 200, response.text
        assert [c["id"] for c in response.json()["items"]] == [two_chains["outlet_a"]["id"]]

    def test_filter_by_foreign_chain_finds_nothing(self, client, two_chains):
        response = client.get(CUSTOMERS, params={"chain_id": two_chains["chain_b"]["id"]},
                              headers=two_chains["manager"])
        assert response.status_code == 200
        assert response.json()["items"] == []

    def test_own_outlet_is_readable(self, client, two_chains):
        response = client.get(f"{CUSTOMERS}/{two_chains['outlet_a']['id']}", headers=two_chains["manager"])
        assert response.status_code == 200
        assert response.json()["name"] == "Alpha Burger Mitte"

    @pytest.mark.parametrize("other", ["outlet_b", "independent"])
    def test_customer_outside_scope_is_not_found(self, client, two_chains, other):
        customer_id = two_chains[other]["id"]
        body = assert_problem(client.get(f"{CUSTOMERS}/{customer_id}", headers=two_chains["manager"]), 404)
        # the same answer as for an id that does not exist: existence does not leak
        missing = assert_problem(client.get(f"{CUSTOMERS}/{uuid.uuid4()}", headers=two_chains["manager"]), 404)
        assert body["type"] == missing["type"] == "/problems/not-found"

    @pytest.mark.parametrize(("other", "contact"), [("outlet_b", "contact_b"), ("independent", "contact_n")])
    def test_contacts_outside_scope_are_not_found(self, client, two_chains, other, contact):
        manager = two_chains["manager"]
        assert_problem(client.get(f"{CUSTOMERS}/{two_chains[other]['id']}/contacts", headers=manager), 404)
        assert_problem(client.get(f"/api/v1/contacts/{two_chains[contact]['id']}", headers=manager), 404)

    def test_own_contacts_are_readable(self, client, two_chains):
        manager = two_chains["manager"]
        response = client.get(f"{CUSTOMERS}/{two_chains['outlet_a']['id']}/contacts", headers=manager)
        assert [c["last_name"] for c in response.json()["items"]] == ["Albers"]
        assert client.get(f"/api/v1/contacts/{two_chains['contact_a']['id']}", headers=manager).status_code == 200

    def test_chain_list_and_chain_reads(self, client, two_chains):
        manager = two_chains["manager"]
        response = client.get(CHAINS, headers=manager)
        assert [c["name"] for c in response.json()["items"]] == ["Alpha Burger"]
        assert client.get(f"{CHAINS}/{two_chains['chain_a']['id']}", headers=manager).status_code == 200
        assert_problem(client.get(f"{CHAINS}/{two_chains['chain_b']['id']}", headers=manager), 404)

    def test_manager_without_chains_sees_nothing(self, client, auth, two_chains):
        nobody = auth("chain_manager", chains=[])
        assert client.get(CUSTOMERS, headers=nobody).json()["items"] == []
        assert client.get(CHAINS, headers=nobody).json()["items"] == []
        assert_problem(client.get(f"{CUSTOMERS}/{two_chains['outlet_a']['id']}", headers=nobody), 404)

    def test_admin_sees_every_row(self, client, auth, two_chains):
        response = client.get(CUSTOMERS, headers=auth("admin"))
        assert len(response.json()["items"]) == 3


class TestChainScopedWrites:
    def test_patch_own_outlet(self, client, db, two_chains):
        outlet = two_chains["outlet_a"]
        response = client.patch(
            f"{CUSTOMERS}/{outlet['id']}",
            json={"name": "Alpha Burger Mitte (neu)"},
            headers={**two_chains["manager"], "If-Match": outlet["etag"]},
        )
        assert response.status_code == 200, response.text
        assert response.headers["etag"] != outlet["etag"]
        row = db.execute("select name, version from customer where id = %s", (outlet["id"],)).fetchone()
        assert row == {"name": "Alpha Burger Mitte (neu)", "version": 2}
        actor = db.execute(
            "select actor from outbox where aggregateid = %s order by position desc limit 1", (outlet["id"],)
        ).fetchone()["actor"]
        assert actor == "manager-a"

    @pytest.mark.parametrize("target", ["chain_b", None], ids=["other-chain", "no-chain"])
    def test_cannot_move_own_outlet_out_of_scope(self, client, db, two_chains, target):
        outlet = two_chains["outlet_a"]
        before = _snapshot(db)
        new_chain = two_chains[target]["id"] if target else None
        response = client.patch(
            f"{CUSTOMERS}/{outlet['id']}",
            json={"chain_id": new_chain, "name": "Moved"},
            headers={**two_chains["manager"], "If-Match": outlet["etag"]},
        )
        assert_problem(response, 403, "/problems/out-of-scope")
        assert _snapshot(db) == before
        row = db.execute("select chain_id, name from customer where id = %s", (outlet["id"],)).fetchone()
        assert str(row["chain_id"]) == two_chains["chain_a"]["id"]
        assert row["name"] == "Alpha Burger Mitte"

    @pytest.mark.parametrize("other", ["outlet_b", "independent"])
    def test_cannot_change_or_archive_customer_outside_scope(self, client, auth, db, two_chains, other):
        customer = two_chains[other]
        before = _snapshot(db)
        headers = {**two_chains["manager"], "If-Match": customer["etag"]}
        assert_problem(client.patch(f"{CUSTOMERS}/{customer['id']}", json={"name": "Hijacked"}, headers=headers), 404)
        # archiving is not granted to chain managers at all
        assert_forbidden(client.delete(f"{CUSTOMERS}/{customer['id']}", headers=headers))
        assert _snapshot(db) == before

    def test_cannot_pull_a_foreign_outlet_into_own_chain(self, client, db, two_chains):
        outlet_b = two_chains["outlet_b"]
        before = _snapshot(db)
        response = client.patch(
            f"{CUSTOMERS}/{outlet_b['id']}",
            json={"chain_id": two_chains["chain_a"]["id"]},
            headers={**two_chains["manager"], "If-Match": outlet_b["etag"]},
        )
        assert_problem(response, 404)
        assert _snapshot(db) == before

    @pytest.mark.parametrize("target", ["chain_b", None], ids=["other-chain", "no-chain"])
    def test_cannot_create_customer_outside_scope(self, client, db, two_chains, target):
        before = _snapshot(db)
        body = {"customer_number": "K-X1", "name": "Sneaky", "type": "RESTAURANT",
                "chain_id": two_chains[target]["id"] if target else None}
        response = client.post(CUSTOMERS, json=body, headers=two_chains["manager"])
        assert_problem(response, 403, "/problems/out-of-scope")
        assert _snapshot(db) == before

    def test_can_create_customer_in_own_chain(self, client, db, two_chains):
        body = {"customer_number": "K-A2", "name": "Alpha Burger Süd", "type": "RESTAURANT",
                "chain_id": two_chains["chain_a"]["id"]}
        assert client.post(CUSTOMERS, json=body, headers=two_chains["manager"]).status_code == 201
        assert db.execute("select count(*) as n from customer where chain_id = %s",
                          (two_chains["chain_a"]["id"],)).fetchone()["n"] == 2

    @pytest.mark.parametrize(("other", "contact"), [("outlet_b", "contact_b"), ("independent", "contact_n")])
    def test_contacts_outside_scope_cannot_be_written(self, client, db, two_chains, other, contact):
        manager = two_chains["manager"]
        before = _snapshot(db)
        target = two_chains[contact]
        headers = {**manager, "If-Match": target["etag"]}
        assert_problem(client.post(f"{CUSTOMERS}/{two_chains[other]['id']}/contacts",
                                   json={"last_name": "Eindringling"}, headers=manager), 404)
        assert_problem(client.patch(f"/api/v1/contacts/{target['id']}", json={"last_name": "X"}, headers=headers), 404)
        assert_problem(client.delete(f"/api/v1/contacts/{target['id']}", headers=headers), 404)
        assert _snapshot(db) == before

    def test_contact_of_own_outlet_can_be_changed(self, client, db, two_chains):
        contact = two_chains["contact_a"]
        response = client.patch(
            f"/api/v1/contacts/{contact['id']}",
            json={"job_role": "HEAD_CHEF"},
            headers={**two_chains["manager"], "If-Match": contact["etag"]},
        )
        assert response.status_code == 200, response.text
        assert db.execute("select job_role::text as r from contact where id = %s",
                          (contact["id"],)).fetchone()["r"] == "HEAD_CHEF"


# --- JWKS (production mode) ---------------------------------------------------------------------


def _public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class JWKSEndpoint:
    """A JWKS document served on 127.0.0.1; ``serve()`` replaces the published keys."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.fetches += 1
                data = json.dumps(endpoint.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, *jwks: dict[str, Any]) -> None:
        self.document = {"keys": list(jwks)}

    def let_refresh_cooldown_pass(self) -> None:
        """PyJWT refetches the key set for an unknown ``kid`` at most once per cooldown period
        (30 s after the last fetch). Moving the last fetch into the past stands in for waiting."""
        client = crm.auth._jwks_client(self.url)
        if hasattr(client, "_last_successful_fetch"):
            client._last_successful_fetch = time.monotonic() - 3600


@pytest.fixture
def jwks(client, env_settings) -> Iterator[JWKSEndpoint]:
    endpoint = JWKSEndpoint()
    endpoint.thread.start()
    env_settings("JWT_JWKS_URL", endpoint.url)
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()
        endpoint.thread.join(timeout=5)


def _signed(private_key: Any, alg: str, kid: str | None, **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), private_key, algorithm=alg, headers=headers)


class TestJWKSKeys:
    def test_unreachable_key_server_is_503_not_401(self, client, env_settings, rsa_keys):
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env_settings("JWT_JWKS_URL", f"http://127.0.0.1:{port}/jwks.json")
        response = client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-1")))
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"] == "10"

    def test_rs256_with_matching_kid(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        response = client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-1")))
        assert response.status_code == 200, response.text
        assert jwks.fetches == 1

    def test_es256_with_matching_kid(self, client, jwks, rsa_keys, ec_key):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"), _public_jwk(ec_key, "ec-1", "ES256"))
        response = client.get(CUSTOMERS, headers=bearer(_signed(ec_key, "ES256", "ec-1")))
        assert response.status_code == 200, response.text

    def test_keys_are_cached(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        for _ in range(3):
            assert client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-1"))).status_code == 200
        assert jwks.fetches == 1

    def test_claims_are_still_checked(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        now = int(time.time())
        for overrides in ({"aud": "another-api"}, {"iss": "someone-else"}, {"exp": now - 3600, "nbf": now - 7200}):
            assert_unauthorized(
                client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-1", **overrides)))
            )

    def test_roles_still_decide_scopes(self, client, jwks, rsa_keys, db):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        token = _signed(rsa_keys[0], "RS256", "rsa-1", roles=["sales_rep"])
        assert_forbidden(client.post(CHAINS, json={"name": "Nope"}, headers=bearer(token)))
        assert counts(db)["chain"] == 0


class TestJWKSRotation:
    def test_new_key_is_picked_up_and_the_retired_key_refused(self, client, jwks, rsa_keys):
        old, new = rsa_keys[0], rsa_keys[1]
        jwks.serve(_public_jwk(old, "2024-01", "RS256"))
        assert client.get(CUSTOMERS, headers=bearer(_signed(old, "RS256", "2024-01"))).status_code == 200

        jwks.serve(_public_jwk(new, "2024-02", "RS256"))
        jwks.let_refresh_cooldown_pass()
        response = client.get(CUSTOMERS, headers=bearer(_signed(new, "RS256", "2024-02")))
        assert response.status_code == 200, response.text
        assert jwks.fetches == 2

        # the old key is no longer published: its tokens are refused from now on (one verified
        # before is remembered for crm.auth.TOKEN_CACHE_SECONDS at most; forgetting stands in for that)
        crm.auth._verified.clear()
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(old, "RS256", "2024-01"))))

    def test_overlapping_keys_during_rotation(self, client, jwks, rsa_keys):
        old, new = rsa_keys[0], rsa_keys[1]
        jwks.serve(_public_jwk(old, "k-old", "RS256"), _public_jwk(new, "k-new", "RS256"))
        assert client.get(CUSTOMERS, headers=bearer(_signed(old, "RS256", "k-old"))).status_code == 200
        assert client.get(CUSTOMERS, headers=bearer(_signed(new, "RS256", "k-new"))).status_code == 200
        assert jwks.fetches == 1

    def test_unknown_kids_do_not_cause_a_fetch_per_request(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-1"))).status_code == 200
        for i in range(5):
            assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[2], "RS256", f"rogue-{i}"))))
        assert jwks.fetches <= 2


class TestJWKSRejectedTokens:
    def test_unknown_kid(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", "rsa-9"))))

    def test_missing_kid(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[0], "RS256", None))))

    def test_known_kid_but_wrong_key(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(rsa_keys[2], "RS256", "rsa-1"))))

    def test_ec_signature_under_an_rsa_kid(self, client, jwks, rsa_keys, ec_key):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"), _public_jwk(ec_key, "ec-1", "ES256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(_signed(ec_key, "ES256", "rsa-1"))))

    def test_hs256_token_is_refused(self, client, jwks, rsa_keys, auth):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=auth("admin")))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(hs_token(roles=["admin"]))))

    def test_hs256_signed_with_the_public_key_is_refused(self, client, jwks, rsa_keys):
        """Algorithm confusion: an HMAC over the token keyed with the published RSA public key."""
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        pem = rsa_keys[0].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = hmac_token({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), pem)
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(token)))

    def test_alg_none_with_a_known_kid(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        token = raw_token({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims())
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer(token)))

    def test_garbled_token(self, client, jwks, rsa_keys):
        jwks.serve(_public_jwk(rsa_keys[0], "rsa-1", "RS256"))
        assert_unauthorized(client.get(CUSTOMERS, headers=bearer("a.b.c")))
