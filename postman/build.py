"""Build the Postman collection and environments from the served OpenAPI document.

    .venv/bin/python postman/build.py            # (make postman) writes the collection + environments
    .venv/bin/python postman/build.py --check    # exit 1 when the committed files are out of date
    .venv/bin/python postman/build.py --spec http://127.0.0.1:8080/api/v1/openapi.json

The requests come from the hand-written scenarios in ``postman/scenarios.py``; this script adds
what the spec says about each of them: method and path (from the ``operationId``), the request's
media type, and the test scripts — the expected status, the headers the spec declares for it
(``ETag`` equal to the body's ``etag``, ``Location``, ``WWW-Authenticate``), the body against the
spec's schema, and the problem ``type`` of expected errors. Collection-level scripts send an
``X-Correlation-ID`` with every request and check, on every response, that it is echoed and that
every error is ``application/problem+json`` carrying it.

An operation of the spec that no scenario calls still gets a request, in the folder "Operations
without a scenario": a real call for a ``GET`` without path parameters, otherwise a call without a
token that must be refused with 401 (or, for an operation without security, a 4xx problem). So
every ``operationId`` is in the collection as soon as the spec has it (``make postman``); the
build lists those operations so that a scenario step can be written for them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from postman.model import Folder, Step  # noqa: E402
from postman.scenarios import FOLDERS, NIL_UUID  # noqa: E402

POSTMAN_DIR = ROOT / "postman"
COLLECTION_FILE = POSTMAN_DIR / "CRM_CustomerManagement.postman_collection.json"
ENVIRONMENT_DIR = POSTMAN_DIR / "environments"
COLLECTION_NAME = "CRM Customer Management (Kundenmanagement API)"
SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = ("get", "put", "post", "patch", "delete")
ROLES = ("admin", "sales_manager", "sales_rep", "chain_manager", "integration")
CHECKED_HEADERS = ("ETag", "Location", "WWW-Authenticate")
GENERATED_FOLDER = "Operations without a scenario"
NAMESPACE = uuid.UUID("6f1c2d1e-7a43-4c55-9b7e-4b8d3c2a9e10")

ENVIRONMENTS = {
    "local": {
        "base_url": "http://127.0.0.1:8080",
        "webhook_url": "http://127.0.0.1:9/postman-webhook",
    },
    "staging": {
        "base_url": "https://crm-staging.example.com",
        "webhook_url": "https://hooks.example.com/kundenmanagement",
    },
}

COLLECTION_PREREQUEST = [
    "// Every request carries a correlation id of its own unless the request sets one.",
    'if (!pm.request.headers.has("X-Correlation-ID")) {',
    '    const n = Number(pm.collectionVariables.get("request_no") || 0) + 1;',
    '    pm.collectionVariables.set("request_no", n);',
    '    pm.request.headers.upsert({ key: "X-Correlation-ID",',
    '        value: "postman-" + (pm.collectionVariables.get("run_id") || "run") + "-" + n });',
    "}",
]

COLLECTION_TEST = [
    "// Conventions every response follows (specs/common-errors.yaml, README: Conventions).",
    'const sentId = pm.request.headers.get("X-Correlation-ID");',
    'const echoedId = pm.response.headers.get("X-Correlation-ID");',
    'pm.test("X-Correlation-ID is echoed", function () {',
    '    pm.expect(echoedId, "X-Correlation-ID header").to.be.a("string");',
    "    if (/^[A-Za-z0-9._:-]{1,128}$/.test(sentId || '')) {",
    "        pm.expect(echoedId).to.eql(sentId);",
    "    } else {",
    "        pm.expect(echoedId).to.match(/^[A-Za-z0-9._:-]{1,128}$/).and.not.eql(sentId);",
    "    }",
    "});",
    "if (pm.response.code >= 400) {",
    '    pm.test("the error is application/problem+json with the correlation id", function () {',
    '        pm.expect(pm.response.headers.get("Content-Type")).to.match(/^application\\/problem\\+json/);',
    "        const problem = pm.response.json();",
    "        pm.expect(problem.status).to.eql(pm.response.code);",
    "        pm.expect(problem.type).to.match(/^\\//);",
    '        pm.expect(problem.title).to.be.a("string");',
    "        pm.expect(problem.correlation_id).to.eql(echoedId);",
    "    });",
    "}",
]


# --- the spec ------------------------------------------------------------------------------------


def load_spec(source: str | None = None) -> dict[str, Any]:
    """The served document: from a URL or a JSON/YAML file, or assembled like the server does."""
    if source is None:
        from crm.spec import bundle

        return bundle()
    if re.match(r"^https?://", source):
        with urllib.request.urlopen(source, timeout=10) as response:
            return json.load(response)
    text = Path(source).read_text(encoding="utf-8")
    if source.endswith(".json"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def operations(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    """operationId → (method, path, operation, parameters), in the spec's order."""
    found = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                params = {}
                for parameter in [*item.get("parameters", []), *op.get("parameters", [])]:
                    parameter = _deref(spec, parameter)
                    params[(parameter["name"], parameter["in"])] = parameter
                found[op["operationId"]] = (method, path, op, list(params.values()))
    return found


