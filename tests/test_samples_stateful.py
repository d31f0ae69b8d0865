"""Schemathesis stateful runs over the sample operations, driven by the OpenAPI links of
``specs/samples.yaml``: create → get / items / history → transitions (each with the ETag of the
previous response as If-Match) → feedback → close. Every response goes through all of
Schemathesis's checks (status codes, headers, schemas, use after delete, resource availability),
with the house's positive-data rule (``contract_tests/inprocess.py``).

Scenarios start with creating a sample request and continue only along links. What is steered,
so that the runs get through the whole lifecycle rather than stop at the first illegal move:

* creates name a real customer and real products (generated ids name nothing);
* a transition whose generated or linked ``to`` is not a legal next status of the request gets the
  next status on the happy path instead, a move to ``SHIPPED`` gets a shipment covering every item,
  and a transition whose link did not apply the If-Match header (Schemathesis applies optional
  link parameters at random), or a forward move whose linked ETag is older than the request,
  gets the current ETag; feedback goes to an item that has none yet
  (the link names the first item), without a generated If-Match (no link provides the item's
  ETag, and the optional header is checked in tests/test_samples.py). Ids and, mostly, the
  requests' ETags still come from links.

The runs must have moved requests through every status of the lifecycle.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import hypothesis
import pytest
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.core.failures import FailureGroup

from contract_tests.inprocess import APP, CHECKS, load_schema
from tests.helpers import create_customer

CREATE = "RANDOM__POST_api_v1_sample_requests"
BATCH = 10  # scenarios per run of the state machine; each is one Hypothesis example of up to STEPS calls
STEPS = 16
MAX_SCENARIOS = 120

Workflow = load_schema().as_state_machine()


HAPPY_PATH = {"DRAFT": "REQUESTED", "REQUESTED": "APPROVED", "APPROVED": "SHIPPED", "SHIPPED": "DELIVERED",
              "FEEDBACK_RECEIVED": "CLOSED"}


class SampleWorkflow(Workflow):
    """Scenarios start with creating a sample request and go on only through the links."""

    root_rules = frozenset({CREATE})
    db: ClassVar[Any] = None
    catalogue: ClassVar[dict[str, Any]] = {}
    reached: ClassVar[Counter] = Counter()
    failures: ClassVar[list] = []
    scenarios = 0

    def setup(self):
        type(self).scenarios += 1
        # Schemathesis lets each operation feed the same target at most twice per scenario (for
        # variety); a lifecycle needs transitions → transitions five times in a row.
        self.control.max_operations_per_source = STEPS

    def before_call(self, case) -> None:
        if not isinstance(case.body, dict):
            return
        operation = case.operation.definition.raw["operationId"]
        if operation == "samples.create_sample_request":
            case.body["customer_id"] = self.catalogue["customer_id"]
            case.body["items"] = [{"product_id": self.catalogue["product_ids"][0], "quantity": 1}]
        elif operation == "samples.add_sample_item":
            case.body["product_id"] = self.catalogue["product_ids"][sum(self.reached.values()) % 3]
            case.body["quantity"] = 1
        elif operation == "samples.transition_sample_request":
            self._steer_transition(case)
        elif operation == "samples.put_sample_feedback":
            self._steer_feedback(case)

    def _steer_feedback(self, case) -> None:
        """The link names the request's first item; once that has feedback, take the next one without."""
        params = case.path_parameters or {}
        pending = self.db.execute(
            "select i.id::text as id from sample_item as i where i.request_id::text = %s "
            "and i.feedback_at is null order by i.seq limit 1",
            (str(params.get("sample_request_id")),),
        ).fetchone()
        if pending is not None:
            case.path_parameters = {**params, "item_id": pending["id"]}
        # No link carries the item's ETag to this optional header; a generated one never matches.
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "if-match"}

    def _steer_transition(self, case) -> None:
        current = self.db.execute(
            "select r.status::text as status, crm_etag(r.id, r.version) as etag, "
            "sample_next_statuses(r.status)::text[] as next, "
            "array(select i.id::text from sample_item as i where i.request_id = r.id order by i.seq) as items "
            "from sample_request as r where r.id::text = %s",
            (str((case.path_parameters or {}).get("sample_request_id")),),
        ).fetchone()
        if current is None:
            return
        to, forward = case.body.get("to"), HAPPY_PATH.get(current["status"])
        # Illegal moves, and side exits (cancel, reject) once they have been taken a few times,
        # become the next step on the happy path.
        side_exit_seen = self.reached[(f"samples.transition_sample_request to {to}", 200)] >= 3
        if forward and (to not in current["next"] or (to != forward and side_exit_seen)):
            case.body["to"] = forward
        if case.body.get("to") == "SHIPPED":
            case.body["shipment"] = {"carrier": "DHL", "tracking_number": "00340434161094042557", "items": [
                {"item_id": i, "lot_number": "L2409-17", "best_before": "2031-03-31"} for i in current["items"]
            ]}
        else:
            case.body.pop("shipment", None)
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "if-match"}
        given = next((v for k, v in (case.headers or {}).items() if k.lower() == "if-match"), None)
        # A link skipped the optional header, or a forward move carries the ETag of a response
        # older than the request: use the current one. (Side moves keep stale ones: 412.)
        if given is None or (case.body.get("to") == forward and given != current["etag"]):
            case.headers = {**headers, "If-Match": current["etag"]}

    def after_call(self, response, case) -> None:
        label = case.operation.definition.raw["operationId"]
        if label.endswith("transition_sample_request") and isinstance(case.body, dict):
            label = f"{label} to {case.body.get('to')}"
        self.reached[(label, response.status_code)] += 1

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        try:
            case.validate_response(
                response,
                additional_checks=[*(additional_checks or []), *CHECKS["additional_checks"]],
                excluded_checks=CHECKS["excluded_checks"],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )
        except FailureGroup as failure:
            self.failures.append(failure)
            raise


