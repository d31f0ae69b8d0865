"""Customer search: ``POST /api/v1/customers/search`` over the hot projection.

The filter tree is compiled into one SQL statement with :mod:`psycopg.sql`: column names are
``sql.Identifier``\\ s taken from a whitelist — the customer properties in :data:`CORE` and the
fields that are hot, read from ``field_definition`` in the same transaction — and every value
the caller sent is a bound parameter (``sql.Placeholder``), cast to the column's type. No value
ever becomes SQL text.

Semantics:

* A predicate is ``{"field", "op", "value"}``; groups are ``{"all": [...]}``, ``{"any": [...]}``
  and ``{"not": ...}``. Logic is two-valued: a predicate on a field a customer has no value for
  is false, and its negation true (``ne``/``not_in`` match customers without a value; negation
  is pushed down to the predicates, so positive predicates keep their index).
* ``contains`` and ``starts_with`` are case-insensitive (trigram index); ``between`` is
  inclusive; ``is_null`` takes ``true``/``false``.
* Sorting: up to three keys, then the customer id as tie-breaker (in the last key's
  direction). Customers without a value sort after every value ascending and before every
  value descending (PostgreSQL's order, which the btree indexes serve in both directions).
* Archived customers are left out unless ``include_archived`` is true.
* Limits: groups nest at most :data:`MAX_DEPTH` deep, a filter has at most
  :data:`MAX_PREDICATES` predicates; beyond that (and for unknown fields, fields that are not hot,
  operators that do not fit the field's type, values of the wrong type) the answer is 422
  ``/problems/invalid-search`` with one entry per problem. A field whose backfill has not
  finished answers 409 ``/problems/field-not-yet-hot``.

The statement reads ``customer_search_all`` (callers who see every customer; they run as
``crm_api_all``) or ``customer_search``, the chain-scoped view of ``customer_hot`` (see migration
0010 for why views and not a policy), then joins ``customer`` — under its own row-level security
— for the 50 rows of the page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import sql

from crm.auth import Principal
from crm.errors import Conflict, InvalidCursor, Unprocessable
from crm.pagination import decode_cursor, page
from db.pool import queries, transaction

MAX_DEPTH = 5
MAX_PREDICATES = 30
OPERATION = "search_customers"

CUSTOMER_TYPES = ("RESTAURANT", "HOTEL", "CANTEEN", "CATERING", "OTHER")
CUSTOMER_STATUSES = ("LEAD", "PROSPECT", "ACTIVE", "INACTIVE", "ARCHIVED")

_COMPARE = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_null")
OPERATORS: dict[str, tuple[str, ...]] = {
    "TEXT": (*_COMPARE, "contains", "starts_with"),
    "INTEGER": _COMPARE,
    "NUMBER": _COMPARE,
    "DATE": _COMPARE,
    "TIMESTAMP": _COMPARE,
    "ENUM": ("eq", "ne", "in", "not_in", "is_null"),
    "UUID": ("eq", "ne", "in", "not_in", "is_null"),
    "BOOLEAN": ("eq", "ne", "is_null"),
    "MULTI_ENUM": ("has_any", "has_all", "is_null"),
}
_SQL_TYPE = {"TEXT": "text", "ENUM": "text", "INTEGER": "bigint", "NUMBER": "numeric", "DATE": "date",
             "TIMESTAMP": "timestamptz", "BOOLEAN": "boolean", "UUID": "uuid", "MULTI_ENUM": "text"}
_COMPARISON = {"eq": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_NEGATED = {"ne": "eq", "not_in": "in"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Column:
    """A searchable column of ``customer_search``."""

    key: str
    kind: str
    column: str
    options: tuple[str, ...] | None = None
    sql_type: str | None = None  # overrides _SQL_TYPE (the core enums)
    nullable: bool = True
    expression: sql.Composable | None = None  # computed when read instead of a column of h

    @property
    def ref(self) -> sql.Composable:
        """The SQL of the value: ``h.<column>``, or the expression."""
        return self.expression if self.expression is not None else sql.SQL("h.{}").format(sql.Identifier(self.column))

    @property
    def cast(self) -> str:
        return self.sql_type or _SQL_TYPE[self.kind]

    @property
    def sortable(self) -> bool:
        return self.kind not in ("MULTI_ENUM", "UUID")


CORE: dict[str, Column] = {c.key: c for c in (
    Column("customer_number", "TEXT", "customer_number", nullable=False),
    Column("name", "TEXT", "name", nullable=False),
    Column("type", "ENUM", "type", CUSTOMER_TYPES, "customer_type", nullable=False),
    Column("status", "ENUM", "status", CUSTOMER_STATUSES, "customer_status", nullable=False),
    Column("chain_id", "UUID", "chain_id"),
    Column("owner", "TEXT", "owner"),
    Column("city", "TEXT", "city"),
    Column("postal_code", "TEXT", "postal_code"),
    Column("country", "TEXT", "country"),
    Column("created_at", "TIMESTAMP", "created_at", nullable=False),
    Column("updated_at", "TIMESTAMP", "updated_at", nullable=False),
    # The sales-cycle facts (db/activities.py). The first two are kept in the projection by the
    # activity triggers; the 90-day count changes as time passes, so it is counted when searched
    # (index activity_customer_done_idx): alone it costs one index probe per customer examined.
    Column("last_activity_at", "TIMESTAMP", "last_activity_at"),
    Column("next_follow_up_at", "TIMESTAMP", "next_follow_up_at"),
    Column("activities_last_90_days", "INTEGER", "activities_last_90_days", nullable=False, expression=sql.SQL(
        "(select count(*) from activity as a where a.customer_id = h.customer_id and a.status = 'DONE' "
        "and a.occurred_at > now() - interval '90 days')"
    )),
)}
DEFAULT_SORT = ({"field": "name", "direction": "asc"},)


class InvalidSearch(Unprocessable):
    type = "/problems/invalid-search"


class FieldNotYetHot(Conflict):
    type = "/problems/field-not-yet-hot"


class _Errors(list):
    def add(self, path: str, message: str) -> None:
        self.append({"field": path, "message": message})


# --- reading the request ---------------------------------------------------------------------

def _check_shape(node: Any, depth: int, found: set[str], errors: _Errors, path: str, budget: list[int]) -> None:
    """Collect the field keys of a filter and check its depth and size, never descending
    deeper than :data:`MAX_DEPTH` (the body may nest far deeper than the spec describes)."""
    if not isinstance(node, dict):
        errors.add(path, "must be a predicate or a group")
        return
    group = [k for k in ("all", "any", "not") if k in node]
    if not group:
        budget[0] -= 1
        if budget[0] == -1:
            errors.add("filter", f"a filter has at most {MAX_PREDICATES} predicates")
        if isinstance(node.get("field"), str):
            found.add(node["field"])
        return
    if depth >= MAX_DEPTH:
        errors.add(path, f"groups nest at most {MAX_DEPTH} levels deep")
        return
    kind = group[0]
    if len(node) != 1 or (kind != "not" and (not isinstance(node[kind], list) or not node[kind])):
        errors.add(path, "a group is exactly one of all (a list), any (a list) or not (a filter)")
        return
    if kind == "not":
        _check_shape(node["not"], depth + 1, found, errors, f"{path}.not", budget)
    else:
        for i, child in enumerate(node[kind]):
            _check_shape(child, depth + 1, found, errors, f"{path}.{kind}.{i}", budget)


_INVALID = object()


def _convert(col: Column, value: Any, path: str, errors: _Errors) -> Any:
    """One scalar of a predicate as the Python value bound for the column's type (or
    :data:`_INVALID`, with an error recorded)."""
    kind = col.kind
    problem = None
    if kind in ("TEXT", "ENUM", "MULTI_ENUM"):
        if not isinstance(value, str):
            problem = "must be a string"
        elif col.options is not None and value not in col.options:
            problem = f"is not an option of {col.key!r} ({', '.join(col.options)})"
    elif kind == "INTEGER":
        if isinstance(value, float) and value.is_integer():  # JSON's 6.0 is the integer 6
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problem = "must be an integer"
        elif abs(value) > 2**63 - 1:
            problem = "is out of range"
    elif kind == "NUMBER":
        if isinstance(value, bool) or not isinstance(value, int | float) or not Decimal(str(value)).is_finite():
            problem = "must be a number"
        else:
            value = Decimal(str(value))
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            problem = "must be true or false"
    elif kind == "DATE":
        try:
            value = dt.date.fromisoformat(value) if isinstance(value, str) and _DATE.match(value) else None
        except ValueError:
            value = None
        problem = "must be a date (YYYY-MM-DD)" if value is None else None
    elif kind == "TIMESTAMP":
        try:
            value = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None or value.tzinfo is None:
            problem = "must be an RFC 3339 date-time with a time zone"
    elif kind == "UUID":
        try:
            value = uuid.UUID(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        problem = "must be a UUID" if value is None else None
    if problem:
        errors.add(path, problem)
        return _INVALID
    return value


def _like(term: str, prefix: bool) -> str:
    """An ILIKE pattern (a bound value) matching ``term`` literally: at the start or anywhere."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if prefix else "%" + escaped + "%"


