"""Serve an OpenAPI 3.1 document with Connexion 3.3.0 (``AsyncApp``).

Connexion 3.3.0 only understands OpenAPI 3.0 (spec-first/connexion#1396): it meta-validates the
document against the 3.0 schema and validates requests and responses with JSON Schema Draft 4.
This module closes the gap in one place:

* :func:`add_api` validates the document with ``openapi-spec-validator`` (3.1-aware, relative
  ``$ref``\\ s to other files resolved against the file's location) and then lets Connexion load it
  from disk, which inlines those ``$ref``\\ s, path items included.
* :data:`VALIDATOR_MAP_31` holds Draft 2020-12 validators for parameters, JSON request bodies
  and responses. Compiled validators are cached per schema object, never rebuilt per request.
  Form bodies keep Connexion's own validators (the API speaks JSON).
* :class:`URIParser31` coerces query/path parameters declared as ``type: [T, "null"]`` to ``T``,
  and restates ``format: date-time`` ones in UTC (PostgreSQL refuses offsets beyond ±15:59).
* ``pattern`` is matched with ECMA-262 semantics, as JSON Schema prescribes (:mod:`crm.ecma262`).
* JSON request bodies are decoded as UTF-8 whatever ``charset`` says (RFC 8259); bytes that are
  not UTF-8, over-deep nesting and unpaired surrogate escapes give 400 instead of a 500.
* Validation failures raise :class:`ValidationProblem`, a 400 ``BadRequestProblem`` whose problem
  body carries ``errors: [{field, message}]`` (see :func:`error_list`).

A ``$ref`` inside a schema is resolved against its document, as OpenAPI 3.1 prescribes, so a
components schema reaches its own ``$defs`` as ``#/components/schemas/<Name>/$defs/<X>``;
``#/$defs/<X>`` works in a schema that is a file of its own.

Patched Connexion internals (applied on import; this is why ``connexion==3.3.0`` is pinned, and
importing this module under any other version fails):

1. ``OpenAPISpecification._validate_spec`` skips Connexion's 3.0 meta-validation for 3.1
   documents (3.0 documents are still checked by Connexion).
2. ``decorators.parameter._get_val_from_param`` (builds handler arguments) reads
   ``type: [T, "null"]`` as ``T``; it raised ``TypeError`` (a 500) on a type array before.
3. ``BaseResponseDecorator._infer_content_type`` (connexion#1956): when an operation declares
   ``application/json`` next to ``application/problem+json`` and the handler names no content
   type, the single non-problem JSON type is used instead of failing with a 500.
"""

from __future__ import annotations

import json
import logging
import typing as t
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import connexion
import yaml
from connexion.context import operation
from connexion.datastructures import MediaTypeDict
from connexion.decorators import parameter as _parameter_decorator
from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import BadRequestProblem, ExtraParameterProblem, InvalidSpecification, ProblemException
from connexion.spec import OpenAPISpecification
from connexion.uri_parsing import OpenAPIURIParser
from connexion.utils import extract_content_type, is_json_mimetype, split_content_type
from connexion.validators import VALIDATOR_MAP, ParameterValidator
from connexion.validators.json import (
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    TextResponseBodyValidator,
)
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema.validators import extend
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing.exceptions import PointerToNowhere, Unresolvable

from crm import ecma262

__all__ = ["VALIDATOR_MAP_31", "URIParser31", "ValidationProblem", "add_api", "error_list"]

