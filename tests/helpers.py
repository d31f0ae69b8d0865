"""Small helpers shared by the integration tests."""

from __future__ import annotations

from typing import Any

from psycopg import sql

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    if type_:
        assert body["type"] == type_
    return body


def create_chain(client, headers, name: str = "Pasta Fresca", **fields) -> dict[str, Any]:
    r = client.post("/api/v1/chains", json={"name": name, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def create_customer(client, headers, number: str = "K-100001", **fields) -> dict[str, Any]:
    body = {"customer_number": number, "name": f"Gasthaus {number}", "type": "RESTAURANT", **fields}
    r = client.post("/api/v1/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def count(db, table: str) -> int:
    allowed = {"chain", "customer", "contact", "outbox", "idempotency_key"}
    assert table in allowed
    return db.execute(sql.SQL("select count(*) as n from {}").format(sql.Identifier(table))).fetchone()["n"]