class _Compiler:
    """Turns the filter and sort of a request into SQL fragments and named parameters."""

    def __init__(self, columns: dict[str, Column], not_hot: dict[str, str], pending: set[str]) -> None:
        self.columns = columns
        self.not_hot = not_hot  # key -> why it cannot be searched (422)
        self.pending = pending  # keys of fields whose backfill runs (409)
        self.pending_used: set[str] = set()
        self.errors = _Errors()
        self.params: dict[str, Any] = {}

    def param(self, value: Any, cast: str, array: bool = False) -> sql.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.SQL("cast({} as {})").format(sql.Placeholder(name), sql.SQL(cast + ("[]" if array else "")))

    def column(self, key: Any, path: str) -> Column | None:
        if not isinstance(key, str):
            self.errors.add(path, "must name a field")
            return None
        col = self.columns.get(key)
        if col is None and key in self.pending:
            self.pending_used.add(key)
        elif col is None:
            self.errors.add(path, self.not_hot.get(key) or f"{key!r} is not a customer property or field")
        return col

    def compile(self, node: dict[str, Any], negated: bool, path: str) -> sql.Composable:
        for kind in ("all", "any"):
            if kind in node:
                parts = [self.compile(child, negated, f"{path}.{kind}.{i}") for i, child in enumerate(node[kind])]
                joiner = " and " if (kind == "all") != negated else " or "  # De Morgan under "not"
                return sql.SQL("({})").format(sql.SQL(joiner).join(parts))
        if "not" in node:
            return self.compile(node["not"], not negated, f"{path}.not")
        return self.predicate(node, negated, path)

    def predicate(self, node: dict[str, Any], negated: bool, path: str) -> sql.Composable:
        if set(node) - {"field", "op", "value"} or "op" not in node or "field" not in node:
            self.errors.add(path, "a predicate is {field, op, value}")
            return sql.SQL("false")
        col = self.column(node["field"], f"{path}.field")
        op = node["op"]
        if col is None:
            return sql.SQL("false")
        if not isinstance(op, str) or op not in OPERATORS[col.kind]:
            self.errors.add(f"{path}.op", f"{op!r} does not apply to {col.kind} field {col.key!r} "
                                          f"(use {', '.join(OPERATORS[col.kind])})")
            return sql.SQL("false")
        if op in _NEGATED:
            op, negated = _NEGATED[op], not negated
        ident = col.ref
        value, vpath = node.get("value"), f"{path}.value"
        if op == "is_null":
            if not isinstance(value, bool):
                self.errors.add(vpath, "must be true (no value) or false (has a value)")
                return sql.SQL("false")
            return sql.SQL("{} is null" if value != negated else "{} is not null").format(ident)
        positive = self._positive(col, op, ident, value, vpath)
        if not negated:
            return positive
        return sql.SQL("({} is null or not {})").format(ident, positive)

    def _positive(self, col: Column, op: str, ident: sql.Composable, value: Any, path: str) -> sql.Composable:
        if op in ("in", "has_any", "has_all", "between"):
            if not isinstance(value, list) or not value or (op == "between" and len(value) != 2):
                self.errors.add(path, "must be [low, high]" if op == "between" else "must be a non-empty list")
                return sql.SQL("false")
            items = [_convert(col, v, f"{path}.{i}", self.errors) for i, v in enumerate(value)]
            if _INVALID in items:
                return sql.SQL("false")
            if op == "between":
                if items[0] > items[1]:
                    self.errors.add(path, "the low bound is greater than the high bound")
                return sql.SQL("{} between {} and {}").format(
                    ident, self.param(items[0], col.cast), self.param(items[1], col.cast)
                )
            if op == "in":
                return sql.SQL("{} = any ({})").format(ident, self.param(items, col.cast, array=True))
            operator = sql.SQL("&&" if op == "has_any" else "@>")
            return sql.SQL("{} {} {}").format(ident, operator, self.param(items, "text", array=True))
        if op in ("contains", "starts_with"):
            if not isinstance(value, str) or not value:
                self.errors.add(path, "must be a non-empty string")
                return sql.SQL("false")
            return sql.SQL("{} ilike {}").format(ident, self.param(_like(value, op == "starts_with"), "text"))
        if isinstance(value, list) or value is None:
            self.errors.add(path, "must be a single value")
            return sql.SQL("false")
        converted = _convert(col, value, path, self.errors)
        if converted is _INVALID:
            return sql.SQL("false")
        return sql.SQL("{} {} {}").format(ident, sql.SQL(_COMPARISON[op]), self.param(converted, col.cast))

    def sort_keys(self, sort: list[dict[str, Any]]) -> list[tuple[Column, bool]]:
        keys, seen = [], set()
        for i, item in enumerate(sort):
            col = self.column(item.get("field"), f"sort.{i}.field")
            if col is None:
                continue
            if not col.sortable:
                self.errors.add(f"sort.{i}.field", f"{col.kind} field {col.key!r} cannot be sorted on")
            elif col.key in seen:
                self.errors.add(f"sort.{i}.field", f"{col.key!r} is named twice")
            seen.add(col.key)
            keys.append((col, item.get("direction", "asc") == "desc"))
        return keys

    def after(self, keys: list[tuple[Column, bool]], values: list[Any], last_id: uuid.UUID) -> sql.Composable:
        """The keyset condition "comes after (values, last_id)" in the sort order: NULLs last
        ascending and first descending, the id in the last key's direction."""
        condition: sql.Composable = sql.SQL("h.customer_id {} {}").format(
            sql.SQL("<" if keys[-1][1] else ">"), self.param(last_id, "uuid")
        )
        bound: sql.Composable | None = None
        for index in range(len(keys) - 1, -1, -1):
            (col, desc), value = keys[index], values[index]
            ident = col.ref
            if value is None:
                strictly = sql.SQL("{} is not null").format(ident) if desc else None
                equal = sql.SQL("{} is null").format(ident)
            else:
                p = self.param(value, col.cast)
                if desc:
                    strictly = sql.SQL("{} < {}").format(ident, p)
                elif col.nullable:
                    strictly = sql.SQL("({} > {} or {} is null)").format(ident, p, ident)
                else:
                    strictly = sql.SQL("{} > {}").format(ident, p)
                equal = sql.SQL("{} = {}").format(ident, p)
                if index == 0 and (desc or not col.nullable):  # a plain range the index can start from
                    bound = sql.SQL("{} {} {}").format(ident, sql.SQL("<=" if desc else ">="), p)
            tie = sql.SQL("({} and {})").format(equal, condition)
            condition = sql.SQL("({} or {})").format(strictly, tie) if strictly is not None else tie
        return sql.SQL("{} and {}").format(bound, condition) if bound is not None else condition


