"""The ASGI application: Connexion's AsyncApp serving the assembled OpenAPI 3.1 document.

Routing, authentication, scopes and validation come from ``specs/``; handlers live in
``handlers/`` (operationId ``customers.get_customer`` → ``handlers.customers.get_customer``).
Besides the spec's operations the app serves the assembled document at ``/api/v1/openapi.json``
and Swagger UI 5 (which renders 3.1) at ``/api/v1/docs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import connexion
import swagger_ui
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import RelativeResolver
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from crm import metrics, openapi31, problems
from crm.auth import JWTBearerHandler
from crm.consistency import ReadYourWritesMiddleware
from crm.context import CorrelationMiddleware, OperationMiddleware
from crm.settings import get_settings
from crm.spec import allowed_methods, bundle, concrete_paths
from db.pool import close_pool, close_read_pool, open_pool, open_read_pool, pool

SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Kundenmanagement API</title>
  <link rel="icon" type="image/png" href="/api/v1/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/api/v1/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/v1/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
                                 deepLinking: true, persistAuthorization: true});
  </script>
</body>
</html>
"""


class ConcretePathMethods:
    """Placed before routing. OpenAPI matches concrete paths before templated ones, so a method a
    concrete path lacks is a 405 there (``GET /api/v1/customers/search``), not a call of its
    templated sibling (``GET /api/v1/customers/{customer_id}`` with the id ``search``)."""

    def __init__(self, app: ASGIApp, paths: dict[str, frozenset[str]]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in self.paths.get(scope["path"], {scope["method"]}):
            raise HTTPException(405)
        await self.app(scope, receive, send)


def create_app(database_url: str | None = None) -> connexion.AsyncApp:
    """Build the app; the pool opens on startup against ``database_url`` (or ``DATABASE_URL``)."""
    settings = get_settings()
    dsn = database_url or settings.database_url
    if not dsn:
        raise RuntimeError("DATABASE_URL is not set (crm serve sets it for the embedded PostgreSQL)")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await open_pool(dsn, settings.pool_min, settings.pool_max)
        if settings.database_read_url:  # read-only operations on a replica (docs/scaling.md)
            await open_read_pool(settings.database_read_url, 1, settings.pool_max)
        sampler = metrics.start_pool_sampler(pool)
        try:
            yield
        finally:
            sampler.cancel()
            await close_read_pool()
            await close_pool()

    spec = bundle()
    spec_json = json.dumps(spec).encode()

    async def openapi_json(_request: Request) -> Response:
        return Response(spec_json, media_type="application/json")

    async def docs(_request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    app = connexion.AsyncApp(__name__, lifespan=lifespan)
    # Plain routes first: the API is mounted at "/" and would shadow them otherwise.
    app.add_url_rule("/api/v1/openapi.json", "openapi_json", openapi_json)
    app.add_url_rule("/api/v1/docs", "docs", docs)
    app._middleware_app.router.mount(
        "/api/v1/docs/static", StaticFiles(directory=SWAGGER_STATIC), name="docs_static"
    )
    openapi31.add_api(
        app,
        spec,
        resolver=RelativeResolver("handlers"),
        strict_validation=True,
        validate_responses=False,
        pythonic_params=True,
        security_map={"bearer": JWTBearerHandler},
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui=False),
    )
    app.add_middleware(CorrelationMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(ReadYourWritesMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(OperationMiddleware, position=MiddlewarePosition.BEFORE_SECURITY)
    app.add_middleware(ConcretePathMethods, position=MiddlewarePosition.BEFORE_ROUTING, paths=concrete_paths(spec))
    allow = allowed_methods(spec)

    async def handle_error(request, exc: Exception):
        # 405: the router names only the first matching operation's method; list the path item's.
        if isinstance(exc, HTTPException) and exc.status_code == 405 and (methods := allow(request.url.path)):
            exc.headers = {**(exc.headers or {}), "Allow": methods}
        return await problems.handle(request, exc)

    for exc_class in (Exception, ProblemException, HTTPException):
        app.add_error_handler(exc_class, handle_error)
    return app


def asgi_app() -> connexion.AsyncApp:
    """Entry point for ``gunicorn 'crm.app:asgi_app()'``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return create_app()
