"""Tests for crm.openapi31: serving an OpenAPI 3.1 document with Connexion 3.3.0."""

from __future__ import annotations

import textwrap
import uuid

import connexion
import pytest
from connexion.exceptions import BadRequestProblem, InvalidSpecification
from connexion.resolver import Resolver
from jsonschema import Draft202012Validator

from crm import openapi31

ROOT = """
openapi: 3.1.0
info: {title: test, version: "1"}
paths:
  /items:
    get:
      operationId: list_items
      parameters:
        - {name: limit, in: query, schema: {type: [integer, "null"], exclusiveMinimum: 0}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [limit]
                properties: {limit: {type: [integer, "null"]}}
        default: {$ref: '#/components/responses/Problem'}
    post:
      operationId: create_item
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewItem'}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/NewItem'}
        default: {$ref: '#/components/responses/Problem'}
  /bad-response:
    get:
      operationId: bad_response
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties: {kind: {const: SAMPLE}}
        default: {$ref: '#/components/responses/Problem'}
  /things/{thing_id}:
    $ref: 'things.yaml#/paths/~1things~1{thing_id}'
components:
  responses:
    Problem:
      description: problem
      content:
        application/problem+json:
          schema: {type: object}
  schemas:
    NewItem:
      type: object
      additionalProperties: false
      required: [kind, quantity, size]
      $defs:
        Size: {type: string, pattern: '^(S|M|L)$'}
      properties:
        kind: {const: SAMPLE}
        quantity: {type: integer, exclusiveMinimum: 0}
        size: {$ref: '#/components/schemas/NewItem/$defs/Size'}
        note: {type: [string, "null"]}
        owner: {$ref: 'owner.schema.yaml'}
"""

# A domain document of its own, valid on its own; the root borrows its path item.
THINGS = """
openapi: 3.1.0
info: {title: things, version: "1"}
paths:
  /things/{thing_id}:
    get:
      operationId: get_thing
      parameters:
        - {name: thing_id, in: path, required: true, schema: {type: string, format: uuid}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Thing'}
components:
  schemas:
    Thing:
      type: object
      required: [id]
      properties: {id: {type: string, format: uuid}}
"""

# A schema that is a file of its own: here '#' is this file, so '#/$defs/...' resolves.
OWNER = """
$defs:
  Email: {type: string, format: email}
type: object
required: [email]
properties:
  email: {$ref: '#/$defs/Email'}
"""

VALID_ITEM = {"kind": "SAMPLE", "quantity": 1, "size": "M"}


async def list_items(limit=None):
    return {"limit": limit}


async def create_item(body):
    return body, 201


async def bad_response():
    return {"kind": "OTHER"}


async def get_thing(thing_id):
    return {"id": thing_id}


def write_specs(directory, root=ROOT):
    for name, text in {"root.yaml": root, "things.yaml": THINGS, "owner.schema.yaml": OWNER}.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory / "root.yaml"


def make_app(directory, root=ROOT):
    app = connexion.AsyncApp(__name__, specification_dir=directory)
    openapi31.add_api(
        app,
        write_specs(directory, root).relative_to(directory),
        resolver=Resolver(function_resolver=lambda name: globals()[name]),
        strict_validation=True,
        validate_responses=True,
    )
    return app


@pytest.fixture
def client(tmp_path):
    with make_app(tmp_path).test_client() as test_client:
        yield test_client


def fields(response):
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


class TestNullableQueryParameter:
    def test_integer_is_coerced(self, client):
        response = client.get("/items", params={"limit": "5"})
        assert response.status_code == 200
        assert response.json() == {"limit": 5}

    def test_absent_and_null_give_none(self, client):
        assert client.get("/items").json() == {"limit": None}
        assert client.get("/items", params={"limit": "null"}).json() == {"limit": None}

    def test_not_an_integer_is_400(self, client):
        response = client.get("/items", params={"limit": "abc"})
        assert response.status_code == 400
        assert fields(response) == ["limit"]

    def test_numeric_exclusive_minimum_on_parameter(self, client):
        assert client.get("/items", params={"limit": "0"}).status_code == 400

    def test_unknown_query_parameter_is_400_with_errors(self, client):
        response = client.get("/items", params={"lmit": "5"})
        assert response.status_code == 400
        assert fields(response) == ["lmit"]


