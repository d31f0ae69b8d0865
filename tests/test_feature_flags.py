"""Feature flags: ``/api/v1/feature-flags`` (admins), the outbox event of a switch, and the workers'
flag cache (every worker sees a switch within the TTL)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from crm import feature_flags
from crm.feature_flags import FlagCache
from tests.helpers import assert_problem

FLAG = "contact_email_read"
URL = f"/api/v1/feature-flags/{FLAG}"


def admin(auth):
    return auth("admin", sub="ops-anna")


class TestListFeatureFlags:
    def test_lists_the_flags_of_the_migrations_ordered_by_key(self, client, auth):
        r = client.get("/api/v1/feature-flags", headers=admin(auth))
        assert r.status_code == 200, r.text
        keys = [f["key"] for f in r.json()["items"]]
        assert {"contact_email_dual_write", "contact_email_read"} <= set(keys)
        assert keys == sorted(keys)
        assert all(f["enabled"] is False and f["etag"] for f in r.json()["items"])

    def test_pages(self, client, auth):
        first = client.get("/api/v1/feature-flags?limit=1", headers=admin(auth)).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = client.get(f"/api/v1/feature-flags?limit=1&cursor={first['next_cursor']}", headers=admin(auth))
        assert second.json()["items"][0]["key"] > first["items"][0]["key"]

    @pytest.mark.parametrize("role", ["sales_manager", "sales_rep", "chain_manager", "integration"])
    def test_admins_only(self, client, auth, role):
        assert_problem(client.get("/api/v1/feature-flags", headers=auth(role)), 403)


class TestGetFeatureFlag:
    def test_get_with_etag_and_not_modified(self, client, auth):
        r = client.get(URL, headers=admin(auth))
        assert r.status_code == 200
        assert r.headers["etag"] == r.json()["etag"]
        assert r.json()["updated_by"] is None
        again = client.get(URL, headers={**admin(auth), "If-None-Match": r.headers["etag"]})
        assert again.status_code == 304

    def test_unknown_flag_is_404(self, client, auth):
        assert_problem(client.get("/api/v1/feature-flags/no_such_flag", headers=admin(auth)), 404)


class TestUpdateFeatureFlag:
    def etag(self, client, auth) -> str:
        return client.get(URL, headers=admin(auth)).headers["etag"]

    def test_switch_on_and_off(self, client, auth, db):
        etag = self.etag(client, auth)
        r = client.patch(URL, json={"enabled": True},
                         headers={**admin(auth), "If-Match": etag, "X-Correlation-ID": "flip-1"})
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is True
        assert r.json()["updated_by"] == "ops-anna"
        assert r.headers["etag"] != etag
        # In force in this process at once (the cache was told), without waiting for the TTL.
        assert client.portal.call(feature_flags.enabled, FLAG) is True
        off = client.patch(URL, json={"enabled": False}, headers={**admin(auth), "If-Match": r.headers["etag"]})
        assert off.json()["enabled"] is False

        events = db.execute(
            "select aggregateid, type, payload, correlation_id, actor from outbox"
            " where aggregatetype = 'feature_flag' order by position"
        ).fetchall()
        assert [(e["aggregateid"], e["payload"]["enabled"], e["payload"]["previous_enabled"]) for e in events] == [
            (FLAG, True, False), (FLAG, False, True)]
        assert events[0]["type"] == "feature_flag.updated"
        assert events[0]["correlation_id"] == "flip-1" and events[0]["actor"] == "ops-anna"

    def test_a_patch_that_changes_nothing_emits_no_event(self, client, auth, db):
        r = client.patch(URL, json={"enabled": False}, headers={**admin(auth), "If-Match": self.etag(client, auth)})
        assert r.status_code == 200
        assert db.execute("select count(*) as n from outbox where aggregatetype = 'feature_flag'").fetchone()["n"] == 0

    def test_if_match_required_and_checked(self, client, auth):
        assert_problem(client.patch(URL, json={"enabled": True}, headers=admin(auth)), 428)
        stale = client.patch(URL, json={"enabled": True}, headers={**admin(auth), "If-Match": '"stale"'})
        body = assert_problem(stale, 412, "/problems/etag-mismatch")
        assert body["current_etag"] == self.etag(client, auth)

    @pytest.mark.parametrize("body", [{}, {"enabled": "yes"}, {"enabled": True, "rollout": 50}, {"key": "x"}])
    def test_bad_bodies_are_400(self, client, auth, body):
        r = client.patch(URL, json=body, headers={**admin(auth), "If-Match": self.etag(client, auth)})
        assert_problem(r, 400)

    def test_admins_only(self, client, auth):
        r = client.patch(URL, json={"enabled": True}, headers={**auth("sales_manager"), "If-Match": "*"})
        assert_problem(r, 403)

    def test_unknown_flag_is_404(self, client, auth):
        r = client.patch("/api/v1/feature-flags/no_such_flag", json={"enabled": True},
                         headers={**admin(auth), "If-Match": "*"})
        assert_problem(r, 404)

    def test_the_api_role_cannot_create_or_delete_flags(self, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            conn.execute("select set_config('role', 'crm_api_all', true), set_config('crm.scope', 'all', true)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("delete from feature_flag")


class TestFlagCache:
    """Each worker process has its own cache: two caches stand for two workers."""

    @staticmethod
    def loader(dsn):
        async def load() -> dict[str, bool]:
            with psycopg.connect(dsn) as conn:
                return dict(conn.execute("select key, enabled from feature_flag").fetchall())
        return load

    def test_a_switch_reaches_every_worker_within_the_ttl(self, client, auth, dsn, db):
        now = [1000.0]
        worker_a = FlagCache(self.loader(dsn), ttl=2.0, clock=lambda: now[0])
        worker_b = FlagCache(self.loader(dsn), ttl=2.0, clock=lambda: now[0])
        assert asyncio.run(worker_a.enabled(FLAG)) is False
        assert asyncio.run(worker_b.enabled(FLAG)) is False

        etag = client.get(URL, headers=admin(auth)).headers["etag"]
        client.patch(URL, json={"enabled": True}, headers={**admin(auth), "If-Match": etag})
        now[0] += 1.9  # within the TTL the workers still act on what they loaded
        assert asyncio.run(worker_a.enabled(FLAG)) is False
        now[0] += 0.2  # past it, both reload
        assert asyncio.run(worker_a.enabled(FLAG)) is True
        assert asyncio.run(worker_b.enabled(FLAG)) is True

    def test_a_failed_reload_keeps_the_last_known_values(self):
        now = [0.0]
        answers: list[object] = [{"a_flag": True}, psycopg.OperationalError("down"), {"a_flag": False}]

        async def load() -> dict[str, bool]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer  # type: ignore[return-value]

        cache = FlagCache(load, ttl=2.0, clock=lambda: now[0])
        assert asyncio.run(cache.enabled("a_flag")) is True
        now[0] = 3.0
        assert asyncio.run(cache.enabled("a_flag")) is True  # the database is down: keep True
        now[0] = 4.0
        assert asyncio.run(cache.enabled("a_flag")) is True  # no retry before the TTL
        now[0] = 5.5
        assert asyncio.run(cache.enabled("a_flag")) is False
        assert asyncio.run(cache.enabled("unknown_flag")) is False
