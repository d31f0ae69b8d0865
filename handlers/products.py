"""The Cook&Fresh product catalogue: ``/api/v1/products``."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import products
from handlers._common import principal, resource


async def list_products(
    limit: int,
    cursor: str | None = None,
    category: str | None = None,
    q: str | None = None,
    sample_available: bool | None = None,
    allergen_free: list[str] | None = None,
):
    return await products.list_products(
        principal(), limit, cursor,
        category=category, q=q, sample_available=sample_available, allergen_free=allergen_free,
    )


async def get_product(product_id: str):
    body = await products.get_product(principal(), product_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


@idempotent("products.create_product")
async def create_product(body: dict[str, Any]):
    product = await products.create_product(principal(), body)
    return resource(product, 201, f"/api/v1/products/{product['id']}")


async def update_product(product_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await products.update_product(principal(), product_id, if_match, body))
