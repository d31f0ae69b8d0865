"""Erasure on request: ``POST /api/v1/contacts/{contact_id}/erasure`` anonymises the person
everywhere and records that it happened, without the personal data."""

from __future__ import annotations

import json
import re

import pytest
from psycopg import sql

from tests.helpers import assert_problem, create_customer

PERSON = re.compile(r"anna|koch|0171|a\.koch", re.IGNORECASE)


def person_in(text: str) -> list[str]:
    return PERSON.findall(text)


@pytest.fixture
def world(client, auth, db):
    """A customer with two contacts, Anna Koch (to be erased) and Bernd Bauer, an activity with
    both, a sample request addressed to her, an archived activity and a stored idempotent reply."""
    rep = auth("sales_rep", sub="rep-udo")
    customer = create_customer(client, rep, "K-400001")
    anna = client.post(f"/api/v1/customers/{customer['id']}/contacts", headers={**rep, "Idempotency-Key": "anna-1"},
                       json={"first_name": "Anna", "last_name": "Koch", "job_role": "HEAD_CHEF",
                             "email": "A.Koch@Gasthaus-Sonne.de", "phone": "+49 171 5551234"}).json()
    anna = client.patch(f"/api/v1/contacts/{anna['id']}", json={"job_role": "OWNER"},
                        headers={**rep, "If-Match": anna["etag"]}).json()
    bernd = client.post(f"/api/v1/customers/{customer['id']}/contacts", headers=rep,
                        json={"first_name": "Bernd", "last_name": "Bauer", "email": "bauer@example.org"}).json()
    activity = db.execute(
        """insert into activity (type, customer_id, status, occurred_at, subject, notes, next_step, owner,
                                 created_by, visit_kind, location, participants)
           values ('VISIT', %(customer)s, 'DONE', now(), 'Verkostung mit Frau Koch',
                   'Anna Koch probierte die Suppe. Rückruf an a.koch@gasthaus-sonne.de oder +49 171 5551234.',
                   'Angebot an Koch schicken', 'rep-udo', 'rep-udo', 'TASTING', 'Küche',
                   array[%(anna)s, %(bernd)s]::uuid[])
           returning id""",
        {"customer": customer["id"], "anna": anna["id"], "bernd": bernd["id"]}).fetchone()["id"]
    request = db.execute(
        """insert into sample_request (customer_id, requested_by, purpose, delivery_name)
           values (%s, 'rep-udo', 'Für Anna Koch zum Testen', 'Küche, z. Hd. Frau Koch') returning id""",
        (customer["id"],)).fetchone()["id"]
    db.execute("update sample_request set delivery_street = 'Hinterhof 2' where id = %s", (request,))
    db.execute(
        """insert into archive.record (retention_class, source_table, source_key, customer_id, row_data,
                                       archived_at, purge_after)
           values ('2_YEARS', 'activity', gen_random_uuid()::text, %s,
                   '{"notes": "Erstbesuch, Anna Koch war skeptisch", "owner": "rep-udo"}', now(),
                   now() + interval '30 days')""", (customer["id"],))
    return {"rep": rep, "customer": customer, "anna": anna, "bernd": bernd, "activity": activity,
            "request": request}


def erase(client, headers, contact, if_match=None, **extra):
    return client.post(f"/api/v1/contacts/{contact['id']}/erasure",
                       headers={**headers, "If-Match": if_match or contact["etag"], **extra})