def _cursor_values(keys: list[tuple[Column, bool]], raw: list[Any]) -> tuple[list[Any], uuid.UUID]:
    """The sort values of a cursor (encoded with ``str()``) back as bound Python values."""
    parse = {"INTEGER": int, "NUMBER": Decimal, "DATE": dt.date.fromisoformat,
             "TIMESTAMP": dt.datetime.fromisoformat}
    values = [v if v is None or col.kind not in parse else parse[col.kind](v)
              for (col, _), v in zip(keys, raw[:-1], strict=True)]
    return values, uuid.UUID(raw[-1])


def _statement(where: list[sql.Composable], keys: list[tuple[Column, bool]], limit: sql.Composable,
               view: str) -> sql.Composed:
    def order(prefix: str, refs: list[sql.Composable]) -> sql.Composable:
        terms = [sql.SQL("{} {}").format(r, sql.SQL("desc nulls first" if d else "asc nulls last"))
                 for r, (_, d) in zip(refs, keys, strict=True)]
        terms.append(sql.SQL("{}.customer_id {}").format(sql.SQL(prefix), sql.SQL("desc" if keys[-1][1] else "asc")))
        return sql.SQL(", ").join(terms)

    aliases = [f"s{i}" for i in range(len(keys))]
    return sql.SQL(
        "select customer_json(c)::text as body, p.customer_id, {outer_cols} "
        "from (select h.customer_id, {inner_cols} from {view} as h where {where} "
        "order by {inner_order} limit {limit}) as p "
        "join customer as c on c.id = p.customer_id "
        "order by {outer_order}"
    ).format(
        view=sql.Identifier(view),
        outer_cols=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(a)) for a in aliases),
        inner_cols=sql.SQL(", ").join(sql.SQL("{} as {}").format(c.ref, sql.Identifier(a))
                                      for (c, _), a in zip(keys, aliases, strict=True)),
        where=sql.SQL(" and ").join(where) if where else sql.SQL("true"),  # no filter, archived included
        inner_order=order("h", [c.ref for c, _ in keys]),
        limit=limit,
        outer_order=order("p", [sql.SQL("p.{}").format(sql.Identifier(a)) for a in aliases]),
    )