if version("connexion") != "3.3.0":  # pragma: no cover - guards the patches below
    raise RuntimeError(f"crm.openapi31 patches connexion 3.3.0 internals, found {version('connexion')}")

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Request bodies beyond this are refused with 413 while they are read, before any parsing."""

# Only the formats we rely on; FormatChecker raises KeyError at import if a checker is unavailable.
FORMAT_CHECKER = FormatChecker(formats=("date", "date-time", "uuid", "email"))


def _write_only(validator, write_only, instance, schema):
    if write_only:
        yield ValidationError("Property is write-only")


RequestValidator = extend(Draft202012Validator, {"pattern": ecma262.pattern})
ResponseValidator = extend(Draft202012Validator, {"writeOnly": _write_only, "pattern": ecma262.pattern})

_cache: dict[tuple[t.Any, int], tuple[t.Any, t.Any]] = {}


def _cached(kind: t.Any, obj: t.Any, build: t.Callable[[t.Any], t.Any]) -> t.Any:
    """Memoise ``build(obj)`` per object identity. Spec dicts live as long as the app, and the
    entry keeps ``obj`` alive, so an id is never reused for another object."""
    hit = _cache.get((kind, id(obj)))
    if hit is None or hit[0] is not obj:
        hit = _cache[(kind, id(obj))] = (obj, build(obj))
    return hit[1]


_ANY: dict = {}


def _compiled(schema: dict, cls: type | None = None) -> t.Any:
    cls = cls or RequestValidator
    schema = schema or _ANY  # Connexion hands out a fresh {} for "no schema"; don't cache those
    return _cached(cls, schema, lambda s: cls(s, format_checker=FORMAT_CHECKER))


def _discriminated(error: ValidationError) -> list[ValidationError]:
    """For a failed ``oneOf``/``anyOf`` with an OpenAPI ``discriminator`` whose property the
    instance has: the errors of the one alternative that property selects (the only one whose
    errors do not concern the property), e.g. "'direction' was unexpected" for a VISIT with a
    call field, instead of "is not valid under any of the given schemas"."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    prop = (schema.get("discriminator") or {}).get("propertyName")
    if error.validator not in ("oneOf", "anyOf") or not prop or not isinstance(error.instance, dict) \
            or prop not in error.instance:
        return [error]
    branches: dict[t.Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    chosen = [subs for subs in branches.values() if not any(list(e.relative_path)[:1] == [prop] for e in subs)]
    return chosen[0] if len(chosen) == 1 else [error]


def error_list(errors: t.Iterable[ValidationError], root: str = "") -> list[dict[str, str]]:
    """Turn jsonschema errors into ``[{"field": "a.0.b", "message": "..."}]``.

    ``root`` prefixes every field (a parameter name); a ``required`` error names the missing
    property. A body-level error without any path gets the field ``body``.
    """
    result = []
    for error in (e for top in errors for e in _discriminated(top)):
        parts = [root, *map(str, error.absolute_path)]
        if error.validator == "required":
            parts += [p for p in error.validator_value if error.message.startswith(repr(p))][:1]
        result.append({"field": ".".join(p for p in parts if p) or "body", "message": error.message})
    return result


def _json_number(literal: str) -> int | float:
    """A JSON number with a fraction or exponent, as ``json.loads`` hands it over (``parse_float``).
    JSON Schema counts ``136.0`` and ``1e2`` as integers, so validation lets them through where an
    ``integer`` is asked for; handlers get them as ``int``, since a ``float`` there failed (a list
    slice, a ``bigint`` parameter). ``number`` fields take an ``int`` just as well."""
    value = float(literal)
    return int(value) if value.is_integer() else value


def _nul_fields(value: t.Any, path: str = "") -> list[str]:
    """Dotted paths of the strings (keys included) in ``value`` that contain U+0000."""
    if isinstance(value, str):
        return [path or "body"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            found += [child] if "\x00" in key else _nul_fields(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nul_fields(item, f"{path}.{index}" if path else str(index))
    return found


# A request body schema may say with this extension which status its violations get: 422
# (``x-validation-status: 422``) where a domain's contract promises it for bad content; 400 else.
VALIDATION_STATUS_KEY = "x-validation-status"


class ValidationProblem(BadRequestProblem):
    """400 (or, for a body schema that asks for it, 422) problem whose body carries
    ``errors: [{field, message}]``."""

    def __init__(self, errors: list[dict[str, str]], status: int = 400):
        super().__init__(detail="; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.status = status
        self.type = "/problems/validation-error"
        self.errors = errors
        self.ext = {"errors": errors}


def _raise_if_invalid(validator: t.Any, instance: t.Any, root: str = "", status: int = 400) -> None:
    errors = error_list(validator.iter_errors(instance), root)
    if errors:
        # Not the messages: they quote the values sent (names, e-mail addresses, ...).
        logger.info("Validation error in %s: %d problem(s)", root or "body", len(errors),
                    extra={"validator": root or "body"})
        raise ValidationProblem(errors, status)


class ParameterValidator31(ParameterValidator):
    """Validates query/path/header/cookie parameters with Draft 2020-12."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        name = param_name or param["name"]
        if value is not None and _nul_fields(value):  # as in bodies: no column can store U+0000
            raise ValidationProblem([{"field": name, "message": "must not contain the NUL character"}])
        if value is not None:
            _raise_if_invalid(_compiled(param.get("schema")), value, root=name)
        elif param.get("required"):
            message = f"Missing {parameter_type} parameter '{name}'"
            raise ValidationProblem([{"field": name, "message": message}])

    def validate_query_parameter_list(self, request, security_params=None):
        extra = sorted(super().validate_query_parameter_list(request, security_params))
        if extra:  # only called with strict_validation; Connexion's problem, plus the error list
            problem = ExtraParameterProblem(param_type="query", extra_params=extra)
            problem.ext = {"errors": [{"field": n, "message": "unknown query parameter"} for n in extra]}
            raise problem
        return set()


class JSONRequestBodyValidator31(JSONRequestBodyValidator):
    """Validates JSON request bodies with Draft 2020-12."""

    @property
    def _validator(self):
        return _compiled(self._schema)

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope: t.Any) -> t.Any:
        """JSON text is UTF-8 (RFC 8259 §8.1; a ``charset`` parameter has no effect, §11), which is
        also how the handler's body is decoded. Bytes that are not UTF-8, JSON nested too deeply
        to parse and unpaired surrogate escapes (``"\\ud800"``: valid JSON, but no text that can be
        stored) are a 400 — each escaped as a 500 before."""
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProblemException(
                    status=413, title="Payload too large",
                    detail=f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestProblem(
                detail=f"The request body is not valid UTF-8 (byte {exc.start}); JSON must be sent as UTF-8."
            ) from None
        if not text:
            return None
        try:
            body = json.loads(text, parse_float=_json_number)
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except json.JSONDecodeError as exc:
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise BadRequestProblem(detail="The request body is nested too deeply.") from None
        except UnicodeEncodeError:
            raise BadRequestProblem(
                detail="The request body contains an unpaired surrogate escape (\\ud800-\\udfff)."
            ) from None
        nul = _nul_fields(body)
        if nul:  # no text column can store U+0000; say where it is rather than fail in the database
            raise ValidationProblem([{"field": f, "message": "must not contain the NUL character"} for f in nul])
        return body

    def _validate(self, body: t.Any) -> None:
        if not self._nullable and body is None:
            raise BadRequestProblem("Request body must not be empty")
        status = self._schema.get(VALIDATION_STATUS_KEY, 400) if isinstance(self._schema, dict) else 400
        _raise_if_invalid(self._validator, body, status=status)


class JSONResponseBodyValidator31(JSONResponseBodyValidator):
    """Validates JSON responses with Draft 2020-12; ``writeOnly`` properties are rejected."""

    @property
    def validator(self):
        return _compiled(self._schema, ResponseValidator)


class TextResponseBodyValidator31(TextResponseBodyValidator, JSONResponseBodyValidator31):
    """``text/plain`` responses: parsed as Connexion does, validated with Draft 2020-12."""


VALIDATOR_MAP_31 = {
    "parameter": ParameterValidator31,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": JSONRequestBodyValidator31}),
    "response": MediaTypeDict(
        {"*/*json": JSONResponseBodyValidator31, "text/plain": TextResponseBodyValidator31}
    ),
}


def _one_type(schema: dict) -> dict:
    types = schema.get("type")
    if isinstance(types, str):
        return schema
    concrete = [x for x in types or () if x != "null"]
    return {
        **schema,
        "type": concrete[0] if len(concrete) == 1 else "string",
        "nullable": "null" in (types or ()),
    }


def _single_type(definition: dict) -> dict:
    """The parameter definition with ``type: [T, "null"]`` read as ``type: T, nullable: true``
    (array items too). Only coercion sees this copy; validation uses the declared schema.

    Connexion coerces by a single type name; without exactly one non-null type (or without
    ``type``) the raw string is kept and left to validation.
    """

    def build(defn: dict) -> dict:
        schema = _one_type(defn.get("schema", {}))
        if schema["type"] == "array":
            schema = {**schema, "items": _one_type(schema.get("items", {}))}
        return {**defn, "schema": schema}

    return _cached("param", definition, build)


def _utc_date_time(value: str) -> str:
    """An RFC 3339 ``date-time`` restated in UTC (``...Z``); anything else unchanged (validation
    reports it). PostgreSQL refuses offsets beyond ±15:59, which RFC 3339 allows (``-21:01`` gave
    a 422). An instant that leaves the years 1–9999 on its way to UTC becomes the nearest end,
    which keeps its meaning as a bound of a filter."""
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lowercase "t" and "z"
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return value
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)
    return utc.isoformat().replace("+00:00", "Z")


class URIParser31(OpenAPIURIParser):
    """Query/path parsing that coerces ``type: [T, "null"]`` parameters to ``T`` (or ``None``)
    and restates ``format: date-time`` values in UTC (:func:`_utc_date_time`)."""

    def __init__(self, param_defns, body_defn):
        super().__init__([_single_type(p) for p in param_defns], body_defn)

    def resolve_params(self, params, _in):
        resolved = super().resolve_params(params, _in)
        for name, value in resolved.items():
            if isinstance(value, str) and self.param_schemas.get(name, {}).get("format") == "date-time":
                resolved[name] = _utc_date_time(value)
        return resolved


_get_val_from_param = _parameter_decorator._get_val_from_param
_parameter_decorator._get_val_from_param = lambda value, defn: _get_val_from_param(value, _single_type(defn))


_validate_spec_30 = OpenAPISpecification._validate_spec.__func__


def _validate_spec(cls, spec: dict) -> None:
    if str(spec.get("openapi", "")).startswith("3.1."):
        return  # validated by add_api() with openapi-spec-validator, which knows the file's URI
    _validate_spec_30(cls, spec)


OpenAPISpecification._validate_spec = classmethod(_validate_spec)


_infer_content_type = BaseResponseDecorator._infer_content_type


def _infer_content_type_31(data: t.Any, headers: dict) -> str | None:
    if extract_content_type(headers) is None:
        produces = set(operation.produces)
        candidates = [m for m in produces if not split_content_type(m)[0].lower().endswith("problem+json")]
        if len(produces) > 1 and len(candidates) == 1 and is_json_mimetype(candidates[0]):
            return candidates[0]
    return _infer_content_type(data, headers)


BaseResponseDecorator._infer_content_type = staticmethod(_infer_content_type_31)


def _spec_errors(spec: dict, base_uri: str) -> list[str]:
    try:  # first line only: the rest of a message repeats the whole offending instance
        errors = OpenAPIV31SpecValidator(spec, base_uri).iter_errors()
        return [f"{e.message.splitlines()[0]} (at {e.json_path})" for e in errors]
    except PointerToNowhere as e:  # e.ref is the bare JSON pointer, relative to its document
        return [f"cannot resolve $ref '#{e.ref}': no such location in its document"]
    except Unresolvable as e:
        return [f"cannot resolve $ref {e.ref!r}"]


def add_api(app: connexion.AsyncApp, spec: Path | str | dict, **kwargs: t.Any) -> None:
    """Validate an OpenAPI 3.1 document and register it on ``app``.

    ``spec`` is a path (relative ones are taken from the app's ``specification_dir``, as
    Connexion does; relative ``$ref``s resolve from the file's location) or an already loaded,
    self-contained document. ``kwargs`` go to ``app.add_api``; ``validator_map`` and
    ``uri_parser_class`` default to the 3.1 ones. Raises
    ``connexion.exceptions.InvalidSpecification`` listing every problem found.
    """
    if isinstance(spec, dict):
        name, document, base_uri, target = "the document", spec, "", spec
    else:
        path = Path(app.middleware.specification_dir, spec).resolve()
        name, base_uri, target = str(path), path.as_uri(), path
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3.1."):
        raise InvalidSpecification(f"{name}: expected an OpenAPI 3.1 document ('openapi: 3.1.x')")
    errors = _spec_errors(document, base_uri)
    if errors:
        raise InvalidSpecification(f"{name} is not a valid OpenAPI 3.1 document:\n  " + "\n  ".join(errors))
    kwargs.setdefault("validator_map", VALIDATOR_MAP_31)
    kwargs.setdefault("uri_parser_class", URIParser31)
    app.add_api(target, **kwargs)
