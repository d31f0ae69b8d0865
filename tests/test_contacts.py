"""Contacts: /api/v1/customers/{id}/contacts and /api/v1/contacts/{id}."""

from __future__ import annotations

from tests.helpers import assert_problem, count, create_customer

CONTACT = {"first_name": "Lukas", "last_name": "Müller", "job_role": "HEAD_CHEF",
           "email": "lukas.mueller@example.com", "phone": "+49 89 1234567"}


class TestContacts:
    def test_create_list_get_patch_delete(self, client, auth, db):
        h = auth("sales_rep")
        customer = create_customer(client, auth("admin"))
        r = client.post(f"/api/v1/customers/{customer['id']}/contacts", json=CONTACT, headers=h)
        assert r.status_code == 201, r.text
        contact = r.json()
        assert {k: contact[k] for k in CONTACT} == CONTACT
        assert contact["customer_id"] == customer["id"]
        assert r.headers["location"] == f"/api/v1/contacts/{contact['id']}"

        listed = client.get(f"/api/v1/customers/{customer['id']}/contacts", headers=h).json()
        assert [c["id"] for c in listed["items"]] == [contact["id"]]
        assert listed["next_cursor"] is None

        r = client.patch(f"/api/v1/contacts/{contact['id']}", json={"job_role": "PURCHASING", "phone": None},
                         headers={**h, "If-Match": contact["etag"]})
        assert r.status_code == 200
        assert r.json()["job_role"] == "PURCHASING"
        assert r.json()["phone"] is None

        r = client.delete(f"/api/v1/contacts/{contact['id']}", headers={**h, "If-Match": r.json()["etag"]})
        assert r.status_code == 204
        assert count(db, "contact") == 0
        assert_problem(client.get(f"/api/v1/contacts/{contact['id']}", headers=h), 404)

    def test_contact_for_unknown_customer_is_404(self, client, auth, db):
        r = client.post("/api/v1/customers/00000000-0000-4000-8000-000000000000/contacts",
                        json=CONTACT, headers=auth("admin"))
        assert_problem(r, 404)
        assert count(db, "contact") == 0

    def test_last_name_is_required(self, client, auth):
        customer = create_customer(client, auth("admin"))
        r = client.post(f"/api/v1/customers/{customer['id']}/contacts", json={"first_name": "A"},
                        headers=auth("admin"))
        body = assert_problem(r, 400)
        assert any(e["field"] == "last_name" for e in body["errors"])

    def test_contact_pages(self, client, auth):
        h = auth("admin")
        customer = create_customer(client, h)
        made = [client.post(f"/api/v1/customers/{customer['id']}/contacts", json={"last_name": f"N{i}"},
                            headers=h).json()["id"] for i in range(5)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/api/v1/customers/{customer['id']}/contacts", params=params, headers=h).json()
            seen += [c["id"] for c in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == made
