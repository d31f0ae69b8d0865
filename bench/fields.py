"""Field-Bridge benchmark: customer search over the hot projection, field-value writes, and making
a field hot, at 1,000,000 customers — ``python -m bench.fields``.

A throwaway embedded PostgreSQL (fsync on) gets three databases, built set-based in SQL: 10,000,
100,000 and 1,000,000 customers with 60 custom fields, 20 of them hot (realistic distributions:
skewed enums, sparse multi-enums, free-text suppliers, ranges; some selective, some not). The API
is served by gunicorn (bench/server.py) and loaded with wrk at 8 connections; the same SQL runs
through pgbench in the same run:

(a) search: one selective predicate (an enum option held by ~2 %) + sort on a hot field + limit 50
(b) search: three predicates — enum ``in``, integer ``between``, multi-enum ``has_all``
(c) search: text ``contains`` (trigram index)
(d) PATCH of three field values of a random customer (validation, the write, the triggers
    projecting the row, the outbox event)

(a) also runs at 10,000 and 100,000 customers, and a cold field (values at ~70 % of the
customers) is made hot at 1,000,000 through the API (the background job) while (a) keeps
running, measuring the time until it is searchable. The Markdown report goes to stdout.

The pgbench scripts are the statements the API sends for one request: ``BEGIN``, the claims, the
search's lock and field lookup, the statement compiled by db/search.py for that body, ``COMMIT``
(for PATCH: lock, validation, update). Values are pgbench variables bound as parameters, as
psycopg binds them: searches with ``-M extended`` (the API never prepares a search statement),
PATCH with ``-M prepared``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench import cpu, pgbench, server
from bench.stats import BenchError, Measurement
from bench.wrk import ensure_wrk
from db.embedded import EmbeddedPostgres
from db.field_jobs import create_index_sql, hot_indexes
from db.migrate import migrate

_started = time.monotonic()
QUERIES_DIR = Path(__file__).resolve().parent.parent / "db" / "queries"

# --- the data set --------------------------------------------------------------------------------

CUISINES = ["GERMAN", "ITALIAN", "ASIAN", "MEDITERRANEAN", "INTERNATIONAL", "TURKISH", "FRENCH", "GREEK",
            "INDIAN", "AUSTRIAN", "SPANISH", "JAPANESE", "MEXICAN", "THAI", "VEGAN"]
DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT"]
SUPPLIERS = ["Metro Cash & Carry", "Transgourmet", "Chefs Culinar", "Selgros", "Hamberger Großmarkt", "Intergast",
             "Kastner", "Deli Star", "Handelshof", "Fegro", "Frischeparadies", "Gastro Partner", "Bauer Frischdienst",
             "Citti Großmarkt", "Eurogast", "Rungis Express", "Prodega", "Gastro-Union", "Kochwerk Zentrale",
             "Culinara Service"]
REGIONS = ["Nord", "Süd", "West", "Ost", "Mitte", "Bayern", "Rheinland", "Sachsen", "Tirol", "Zürich"]


def _q(values: list[str]) -> str:
    """A SQL array literal of constant strings (catalogue constants only, never user input)."""
    return "array[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: list[str], skew: float = 1.0) -> str:
    """One of ``values``, the first ones more often the larger ``skew`` is."""
    return f"({_q(values)})[1 + floor({len(values)} * power(random(), {skew}))::int]"


# The generators yield JSON text (catalogue strings need no escaping): building jsonb values one
# by one costs three times as much per customer.
def _text(expr: str) -> str:
    return f"""'"' || {expr} || '"'"""


def _enum(values: list[str], skew: float = 1.0) -> str:
    return _text(_pick(values, skew))


def _int(expr: str) -> str:
    return f"({expr})::int::text"


def _bool(p: float) -> str:
    return f"case when random() < {p} then 'true' else 'false' end"


def _date(start: str, days: int, sign: str = "+") -> str:
    return _text(f"to_char(date '{start}' {sign} floor(random() * {days})::int, 'YYYY-MM-DD')")


def _sparse(expr: str, present: float) -> str:
    return f"case when random() < {present} then {expr} end"


def _subset(values: list[str], p: float) -> str:
    # "g > 0" ties the subquery to the row, so it runs per customer; no option chosen: no value
    return f"""(select '[' || string_agg('"' || v || '"', ',') || ']' from unnest({_q(values)}) as v
                where random() < {p} and g > 0)"""


@dataclass(frozen=True)
class Field:
    key: str
    data_type: str
    generator: str  # SQL yielding one customer's value as JSON text (or NULL); g is the row number
    options: list[str] | None = None
    hot: bool = False


SEGMENTS = ["CASUAL", "QSR", "FINE_DINING", "CANTEEN", "HOTEL", "BAKERY_CAFE", "EVENT"]
CERTIFICATES = ["BIO", "MSC", "HALAL", "KOSHER", "FAIRTRADE", "IFS"]
HOT_FIELDS = [
    Field("cuisine", "ENUM", _enum(CUISINES, 2.2), CUISINES, True),
    Field("seats", "INTEGER", _int("10 + floor(power(random(), 2) * 400)"), hot=True),
    Field("lunch_covers", "INTEGER", _sparse(_int("floor(power(random(), 1.5) * 800)"), 0.85), hot=True),
    Field("delivery_days", "MULTI_ENUM", _subset(DAYS, 0.4), DAYS, True),
    Field("purchasing_volume_class", "ENUM", _enum(["A", "B", "C", "D"], 0.6), ["A", "B", "C", "D"], True),
    Field("allergen_policy", "ENUM", _enum(["NONE", "LABELLED", "STRICT", "CERTIFIED"], 1.4),
          ["NONE", "LABELLED", "STRICT", "CERTIFIED"], True),
    Field("uses_convenience_products", "BOOLEAN", _bool(0.65), hot=True),
    Field("competitor_supplier", "TEXT", _sparse(_text(f"{_pick(SUPPLIERS, 1.8)} || ' ' || {_pick(REGIONS)}"), 0.9),
          hot=True),
    Field("opening_date", "DATE", _date("1950-01-01", 27000), hot=True),
    Field("annual_revenue_eur", "NUMBER", "round((20000 * exp(random() * 5))::numeric, 2)::text", hot=True),
    Field("kitchen_staff", "INTEGER", _int("1 + floor(power(random(), 2) * 40)"), hot=True),
    Field("menu_price_level", "ENUM", _enum(["LOW", "MID", "HIGH", "PREMIUM"], 1.3),
          ["LOW", "MID", "HIGH", "PREMIUM"], True),
    Field("has_catering_service", "BOOLEAN", _bool(0.2), hot=True),
    Field("certifications", "MULTI_ENUM", _subset(CERTIFICATES, 0.08), CERTIFICATES, True),
    Field("last_visit_date", "DATE", _date("2026-11-01", 730, "-"), hot=True),
    Field("potential_score", "INTEGER", _int("floor(random() * 101)"), hot=True),
    Field("outlet_segment", "ENUM", _enum(SEGMENTS, 1.5), SEGMENTS, True),
    Field("wholesaler_id", "INTEGER", "(1000000 + g)::text", hot=True),  # unique: a very selective predicate
    Field("avg_ticket_eur", "NUMBER", "round((5 + power(random(), 2) * 115)::numeric, 2)::text", hot=True),
    Field("open_sundays", "BOOLEAN", _bool(0.45), hot=True),
]

_COLD = [  # key, data type
    ("terrace_seats", "INTEGER"), ("parking_spaces", "INTEGER"), ("wifi", "BOOLEAN"), ("chef_name", "TEXT"),
    ("notes", "TEXT"), ("preferred_visit_day", "ENUM"), ("payment_terms_days", "INTEGER"),
    ("delivery_window", "TEXT"), ("freezer_m3", "NUMBER"), ("cold_room_m3", "NUMBER"),
    ("menu_languages", "MULTI_ENUM"), ("family_business", "BOOLEAN"), ("franchise", "BOOLEAN"),
    ("instagram", "TEXT"), ("google_rating", "NUMBER"), ("tripadvisor_rating", "NUMBER"),
    ("seasonal_closure", "TEXT"), ("breakfast_service", "BOOLEAN"), ("dinner_covers", "INTEGER"),
    ("vegan_share_pct", "INTEGER"), ("frozen_share_pct", "INTEGER"), ("order_channel", "ENUM"),
    ("last_order_date", "DATE"), ("contract_end_date", "DATE"), ("key_account", "BOOLEAN"),
    ("sales_region", "ENUM"), ("dish_of_the_day", "BOOLEAN"), ("menu_change_frequency", "ENUM"),
    ("hygiene_audit_date", "DATE"), ("staff_meals_per_day", "INTEGER"), ("beer_supplier", "TEXT"),
    ("coffee_supplier", "TEXT"), ("pos_system", "ENUM"), ("tasting_interest", "ENUM"),
    ("newsletter_opt_in", "BOOLEAN"), ("sample_budget_eur", "NUMBER"), ("preferred_pack_size", "ENUM"),
    ("allergen_training_date", "DATE"), ("halal_kitchen", "BOOLEAN"), ("gluten_free_options", "BOOLEAN"),
]
_COLD_OPTIONS = ["OPTION_A", "OPTION_B", "OPTION_C", "OPTION_D", "OPTION_E"]
_COLD_GENERATORS = {
    "INTEGER": _int("floor(random() * 500)"),
    "NUMBER": "round((random() * 1000)::numeric, 1)::text",
    "BOOLEAN": _bool(0.5),
    "TEXT": _text("'Text ' || floor(random() * 10000)::int"),
    "DATE": _date("2020-01-01", 2000),
    "ENUM": _enum(_COLD_OPTIONS, 1.5),
    "MULTI_ENUM": _subset(_COLD_OPTIONS[:4], 0.3),
}
COLD_FIELDS = [
    Field(key, data_type, _sparse(_COLD_GENERATORS[data_type], 0.7),
          _COLD_OPTIONS if data_type in ("ENUM", "MULTI_ENUM") else None)
    for key, data_type in _COLD
]
FIELDS = HOT_FIELDS + COLD_FIELDS
MAKE_HOT_FIELD = "menu_change_frequency"  # cold, ENUM, a value at ~70 % of the customers

NAMES = ["Gasthaus", "Restaurant", "Bistro", "Hotel", "Kantine", "Trattoria", "Brasserie", "Landgasthof", "Café",
         "Wirtshaus"]
PLACES = ["Zur Linde", "Am Markt", "Sonne", "Krone", "Adler", "Seeblick", "Stadtgarten", "Rathaus", "Alte Mühle",
          "Hirschen", "Post", "Bären", "Lamm", "Rose", "Schwan", "Waldhorn", "Ochsen", "Engel", "Löwen", "Stern"]
CITIES = ["München", "Stuttgart", "Köln", "Hamburg", "Berlin", "Frankfurt am Main", "Leipzig", "Nürnberg", "Freiburg",
          "Dresden", "Wien", "Salzburg", "Zürich", "Basel", "Bremen", "Hannover", "Mainz", "Augsburg", "Bonn", "Graz"]


COLD_POOL = 1000


def _members(fields: list[Field]) -> str:
    return ", ".join(f"""'"{f.key}":' || {f.generator}""" for f in fields)


def _fields_sql() -> str:
    """The JSON object of one customer's values, assembled as text and parsed once. The cold
    fields (never searched; only their presence and size matter) come as one of COLD_POOL
    pre-built fragments: generating 40 values per customer would double the build time."""
    return (f"('{{' || concat_ws(',', {_members(HOT_FIELDS)}, "
            f"pool.fragments[1 + floor(random() * {COLD_POOL})::int]) || '}}')::jsonb")


def _customers_sql() -> str:
    return f"""
        insert into customer (customer_number, name, type, status, chain_id, owner, street, postal_code, city,
                              country, created_at, updated_at, fields)
        select
            'B-' || lpad(g::text, 7, '0'),
            {_pick(NAMES)} || ' ' || {_pick(PLACES)} || ' ' || g,
            {_pick(['RESTAURANT', 'RESTAURANT', 'RESTAURANT', 'HOTEL', 'CANTEEN', 'CATERING', 'OTHER'])}::customer_type,
            {_pick(['LEAD', 'PROSPECT', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'INACTIVE', 'ARCHIVED'])}::customer_status,
            case when random() < 0.25 then ch.ids[1 + floor(random() * cardinality(ch.ids))::int] end,
            'rep' || floor(random() * 40)::int,
            'Hauptstraße ' || (1 + floor(random() * 200)::int),
            lpad((10000 + floor(random() * 89999)::int)::text, 5, '0'),
            {_pick(CITIES, 1.3)},
            'DE',
            now() - random() * interval '2000 days',
            now() - random() * interval '100 days',
            {_fields_sql()}
        from generate_series(cast(%(first)s as int), cast(%(last)s as int)) as g
        cross join (select array_agg(id) as ids from chain) as ch
        cross join (select array_agg(f.fragment) as fragments from bench_cold_pool as f) as pool
    """


def _log(message: str) -> None:
    print(f"[{time.monotonic() - _started:5.0f} s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _indexes_dropped(conn: psycopg.Connection, table: str):
    """Drop a table's secondary indexes for a bulk load and build them again afterwards."""
    rows = conn.execute(
        "select i.relname as name, pg_get_indexdef(x.indexrelid) as ddl from pg_index as x "
        "join pg_class as i on i.oid = x.indexrelid left join pg_constraint as k on k.conindid = x.indexrelid "
        "where x.indrelid = %s::regclass and k.oid is null", (table,)
    ).fetchall()
    for row in rows:
        conn.execute(sql.SQL("drop index {}").format(sql.Identifier(row["name"])))
    yield
    for row in rows:
        conn.execute(row["ddl"])


