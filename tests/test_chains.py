"""Chains: /api/v1/chains."""

from __future__ import annotations

from tests.helpers import assert_problem, count, create_chain, create_customer


class TestCreateChain:
    def test_creates_with_only_a_name(self, client, auth):
        r = client.post("/api/v1/chains", json={"name": "Alpenblick Hotels"}, headers=auth("admin"))
        assert r.status_code == 201
        body = r.json()
        assert body["name"] == "Alpenblick Hotels"
        assert body["description"] is None
        assert r.headers["etag"] == body["etag"]
        assert r.headers["location"] == f"/api/v1/chains/{body['id']}"

    def test_duplicate_name_is_409_naming_the_existing_chain(self, client, auth, db):
        first = create_chain(client, auth("admin"), "Pasta Fresca")
        r = client.post("/api/v1/chains", json={"name": "pasta fresca"}, headers=auth("admin"))
        body = assert_problem(r, 409)
        assert body["existing_id"] == first["id"]
        assert count(db, "chain") == 1

    def test_sales_manager_may_create_but_sales_rep_may_not(self, client, auth):
        assert client.post("/api/v1/chains", json={"name": "A"}, headers=auth("sales_manager")).status_code == 201
        assert_problem(client.post("/api/v1/chains", json={"name": "B"}, headers=auth("sales_rep")), 403)


class TestListChains:
    def test_pages_through_all_chains_in_name_order(self, client, auth):
        h = auth("admin")
        names = [f"Chain {i:02d}" for i in range(7)]
        for name in reversed(names):
            create_chain(client, h, name)
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/chains", params=params, headers=h).json()
            seen += [c["name"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == names

    def test_q_filters_by_name(self, client, auth):
        h = auth("admin")
        create_chain(client, h, "Pasta Fresca")
        create_chain(client, h, "GastroCampus")
        items = client.get("/api/v1/chains", params={"q": "PASTA"}, headers=h).json()["items"]
        assert [c["name"] for c in items] == ["Pasta Fresca"]


class TestUpdateChain:
    def test_merge_patch_with_if_match(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h, "Old", description="x")
        r = client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "New"},
                         headers={**h, "If-Match": chain["etag"]})
        assert r.status_code == 200
        assert r.json()["name"] == "New"
        assert r.json()["description"] == "x"
        assert r.json()["etag"] != chain["etag"]
        r = client.patch(f"/api/v1/chains/{chain['id']}", json={"description": None},
                         headers={**h, "If-Match": r.json()["etag"]},)
        assert r.json()["description"] is None

    def test_stale_etag_is_412_with_current_etag(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        ok = client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "A"}, headers={**h, "If-Match": chain["etag"]})
        r = client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "B"}, headers={**h, "If-Match": chain["etag"]})
        body = assert_problem(r, 412, "/problems/etag-mismatch")
        assert body["current_etag"] == ok.json()["etag"]

    def test_missing_if_match_is_428(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        assert_problem(client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "A"}, headers=h), 428)


class TestDeleteChain:
    def test_refused_while_it_has_customers(self, client, auth, db):
        h = auth("admin")
        chain = create_chain(client, h)
        create_customer(client, h, chain_id=chain["id"])
        r = client.delete(f"/api/v1/chains/{chain['id']}", headers={**h, "If-Match": chain["etag"]})
        assert assert_problem(r, 409)["customer_count"] == 1
        assert count(db, "chain") == 1

    def test_deletes_an_empty_chain(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        r = client.delete(f"/api/v1/chains/{chain['id']}", headers={**h, "If-Match": chain["etag"]})
        assert r.status_code == 204
        assert_problem(client.get(f"/api/v1/chains/{chain['id']}", headers=h), 404)


class TestGetChain:
    def test_if_none_match_gives_304(self, client, auth):
        h = auth("admin")
        chain = create_chain(client, h)
        r = client.get(f"/api/v1/chains/{chain['id']}", headers={**h, "If-None-Match": chain["etag"]})
        assert r.status_code == 304
        assert r.headers["etag"] == chain["etag"]
        assert r.content == b"" and "content-type" not in r.headers
        assert r.headers["x-correlation-id"]
        r = client.get(f"/api/v1/chains/{chain['id']}", headers={**h, "If-None-Match": '"other"'})
        assert r.status_code == 200
        assert r.headers["etag"] == chain["etag"]
