"""The previous release (N-1) of the contact code path, kept as a fixture.

``contacts.sql`` is ``db/queries/contacts.sql`` (and the claims statement of ``session.sql``) as
of commit :data:`COMMIT`, the last commit before the contact e-mail change, byte for byte; the
functions below mirror what ``db/store.py`` did with those statements at that commit (one
transaction per operation, the caller's claims first, ``If-Match`` checked under the row lock).
HTTP, validation and serialisation were not touched by the change and are left out: what can
break between releases is the SQL against the shared schema, and this is that SQL, run on one
long-lived connection as a running worker holds one while migrations are applied under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosql
import psycopg
from psycopg.rows import dict_row

COMMIT = "cc33c98"
FIELDS = ("first_name", "last_name", "job_role", "email", "phone")

queries = aiosql.from_path(Path(__file__).with_name("contacts.sql"), "psycopg", mandatory_parameters=False)


class PreviousRelease:
    """The contact operations of release :data:`COMMIT`, acting as ``sub`` with every row visible."""

    def __init__(self, dsn: str, sub: str = "rep-previous") -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row,
                                    application_name="kundenmanagement-previous")
        self.sub = sub

    def close(self) -> None:
        self.conn.close()

    def _run(self, work):
        with self.conn.transaction():
            queries.set_claims(self.conn, role="crm_api_all", scope="all", chain_ids="", sub=self.sub,
                               correlation_id="previous-release")
            return work()

    def create_contact(self, customer_id: str, **body: Any) -> dict[str, Any]:
        params = {k: body.get(k) for k in FIELDS}
        params["job_role"] = params["job_role"] or "OTHER"
        return self._run(lambda: queries.insert_contact(self.conn, customer_id=customer_id, **params))["body"]

    def get_contact(self, contact_id: str) -> dict[str, Any] | None:
        row = self._run(lambda: queries.get_contact(self.conn, id=contact_id))
        return None if row is None else row["body"]

    def list_contacts(self, customer_id: str) -> list[dict[str, Any]]:
        rows = self._run(lambda: list(queries.list_contacts(
            self.conn, customer_id=customer_id, after_created=None, after_id=None, limit=201)))
        return [r["body"] for r in rows]

    def update_contact(self, contact_id: str, if_match: str, **changes: Any) -> dict[str, Any]:
        def work():
            current = queries.lock_contact(self.conn, id=contact_id)
            if current is None or current["etag"] != if_match:
                raise AssertionError(f"previous release: 404/412 for {contact_id}")
            params: dict[str, Any] = {}
            for name in FIELDS:
                params[f"set_{name}"] = name in changes
                params[name] = changes.get(name)
            return queries.update_contact(self.conn, id=contact_id, **params)["body"]
        return self._run(work)