def _parallel_insert(dsn: str, customers: int, streams: int = 2) -> None:
    """Insert the customers in ``streams`` concurrent connections (one per CPU here)."""
    failures: list[BaseException] = []

    def insert(first: int, last: int, seed: float) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("select setseed(%s)", (seed,))
                conn.execute("set session_replication_role = replica")
                for start in range(first, last + 1, 100_000):
                    conn.execute(_customers_sql(), {"first": start, "last": min(start + 99_999, last)})
        except psycopg.Error as exc:
            failures.append(exc)

    share = -(-customers // streams)
    threads = [threading.Thread(target=insert, args=(1 + i * share, min((i + 1) * share, customers), 0.1 + i / 10))
               for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise BenchError(f"generating customers failed: {failures[0]}")


def _parallel_projection(dsn: str, customers: int, streams: int = 2) -> None:
    """Project every customer with the triggers' own statement, in ``streams`` connections."""
    failures: list[BaseException] = []
    share = -(-customers // streams)

    def project(first: int, last: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("set session_replication_role = replica")
                source = sql.SQL("(select * from customer where customer_number between {} and {})").format(
                    sql.Literal(f"B-{first:07d}"), sql.Literal(f"B-{last:07d}")
                ).as_string(conn)
                upsert = conn.execute("select crm_hot_upsert_sql(%s)", (source,)).fetchone()[0]
                conn.execute(upsert)
        except psycopg.Error as exc:
            failures.append(exc)

    threads = [threading.Thread(target=project, args=(1 + i * share, min((i + 1) * share, customers)))
               for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise BenchError(f"projecting customers failed: {failures[0]}")


def data_version(customers: int) -> str:
    """What a built database depends on: the migrations, this catalogue, the size."""
    digest = hashlib.sha256(repr((FIELDS, COLD_POOL, customers)).encode())
    for path in sorted((Path(__file__).resolve().parent.parent / "db" / "migrations").glob("*.sql")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(dsn: str, customers: int) -> dict[str, float]:
    """Migrate and fill a database with ``customers`` customers, 40 chains and the 60 fields (20
    hot, projected and indexed). Returns the seconds each step took."""
    timings: dict[str, float] = {}
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("select set_config('crm.scope', 'all', false), setseed(0.42)")
        started = time.monotonic()
        conn.execute("insert into chain (name) select 'Kette ' || g from generate_series(1, 40) as g")
        for f in FIELDS:
            conn.execute("insert into field_definition (key, label, data_type, options, hot) "
                         "values (%s, %s, %s, %s, %s)",
                         (f.key, f.key.replace("_", " ").title(), f.data_type, f.options, f.hot))
            if f.hot:
                conn.execute("select crm_hot_add_column(%s)", (f.key,))
        conn.execute("create table bench_cold_pool as select concat_ws(',', "
                     + _members(COLD_FIELDS) + f") as fragment from generate_series(1, {COLD_POOL}) as g")
        conn.execute("set session_replication_role = replica")  # bulk load: no per-row triggers
        with _indexes_dropped(conn, "customer"):
            _parallel_insert(dsn, customers)
            timings["customers"] = time.monotonic() - started
            started = time.monotonic()
        timings["customer indexes"] = time.monotonic() - started
        conn.execute("drop table bench_cold_pool")
        started = time.monotonic()
        with _indexes_dropped(conn, "customer_hot"):
            _parallel_projection(dsn, customers)
            timings["projection"] = time.monotonic() - started
            started = time.monotonic()
            for f in HOT_FIELDS:
                for name, definition in hot_indexes(f.key, f.data_type):
                    conn.execute(create_index_sql(name, definition, concurrently=False))
        conn.execute("set session_replication_role = origin")
        conn.execute("update field_definition set projection = 'HOT' where hot")
        timings["projection indexes"] = time.monotonic() - started
        started = time.monotonic()
        conn.execute("create table bench_ids (k integer primary key, id uuid not null)")
        conn.execute("insert into bench_ids (k, id) select row_number() over (), s.id "
                     "from (select id from customer where status <> 'ARCHIVED' order by random() limit 2000) as s")
        conn.execute("vacuum (analyze) customer, customer_hot, chain, field_definition, bench_ids")
        conn.execute("checkpoint")
        conn.execute("create table bench_meta as select %s::text as data_version", (data_version(customers),))
        timings["vacuum analyze"] = time.monotonic() - started
    return timings


# --- what is measured ----------------------------------------------------------------------------

SEARCHES = {
    "(a) one selective predicate + sort": {
        "filter": {"field": "cuisine", "op": "eq", "value": "THAI"},
        "sort": [{"field": "seats", "direction": "desc"}], "limit": 50,
    },
    "(b) enum + range + multi-enum": {
        "filter": {"all": [
            {"field": "cuisine", "op": "in", "value": ["ITALIAN", "MEDITERRANEAN"]},
            {"field": "seats", "op": "between", "value": [80, 200]},
            {"field": "delivery_days", "op": "has_all", "value": ["MON", "FRI"]},
        ]},
        "sort": [{"field": "potential_score", "direction": "desc"}], "limit": 50,
    },
    "(c) text contains": {
        "filter": {"field": "competitor_supplier", "op": "contains", "value": "gourmet"}, "limit": 50,
    },
}
CASE_A = "(a) one selective predicate + sort"
CASE_D = "(d) PATCH 3 field values"
PATCH_CUISINES = ["ITALIAN", "GERMAN", "THAI", "GREEK", "FRENCH"]
PATCH_DAYS = ['["MON","FRI"]', '["TUE"]', '["WED","THU","SAT"]', '["MON","TUE","WED","THU","FRI"]']
CONNECTIONS = 8
SINGLE_SECONDS = 4
TOKEN_SUB = "bench"

WRK_LUA = r"""
-- Field-Bridge benchmark requests (generated by python -m bench.fields).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local mode = os.getenv("BENCH_MODE")
local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end
if mode == "search" then
   wrk.method = "POST"
   wrk.body = os.getenv("BENCH_BODY")
   wrk.headers["Content-Type"] = "application/json"
else
   local ids = {}
   for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
      if line ~= "" then ids[#ids + 1] = line end
   end
   local cuisines = {CUISINES}
   local days = {DAYS}
   function init(_args)
      math.randomseed(os.time() * 1000 + (thread_no or 0))
   end
   function request()
      local body = string.format('{"seats": %d, "cuisine": "%s", "delivery_days": %s}', math.random(10, 400),
         cuisines[math.random(#cuisines)], days[math.random(#days)])
      -- a headers table replaces wrk.headers: name the token again
      return wrk.format("PATCH", "/api/v1/customers/" .. ids[math.random(#ids)] .. "/fields",
         {["Authorization"] = wrk.headers["Authorization"], ["Content-Type"] = "application/merge-patch+json",
          ["If-Match"] = "*"}, body)
   end
end
function done(summary, latency, _requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p95_us": %.1f, "p99_us": %.1f, '
         .. '"errors": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
      e.connect + e.read + e.write + e.timeout + e.status))
end
"""


@dataclass
class Target:
    """One database with the API serving it."""

    customers: int
    dsn: str
    base_url: str = ""
    api: subprocess.Popen | None = None


@dataclass
class Row:
    case: str
    customers: int
    api: Measurement
    sql: Measurement | None
    api_cpu: cpu.CpuPerRequest | None = None  # API workers + PostgreSQL, per request
    sql_cpu: cpu.CpuPerRequest | None = None  # PostgreSQL, per pgbench transaction
    single: Measurement | None = None  # the API at 1 connection: service time without queueing


@dataclass
class Context:
    wrk: str
    work_dir: Path
    token: str
    duration: int
    warmup: int
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    meter: cpu.CpuMeter | None = None


def _wrk(ctx: Context, url: str, seconds: int, env: dict[str, str], connections: int = CONNECTIONS
         ) -> subprocess.Popen[str]:
    lua = ctx.work_dir / "fields.lua"
    if not lua.exists():
        lua.write_text(WRK_LUA.replace("{CUISINES}", "{" + ", ".join(f'"{c}"' for c in PATCH_CUISINES) + "}")
                       .replace("{DAYS}", "{" + ", ".join("'" + d + "'" for d in PATCH_DAYS) + "}"))
    cmd = [ctx.wrk, f"--threads={min(2, connections)}", f"--connections={connections}", f"--duration={seconds}s",
           "--timeout=10s",
           "--latency", f"--script={lua}", url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BENCH_TOKEN": ctx.token, **env})


def _wrk_result(proc: subprocess.Popen[str]) -> Measurement:
    out, err = proc.communicate()
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_RESULT "))
    if data["errors"]:
        raise BenchError(f"wrk saw {data['errors']} errors or non-2xx answers:\n{out}")
    return Measurement(rate=data["requests"] / (data["duration_us"] / 1e6), requests=int(data["requests"]),
                       p50_ms=data["p50_us"] / 1000, p95_ms=data["p95_us"] / 1000, p99_ms=data["p99_us"] / 1000)


def _metered(ctx: Context, run, pgbench_run: bool = False) -> tuple[Measurement, cpu.CpuPerRequest | None]:
    """Run a load and measure the CPU time per request of the API workers and PostgreSQL."""
    if ctx.meter is None:
        return run(), None
    backends = ctx.meter.backends()
    before = ctx.meter.sample()
    result = run()
    if pgbench_run:
        ctx.meter.settle(backends)
    return result, cpu.per_request(ctx.meter.sample() - before, result.requests)


def _api_search(ctx: Context, target: Target, body: dict[str, Any], seconds: int,
                connections: int = CONNECTIONS) -> Measurement:
    proc = _wrk(ctx, f"{target.base_url}/api/v1/customers/search", seconds,
                {"BENCH_MODE": "search", "BENCH_BODY": json.dumps(body)}, connections)
    return _wrk_result(proc)


def _request(method: str, url: str, token: str, body: Any = None, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:  # headers: case-insensitive lookups
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


# --- the SQL side ---------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\((p\d+)\)s")


def _pg_value(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ",".join(str(v) for v in value) + "}"
    if isinstance(value, dt.date | uuid.UUID):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return str(value)


def _claims_sql() -> str:
    session = pgbench.named_queries(QUERIES_DIR / "session.sql")["set_claims"]
    values = {"role": "'crm_api_all'", "scope": "'all'", "chain_ids": "''", "sub": f"'{TOKEN_SUB}'",
              "correlation_id": "'bench'"}  # what the API sends for the bench's admin token
    return re.sub(r"(?<![:\w]):(\w+)", lambda m: values[m[1]], session)


def _search_script(ctx: Context, target: Target, name: str, body: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """The statements the API sends for this search, as a pgbench script and its variables."""
    from db import search

    keys = search.referenced_fields(body)
    fields_sql = pgbench.named_queries(QUERIES_DIR / "fields.sql")
    with psycopg.connect(target.dsn, row_factory=dict_row) as conn:
        states = conn.execute(
            "select key, data_type::text, options, hot, projection::text, null::bigint as processed, "
            "null::bigint as total from field_definition where key = any(%s)", (keys,)).fetchall()
        compiled = search.plan(body, states)
        statement = _PLACEHOLDER.sub(r":\1", compiled.statement.as_string(conn))
    variables = {name: _pg_value(value) for name, value in compiled.params.items()}
    variables["keys"] = "{" + ",".join(keys) + "}"
    script = "".join([
        "BEGIN;\n", _claims_sql(), "\n",
        fields_sql["lock_search_projection"], "\n",
        fields_sql["search_field_states"], "\n", statement, ";\n", "COMMIT;\n",
    ])
    path = ctx.work_dir / (re.sub(r"\W+", "_", name).strip("_") + f"_{target.customers}.sql")
    path.write_text(script)
    return path, variables


def _patch_script(ctx: Context) -> Path:
    fields_sql = pgbench.named_queries(QUERIES_DIR / "fields.sql")
    days = ", ".join("'" + d + "'" for d in PATCH_DAYS)
    cuisines = ", ".join("'" + c + "'" for c in PATCH_CUISINES)
    pick = (
        "\\set k random(1, 2000)\n\\set seats random(10, 400)\n"
        f"\\set ci random(1, {len(PATCH_CUISINES)})\n\\set di random(1, {len(PATCH_DAYS)})\n"
        f"select id, jsonb_build_object('seats', cast(:seats as int), 'cuisine', "
        f"(array[{cuisines}])[cast(:ci as int)], 'delivery_days', "
        f"cast((array[{days}])[cast(:di as int)] as jsonb))::text as patch from bench_ids where k = :k \\gset\n"
    )
    script = "".join([
        pick, "BEGIN;\n", _claims_sql(), "\n", fields_sql["lock_customer_fields"], "\n",
        fields_sql["check_field_values"], "\n", fields_sql["update_customer_fields"], "\n", "COMMIT;\n",
    ])
    path = ctx.work_dir / "patch_fields.sql"
    path.write_text(script)
    return path


# --- the run -------------------------------------------------------------------------------------

def _start_api(ctx: Context, target: Target, database: EmbeddedPostgres) -> None:
    port = server.free_port()
    target.api = server.start_api(target.dsn, os.environ["JWT_SECRET"], port, ctx.work_dir)
    target.base_url = f"http://127.0.0.1:{port}"
    server.wait_ready(target.api, target.base_url, ctx.work_dir / "gunicorn.log")
    ctx.meter = cpu.CpuMeter(target.api.pid, cpu.postmaster_pid(database.pgdata))


def _stop_api(target: Target) -> None:
    if target.api is not None:
        server.stop_api(target.api)
        target.api = None


def _smoke(ctx: Context, target: Target, names: list[str]) -> None:
    """One request per search before the load: a full page, so the load measures real work."""
    for name in names:
        body = SEARCHES[name]
        status, _, page = _request("POST", f"{target.base_url}/api/v1/customers/search", ctx.token, body)
        if status != 200 or len(page["items"]) != 50:
            raise BenchError(f"{name}: expected a full page of 50, got {status}: {str(page)[:300]}")


def _measure_search(ctx: Context, target: Target, name: str, body: dict[str, Any]) -> None:
    script, variables = _search_script(ctx, target, name, body)
    if ctx.warmup:
        _api_search(ctx, target, body, ctx.warmup)
        pgbench.run(script, target.dsn, CONNECTIONS, ctx.warmup, variables, label="warmup", protocol="extended")
    _log(f"{name} at {target.customers:,}: wrk {ctx.duration} s")
    api, api_cpu = _metered(ctx, lambda: _api_search(ctx, target, body, ctx.duration))
    _log(f"{name} at {target.customers:,}: pgbench {ctx.duration} s")
    # extended, not prepared: the API never prepares a search (db/search.py), so neither does its twin
    sql_side, sql_cpu = _metered(ctx, lambda: pgbench.run(script, target.dsn, CONNECTIONS, ctx.duration, variables,
                                                          label="c8", protocol="extended"), True)
    single = _api_search(ctx, target, body, SINGLE_SECONDS, connections=1)
    ctx.rows.append(Row(name, target.customers, api, sql_side, api_cpu, sql_cpu, single))


def _measure_patch(ctx: Context, target: Target, ids_file: Path) -> None:
    env = {"BENCH_MODE": "patch", "BENCH_IDS_FILE": str(ids_file)}
    script = _patch_script(ctx)
    if ctx.warmup:
        _wrk_result(_wrk(ctx, target.base_url + "/", ctx.warmup, env))
        pgbench.run(script, target.dsn, CONNECTIONS, ctx.warmup, {}, label="warmup")
    _log(f"{CASE_D} at {target.customers:,}: wrk {ctx.duration} s")
    api, api_cpu = _metered(ctx, lambda: _wrk_result(_wrk(ctx, target.base_url + "/", ctx.duration, env)))
    _log(f"{CASE_D} at {target.customers:,}: pgbench {ctx.duration} s")
    sql_side, sql_cpu = _metered(
        ctx, lambda: pgbench.run(script, target.dsn, CONNECTIONS, ctx.duration, {}, label="c8"), True)
    single = _wrk_result(_wrk(ctx, target.base_url + "/", SINGLE_SECONDS, env, connections=1))
    ctx.rows.append(Row(CASE_D, target.customers, api, sql_side, api_cpu, sql_cpu, single))


def _make_hot(ctx: Context, target: Target) -> dict[str, Any]:
    """Make a cold field hot through the API while search (a) keeps running; wait until it is
    searchable. Returns what happened."""
    url = f"{target.base_url}/api/v1/field-definitions/{MAKE_HOT_FIELD}"
    _, headers, body = _request("GET", url, ctx.token)
    if body["hot"]:  # a reused data set (--data-dir): make it cold again first
        _request("PATCH", url, ctx.token, {"hot": False}, {"If-Match": headers["ETag"]})
        while (body := _request("GET", url, ctx.token)[2])["backfill"]["status"] != "DONE":
            time.sleep(0.5)
        _, headers, _ = _request("GET", url, ctx.token)
    load = _wrk(ctx, f"{target.base_url}/api/v1/customers/search", 30,
                {"BENCH_MODE": "search", "BENCH_BODY": json.dumps(SEARCHES[CASE_A])})
    started = time.monotonic()
    status, _, body = _request("PATCH", url, ctx.token, {"hot": True}, {"If-Match": headers["ETag"]})
    if status != 200:
        raise BenchError(f"making {MAKE_HOT_FIELD} hot answered {status}: {body}")
    answered_409 = False
    probe = {"filter": {"field": MAKE_HOT_FIELD, "op": "eq", "value": "OPTION_A"}, "limit": 50}
    while True:
        time.sleep(0.5)
        _, _, body = _request("GET", url, ctx.token)
        if body["hot_status"] == "HOT":
            break
        if body["backfill"] and body["backfill"]["status"] == "FAILED":
            raise BenchError(f"the backfill failed: {body['backfill']}")
        if not answered_409:
            code, _, _ = _request("POST", f"{target.base_url}/api/v1/customers/search", ctx.token, probe)
            answered_409 = code == 409
        if time.monotonic() - started > 600:
            raise BenchError("making a field hot took more than 10 minutes")
    elapsed = time.monotonic() - started
    during = _wrk_result(load)
    code, _, page = _request("POST", f"{target.base_url}/api/v1/customers/search", ctx.token, probe)
    if code != 200 or len(page["items"]) != 50:
        raise BenchError(f"the field made hot is not searchable: {code} {str(page)[:300]}")
    return {"seconds": elapsed, "backfill": body["backfill"], "during": during, "answered_409": answered_409}


def _built(database: EmbeddedPostgres, name: str) -> str | None:
    """The data version of an existing benchmark database (``--data-dir``), if there is one."""
    with psycopg.connect(database.dsn(), autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            return None
    with psycopg.connect(database.dsn(name), autocommit=True) as conn:
        if conn.execute("select to_regclass('bench_meta') is not null").fetchone()[0]:
            return conn.execute("select data_version from bench_meta").fetchone()[0]
    return None


# The shape not chosen, for --compare-shapes: a narrow value table (EAV) with per-type indexes,
# holding the four fields searches (a) and (b) use, and both searches written against it.
_EAV_BUILD = [
    "drop table if exists bench_eav",
    "create unlogged table bench_eav (field_key text not null, customer_id uuid not null, t text, n numeric, "
    "a text[])",
    "insert into bench_eav select 'cuisine', customer_id, f_cuisine, null, null from customer_hot "
    "where f_cuisine is not null",
    "insert into bench_eav select 'seats', customer_id, null, f_seats, null from customer_hot "
    "where f_seats is not null",
    "insert into bench_eav select 'potential_score', customer_id, null, f_potential_score, null from customer_hot "
    "where f_potential_score is not null",
    "insert into bench_eav select 'delivery_days', customer_id, null, null, f_delivery_days from customer_hot "
    "where f_delivery_days is not null",
    "create extension if not exists btree_gin",
    "create index on bench_eav (field_key, t, customer_id)",
    "create index on bench_eav (field_key, n, customer_id)",
    "create index on bench_eav using gin (field_key, a)",
    "create index on bench_eav (customer_id, field_key)",
    "vacuum analyze bench_eav",
]
_SHAPE_QUERIES = {
    "(a)": (
        "select h.customer_id from customer_hot h where h.status <> 'ARCHIVED' and h.f_cuisine = 'THAI' "
        "order by h.f_seats desc nulls first, h.customer_id desc limit 51",
        "select s.customer_id from bench_eav s join customer_hot h on h.customer_id = s.customer_id "
        "and h.status <> 'ARCHIVED' where s.field_key = 'seats' and exists (select 1 from bench_eav f "
        "where f.customer_id = s.customer_id and f.field_key = 'cuisine' and f.t = 'THAI') "
        "order by s.n desc, s.customer_id desc limit 51",
    ),
    "(b)": (
        "select h.customer_id from customer_hot h where h.status <> 'ARCHIVED' "
        "and h.f_cuisine = any('{ITALIAN,MEDITERRANEAN}') and h.f_seats between 80 and 200 "
        "and h.f_delivery_days @> '{MON,FRI}' "
        "order by h.f_potential_score desc nulls first, h.customer_id desc limit 51",
        "select s.customer_id from bench_eav s join customer_hot h on h.customer_id = s.customer_id "
        "and h.status <> 'ARCHIVED' where s.field_key = 'potential_score' "
        "and exists (select 1 from bench_eav f where f.customer_id = s.customer_id and f.field_key = 'cuisine' "
        "and f.t = any('{ITALIAN,MEDITERRANEAN}')) "
        "and exists (select 1 from bench_eav f where f.customer_id = s.customer_id and f.field_key = 'seats' "
        "and f.n between 80 and 200) "
        "and exists (select 1 from bench_eav f where f.customer_id = s.customer_id and f.field_key = 'delivery_days' "
        "and f.a @> '{MON,FRI}') order by s.n desc, s.customer_id desc limit 51",
    ),
}


def compare_shapes(dsn: str) -> str:
    """Finding the page of searches (a) and (b) — without building the customers' JSON — in the
    typed-column projection and in an EAV table of the same values; median of 15 runs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in _EAV_BUILD:
            conn.execute(statement)
        lines = ["| search | typed columns (median ms) | EAV (median ms) |", "|---|--:|--:|"]
        for name, queries in _SHAPE_QUERIES.items():
            medians = []
            for query in queries:
                expected = conn.execute(queries[0]).fetchall()
                for _ in range(3):
                    conn.execute(query).fetchall()
                times = []
                for _ in range(15):
                    started = time.perf_counter()
                    rows = conn.execute(query).fetchall()
                    times.append((time.perf_counter() - started) * 1000)
                if rows != expected:
                    raise BenchError(f"{name}: the EAV query found other customers")
                medians.append(sorted(times)[len(times) // 2])
            lines.append(f"| {name} | {medians[0]:.1f} | {medians[1]:.1f} |")
        conn.execute("drop table bench_eav")
    return "\n".join(lines) + "\n"


def _tune(database: EmbeddedPostgres) -> dict[str, str]:
    settings = {"shared_buffers": "3GB", "effective_cache_size": "12GB", "work_mem": "16MB",
                "maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": "2",
                "max_parallel_workers_per_gather": "0", "random_page_cost": "1.1", "jit": "off",
                "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
    with psycopg.connect(database.dsn(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    database.stop()
    database.start()
    return settings


def _sizes(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select pg_size_pretty(pg_total_relation_size('customer')), "
                           "pg_size_pretty(pg_total_relation_size('customer_hot'))").fetchone()
    return f"customer {row[0]}, customer_hot {row[1]} (with indexes)"


def _table(rows: list[Row]) -> str:
    out = ["| case | customers | API req/s | API p50 | p95 | p99 (ms) | SQL tps | SQL p50 | p95 | p99 (ms) "
           "| API/SQL throughput |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        s = r.sql
        out.append("| " + " | ".join([
            r.case, f"{r.customers:,}", f"{r.api.rate:,.0f}", f"{r.api.p50_ms:.2f}", f"{r.api.p95_ms:.2f}",
            f"{r.api.p99_ms:.2f}", f"{s.rate:,.0f}" if s else "–", f"{s.p50_ms:.2f}" if s else "–",
            f"{s.p95_ms:.2f}" if s else "–", f"{s.p99_ms:.2f}" if s else "–",
            f"{r.api.rate / s.rate:.2f}" if s else "–"]) + " |")
    return "\n".join(out) + "\n"


def _cpu_table(rows: list[Row]) -> str:
    """Where the time goes, less dependent on what else runs on the machine than throughput."""
    out = ["| case | customers | API: 1 connection p50 / p95 (ms) | CPU ms per API request: workers + PostgreSQL "
           "| CPU ms per SQL transaction | others' share of busy CPU |",
           "|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        if r.api_cpu is None or r.sql_cpu is None or r.single is None:
            continue
        out.append("| " + " | ".join([
            r.case, f"{r.customers:,}", f"{r.single.p50_ms:.2f} / {r.single.p95_ms:.2f}",
            f"{r.api_cpu.server_ms:.2f} + {r.api_cpu.database_ms:.2f}", f"{r.sql_cpu.database_ms:.2f}",
            f"{max(r.api_cpu.others_pct, r.sql_cpu.others_pct):.0f} %"]) + " |")
    return "\n".join(out) + "\n"


def _verdicts(ctx: Context, hot: dict[str, Any]) -> str:
    by = {(r.case, r.customers): r for r in ctx.rows}
    big = max(r.customers for r in ctx.rows)
    small = min(r.customers for r in ctx.rows)
    checks = []
    for name in list(SEARCHES)[:2]:
        p95 = by[(name, big)].api.p95_ms
        checks.append((f"search {name[:3]} p95 ≤ 15 ms at {CONNECTIONS} connections", f"{p95:.2f} ms", p95 <= 15))
    for name in SEARCHES:
        r = by[(name, big)]
        ratio = r.api.rate / r.sql.rate
        checks.append((f"API throughput ≥ 50 % of pgbench, {name[:3]}", f"{ratio:.0%}", ratio >= 0.5))
    growth = by[(CASE_A, big)].api.p95_ms / by[(CASE_A, small)].api.p95_ms
    checks.append((f"(a) p95 at {big:,} ≤ 2× p95 at {small:,}", f"{growth:.2f}×", growth <= 2))
    p95 = by[(CASE_D, big)].api.p95_ms
    checks.append(("PATCH of 3 values p95 ≤ 10 ms", f"{p95:.2f} ms", p95 <= 10))
    checks.append((f"making a field hot at {big:,} < 2 min", f"{hot['seconds']:.0f} s", hot["seconds"] < 120))
    lines = ["| target | measured | met |", "|---|--:|:-:|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in checks]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> str:
    from crm.auth import issue_token

    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-fields-"))
    os.environ["JWT_SECRET"] = secrets.token_urlsafe(48)
    os.environ["CRM_DATA_DIR"] = str(tmp / "work")
    work_dir = tmp / "work"
    work_dir.mkdir()
    pg_dir = Path(args.data_dir).absolute() if args.data_dir else tmp
    ctx = Context(ensure_wrk(), work_dir, issue_token(TOKEN_SUB, ["admin"], expires_in=3600),
                  args.duration, args.warmup)
    targets: list[Target] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        _log("starting PostgreSQL")
        database = EmbeddedPostgres(pg_dir, fast=False)
        database.start()
        stack.callback(database.stop)
        settings = _tune(database)
        builds = {}
        for customers in sorted({*args.scale, args.customers}):
            name = f"fields_{customers}"
            target = Target(customers, database.dsn(name))
            targets.append(target)
            if _built(database, name) == data_version(customers):
                _log(f"reusing {customers:,} customers from {pg_dir}")
                builds[customers] = (0.0, {})
                continue
            database.drop_database(name)
            database.create_database(name)
            _log(f"building {customers:,} customers, 60 fields (20 hot)")
            started = time.monotonic()
            steps = build(target.dsn, customers)
            builds[customers] = (time.monotonic() - started, steps)
            _log(f"built {customers:,} in {builds[customers][0]:.0f} s: " +
                 ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()))
        big = targets[-1]
        shapes = None
        if args.compare_shapes:
            _log(f"comparing the projection's shape with EAV at {big.customers:,}")
            shapes = compare_shapes(big.dsn)
        for target in targets:
            stack.callback(_stop_api, target)
            _start_api(ctx, target, database)
            _smoke(ctx, target, list(SEARCHES) if target is big else [CASE_A])
            if target is big:
                for name, body in SEARCHES.items():
                    _measure_search(ctx, target, name, body)
                with psycopg.connect(target.dsn) as conn:
                    ids = [str(r[0]) for r in conn.execute("select id from bench_ids order by k")]
                ids_file = work_dir / "ids.txt"
                ids_file.write_text("\n".join(ids) + "\n")
                _measure_patch(ctx, target, ids_file)
                _log(f"making {MAKE_HOT_FIELD} hot at {target.customers:,} while (a) runs")
                hot = _make_hot(ctx, target)
                _log(f"{MAKE_HOT_FIELD} hot after {hot['seconds']:.0f} s")
            else:
                _measure_search(ctx, target, CASE_A, SEARCHES[CASE_A])
            _stop_api(target)
        ctx.facts = {
            "machine": f"{len(os.sched_getaffinity(0))} CPUs (nproc), {platform.processor() or platform.machine()}; "
                       "wrk, pgbench, gunicorn and PostgreSQL share them",
            "PostgreSQL": f"{server.server_version(big.dsn)}, embedded, fsync on; " +
                          ", ".join(f"{k}={v}" for k, v in settings.items()),
            "API": f"gunicorn {server.WORKERS} uvicorn workers, access log off",
            "other load": "load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min) at the end of the run".format(
                *os.getloadavg()),
            "load": f"wrk 2 threads, {CONNECTIONS} connections; pgbench (-M extended for searches, -M prepared "
                    f"for PATCH), {CONNECTIONS} clients; "
                    f"{args.duration} s per run after {args.warmup} s warm-up",
            "data": f"{big.customers:,} customers: {_sizes(big.dsn)}; " + (
                f"built in {builds[big.customers][0]:.0f} s" if builds[big.customers][1] else "reused (--data-dir)"),
        }
    rows = sorted(ctx.rows, key=lambda r: (r.customers != big.customers, r.customers, r.case))
    backfill = hot["backfill"]
    during = hot["during"]
    lines = [f"### Field-Bridge benchmark (`{args.command}`)\n"]
    lines += [f"- {k}: {v}" for k, v in ctx.facts.items()]
    lines += ["", _table(rows), _cpu_table(rows)]
    lines.append(
        f"Making `{MAKE_HOT_FIELD}` (ENUM, a value at ~70 % of the customers) hot at {big.customers:,} customers "
        f"through the API: searchable after **{hot['seconds']:.0f} s** ({backfill['processed']:,} customers in "
        f"batches of 5,000, then the index). Meanwhile search (a) ran at {during.rate:,.0f} req/s, p95 "
        f"{during.p95_ms:.2f} ms, p99 {during.p99_ms:.2f} ms (30 s window), and a search on the field "
        f"{'answered 409 field-not-yet-hot' if hot['answered_409'] else 'was not probed while pending'}.\n")
    lines += [_verdicts(ctx, hot)]
    if shapes:
        lines += [f"Finding the page (rows only, no JSON) at {big.customers:,} customers, typed-column projection "
                  "vs a value table (EAV) with per-type indexes holding the same values:\n", shapes]
    lines.append(f"Total run time: {time.monotonic() - _started:.0f} s.\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.fields", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, nargs="*", default=[10_000, 100_000],
                        help="smaller data sets search (a) also runs on")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each case")
    parser.add_argument("--compare-shapes", action="store_true",
                        help="also time searches (a) and (b) against an EAV table of the same values")
    parser.add_argument("--data-dir", help="keep the databases here and reuse them in later runs (default: a "
                                           "temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    args.command = "python -m bench.fields" + (" " + " ".join(argv) if argv else "")

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        print(run(args))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; cleaned up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