class TestRequestBody:
    def test_valid_body(self, client):
        response = client.post("/items", json=VALID_ITEM)
        assert response.status_code == 201
        assert response.json() == VALID_ITEM

    def test_const_is_enforced(self, client):
        response = client.post("/items", json={**VALID_ITEM, "kind": "OTHER"})
        assert response.status_code == 400
        assert fields(response) == ["kind"]

    @pytest.mark.parametrize(("quantity", "status"), [(0, 400), (-1, 400), (1, 201)])
    def test_numeric_exclusive_minimum(self, client, quantity, status):
        assert client.post("/items", json={**VALID_ITEM, "quantity": quantity}).status_code == status

    def test_defs_of_a_components_schema(self, client):
        response = client.post("/items", json={**VALID_ITEM, "size": "XL"})
        assert response.status_code == 400
        assert fields(response) == ["size"]

    def test_defs_of_a_schema_file_via_relative_ref(self, client):
        ok = client.post("/items", json={**VALID_ITEM, "owner": {"email": "a@example.com"}})
        assert ok.status_code == 201
        bad = client.post("/items", json={**VALID_ITEM, "owner": {"email": "not-an-email"}})
        assert bad.status_code == 400
        assert fields(bad) == ["owner.email"]

    def test_nullable_property_accepts_null(self, client):
        assert client.post("/items", json={**VALID_ITEM, "note": None}).status_code == 201
        assert fields(client.post("/items", json={**VALID_ITEM, "note": 5})) == ["note"]

    def test_all_errors_are_listed(self, client):
        response = client.post("/items", json={"kind": "OTHER", "extra": 1})
        assert response.status_code == 400
        assert sorted(fields(response)) == ["body", "kind", "quantity", "size"]
        assert "quantity: 'quantity' is a required property" in response.json()["detail"]


def test_response_violating_a_2020_12_keyword_is_flagged(client):
    response = client.get("/bad-response")
    assert response.status_code == 500
    assert "does not conform" in response.json()["detail"]


def test_dict_from_handler_with_json_and_problem_json_declared(client):
    response = client.get("/items")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_path_item_from_another_file(client):
    thing_id = str(uuid.uuid4())
    response = client.get(f"/things/{thing_id}")
    assert response.status_code == 200
    assert response.json() == {"id": thing_id}
    assert fields(client.get("/things/not-a-uuid")) == ["thing_id"]


def test_validators_are_compiled_once_per_schema(tmp_path, monkeypatch):
    built = []

    def counting(schema, **kwargs):
        built.append(id(schema))
        return Draft202012Validator(schema, **kwargs)

    monkeypatch.setattr(openapi31, "RequestValidator", counting)
    with make_app(tmp_path).test_client() as test_client:
        for _ in range(3):
            assert test_client.get("/items", params={"limit": "2"}).status_code == 200
            assert test_client.post("/items", json=VALID_ITEM).status_code == 201
    assert len(built) == 2  # the limit parameter schema and the NewItem body schema
    assert len(set(built)) == 2


class TestSpecValidation:
    def test_invalid_document_is_rejected_at_add_api(self, tmp_path):
        broken = ROOT.replace("in: query", "in: querystring")
        with pytest.raises(InvalidSpecification, match="not a valid OpenAPI 3.1 document"):
            make_app(tmp_path, broken)

    def test_dangling_ref_is_named(self, tmp_path):
        broken = ROOT.replace("'#/components/schemas/NewItem/$defs/Size'", "'#/$defs/Size'")
        with pytest.raises(InvalidSpecification, match=r"cannot resolve \$ref '#/\$defs/Size'"):
            make_app(tmp_path, broken)

    def test_openapi_30_document_is_refused(self, tmp_path):
        with pytest.raises(InvalidSpecification, match="expected an OpenAPI 3.1 document"):
            make_app(tmp_path, ROOT.replace("openapi: 3.1.0", "openapi: 3.0.3"))


class TestErrorList:
    def test_paths_and_required_properties(self):
        schema = {
            "type": "object",
            "required": ["a", "b"],
            "properties": {"c": {"type": "array", "items": {"type": "integer"}}},
        }
        errors = Draft202012Validator(schema).iter_errors({"c": [1, "x"]})
        assert sorted(e["field"] for e in openapi31.error_list(errors)) == ["a", "b", "c.1"]

    def test_root_prefix(self):
        errors = Draft202012Validator({"type": "integer"}).iter_errors("x")
        assert openapi31.error_list(errors, root="limit") == [
            {"field": "limit", "message": "'x' is not of type 'integer'"}
        ]

    def test_problem_is_a_bad_request_with_errors_extension(self):
        problem = openapi31.ValidationProblem([{"field": "a", "message": "m"}])
        assert isinstance(problem, BadRequestProblem)
        assert problem.status == 400
        assert problem.ext == {"errors": [{"field": "a", "message": "m"}]}
