"""Logs: one JSON line per request and one per webhook delivery attempt, and no personal data in
any log line — neither from bodies, query strings or paths, nor from error messages (validation
messages quote the value sent, database errors the failing row), nor from the relay's payloads."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from crm.auth import issue_token
from tests.live_server import crm_serve
from tests.webhook_receiver import Receiver

CUSTOMER_NAME = "Gasthof Wolpertinger"
FIRST, LAST = "Zebulon", "Quastenflosser"
EMAIL = "zebulon.quastenflosser@pii-probe.example"
PHONE = "+49 171 5550199"
STREET = "Schnabeltiergasse 17"
PERSONAL = ("Wolpertinger", FIRST, LAST, EMAIL, "quastenflosser", "5550199", "Schnabeltier")

ACCESS_KEYS = {"ts", "event", "correlation_id", "method", "path", "operation_id", "status", "duration_ms", "sub"}
DELIVERY_KEYS = {"ts", "event", "correlation_id", "subscription_id", "delivery_id", "event_id", "event_type",
                 "attempt", "outcome", "status_code", "error", "duration_ms"}

Call = Callable[..., tuple[int, Any]]


def exercise(call: Call, admin: dict[str, str]) -> list[int]:
    """Requests that carry the personal data everywhere a client can put it, errors included."""
    statuses = []
    customer = {"customer_number": "K-PII-1", "name": CUSTOMER_NAME, "type": "RESTAURANT",
                "address": {"street": STREET, "postal_code": "80331", "city": "München", "country": "DE"}}
    status, created = call("POST", "/api/v1/customers", customer, admin)
    assert status == 201, created
    cid = created["id"]
    contact_body = {"first_name": FIRST, "last_name": LAST, "email": EMAIL, "phone": PHONE, "job_role": "OWNER"}
    status, contact = call("POST", f"/api/v1/customers/{cid}/contacts", contact_body, admin)
    assert status == 201, contact
    for method, path, body, headers, expect in [
        ("GET", f"/api/v1/contacts/{contact['id']}", None, admin, 200),
        ("GET", "/api/v1/customers?q=Wolpertinger&limit=5", None, admin, 200),
        ("POST", "/api/v1/customers/search",
         {"filter": {"field": "name", "op": "contains", "value": "Wolpertinger"}}, admin, 200),
        ("GET", "/api/v1/customers/Wolpertinger", None, admin, 400),
        ("GET", f"/api/v1/contacts/{EMAIL}", None, admin, 400),
        ("PATCH", f"/api/v1/contacts/{contact['id']}", {"email": "quastenflosser-at-nowhere"},
         {**admin, "If-Match": contact["etag"]}, 400),
        ("PATCH", f"/api/v1/contacts/{contact['id']}", {"phone": PHONE + " x Quastenflosser"},
         {**admin, "If-Match": contact["etag"]}, 400),
        ("POST", "/api/v1/customers", customer, admin, 409),
        ("POST", "/api/v1/customers", {**customer, "customer_number": "K-PII-2", "Quastenflosser": EMAIL}, admin, 400),
        ("GET", f"/api/v1/customers?limit=1&email={EMAIL}", None, admin, 400),
        ("GET", f"/api/v1/no-such-thing/{EMAIL}", None, admin, 404),
        ("GET", "/api/v1/customers?q=Wolpertinger", None, {}, 401),
        ("PATCH", f"/api/v1/contacts/{contact['id']}", {"last_name": "Quastenflosser-Neu"},
         {**admin, "If-Match": '"stale"'}, 412),
    ]:
        status, body = call(method, path, body, headers)
        assert status == expect, (method, path, status, body)
        statuses.append(status)
    return statuses


def assert_no_personal_data(text: str) -> None:
    lowered = text.lower()
    leaked = [s for s in PERSONAL if s.lower() in lowered]
    assert not leaked, f"personal data in the log: {leaked}"


def json_lines(text: str, event: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


class TestInProcess:
    def test_one_json_line_per_request_without_personal_data(self, client, auth, caplog, monkeypatch):
        from db import store

        caplog.set_level(logging.INFO)  # as served (crm.app.asgi_app); httpx's lines are the test client's

        def call(method, path, body=None, headers=None):
            r = client.request(method, path, json=body, headers=headers or {})
            return r.status_code, (r.json() if r.content else None)

        statuses = exercise(call, auth("admin", sub="rep-4711"))

        # unexpected errors whose messages carry personal data: a bug, an unmapped database error
        async def broken(*_args, **_kwargs):
            raise RuntimeError(f"boom for {EMAIL}")

        async def unmapped(*_args, **_kwargs):
            raise psycopg.errors.RaiseException(f"Failing row contains ({FIRST}, {LAST}, {EMAIL}).")

        for replacement in (broken, unmapped):
            monkeypatch.setattr(store, "get_contact", replacement)
            r = client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=auth("admin"))
            assert r.status_code == 500

        server = [r for r in caplog.records if not r.name.startswith("httpx")]
        handler = logging.Handler()
        text = "\n".join(r.getMessage() + (handler.format(r) if r.exc_info else "") for r in server)
        assert_no_personal_data(text)
        assert "RuntimeError" in text and "RaiseException" in text  # the errors are logged, without their message
        access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "crm.access"]
        assert len(access) == len(statuses) + 4
        for line in access:
            assert set(line) == ACCESS_KEYS
            assert line["event"] == "http_request" and line["duration_ms"] >= 0
        assert [a["status"] for a in access[2:2 + len(statuses)]] == statuses
        get_contact = access[2]
        assert get_contact["operation_id"] == "contacts.get_contact" and get_contact["sub"] == "rep-4711"
        assert get_contact["path"].startswith("/api/v1/contacts/")
        by_path = {a["path"] for a in access}
        assert "/api/v1/customers/{customer_id}" in by_path  # a path parameter that is not an id
        assert None in by_path  # a path no operation matched

    def test_the_access_line_carries_the_correlation_id(self, client, caplog):
        caplog.set_level(logging.INFO, logger="crm.access")
        r = client.get("/health/live", headers={"X-Correlation-ID": "req-abc.123"})
        line = json.loads([r for r in caplog.records if r.name == "crm.access"][-1].getMessage())
        assert line["correlation_id"] == r.headers["x-correlation-id"] == "req-abc.123"
        assert (line["operation_id"], line["status"], line["path"], line["sub"]) == ("health.live", 200,
                                                                                      "/health/live", None)


class TestLive:
    def test_server_and_relay_logs_carry_no_personal_data(self, pg_server, tmp_path):
        first = []

        def behaviour(n: int, event: dict[str, Any]) -> tuple[int, float]:
            first.append(n)
            return (500 if n == 1 else 200), 0.0  # the first attempt fails: a retry line too

        with Receiver(behaviour=behaviour) as receiver:
            with crm_serve(pg_server, tmp_path, "crm_logs_live", workers=2,
                           env={"RELAY_BACKOFF_BASE": "0.1", "RELAY_BACKOFF_MAX": "0.2"}) as live:
                admin = {"Authorization": "Bearer " + issue_token("rep-4711", ["admin"])}

                def call(method, path, body=None, headers=None):
                    status, _headers, raw = live.request(method, path, body, headers)
                    return status, (json.loads(raw) if raw else None)

                status, _sub = call("POST", "/api/v1/webhook-subscriptions",
                                    {"url": receiver.url, "event_types": ["customer.*", "contact.*"]}, admin)
                assert status == 201
                statuses = exercise(call, admin)
                deadline = time.monotonic() + 30
                while len(receiver.accepted()) < 2 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert len(receiver.accepted()) >= 2
                # the payloads did carry the personal data to the receiver
                assert any(LAST in r.body.decode() for r in receiver.accepted())
            log = live.log.read_text(errors="replace")
        assert_no_personal_data(log)
        requests = json_lines(log, "http_request")
        assert len(requests) >= len(statuses) + 3
        assert all(set(r) == ACCESS_KEYS for r in requests)
        deliveries = json_lines(log, "webhook_delivery")
        assert {d["outcome"] for d in deliveries} >= {"delivered", "retry"}
        for d in deliveries:
            assert set(d) == DELIVERY_KEYS
            assert d["event_type"].split(".")[0] in ("customer", "contact")
        retry = next(d for d in deliveries if d["outcome"] == "retry")
        assert retry["status_code"] == 500 and retry["attempt"] == 1
        assert receiver.url not in log
