"""Methods a path does not declare: 405 with an ``Allow`` header listing exactly the declared ones.

Schemathesis' coverage phase checks this per operation too, except where its negative coverage is
switched off (``schemathesis.toml``); this test walks every path of the served document, with a
concrete path next to a templated sibling (``/customers/search`` beside ``/customers/{id}``) as
the case that needs OpenAPI's "concrete before templated" rule.
"""

from __future__ import annotations

import re
import uuid

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_undeclared_methods_are_405_with_allow(client, auth):
    document = client.get("/api/v1/openapi.json").json()
    headers = auth("admin")
    checked = 0
    for template, item in document["paths"].items():
        path = re.sub(r"\{[^/]+\}", str(uuid.uuid4()), template)
        declared = {m.upper() for m in item if m.upper() in (*METHODS, "HEAD", "OPTIONS", "TRACE")}
        for method in sorted(set(METHODS) - declared):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 405, f"{method} {template}: {response.status_code} {response.text}"
            assert response.headers["content-type"] == "application/problem+json"
            allow = {m.strip() for m in response.headers["allow"].split(",")}
            assert allow - {"HEAD", "OPTIONS"} == declared - {"HEAD", "OPTIONS"}, f"{method} {template}: {allow}"
            checked += 1
    assert checked