@dataclass
class Plan:
    """A compiled search: the statement, its parameters, and what its cursors are bound to."""

    statement: sql.Composed
    params: dict[str, Any]
    bound: dict[str, Any]
    sort_columns: tuple[str, ...]


def referenced_fields(body: dict[str, Any]) -> list[str]:
    """The field keys (not customer properties) a search names; 422 when its filter is too deep,
    too large or malformed beyond what the spec checks."""
    errors, found = _Errors(), set()
    if "filter" in body:
        _check_shape(body["filter"], 0, found, errors, "filter", [MAX_PREDICATES])
    if errors:
        raise InvalidSearch(f"The filter is too large or malformed: {errors[0]['message']}", errors=errors)
    found |= {s["field"] for s in body.get("sort") or () if isinstance(s.get("field"), str)}
    return sorted(k for k in found if k not in CORE)


def plan(body: dict[str, Any], states: list[dict[str, Any]], all_rows: bool = True) -> Plan:
    """Compile a search request (already checked by :func:`referenced_fields`) against the states
    of the fields it names (rows of ``search_field_states``), for a caller who sees every customer
    (``all_rows``) or the chain-scoped ones. Raises 422 :class:`InvalidSearch`, 409
    :class:`FieldNotYetHot`, or 400 for a cursor that does not fit."""
    columns, not_hot, pending = dict(CORE), {}, {}
    for s in states:
        if s["projection"] == "HOT":
            options = tuple(s["options"]) if s["options"] else None
            columns[s["key"]] = Column(s["key"], s["data_type"], f"f_{s['key']}", options)
        elif s["hot"]:
            pending[s["key"]] = {"key": s["key"], "processed": s["processed"], "total": s["total"]}
        else:
            not_hot[s["key"]] = (f"{s['key']!r} is not a hot field; only hot fields and customer "
                                 "properties can be filtered and sorted on")
    compiler = _Compiler(columns, not_hot, set(pending))
    where: list[sql.Composable] = []
    if not body.get("include_archived"):
        where.append(sql.SQL("h.status <> 'ARCHIVED'"))
    if "filter" in body:
        where.append(compiler.compile(body["filter"], False, "filter"))
    keys = compiler.sort_keys(list(body.get("sort") or DEFAULT_SORT))
    if compiler.errors:
        first = compiler.errors[0]
        more = f" (and {len(compiler.errors) - 1} more)" if len(compiler.errors) > 1 else ""
        raise InvalidSearch(f"The search cannot be run: {first['field']}: {first['message']}{more}",
                            errors=list(compiler.errors))
    if compiler.pending_used:
        names = sorted(compiler.pending_used)
        raise FieldNotYetHot(
            "Field(s) " + ", ".join(map(repr, names)) + " are being made hot: until the backfill has "
            "finished a search on them would miss customers. Retry when it is done.",
            fields=[pending[k] for k in names],
        )
    bound = {"filter": body.get("filter"), "sort": [[c.key, d] for c, d in keys],
             "include_archived": bool(body.get("include_archived"))}
    raw = decode_cursor(OPERATION, bound, body.get("cursor"))
    if raw is not None:
        try:
            values, last_id = _cursor_values(keys, raw)
        except (ValueError, TypeError, ArithmeticError):
            raise InvalidCursor("The cursor does not fit this search; start again without it.") from None
        where.append(compiler.after(keys, values, last_id))
    limit = compiler.param(_limit(body) + 1, "bigint")
    view = "customer_search_all" if all_rows else "customer_search"
    return Plan(_statement(where, keys, limit, view), compiler.params, bound,
                (*[f"s{i}" for i in range(len(keys))], "customer_id"))


