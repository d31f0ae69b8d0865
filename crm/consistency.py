"""Read-your-writes across a streaming replica, with stateless workers.

Only active while a read pool is open (``DATABASE_READ_URL``). A request that ran a transaction on
the primary answers with a cookie holding the primary's WAL position after its commit::

    Set-Cookie: crm_read_after=16/B374D848; Max-Age=60; Path=/api/; HttpOnly; SameSite=Strict

A later request that sends the cookie back reads from the replica only if the replica has replayed
at least that far (``pg_last_wal_replay_lsn()``), else from the primary (:mod:`db.pool`). So a
client sees its own writes, and a client that wrote nothing reads from the replica. The position
is no secret (it names a point in the WAL, nothing of the data); a client that sends a made-up
one only sends its own reads to the primary. Clients without a cookie jar (curl without ``-b``)
may read their own write from a replica that has not replayed it yet, for as long as the
replica lags. ``READ_YOUR_WRITES_SECONDS`` (default 60) is how long the cookie lives: set it
above the replica lag you alert on.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm.settings import get_settings
from db.pool import consistency, lsn_value, read_pool_open

COOKIE = "crm_read_after"


def _cookie_position(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            if COOKIE in jar and lsn_value(jar[COOKIE].value) is not None:
                return jar[COOKIE].value
    return None


class ReadYourWritesMiddleware:
    """Reads the client's position cookie into :data:`db.pool.consistency` and sets a new one
    after a request that used the primary."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not read_pool_open():
            await self.app(scope, receive, send)
            return
        state: dict[str, str | None] = {"after": _cookie_position(scope), "written": None}
        token = consistency.set(state)

        async def send_with_cookie(message: Message) -> None:
            written = state["written"]
            if message["type"] == "http.response.start" and written is not None:
                cookie = (f"{COOKIE}={written}; Max-Age={get_settings().read_your_writes_seconds}; "
                          "Path=/api/; HttpOnly; SameSite=Strict")
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            consistency.reset(token)