def _deref(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        target = spec
        for part in parts:
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _rewrite_refs(node: Any, names: bool = False) -> Any:
    """Component references → ``#/definitions/...`` (newman validates with Ajv, JSON Schema draft-07);
    annotations left out. ``names``: ``node`` maps names to schemas (``properties``, components)."""
    if isinstance(node, list):
        return [_rewrite_refs(n) for n in node]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if names:
                out[key] = _rewrite_refs(value)
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/components/schemas/", "#/definitions/")
            elif key in ("description", "examples", "example", "title"):
                continue
            else:
                out[key] = _rewrite_refs(value, names=key in ("properties", "patternProperties", "$defs"))
        return out
    return node


def _response(spec: dict[str, Any], op: dict[str, Any], status: int) -> dict[str, Any] | None:
    responses = op.get("responses", {})
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return _deref(spec, responses[key])
    return None


# --- steps → Postman items -----------------------------------------------------------------------


def _js_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _test_script(spec: dict[str, Any], step: Step, op: dict[str, Any]) -> list[str]:
    expect = step.expect
    lines = [
        "// Generated by postman/build.py from the served spec and postman/scenarios.py.",
        "let body = null;",
        "try { body = pm.response.json(); } catch (e) { body = null; }",
        'const etag = pm.response.headers.get("ETag");',
    ]
    if expect is None:
        lines += ['pm.test("refused with a 4xx status", function () {',
                  "    pm.expect(pm.response.code).to.be.within(400, 499);", "});"]
        response = None
    else:
        lines += [f'pm.test("status is {expect}", function () {{', f"    pm.response.to.have.status({expect});", "});"]
        response = _response(spec, op, expect)
    if response is not None:
        headers = {name.lower(): name for name in (response.get("headers") or {})}
        for name in CHECKED_HEADERS:
            if name.lower() in headers:
                lines += [f'pm.test("{name} header is present", function () {{',
                          f'    pm.response.to.have.header("{name}");']
                if name == "ETag":
                    lines += ['    if (body && body.etag !== undefined) { pm.expect(etag).to.eql(body.etag); }']
                lines += ["});"]
        content = response.get("content") or {}
        if content and expect not in (204, 304):
            media, entry = next(iter(content.items()))
            if media != "application/problem+json":
                pattern = re.escape(media).replace("/", "\\/")
                lines += [f'pm.test("Content-Type is {media}", function () {{',
                          f'    pm.expect(pm.response.headers.get("Content-Type")).to.match(/^{pattern}/);', "});"]
            schema = entry.get("schema")
            if schema is not None and "json" in media:
                ref = schema.get("$ref", "")
                label = ref.rsplit("/", 1)[-1] if ref else "the response schema"
                lines += [f'pm.test("body matches {label}", function () {{',
                          f"    const schema = {json.dumps(_rewrite_refs(schema), ensure_ascii=False)};",
                          '    schema.definitions = JSON.parse(pm.collectionVariables.get("schemas"));',
                          "    pm.response.to.have.jsonSchema(schema);", "});"]
        elif expect in (204, 304):
            lines += ['pm.test("no body", function () {', '    pm.expect(pm.response.text()).to.eql("");', "});"]
    if step.problem:
        lines += [f'pm.test("problem type is {step.problem}", function () {{',
                  f"    pm.expect(body.type).to.eql({_js_string(step.problem)});", "});"]
    for title, code in step.checks:
        lines += [f"pm.test({_js_string(title)}, function () {{"]
        lines += ["    " + line for line in code.splitlines()]
        lines += ["});"]
    if step.save or step.script:
        condition = "true" if expect is None else f"pm.response.code === {expect}"
        lines += [f"if ({condition}) {{"]
        for variable, expression in step.save.items():
            lines += [f"    pm.collectionVariables.set({_js_string(variable)}, {expression});"]
        lines += ["    " + line for line in step.script]
        lines += ["}"]
    return lines


def _url(path: str, step: Step, params: list[dict[str, Any]]) -> dict[str, Any]:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return step.path.get(name, "{{" + name + "}}")

    unknown = set(step.path) - {p["name"] for p in params if p["in"] == "path"}
    if unknown:
        raise ValueError(f"{step.op}: no path parameter {sorted(unknown)}")
    concrete = re.sub(r"\{([^}]+)\}", fill, path)
    raw = "{{base_url}}" + concrete
    url: dict[str, Any] = {"raw": raw, "host": ["{{base_url}}"], "path": [s for s in concrete.split("/") if s]}
    if step.query:
        url["raw"] += "?" + "&".join(f"{k}={v}" for k, v in step.query)
        url["query"] = [{"key": k, "value": v} for k, v in step.query]
    return url


def _request_body(spec: dict[str, Any], step: Step, op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if step.body is None:
        return None, None
    media = step.content_type
    if media is None:
        content = (_deref(spec, op.get("requestBody", {})) or {}).get("content", {"application/json": {}})
        media = "application/json" if "application/json" in content else next(iter(content))
    raw = step.body if isinstance(step.body, str) else json.dumps(step.body, indent=2, ensure_ascii=False)
    body: dict[str, Any] = {"mode": "raw", "raw": raw}
    if "json" in media:
        body["options"] = {"raw": {"language": "json"}}
    return body, media


def _auth(role: str | None) -> dict[str, Any]:
    if role is None:
        return {"type": "noauth"}
    if role not in ROLES:
        raise ValueError(f"unknown role {role}")
    return {"type": "bearer", "bearer": [{"key": "token", "value": "{{" + role + "_token}}", "type": "string"}]}


def _item(spec: dict[str, Any], ops: dict[str, Any], step: Step) -> dict[str, Any]:
    if step.op not in ops:
        raise ValueError(f"a scenario calls {step.op}, which the spec does not have")
    method, path, op, params = ops[step.op]
    body, media = _request_body(spec, step, op)
    headers = [{"key": "Content-Type", "value": media}] if media else []
    headers += [{"key": k, "value": v} for k, v in step.headers.items()]
    expected = "a 4xx problem" if step.expect is None else str(step.expect)
    description = (
        f"`{method.upper()} {path}` — operationId `{step.op}`"
        + (f" ({op['summary']})" if op.get("summary") else "")
        + f". Token: {step.role or 'none'}. Expects {expected}."
        + (f"\n\n{step.note}" if step.note else "")
    )
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": headers,
        "url": _url(path, step, params),
        "auth": _auth(step.role),
        "description": description,
    }
    if body is not None:
        request["body"] = body
    events = []
    if step.prerequest:
        events.append({"listen": "prerequest", "script": {"type": "text/javascript", "exec": step.prerequest}})
    events.append({"listen": "test", "script": {"type": "text/javascript", "exec": _test_script(spec, step, op)}})
    name = f"{step.title} [{step.op}]"
    return {"id": str(uuid.uuid5(NAMESPACE, name)), "name": name, "event": events, "request": request}


def fallback_step(spec: dict[str, Any], op_id: str, method: str, path: str, op: dict[str, Any],
                  params: list[dict[str, Any]]) -> Step:
    """A request for an operation no scenario calls (see the module docstring)."""
    security = op.get("security", spec.get("security", []))
    secured = any(requirement for requirement in security)
    required_query = [p for p in params if p["in"] == "query" and p.get("required")]
    success = sorted(int(s) for s in op.get("responses", {}) if s.isdigit() and s.startswith("2"))
    note = "Generated: no scenario calls this operation yet; write one in postman/scenarios.py."
    if method == "get" and "{" not in path and not required_query and success:
        query = [("limit", "5")] if any(p["name"] == "limit" and p["in"] == "query" for p in params) else []
        return Step(op_id, "Generated: call it", role="admin" if secured else None, query=query,
                    expect=success[0], note=note, generated=True)
    placeholders = {}
    for p in params:
        if p["in"] == "path":
            fmt = (_deref(spec, p.get("schema", {})) or {}).get("format")
            placeholders[p["name"]] = NIL_UUID if fmt == "uuid" else "postman"
    if secured:
        return Step(op_id, "Generated: refused without a token", role=None, path=placeholders, expect=401,
                    problem="/problems/unauthorized", note=note, generated=True)
    return Step(op_id, "Generated: refused without input", role=None, path=placeholders, expect=None,
                note=note, generated=True)


def uncovered(spec: dict[str, Any], folders: list[Folder] = FOLDERS) -> list[str]:
    called = {step.op for folder in folders for step in folder.steps}
    return [op_id for op_id in operations(spec) if op_id not in called]


def build_collection(spec: dict[str, Any], folders: list[Folder] = FOLDERS) -> dict[str, Any]:
    ops = operations(spec)
    folders = list(folders)
    missing = uncovered(spec, folders)
    if missing:
        folders.append(Folder(GENERATED_FOLDER, "Operations of the spec that no scenario calls yet.",
                              [fallback_step(spec, op_id, *ops[op_id]) for op_id in missing]))
    items = []
    for folder in folders:
        items.append({
            "id": str(uuid.uuid5(NAMESPACE, "folder:" + folder.name)),
            "name": folder.name,
            "description": folder.description,
            "item": [_item(spec, ops, step) for step in folder.steps],
        })
    names = [request["name"] for folder in items for request in folder["item"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"request names must be unique (setNextRequest uses them): {duplicates}")
    schemas = _rewrite_refs(copy.deepcopy(spec.get("components", {}).get("schemas", {})), names=True)
    info = spec.get("info", {})
    description = (
        f"{info.get('title', 'API')} {info.get('version', '')}: every operation of the served OpenAPI "
        "document, in scenarios that run in order against a live server (an empty or a seeded "
        "database). Generated by `postman/build.py` (`make postman`) from `/api/v1/openapi.json` "
        "and `postman/scenarios.py`; do not edit by hand.\n\n"
        "Environment: `base_url`, `webhook_url` and one bearer token per role (`admin_token`, "
        "`sales_manager_token`, `sales_rep_token`, `chain_manager_token`, `integration_token`). "
        "Local tokens: `.venv/bin/crm token --sub anna --role sales_rep`.\n\n"
        "Run: `make newman` against `make run`, or `node_modules/.bin/newman run "
        "postman/CRM_CustomerManagement.postman_collection.json -e "
        "postman/environments/local.postman_environment.json --env-var admin_token=...`."
    )
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(NAMESPACE, COLLECTION_NAME)),
            "name": COLLECTION_NAME,
            "description": description,
            "schema": SCHEMA_URL,
        },
        "item": items,
        "auth": _auth("admin"),
        "event": [
            {"listen": "prerequest", "script": {"type": "text/javascript", "exec": COLLECTION_PREREQUEST}},
            {"listen": "test", "script": {"type": "text/javascript", "exec": COLLECTION_TEST}},
        ],
        "variable": [
            {"key": "run_id", "value": "", "type": "string"},
            {"key": "RUN_ID", "value": "", "type": "string"},
            {"key": "schemas", "value": json.dumps(schemas, ensure_ascii=False, sort_keys=True), "type": "string",
             "description": "The spec's component schemas (JSON Schema draft-07 refs) the body checks use."},
        ],
    }


