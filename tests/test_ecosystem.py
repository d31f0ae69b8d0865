"""The ecosystem around the spec, without a live server: the Postman collection covers the served
spec and is what ``make postman`` generates, the Spectral ruleset catches what DESIGN.md §2
forbids, the TypeScript types generated from the served spec type-check a usage file, and the
docs page loads nothing from outside. (tests/test_ecosystem_live.py runs newman, the Python SDK
and Chromium against gunicorn; ``make speclint`` runs Redocly and Spectral over the specs.)
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from postman import build
from tests.ecosystem import NODE_ENV, ROOT, node_tool, output_dir

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def served(_session_client):
    response = _session_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def collection():
    return json.loads(build.COLLECTION_FILE.read_text(encoding="utf-8"))


def requests(collection):
    for folder in collection["item"]:
        for item in folder["item"]:
            yield folder["name"], item


# --- Postman -------------------------------------------------------------------------------------


class TestPostmanCollection:
    def test_every_operation_of_the_served_spec_is_in_the_collection(self, served, collection):
        operation_ids = {op["operationId"] for item in served["paths"].values() for m, op in item.items()
                         if m in METHODS}
        named = {re.search(r"\[([\w.]+)\]$", item["name"]).group(1) for _, item in requests(collection)}
        described = {op_id for _, item in requests(collection) for op_id in operation_ids
                     if f"operationId `{op_id}`" in item["request"]["description"]}
        missing = operation_ids - (named & described)
        assert not missing, f"not in the collection (run make postman): {sorted(missing)}"

    def test_the_committed_files_are_what_make_postman_writes(self, served):
        for path, text in build.rendered(served).items():
            name = path.relative_to(ROOT)
            assert path.exists(), f"{name} is missing: run make postman"
            assert path.read_text(encoding="utf-8") == text, f"{name} is out of date: run make postman"

    def test_every_request_has_tests_and_a_token_from_the_environment(self, collection):
        roles = {f"{{{{{role}_token}}}}" for role in build.ROLES}
        for folder, item in requests(collection):
            tests = next(e for e in item["event"] if e["listen"] == "test")["script"]["exec"]
            assert any("pm.response.to.have.status" in line or "to.be.within(400, 499)" in line for line in tests), (
                folder, item["name"])
            auth = item["request"]["auth"]
            assert auth["type"] == "noauth" or auth["bearer"][0]["value"] in roles, (folder, item["name"])
            assert item["request"]["url"]["raw"].startswith("{{base_url}}/")

    def test_scenarios_are_there(self, collection):
        folders = {folder["name"]: [item["name"] for item in folder["item"]] for folder in collection["item"]}
        lifecycle = " ".join(folders["Sample lifecycle"])
        for step in ("Create a draft", "Add a second item", "Submit", "Approve", "Ship", "Deliver",
                     "Feedback on the first item", "FEEDBACK_RECEIVED"):
            assert step in lifecycle
        concurrency = collection_text(collection, "Concurrency: ETag, If-Match, If-None-Match")
        assert "status is 412" in concurrency and "status is 428" in concurrency and "status is 304" in concurrency
        assert "setNextRequest" in collection_text(collection, "Pagination walk")

    def test_environments_name_the_server_and_the_tokens(self):
        for name in ("local", "staging"):
            environment = json.loads((build.ENVIRONMENT_DIR / f"{name}.postman_environment.json").read_text())
            keys = {value["key"] for value in environment["values"]}
            assert {"base_url", "webhook_url"} | {f"{role}_token" for role in build.ROLES} <= keys
            assert all(v["value"] == "" for v in environment["values"] if v["key"].endswith("_token"))

    def test_an_operation_without_a_scenario_gets_a_generated_request(self, served):
        spec = json.loads(json.dumps(served))
        spec["paths"]["/api/v1/widgets/{widget_id}"] = {"delete": {
            "operationId": "widgets.delete_widget", "summary": "Delete a widget", "tags": ["widgets"],
            "security": [{"bearerAuth": ["widgets:write"]}],
            "parameters": [{"name": "widget_id", "in": "path", "required": True,
                            "schema": {"type": "string", "format": "uuid"}}],
            "responses": {"204": {"description": "gone"}}}}
        generated = build.build_collection(spec)
        folder = next(f for f in generated["item"] if f["name"] == build.GENERATED_FOLDER)
        item = next(i for i in folder["item"] if i["name"].endswith("[widgets.delete_widget]"))
        assert item["request"]["method"] == "DELETE" and item["request"]["auth"] == {"type": "noauth"}
        assert "pm.response.to.have.status(401);" in "\n".join(item["event"][-1]["script"]["exec"])


def collection_text(collection, folder_name: str) -> str:
    folder = next(f for f in collection["item"] if f["name"] == folder_name)
    return json.dumps(folder)


# --- Spectral: the ruleset is not vacuous --------------------------------------------------------


def test_spectral_ruleset_catches_every_convention_break(served, tmp_path):
    spectral = node_tool("spectral")
    spec = json.loads(json.dumps(served))
    paths = spec["paths"]
    paths["/api/v1/Bad_Path"] = paths.pop("/api/v1/chains")
    single = paths["/api/v1/customers/{customer_id}"]
    single["patch"]["parameters"] = [p for p in single["patch"]["parameters"] if "IfMatch" not in p.get("$ref", "")]
    single["get"]["responses"]["200"]["headers"].pop("ETag")
    single["get"]["responses"].pop("default")
    single["get"]["responses"]["404"] = {"description": "x", "content": {"application/json": {"schema": {}}}}
    single["get"]["operationId"] = "GetCustomer"
    customer = spec["components"]["schemas"]["Customer"]["properties"]
    customer["createdAt"] = {"type": "string", "format": "date-time"}
    customer["archived"] = {"type": "string", "format": "date-time"}
    spec["components"]["schemas"]["CustomerType"]["enum"].append("food-truck")
    listing = paths["/api/v1/customers"]["get"]
    listing["parameters"] = [p for p in listing["parameters"] if "Cursor" not in p.get("$ref", "")]
    listing["parameters"].append({"name": "sortBy", "in": "query", "schema": {"type": "string"}})
    paths["/api/v1/products"]["post"]["parameters"] = []
    paths["/api/v1/products"]["post"]["security"] = [{"bearerAuth": []}]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(spec, indent=1))
    result = subprocess.run(
        [spectral, "lint", str(broken), "--ruleset", str(ROOT / ".spectral.yaml"), "--format", "json", "--quiet"],
        cwd=ROOT, env=NODE_ENV, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    found = {finding["code"] for finding in json.loads(result.stdout)}
    assert found >= {
        "km-paths-kebab-case", "km-properties-snake-case", "km-parameters-snake-case", "km-timestamps-named-at",
        "km-enum-values-upper-snake-case", "km-problem-json-errors", "km-default-response", "km-list-pagination",
        "km-single-resource-etag", "km-changes-need-if-match", "km-creates-take-idempotency-key",
        "km-operation-scope", "km-operation-id-handler",
    }, found


# --- TypeScript types from the served spec -------------------------------------------------------


def test_typescript_types_from_the_served_spec_type_check_the_usage_file(served):
    generator, tsc = node_tool("openapi-typescript"), node_tool("tsc")
    spec_file = ROOT / "build" / "openapi.json"
    spec_file.parent.mkdir(exist_ok=True)
    spec_file.write_text(json.dumps(served, indent=2))
    generated = subprocess.run(
        [generator, "--redocly", "sdk/ts/redocly.yaml", "--default-non-nullable", "false"],
        cwd=ROOT, env=NODE_ENV, capture_output=True, text=True, timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = ROOT / "build" / "sdk" / "ts" / "schema.d.ts"
    assert '"customers.create_customer"' in types.read_text()
    checked = subprocess.run([tsc, "-p", "sdk/ts"], cwd=ROOT, env=NODE_ENV, capture_output=True, text=True,
                             timeout=180)
    (output_dir("sdk-ts") / "tsc.txt").write_text(checked.stdout + checked.stderr)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- the docs page -------------------------------------------------------------------------------


def test_docs_page_loads_swagger_ui_from_this_server_only(_session_client):
    page = _session_client.get("/api/v1/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/api/v1/") for source in sources), sources
    assert not re.search(r"https?://", page.text)
    for source in sources:
        asset = _session_client.get(source)
        assert asset.status_code == 200, source
    bundle = _session_client.get("/api/v1/docs/static/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000
