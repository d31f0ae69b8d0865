"""The building blocks of the Postman collection: a :class:`Step` is one request of a scenario,
named by the ``operationId`` it calls; :class:`Folder` is a scenario. ``postman/build.py`` turns
them into Postman collection items, with the test scripts derived from the served spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    """One request.

    ``op`` is the ``operationId``; method and path come from the spec. Path parameters default to
    the collection variable of the same name (``{customer_id}`` → ``{{customer_id}}``). ``role``
    picks the bearer token from the environment (``admin`` → ``{{admin_token}}``); ``None`` sends
    none. ``expect`` is the expected status: the generated tests check it, the response headers
    the spec declares for it (``ETag``, ``Location``, ``WWW-Authenticate``) and the body against
    the spec's schema. ``problem`` is the expected problem ``type`` of an error. ``save`` sets
    collection variables from JavaScript expressions (``body`` is the parsed response, ``etag``
    the ``ETag`` header); ``checks`` are ``(title, JavaScript)`` assertions of their own.
    """

    op: str
    title: str
    role: str | None = "admin"
    path: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    expect: int = 200
    problem: str | None = None
    save: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[str, str]] = field(default_factory=list)
    prerequest: list[str] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    note: str = ""
    generated: bool = False


@dataclass
class Folder:
    name: str
    description: str
    steps: list[Step]
