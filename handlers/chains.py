"""Restaurant chains: ``/api/v1/chains``."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import store
from handlers._common import principal, resource


async def list_chains(limit: int, cursor: str | None = None, q: str | None = None):
    return await store.list_chains(principal(), limit, cursor, q)


async def get_chain(chain_id: str):
    body = await store.get_chain(principal(), chain_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


@idempotent("chains.create_chain")
async def create_chain(body: dict[str, Any]):
    chain = await store.create_chain(principal(), body)
    return resource(chain, 201, f"/api/v1/chains/{chain['id']}")


async def update_chain(chain_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await store.update_chain(principal(), chain_id, if_match, body))


async def delete_chain(chain_id: str):
    if_match = required_if_match()
    await store.delete_chain(principal(), chain_id, if_match)
    return None, 204