def build_environment(name: str, values: dict[str, str]) -> dict[str, Any]:
    entries = [{"key": key, "value": value, "type": "default", "enabled": True} for key, value in values.items()]
    entries += [{"key": f"{role}_token", "value": "", "type": "secret", "enabled": True} for role in ROLES]
    return {
        "id": str(uuid.uuid5(NAMESPACE, "environment:" + name)),
        "name": f"Kundenmanagement {name}",
        "values": entries,
        "_postman_variable_scope": "environment",
    }


def rendered(spec: dict[str, Any]) -> dict[Path, str]:
    """Every file this script writes, with its content."""
    def dump(document: dict[str, Any]) -> str:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    files = {COLLECTION_FILE: dump(build_collection(spec))}
    for name, values in ENVIRONMENTS.items():
        files[ENVIRONMENT_DIR / f"{name}.postman_environment.json"] = dump(build_environment(name, values))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="URL or file of the served document (default: assembled from specs/)")
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    files = rendered(spec)
    stale = [path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    missing = uncovered(spec)
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run make postman)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    collection = json.loads(files[COLLECTION_FILE])
    count = sum(len(folder["item"]) for folder in collection["item"])
    print(f"wrote {COLLECTION_FILE.relative_to(ROOT)}: {len(collection['item'])} folders, {count} requests, "
          f"{len(operations(spec))} operations")
    for op_id in missing:
        print(f"  no scenario yet, generated request only: {op_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
