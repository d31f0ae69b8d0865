"""The ecosystem against the API served the way production serves it (gunicorn, two uvicorn workers,
an empty database of its own): the Postman collection run by newman, a round trip through the
Python SDK generated from the served spec, and the docs page rendered by headless Chromium.

Output to look at lands in build/test-output/: newman's JSON report, the generated SDK, and
screenshots of the docs page.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from datetime import date
from pathlib import Path

import pytest

from crm.auth import issue_token
from tests.ecosystem import NODE_ENV, ROOT, chromium, node, node_package, node_tool, output_dir, serve

COLLECTION = ROOT / "postman" / "CRM_CustomerManagement.postman_collection.json"
LOCAL_ENVIRONMENT = ROOT / "postman" / "environments" / "local.postman_environment.json"
SDK_CONFIG = ROOT / "sdk" / "openapi-python-client.yaml"
NEWMAN_TIMEOUT = 300
METHODS = ("get", "put", "post", "patch", "delete")
ROLE_SUBJECTS = {
    "admin": "postman-admin",
    "sales_manager": "mia",
    "sales_rep": "anna",
    "integration": "fulfilment-partner",
    "chain_manager": "cm-postman",
}


@pytest.fixture(scope="module")
def live(pg_server, tmp_path_factory):
    with serve(pg_server, "crm_ecosystem_live", tmp_path_factory.mktemp("ecosystem-live")) as base:
        yield base


def served_spec(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=10) as response:
        return json.load(response)


def operation_ids(spec: dict) -> set[str]:
    return {op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m in METHODS}


def token(role: str) -> str:
    chains = [str(uuid.uuid4())] if role == "chain_manager" else []
    return issue_token(ROLE_SUBJECTS[role], [role], chains)


# --- Postman / newman ----------------------------------------------------------------------------


def test_postman_collection_passes_with_newman(live):
    newman = node_tool("newman")
    out = output_dir("newman")
    report = out / "newman.json"
    report.unlink(missing_ok=True)
    command = [
        newman, "run", str(COLLECTION), "-e", str(LOCAL_ENVIRONMENT),
        "--env-var", f"base_url={live}",
        *[arg for role in ROLE_SUBJECTS for arg in ("--env-var", f"{role}_token={token(role)}")],
        "--reporters", "cli,json", "--reporter-json-export", str(report),
        "--timeout-request", "15000", "--color", "off", "--disable-unicode",
    ]
    result = subprocess.run(command, cwd=ROOT, env=NODE_ENV, capture_output=True, text=True, timeout=NEWMAN_TIMEOUT)
    (out / "newman.txt").write_text(result.stdout + result.stderr)
    assert report.exists(), f"newman wrote no report ({result.returncode}):\n{result.stdout[-5000:]}{result.stderr}"
    run = json.loads(report.read_text())["run"]
    failures = [f"{f['source'].get('name')}: {f['error'].get('test') or ''} {f['error']['message']}"
                for f in run["failures"]]
    assert result.returncode == 0 and not failures, "newman failed:\n" + "\n".join(failures) + result.stdout[-5000:]
    stats = run["stats"]
    assert stats["assertions"]["failed"] == 0 and stats["assertions"]["total"] > 0
    # Every operation of the served spec was called, not only listed.
    executed = {m.group(1) for e in run["executions"] if (m := re.search(r"\[([\w.]+)\]$", e["item"]["name"]))}
    not_called = operation_ids(served_spec(live)) - executed
    assert not not_called, f"operations the collection does not call (run make postman): {sorted(not_called)}"
    (out / "summary.txt").write_text(
        f"requests {stats['requests']['total']} (failed {stats['requests']['failed']}), "
        f"assertions {stats['assertions']['total']} (failed {stats['assertions']['failed']}), "
        f"test scripts {stats['testScripts']['total']}\n"
    )


# --- the generated Python SDK --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(live):
    """The Python client openapi-python-client generates from the served spec, imported unmodified."""
    folder = output_dir("sdk-python")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec_file = folder / "openapi.json"
    spec_file.write_text(json.dumps(served_spec(live)))
    package = folder / "kundenmanagement_client"
    generator = Path(sys.executable).with_name("openapi-python-client")
    env = {**NODE_ENV, "PATH": f"{Path(sys.executable).parent}:{NODE_ENV.get('PATH', '')}"}
    result = subprocess.run(
        [str(generator), "generate", "--path", str(spec_file), "--output-path", str(package),
         "--meta", "none", "--config", str(SDK_CONFIG)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("kundenmanagement_client")
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n.split(".")[0] == "kundenmanagement_client"]:
            del sys.modules[name]


def test_generated_sdk_round_trip(live, sdk):
    api = lambda path: importlib.import_module(f"kundenmanagement_client.api.{path}")  # noqa: E731
    m = importlib.import_module("kundenmanagement_client.models")
    client = {role: sdk.AuthenticatedClient(base_url=live, token=token(role), raise_on_unexpected_status=True)
              for role in ("admin", "sales_rep", "sales_manager", "integration")}
    run = uuid.uuid4().hex[:8]

    # the catalogue and a custom field (admin)
    products = []
    for n, (category, unit) in enumerate([(m.ProductCategory.SOUPS, m.ProductUnit.KG),
                                          (m.ProductCategory.SAUCES, m.ProductUnit.L)]):
        created = api("products.products_create_product").sync_detailed(client=client["admin"], body=m.ProductCreate(
            sku=f"SDK-{run.upper()}-{n}", name=f"SDK Produkt {n}", category=category, pack_size=2.5, unit=unit))
        assert created.status_code == 201, created.content
        products.append(created.parsed)
    field = api("fields.fields_create_field_definition").sync(client=client["admin"], body=m.FieldDefinitionCreate(
        key=f"sdk_{run}_seats", label="Sitzplätze", data_type=m.FieldDataType.INTEGER, min_=0, max_=2000))
    assert isinstance(field, m.FieldDefinition), field

    # a customer (sales rep) and its field values, changed with If-Match
    customer = api("customers.customers_create_customer").sync(client=client["sales_rep"], body=m.CustomerCreate(
        customer_number=f"SDK-{run.upper()}", name=f"Hotel SDK {run}", type_=m.CustomerType.HOTEL,
        status=m.CustomerStatus.ACTIVE,
        address=m.Address(street="Marktplatz 1", postal_code="80331", city="München", country="DE")))
    assert isinstance(customer, m.Customer), customer
    assert customer.type_ == m.CustomerType.HOTEL
    got = api("customers.customers_get_customer").sync_detailed(customer.id, client=client["sales_rep"])
    assert got.status_code == 200 and got.headers["ETag"] == got.parsed.etag == customer.etag

    fields_api = api("fields.fields_update_customer_fields")
    values = api("fields.fields_get_customer_fields").sync_detailed(customer.id, client=client["sales_rep"])
    assert values.status_code == 200
    changed = fields_api.sync_detailed(customer.id, client=client["sales_rep"], if_match=values.headers["ETag"],
                                       body=m.CustomerFieldValuesPatch.from_dict({field.key: 120}))
    assert changed.status_code == 200, changed.content
    assert changed.parsed.fields[field.key] == 120
    stale = fields_api.sync_detailed(customer.id, client=client["sales_rep"], if_match=values.headers["ETag"],
                                     body=m.CustomerFieldValuesPatch.from_dict({field.key: 80}))
    assert stale.status_code == 412 and isinstance(stale.parsed, m.Problem)
    assert stale.parsed.current_etag == changed.headers["ETag"]
    reread = api("fields.fields_get_customer_fields").sync(customer.id, client=client["sales_rep"])
    assert reread.fields[field.key] == 120

    # the sample lifecycle: create → items → submit → approve → ship → deliver → feedback
    samples = "samples.samples_"
    draft = api(samples + "create_sample_request").sync(client=client["sales_rep"], body=m.SampleRequestCreate(
        customer_id=customer.id, purpose="Neue Herbstkarte",
        items=[m.SampleItemCreate(product_id=products[0].id, quantity=2)]))
    assert isinstance(draft, m.SampleRequest) and draft.status == m.SampleStatus.DRAFT, draft
    item = api(samples + "add_sample_item").sync(draft.id, client=client["sales_rep"],
                                                 body=m.SampleItemCreate(product_id=products[1].id, quantity=1))
    assert isinstance(item, m.SampleItem), item
    listed = api(samples + "list_sample_items").sync(draft.id, client=client["sales_rep"])
    assert len(listed.items) == 2 and listed.next_cursor is None

    def move(role: str, request, to, **fields):
        current = api(samples + "get_sample_request").sync_detailed(request.id, client=client[role])
        moved = api(samples + "transition_sample_request").sync_detailed(
            request.id, client=client[role], if_match=current.headers["ETag"], body=m.SampleTransition(to=to, **fields))
        assert moved.status_code == 200, moved.content
        assert moved.parsed.status == to and moved.headers["ETag"] == moved.parsed.etag
        return moved.parsed

    requested = move("sales_rep", draft, m.SampleStatus.REQUESTED)
    approved = move("sales_manager", requested, m.SampleStatus.APPROVED, reason="Passt zur Herbstkarte")
    shipped = move("integration", approved, m.SampleStatus.SHIPPED, shipment=m.SampleShipmentInput(
        carrier="DHL", tracking_number="00340434161094042557",
        items=[m.SampleShipmentInputItemsItem(item_id=i.id, lot_number=f"L24-{n}", best_before=date(2031, 3, 31))
               for n, i in enumerate(approved.items)]))
    assert {i.best_before for i in shipped.items} == {date(2031, 3, 31)}
    delivered = move("integration", shipped, m.SampleStatus.DELIVERED)
    for n, sample_item in enumerate(delivered.items):
        given = api(samples + "put_sample_feedback").sync(
            delivered.id, sample_item.id, client=client["sales_rep"],
            body=m.SampleFeedbackInput(rating=4 + n % 2, listing_decision=m.ListingDecision.LISTED, taste=5))
        assert isinstance(given, m.SampleItem) and given.feedback.rating == 4 + n % 2, given
    final = api(samples + "get_sample_request").sync(draft.id, client=client["sales_rep"])
    assert final.status == m.SampleStatus.FEEDBACK_RECEIVED
    history = api(samples + "list_sample_history").sync(draft.id, client=client["sales_rep"])
    assert [e.to for e in history.items] == [
        m.SampleStatus.DRAFT, m.SampleStatus.REQUESTED, m.SampleStatus.APPROVED, m.SampleStatus.SHIPPED,
        m.SampleStatus.DELIVERED, m.SampleStatus.FEEDBACK_RECEIVED]


# --- the docs page in Chromium -------------------------------------------------------------------


def test_docs_page_renders_the_31_spec_in_chromium(live):
    chromium()
    node_package("playwright-core")
    out = output_dir("docs")
    for name in ("docs.png", "docs-operation.png"):
        (out / name).unlink(missing_ok=True)
    result = subprocess.run(
        [node(), str(ROOT / "tests" / "browser" / "docs_page.mjs"), f"{live}/api/v1/docs", str(out)],
        cwd=ROOT, env=NODE_ENV, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    page = json.loads(result.stdout.strip().splitlines()[-1])
    (out / "docs.json").write_text(json.dumps(page, indent=2))

    assert page["status"] == 200 and page["title"] == "Kundenmanagement API"
    assert "OAS 3.1" in page["infoTitle"], page["infoTitle"]
    assert page["renderError"] == 0 and not page["pageErrors"] and not page["consoleErrors"], page
    # Every operation of the served spec is listed (Swagger UI: id="operations-<tag>-<operationId>").
    rendered = {block["id"].replace("\\", "") for block in page["opblocks"]}
    spec = served_spec(live)
    for item in spec["paths"].values():
        for method, op in item.items():
            if method in METHODS:
                tag = (op.get("tags") or ["default"])[0]
                assert f"operations-{tag}-{op['operationId']}" in rendered, op["operationId"]
    assert any(b["path"] == "/api/v1/sample-requests/{sample_request_id}/transitions" and b["method"] == "POST"
               for b in page["opblocks"])
    assert page["expandedHasParameters"]
    # Everything the page loads comes from this server: Swagger UI's assets are served locally.
    assert page["requests"] and all(url.startswith(live) or url.startswith(("data:", "blob:"))
                                    for url in page["requests"]), page["requests"]
    assert f"{live}/api/v1/docs/static/swagger-ui-bundle.js" in page["requests"]
    assert not page["failedRequests"] and not page["errorResponses"], page
    assert (out / "docs.png").stat().st_size > 10_000 and (out / "docs-operation.png").exists()
