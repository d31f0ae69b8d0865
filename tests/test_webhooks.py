"""Webhook subscriptions: CRUD, secrets, URL validation, ownership, deliveries and redelivery."""

from __future__ import annotations

import pytest

from tests.helpers import assert_problem

BASE = "/api/v1/webhook-subscriptions"


@pytest.fixture
def private_ok(monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")


def create(client, headers, **body):
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["customer.*"], **body}
    r = client.post(BASE, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r


@pytest.mark.usefixtures("private_ok")
class TestCreateSubscription:
    def test_secret_is_generated_and_returned_once(self, client, auth, db):
        h = auth("integration", sub="cookfresh")
        r = create(client, h, event_types=["sample_request.*", "customer.created"], description="Versand")
        body = r.json()
        assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
        assert r.headers["Location"] == f"{BASE}/{body['id']}"
        assert body["active"] is True and body["paused_reason"] is None and body["owner"] == "cookfresh"
        got = client.get(f"{BASE}/{body['id']}", headers=h)
        assert got.status_code == 200 and "secret" not in got.json()
        assert got.headers["ETag"] == got.json()["etag"]
        listed = client.get(BASE, headers=h).json()
        assert [s["id"] for s in listed["items"]] == [body["id"]] and "secret" not in listed["items"][0]

    def test_a_given_secret_is_kept(self, client, auth, db):
        body = create(client, auth("admin"), secret="my-own-secret-123456").json()
        assert body["secret"] == "my-own-secret-123456"
        assert db.execute("select secret from webhook_subscription").fetchone()["secret"] == "my-own-secret-123456"

    def test_idempotent_create(self, client, auth, db):
        h = {**auth("admin"), "Idempotency-Key": "sub-1"}
        first = create(client, h).json()
        second = client.post(BASE, json={"url": "http://127.0.0.1:9/hook", "event_types": ["customer.*"]}, headers=h)
        assert second.status_code == 201 and second.json()["id"] == first["id"]

    @pytest.mark.parametrize("url", ["ftp://example.com/x", "http://user:pw@example.com/x", "http:///nohost",
                                     "http://example.com:99999/x"])
    def test_bad_urls(self, client, auth, db, url):
        r = client.post(BASE, json={"url": url, "event_types": ["*"]}, headers=auth("admin"))
        assert r.status_code in (400, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")

    def test_bad_event_types(self, client, auth, db):
        r = client.post(BASE, json={"url": "http://127.0.0.1:9/x", "event_types": ["Customer Created"]},
                        headers=auth("admin"))
        assert_problem(r, 400)
        assert_problem(client.post(BASE, json={"url": "http://127.0.0.1:9/x", "event_types": []},
                                   headers=auth("admin")), 400)


class TestUrlValidation:
    @pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/x", "http://10.1.2.3/x",
                                     "http://192.168.0.5/x", "http://169.254.169.254/latest", "http://[::1]/x",
                                     "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x"])
    def test_private_and_loopback_refused(self, client, auth, db, monkeypatch, url):
        monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE", raising=False)
        body = assert_problem(client.post(BASE, json={"url": url, "event_types": ["*"]}, headers=auth("admin")), 422)
        assert body["errors"][0]["field"] == "url"

    def test_public_address_accepted(self, client, auth, db, monkeypatch):
        monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE", raising=False)
        create(client, auth("admin"), url="https://93.184.215.14/hook")

    def test_allowed_with_the_switch(self, client, auth, db, monkeypatch):
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
        create(client, auth("admin"), url="http://127.0.0.1:8081/hook")

    def test_patch_validates_too(self, client, auth, db, monkeypatch):
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
        sub = create(client, auth("admin")).json()
        monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE")
        r = client.patch(f"{BASE}/{sub['id']}", json={"url": "http://127.0.0.1:1/x"},
                         headers={**auth("admin"), "If-Match": sub["etag"]})
        assert_problem(r, 422)


@pytest.mark.usefixtures("private_ok")
class TestUpdateDeleteSubscription:
    def test_patch_needs_if_match_and_resumes(self, client, auth, db):
        h = auth("admin")
        sub = create(client, h).json()
        url = f"{BASE}/{sub['id']}"
        assert_problem(client.patch(url, json={"active": False}, headers=h), 428)
        assert_problem(client.patch(url, json={"active": False}, headers={**h, "If-Match": '"stale"'}), 412)
        db.execute("update webhook_subscription set active = false, paused_reason = 'boom', paused_at = now()")
        current = client.get(url, headers=h)
        assert current.json()["paused_reason"] == "boom"
        r = client.patch(url, json={"active": True, "event_types": ["*"], "description": None},
                         headers={**h, "If-Match": current.headers["ETag"]})
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True and r.json()["paused_reason"] is None and r.json()["event_types"] == ["*"]
        assert r.headers["ETag"] != current.headers["ETag"]

    def test_delete(self, client, auth, db):
        h = auth("admin")
        sub = create(client, h).json()
        url = f"{BASE}/{sub['id']}"
        assert_problem(client.delete(url, headers=h), 428)
        assert client.delete(url, headers={**h, "If-Match": sub["etag"]}).status_code == 204
        assert_problem(client.get(url, headers=h), 404)


