"""The Cook&Fresh product catalogue behind ``handlers/products.py``: one function per operation,
one transaction each (SQL in ``db/queries/products.sql``).

Every caller may read the catalogue (row-level security lets everyone select products); only the
unrestricted scope may write it, and the ``products:write`` scope is the admins'.
"""

from __future__ import annotations

from typing import Any

from crm.auth import Principal
from crm.errors import Conflict
from crm.pagination import decode_cursor, page
from db import store
from db.pool import queries, read_transaction, transaction

PRODUCT_FIELDS = (
    "name", "brand", "category", "pack_size", "unit", "allergens", "diet_tags",
    "sample_available", "max_sample_quantity", "description",
)
DEFAULTS = {"brand": "Cook&Fresh", "allergens": [], "diet_tags": [], "sample_available": True,
            "max_sample_quantity": 5, "description": None}


async def list_products(principal: Principal, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
    filters = {k: filters.get(k) for k in ("category", "q", "sample_available", "allergen_free")}
    key = decode_cursor("list_products", filters, cursor) or [None]
    async with read_transaction(principal) as conn:
        rows = [row async for row in queries.list_products(conn, **filters, after_sku=key[0], limit=limit + 1)]
    return page("list_products", filters, rows, limit, ("sort_sku",))


async def get_product(principal: Principal, product_id: str) -> dict[str, Any]:
    return await store._get(principal, "product", "get_product", product_id)


async def create_product(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    params = {**DEFAULTS, **body}
    async with transaction(principal) as conn:
        row = await queries.insert_product(conn, **params)
        if row is None:
            existing = await queries.find_product_by_sku(conn, sku=body["sku"])
            raise Conflict(
                f"A product with SKU {body['sku']} exists already.",
                field="sku", existing_id=str(existing["id"]) if existing else None,
            )
    return row["body"]


async def update_product(
    principal: Principal, product_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    return await store._update(principal, "product", product_id, if_match, changes, PRODUCT_FIELDS,
                               "lock_product", "update_product")