def _limit(body: dict[str, Any]) -> int:
    return int(body.get("limit", 50))  # the schema's integer admits 6.0


async def search_customers(principal: Principal, body: dict[str, Any]) -> bytes:
    """The page as JSON text (``{"items": [...], "next_cursor": ...}``). The customers' JSON comes
    from the database as text and goes out as it is: parsing 50 customers with their fields into
    Python objects and serialising them again cost a third of a request's CPU time."""
    keys = referenced_fields(body)
    async with transaction(principal) as conn:
        await queries.lock_search_projection(conn)
        states = [dict(r) async for r in queries.search_field_states(conn, keys=keys)] if keys else []
        compiled = plan(body, states, all_rows=principal.db_scope == "all")
        # Never prepared: a search's best plan depends on its values (how selective each predicate
        # is, whether walking the sort key's index finds 50 rows soon), so it is planned with them
        # every time. A generic plan of a prepared statement (psycopg prepares after five
        # executions) chose bitmap scans over the whole table, 10-30x slower at 1M customers. Not
        # plan_cache_mode = force_custom_plan either: that also re-plans the SQL functions the page
        # calls (customer_json) for every row, 5x the database time of a page.
        cursor = await conn.execute(compiled.statement, compiled.params, prepare=False)
        rows = await cursor.fetchall()
    result = page(OPERATION, compiled.bound, rows, _limit(body), compiled.sort_columns)
    return ('{"items": [' + ", ".join(result["items"]) + '], "next_cursor": '
            + json.dumps(result["next_cursor"]) + "}").encode()
