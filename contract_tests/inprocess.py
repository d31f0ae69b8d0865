"""The app as the in-process contract tests see it.

Schemathesis needs the schema when a test module is imported (``schema.parametrize()`` makes
one test per operation at collection time), before any fixture has started the database. So the
tests talk to :data:`APP`, a stand-in ASGI app:

* until it is bound, it serves from an app that never opens a database pool — enough to load the
  served document ``/api/v1/openapi.json``;
* the ``bound_app`` fixture (``conftest.py``) binds it to the session's app and to the event loop
  of the session's Starlette test client, which owns the database pool. The pool is a module
  global tied to the loop that opened it, while Schemathesis runs ASGI apps on an event loop of its
  own; :class:`LoopBridge` hands each request over to the test client's loop.

Lifespan events are acknowledged by the stand-in: the real app's lifespan runs under the test
client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
import schemathesis
from schemathesis import AuthContext, Case

from crm.app import create_app
from crm.auth import issue_token

SCHEMA_PATH = "/api/v1/openapi.json"


class LoopBridge:
    """An ASGI app forwarding to ``app`` running on the loop of ``portal`` (once bound)."""

    def __init__(self) -> None:
        # Lifespan is never forwarded to it, so it never connects to a database.
        self._schema_only = create_app("postgresql://unused.invalid/unused")
        self.app: Any = None
        self.portal: Any = None

    def bind(self, app: Any, portal: Any) -> None:
        self.app, self.portal = app, portal

    def unbind(self) -> None:
        self.app = self.portal = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.portal is None:
            if scope["path"] != SCHEMA_PATH:
                raise RuntimeError("the contract tests' app is not bound; use the bound_app fixture")
            await self._schema_only(scope, receive, send)
            return
        caller = asyncio.get_running_loop()

        async def on_caller(coro: Any) -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, caller))

        async def bridged_receive() -> Any:
            return await on_caller(receive())

        async def bridged_send(message: Any) -> None:
            await on_caller(send(message))

        await anyio.to_thread.run_sync(self.portal.call, self.app, scope, bridged_receive, bridged_send)


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_contains_nul(v) for v in value)
    return False


def positive_data_acceptance(ctx: Any, response: Any, case: Case) -> bool | None:
    """Schemathesis' ``positive_data_acceptance``, except that a request carrying U+0000 in any
    string may be refused with 400: PostgreSQL cannot store the NUL character, so the API rejects
    it as invalid input although JSON Schema has no word for that."""
    if response.status_code == 400 and _contains_nul([case.body, case.query, case.path_parameters]):
        return None
    return schemathesis.checks.positive_data_acceptance(ctx, response, case)


CHECKS = {
    "excluded_checks": [schemathesis.checks.positive_data_acceptance],
    "additional_checks": [positive_data_acceptance],
}
"""Keyword arguments for ``case.call_and_validate``/``case.validate_response``: every default check,
with :func:`positive_data_acceptance` in place of the built-in one."""


class AdminBearer:
    """Schemathesis auth provider: an admin bearer token on every request."""

    def get(self, case: Case, ctx: AuthContext) -> str:
        return issue_token("contract-tests", ["admin"])

    def set(self, case: Case, data: str, ctx: AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


APP = LoopBridge()


def load_schema() -> schemathesis.BaseSchema:
    """The served document, loaded through :data:`APP`, with an admin token on every request."""
    schema = schemathesis.openapi.from_asgi(SCHEMA_PATH, APP)
    schema.auth()(AdminBearer)
    return schema
