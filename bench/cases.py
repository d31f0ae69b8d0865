"""What is measured: each case is one API request and the SQL the API runs for it."""

from __future__ import annotations

from dataclasses import dataclass, field

CONNECTIONS = (8, 32)


@dataclass(frozen=True)
class Case:
    """An API request (``path``) and its SQL twin: the named ``query`` of db/queries/customers.sql
    run with ``params``; every other parameter of the query is NULL, as the API passes it.
    ``by_id`` cases rotate over the sampled customer ids (API: in the path, SQL: ``:id``)."""

    name: str
    path: str
    query: str
    params: dict[str, str] = field(default_factory=dict)
    by_id: bool = False


# The API fetches limit + 1 rows to know whether there is a next page.
CASES = (
    Case("GET one customer", "/api/v1/customers/", "get_customer", by_id=True),
    Case(
        "list: status=ACTIVE&type=RESTAURANT",
        "/api/v1/customers?limit=50&status=ACTIVE&type=RESTAURANT",
        "list_customers",
        {"status": "ACTIVE", "type": "RESTAURANT", "limit": "51"},
    ),
    Case("list: q=linde", "/api/v1/customers?limit=50&q=linde", "list_customers", {"q": "linde", "limit": "51"}),
)