# Detours off the lifecycle (editing and deleting drafts, item lists): the per-operation tests and the
# general stateful run (contract_tests/test_stateful.py) follow those links; here they would only
# use up the steps a scenario has.
DETOURS = ("DeleteSampleRequest", "UpdateSampleRequest", "ListSampleItems", "ListSampleHistory", "AddSampleItem",
           "GetSampleItem", "RemoveSampleItem")
for _name in Workflow.root_rules - SampleWorkflow.root_rules:
    setattr(SampleWorkflow, _name, None)  # no longer a rule
for _name in dir(Workflow):
    if any(f"_{detour}__" in _name for detour in DETOURS):
        setattr(SampleWorkflow, _name, None)


@pytest.fixture
def bound(app, client):
    APP.bind(app, client.portal)
    try:
        yield APP
    finally:
        APP.unbind()


@pytest.fixture
def generous_quotas(db):
    saved = db.execute("select subject::text, max_units from sample_quota").fetchall()
    db.execute("update sample_quota set max_units = 1000000")
    yield
    for row in saved:
        db.execute("update sample_quota set max_units = %s where subject = %s", (row["max_units"], row["subject"]))


@pytest.fixture
def catalogue(client, auth) -> dict[str, Any]:
    h = auth("admin")
    customer = create_customer(client, h, "K-900001", name="Gasthaus Stateful", status="ACTIVE",
                               address={"street": "Hauptstraße 1", "postal_code": "80331", "city": "München",
                                        "country": "DE"})
    products = []
    for n, name in enumerate(("Kartoffelcremesuppe", "Rahmsauce", "Gemüsefond")):
        r = client.post("/api/v1/products", headers=h, json={
            "sku": f"CF-90{n}", "name": name, "category": "SOUPS", "pack_size": 1, "unit": "KG"})
        assert r.status_code == 201, r.text
        products.append(r.json()["id"])
    return {"customer_id": customer["id"], "product_ids": products}


LIFECYCLE = ("DRAFT", "REQUESTED", "APPROVED", "SHIPPED", "DELIVERED", "FEEDBACK_RECEIVED", "CLOSED")


def statuses_reached(db) -> Counter:
    return Counter(r["s"] for r in db.execute("select to_status::text as s from sample_request_history"))


def test_sample_lifecycle_through_links(bound, catalogue, generous_quotas, db):
    """Batches of scenarios until requests have gone through the whole lifecycle (at most
    MAX_SCENARIOS); every response of every scenario is checked."""
    SampleWorkflow.catalogue = catalogue
    SampleWorkflow.db = db
    SampleWorkflow.reached = Counter()
    SampleWorkflow.failures = []
    SampleWorkflow.scenarios = 0
    while SampleWorkflow.scenarios < MAX_SCENARIOS and not all(statuses_reached(db)[s] for s in LIFECYCLE):
        try:
            SampleWorkflow.run(settings=hypothesis.settings(
                max_examples=BATCH,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                phases=[hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            ))
        except FlakyStrategyDefinition:
            continue  # see contract_tests/test_stateful.py: Schemathesis' link bookkeeping, not a finding
        finally:
            if SampleWorkflow.failures:
                raise SampleWorkflow.failures[0]

    history = statuses_reached(db)
    reached = sorted(SampleWorkflow.reached.items())
    for status in LIFECYCLE:
        assert history[status] > 0, f"{status} not reached in {SampleWorkflow.scenarios} scenarios: {history} {reached}"
    assert SampleWorkflow.reached[("samples.put_sample_feedback", 200)] > 0
