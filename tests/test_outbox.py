"""Every write emits its outbox event in the same transaction (Debezium outbox shape)."""

from __future__ import annotations

from tests.helpers import create_chain, create_customer


def events(db):
    return db.execute(
        "select aggregatetype, aggregateid, type, payload, correlation_id, actor from outbox order by position"
    ).fetchall()


class TestOutbox:
    def test_each_write_emits_one_event_with_correlation_id(self, client, auth, db):
        h = {**auth("admin", sub="anna"), "X-Correlation-ID": "req-42"}
        chain = create_chain(client, h)
        customer = create_customer(client, h, chain_id=chain["id"])
        r = client.patch(f"/api/v1/customers/{customer['id']}", json={"name": "Neu"},
                         headers={**h, "If-Match": customer["etag"]})
        client.delete(f"/api/v1/customers/{customer['id']}", headers={**h, "If-Match": r.json()["etag"]})
        contact = client.post(f"/api/v1/customers/{customer['id']}/contacts", json={"last_name": "Koch"},
                              headers=h).json()
        client.delete(f"/api/v1/contacts/{contact['id']}", headers={**h, "If-Match": contact["etag"]})

        got = events(db)
        assert [e["type"] for e in got] == [
            "chain.created", "customer.created", "customer.updated", "customer.archived",
            "contact.created", "contact.deleted",
        ]
        assert {e["correlation_id"] for e in got} == {"req-42"}
        assert {e["actor"] for e in got} == {"anna"}
        assert got[1]["aggregatetype"] == "customer"
        assert got[1]["aggregateid"] == customer["id"]
        assert got[2]["payload"]["name"] == "Neu"

    def test_a_failed_write_leaves_no_event(self, client, auth, db):
        h = auth("admin")
        create_customer(client, h, "K-1")
        before = len(events(db))
        r = client.post("/api/v1/customers", json={"customer_number": "K-1", "name": "Dup", "type": "HOTEL"},
                        headers=h)
        assert r.status_code == 409
        assert len(events(db)) == before

    def test_reads_emit_nothing(self, client, auth, db):
        h = auth("admin")
        customer = create_customer(client, h)
        before = len(events(db))
        client.get(f"/api/v1/customers/{customer['id']}", headers=h)
        client.get("/api/v1/customers", headers=h)
        assert len(events(db)) == before