@pytest.mark.usefixtures("private_ok")
class TestOwnership:
    def test_integrations_see_their_own_admins_all(self, client, auth, db):
        mine = create(client, auth("integration", sub="cookfresh")).json()
        theirs = create(client, auth("integration", sub="erp")).json()
        listed = client.get(BASE, headers=auth("integration", sub="cookfresh")).json()
        assert [s["id"] for s in listed["items"]] == [mine["id"]]
        assert_problem(client.get(f"{BASE}/{theirs['id']}", headers=auth("integration", sub="cookfresh")), 404)
        assert_problem(client.get(f"{BASE}/{theirs['id']}/deliveries", headers=auth("integration", sub="cookfresh")),
                       404)
        assert len(client.get(BASE, headers=auth("admin")).json()["items"]) == 2

    def test_other_roles_have_no_access(self, client, auth, db):
        assert_problem(client.get(BASE, headers=auth("sales_manager")), 403)
        assert_problem(client.post(BASE, json={"url": "http://127.0.0.1:9/x", "event_types": ["*"]},
                                   headers=auth("chain_manager")), 403)

    def test_pagination(self, client, auth, db):
        h = auth("admin")
        ids = [create(client, h).json()["id"] for _ in range(3)]
        page = client.get(BASE, params={"limit": 2}, headers=h).json()
        rest = client.get(BASE, params={"limit": 2, "cursor": page["next_cursor"]}, headers=h).json()
        assert [s["id"] for s in page["items"] + rest["items"]] == ids and rest["next_cursor"] is None


@pytest.mark.usefixtures("private_ok")
class TestDeliveriesAndRedeliver:
    def test_lists_deliveries_and_requeues_dead_ones(self, client, auth, db):
        h = auth("admin")
        sub = create(client, h).json()
        event = db.execute(
            "insert into outbox (aggregatetype, aggregateid, type, payload) "
            "values ('customer', 'c1', 'customer.created', '{}') returning id, position").fetchone()
        db.execute(
            "insert into webhook_delivery (subscription_id, event_id, event_position, event_type, aggregatetype, "
            "aggregateid, status, attempts, last_status_code, last_error) "
            "values (%s, %s, %s, 'customer.created', 'customer', 'c1', 'DEAD', 3, 500, 'HTTP 500')",
            (sub["id"], event["id"], event["position"]))
        page = client.get(f"{BASE}/{sub['id']}/deliveries", headers=h).json()
        assert page["items"][0]["status"] == "DEAD" and page["items"][0]["attempts"] == 3
        assert client.get(f"{BASE}/{sub['id']}/deliveries?status=DELIVERED", headers=h).json()["items"] == []
        r = client.post(f"{BASE}/{sub['id']}/redeliver", json={}, headers=h)
        assert r.status_code == 202 and r.json() == {"requeued": 1}
        page = client.get(f"{BASE}/{sub['id']}/deliveries", headers=h).json()
        assert page["items"][0]["status"] == "PENDING" and page["items"][0]["attempts"] == 0
        r = client.post(f"{BASE}/{sub['id']}/redeliver", json={"delivery_ids": [page["items"][0]["id"]]}, headers=h)
        assert r.json() == {"requeued": 0}


def _validate(body, schema_name: str) -> None:
    from jsonschema import Draft202012Validator

    from crm.spec import bundle

    spec = bundle()
    Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]},
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(body)


@pytest.mark.usefixtures("private_ok")
def test_responses_match_the_spec(client, auth, db):
    h = auth("admin")
    created = create(client, h).json()
    _validate(created, "WebhookSubscriptionCreated")
    _validate(client.get(f"{BASE}/{created['id']}", headers=h).json(), "WebhookSubscription")
    _validate(client.get(BASE, headers=h).json(), "WebhookSubscriptionPage")
    _validate(client.get("/api/v1/events", headers=h).json(), "EventFeed")
    from jsonschema import ValidationError

    with pytest.raises(ValidationError, match="secret"):
        _validate(created, "WebhookSubscription")
