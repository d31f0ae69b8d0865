"""Customer search: ``POST /api/v1/customers/search``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from db import search
from handlers._common import principal


async def search_customers(body: dict[str, Any]):
    # The page arrives as JSON text, assembled from the database's own JSON (see db.search).
    return Response(await search.search_customers(principal(), body), media_type="application/json")