class TestEraseContact:
    def test_the_person_is_anonymised_everywhere(self, client, auth, db, world):
        manager = auth("sales_manager", sub="dpo-maria")
        r = erase(client, manager, world["anna"], **{"X-Correlation-ID": "gdpr-ticket-77"})
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["contact_id"] == world["anna"]["id"]
        assert record["customer_id"] == world["customer"]["id"]
        assert (record["erased_by"], record["correlation_id"]) == ("dpo-maria", "gdpr-ticket-77")
        assert record["scrubbed"]["contact"] == 1
        assert record["scrubbed"]["activities"] == 1
        assert record["scrubbed"]["sample_requests"] == 1
        assert record["scrubbed"]["archived_rows"] == 1
        assert record["scrubbed"]["idempotency_keys"] == 1
        assert record["scrubbed"]["outbox_events"] >= 3  # created, updated, and the activity's and request's

        # the contact row: kept (id, customer, role), personal data gone, a new ETag
        contact = client.get(f"/api/v1/contacts/{world['anna']['id']}", headers=world["rep"])
        body = contact.json()
        assert (body["first_name"], body["last_name"], body["email"], body["phone"]) == (None, "[erased]", None, None)
        assert body["job_role"] == "OWNER" and body["etag"] != world["anna"]["etag"]
        row = db.execute("select email, email_address from contact where id = %s", (world["anna"]["id"],)).fetchone()
        assert row == {"email": None, "email_address": None}

        # the free text that named her, and what the activity still says
        activity = db.execute("select subject, notes, next_step, participants from activity where id = %s",
                              (world["activity"],)).fetchone()
        assert activity["notes"] == "[erased] probierte die Suppe. Rückruf an [erased] oder [erased]."
        assert activity["subject"] == "Verkostung mit Frau [erased]"
        assert activity["next_step"] == "Angebot an [erased] schicken"
        assert [str(p) for p in activity["participants"]] == [world["anna"]["id"], world["bernd"]["id"]]
        request = db.execute("select delivery_name, purpose, delivery_street from sample_request where id = %s",
                             (world["request"],)).fetchone()
        assert request == {"delivery_name": "Küche, z. Hd. Frau [erased]", "purpose": "Für [erased] zum Testen",
                           "delivery_street": "Hinterhof 2"}

        # no copy anywhere: events, archive, stored responses, the log itself
        for table, column in ((("outbox",), "payload"), (("archive", "record"), "row_data"),
                              (("idempotency_key",), "body")):
            query = sql.SQL("select {}::text as t from {}").format(sql.Identifier(column), sql.Identifier(*table))
            texts = [r["t"] for r in db.execute(query)]
            assert not [t for t in texts if person_in(t)], table
        log = db.execute("select row_to_json(e)::text as t from erasure_log as e").fetchall()
        assert len(log) == 1 and not person_in(log[0]["t"])

        # Bernd is untouched
        assert client.get(f"/api/v1/contacts/{world['bernd']['id']}", headers=world["rep"]).json() == world["bernd"]

        # downstream systems are told, with ids only
        erased = db.execute(
            "select payload, actor, correlation_id from outbox where type = 'contact.erased'").fetchone()
        assert erased["payload"]["id"] == world["anna"]["id"]
        assert set(erased["payload"]) == {"id", "customer_id", "erased_at"}
        assert (erased["actor"], erased["correlation_id"]) == ("dpo-maria", "gdpr-ticket-77")

    def test_erasing_again_answers_the_first_record(self, client, auth, world):
        admin = auth("admin")
        first = erase(client, admin, world["anna"]).json()
        again = erase(client, admin, world["anna"], if_match='"an-old-etag"')
        assert again.status_code == 200
        assert again.json() == first

    def test_if_match_is_required_and_checked(self, client, auth, world):
        admin = auth("admin")
        r = client.post(f"/api/v1/contacts/{world['anna']['id']}/erasure", headers=admin)
        assert_problem(r, 428)
        stale = erase(client, admin, world["anna"], if_match='"stale"')
        assert assert_problem(stale, 412)["current_etag"] == world["anna"]["etag"]
        assert erase(client, admin, world["anna"], if_match="*").status_code == 200

    @pytest.mark.parametrize("role", ["sales_rep", "chain_manager", "integration"])
    def test_only_admins_and_sales_managers(self, client, auth, world, role):
        assert_problem(erase(client, auth(role), world["anna"]), 403)

    def test_unknown_contact_is_404(self, client, auth, db):
        contact = {"id": "00000000-0000-4000-8000-000000000000", "etag": '"x"'}
        assert_problem(erase(client, auth("admin"), contact), 404)
        assert_problem(erase(client, auth("admin"), contact, if_match="*"), 404)
        assert db.execute("select count(*) as n from erasure_log").fetchone()["n"] == 0

    def test_a_deleted_contact_is_erased_from_what_is_left(self, client, auth, db, world):
        admin = auth("admin")
        anna = world["anna"]
        deleted = client.delete(f"/api/v1/contacts/{anna['id']}", headers={**admin, "If-Match": anna["etag"]})
        assert deleted.status_code == 204
        assert_problem(erase(client, admin, anna), 404)  # gone: only "*" reaches what is left
        r = erase(client, admin, anna, if_match="*")
        assert r.status_code == 200, r.text
        assert r.json()["scrubbed"]["contact"] == 0 and r.json()["scrubbed"]["outbox_events"] >= 3
        texts = [r["t"] for r in db.execute("select payload::text as t from outbox")]
        assert not [t for t in texts if person_in(t)]

    def test_a_contact_removed_by_retention_is_erased_from_the_archive(self, client, auth, db, world):
        anna = world["anna"]
        row = db.execute("select to_jsonb(c) as j from contact as c where id = %s", (anna["id"],)).fetchone()["j"]
        db.execute("delete from contact where id = %s", (anna["id"],))
        db.execute(
            """insert into archive.record (retention_class, source_table, source_key, customer_id, row_data,
                                           archived_at, purge_after)
               values ('2_YEARS', 'contact', %s, %s, %s, now(), now() + interval '30 days')""",
            (anna["id"], world["customer"]["id"], json.dumps(row)))
        r = erase(client, auth("admin"), anna, if_match="*")
        assert r.status_code == 200, r.text
        archived = db.execute("select row_data from archive.record where source_table = 'contact'").fetchone()
        assert archived["row_data"]["last_name"] == "[erased]"
        assert archived["row_data"]["email"] is None and archived["row_data"]["email_address"] is None
        assert not person_in(json.dumps(archived["row_data"]))

    def test_names_with_special_characters(self, client, auth, db):
        rep = auth("sales_rep")
        customer = create_customer(client, rep, "K-400002")
        contact = client.post(f"/api/v1/customers/{customer['id']}/contacts", headers=rep, json={
            "first_name": "Seán (Jr.)", "last_name": "O'Brien-Smith", "email": "sean+crm@o-brien.ie"}).json()
        db.execute(
            """insert into activity (type, customer_id, status, occurred_at, notes, owner, created_by, direction)
               values ('CALL', %s, 'DONE', now(),
                       'Seán (Jr.) O''Brien-Smith: Mail an SEAN+CRM@O-BRIEN.IE; O''Brien-Smithson bleibt',
                       'rep', 'rep', 'OUTBOUND')""", (customer["id"],))
        assert erase(client, auth("admin"), contact).status_code == 200
        notes = db.execute("select notes from activity").fetchone()["notes"]
        assert notes == "[erased]: Mail an [erased]; O'Brien-Smithson bleibt"
