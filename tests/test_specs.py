"""The contract: every document in specs/ is valid OpenAPI 3.1 on its own, the served document is
the assembled one, and every operation follows the API conventions."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from crm.spec import SPEC_DIR, SpecBundleError, bundle

SPEC_FILES = sorted(SPEC_DIR.glob("*.yaml"))
METHODS = ("get", "post", "put", "patch", "delete")


def operations(spec):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method], item.get("parameters", [])


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_each_document_is_valid_openapi_31_on_its_own(path: Path):
    document = yaml.safe_load(path.read_text())
    assert document["openapi"].startswith("3.1.")
    validate(document, base_uri=path.resolve().as_uri())


def test_served_document_is_the_assembled_one(client):
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == bundle()
    assert served.json()["openapi"].startswith("3.1.")
    validate(served.json())
    assert "$ref\": \"customers.yaml" not in served.text


def test_bundler_refuses_clashing_component_names(tmp_path):
    common = {"openapi": "3.1.0", "info": {"title": "c", "version": "1"}, "paths": {},
              "components": {"schemas": {"Thing": {"type": "string"}}}}
    other = {"openapi": "3.1.0", "info": {"title": "o", "version": "1"}, "paths": {"/x": {"get": {
        "responses": {"200": {"description": "x", "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Thing"}}}}},
        "parameters": [{"name": "a", "in": "query", "schema": {"$ref": "common.yaml#/components/schemas/Thing"}}],
    }}}, "components": {"schemas": {"Thing": {"type": "integer"}}}}
    root = {"openapi": "3.1.0", "info": {"title": "r", "version": "1"},
            "paths": {"/x": {"$ref": "other.yaml#/paths/~1x"}}}
    for name, doc in {"common.yaml": common, "other.yaml": other, "root.yaml": root}.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecBundleError, match="Thing"):
        bundle(tmp_path / "root.yaml")


class TestConventions:
    spec = bundle()

    def _resolve(self, node):
        while "$ref" in node:
            kind, name = node["$ref"].split("/")[-2:]
            node = self.spec["components"][kind][name]
        return node

    @pytest.mark.parametrize(
        "path,method,op,shared", list(operations(bundle())), ids=[o["operationId"] for *_, o, _ in operations(bundle())]
    )
    def test_operation(self, path, method, op, shared):
        # operationId resolves to a handler function
        module, func = op["operationId"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(f"handlers.{module}"), func))
        # every error is a problem, and there is a default
        assert "default" in op["responses"]
        for status, response in op["responses"].items():
            response = self._resolve(response)
            if status == "default" or int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
        params = {self._resolve(p)["name"] for p in [*shared, *op.get("parameters", [])]}
        if path.startswith("/api/"):
            assert op["security"][0]["bearerAuth"], "an API operation names its scope"
        if method in ("patch", "delete"):
            assert "If-Match" in params
        is_list = method == "get" and "Page" in str(self._resolve(op["responses"]["200"]))
        if is_list:
            assert {"limit", "cursor"} <= params
        elif method == "get" and "{" in path:
            assert "ETag" in self._resolve(op["responses"]["200"]).get("headers", {})
        if method == "post" and "201" in op["responses"]:
            assert "Idempotency-Key" in params
        for segment in path.split("/"):
            assert segment == segment.lower()
            assert "_" not in segment or segment.startswith("{")
