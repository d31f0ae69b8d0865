"""Helpers for the Field-Bridge tests: defining fields, running field jobs, reading the projection."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

from db import field_jobs

DEFS = "/api/v1/field-definitions"
SEARCH = "/api/v1/customers/search"


def define(client, headers, key: str, data_type: str, **props: Any) -> dict[str, Any]:
    body = {"key": key, "label": key.replace("_", " ").title(), "data_type": data_type, **props}
    r = client.post(DEFS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def run_jobs(dsn: str, **kwargs: Any) -> dict[int, str]:
    """Run the open field jobs to the end (or as ``kwargs`` say) in a private event loop."""
    return asyncio.run(field_jobs.run_jobs(dsn, **kwargs))


def make_hot(client, headers, dsn: str, *keys: str) -> None:
    for key in keys:
        current = client.get(f"{DEFS}/{key}", headers=headers)
        r = client.patch(f"{DEFS}/{key}", json={"hot": True}, headers={**headers, "If-Match": current.headers["etag"]})
        assert r.status_code == 200, r.text
    assert set(run_jobs(dsn).values()) <= {"DONE"}
    for key in keys:
        assert client.get(f"{DEFS}/{key}", headers=headers).json()["hot_status"] == "HOT"


def set_fields(client, headers, customer_id: str, values: dict[str, Any]) -> dict[str, Any]:
    current = client.get(f"/api/v1/customers/{customer_id}/fields", headers=headers)
    r = client.patch(f"/api/v1/customers/{customer_id}/fields", json=values,
                     headers={**headers, "If-Match": current.headers["etag"]})
    assert r.status_code == 200, r.text
    return r.json()


def search(client, headers, **body: Any):
    return client.post(SEARCH, json=body, headers=headers)


def projection(db) -> dict[str, dict[str, Any]]:
    """Every projection row (without ``projected_at``) by customer id."""
    rows = db.execute("select customer_id::text as id, to_jsonb(h) - 'projected_at' as row from customer_hot as h")
    return {r["id"]: r["row"] for r in rows}


def recomputed(db) -> dict[str, dict[str, Any]]:
    """``recompute_customer_hot`` of every customer, by customer id."""
    rows = db.execute("select c.id::text as id, recompute_customer_hot(c.id) as row from customer as c")
    return {r["id"]: r["row"] for r in rows}


def typed(data_type: str, value: Any) -> Any:
    """What a stored JSON value looks like in the projection row (``to_jsonb`` of the column)."""
    if value is None:
        return None
    if data_type == "DATE":
        return dt.date.fromisoformat(value).isoformat()
    if data_type in ("INTEGER", "NUMBER"):
        return Decimal(str(value))
    return value


def expected_hot_values(db) -> dict[str, dict[str, Any]]:
    """An oracle independent of the triggers: each HOT or BACKFILLING field's value, typed from
    ``customer.fields``, per customer id."""
    fields = db.execute(
        "select key, data_type::text from field_definition where projection <> 'NONE' and archived_at is null"
    ).fetchall()
    out = {}
    for row in db.execute("select id::text as id, fields from customer"):
        out[row["id"]] = {f"f_{f['key']}": typed(f["data_type"], row["fields"].get(f["key"])) for f in fields}
    return out


def hot_values(db) -> dict[str, dict[str, Any]]:
    """The projected hot columns of every customer, comparable with :func:`expected_hot_values`."""
    fields = [r["key"] for r in db.execute(
        "select key from field_definition where projection <> 'NONE' and archived_at is null"
    )]
    out = {}
    for cid, row in projection(db).items():
        out[cid] = {}
        for key in fields:
            value = row.get(f"f_{key}")
            out[cid][f"f_{key}"] = Decimal(str(value)) if isinstance(value, int | float) and not isinstance(
                value, bool) else value
    return out
