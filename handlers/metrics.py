"""``/metrics``: Prometheus metrics (no authentication); see :mod:`crm.metrics`."""

from __future__ import annotations

from starlette.responses import Response

from crm import metrics as prometheus
from db.pool import pool


async def metrics() -> Response:
    # A finished response: Connexion would insist on the bare "text/plain" of the spec and refuse
    # the exposition format's version parameter.
    return Response(await prometheus.render(pool), media_type=prometheus.CONTENT_TYPE)
