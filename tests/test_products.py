"""The Cook&Fresh product catalogue: /api/v1/products, and its demo seed."""

from __future__ import annotations

import pytest

from db.seed import seed
from tests.helpers import assert_problem

PRODUCTS = "/api/v1/products"
EU_ALLERGENS = {
    "CEREALS_CONTAINING_GLUTEN", "CRUSTACEANS", "EGGS", "FISH", "PEANUTS", "SOYBEANS", "MILK", "NUTS",
    "CELERY", "MUSTARD", "SESAME_SEEDS", "SULPHUR_DIOXIDE_AND_SULPHITES", "LUPIN", "MOLLUSCS",
}


def product(sku: str = "CF-1001", **fields) -> dict:
    return {"sku": sku, "name": f"Kartoffelsuppe {sku}", "category": "SOUPS", "pack_size": 2.5, "unit": "KG",
            **fields}


def create_product(client, headers, sku: str = "CF-1001", **fields) -> dict:
    r = client.post(PRODUCTS, json=product(sku, **fields), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def product_count(db) -> int:
    return db.execute("select count(*) as n from product").fetchone()["n"]


class TestCreateProduct:
    def test_defaults(self, client, auth):
        r = client.post(PRODUCTS, json=product(), headers=auth("admin"))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["brand"] == "Cook&Fresh"
        assert body["allergens"] == [] and body["diet_tags"] == []
        assert body["sample_available"] is True
        assert body["max_sample_quantity"] == 5
        assert body["pack_size"] == 2.5
        assert r.headers["etag"] == body["etag"]
        assert r.headers["location"] == f"{PRODUCTS}/{body['id']}"

    def test_full_body_round_trips(self, client, auth):
        h = auth("admin")
        fields = {"name": "Sauce Hollandaise", "category": "SAUCES", "pack_size": 1, "unit": "L",
                  "allergens": ["EGGS", "MILK"], "diet_tags": ["VEGETARIAN", "GLUTEN_FREE"],
                  "sample_available": False, "max_sample_quantity": 2, "description": "Cremig, stabil im Bain-Marie"}
        created = create_product(client, h, "CF-2001", **fields)
        fetched = client.get(f"{PRODUCTS}/{created['id']}", headers=h).json()
        assert fetched == created
        assert {k: fetched[k] for k in fields} == fields

    def test_duplicate_sku_is_409_naming_the_existing_id(self, client, auth, db):
        h = auth("admin")
        first = create_product(client, h)
        body = assert_problem(client.post(PRODUCTS, json=product(), headers=h), 409)
        assert body["existing_id"] == first["id"]
        assert product_count(db) == 1

    @pytest.mark.parametrize("role", ["sales_manager", "sales_rep", "chain_manager", "integration"])
    def test_only_admins_maintain_the_catalogue(self, client, auth, db, role):
        assert_problem(client.post(PRODUCTS, json=product(), headers=auth(role)), 403)
        assert product_count(db) == 0

    def test_unknown_allergen_is_400(self, client, auth, db):
        body = assert_problem(client.post(PRODUCTS, json=product(allergens=["GLUTEN"]), headers=auth("admin")), 400)
        assert body["errors"][0]["field"].startswith("allergens")
        assert product_count(db) == 0

    def test_creation_emits_an_event(self, client, auth, db):
        created = create_product(client, auth("admin", sub="katalog"))
        event = db.execute("select type, aggregateid, actor from outbox").fetchone()
        assert event == {"type": "product.created", "aggregateid": created["id"], "actor": "katalog"}


class TestListProducts:
    @pytest.fixture
    def catalogue(self, client, auth):
        h = auth("admin")
        return [
            create_product(client, h, "CF-1001", name="Kartoffelsuppe", category="SOUPS",
                           allergens=["CELERY"], diet_tags=["VEGAN"]),
            create_product(client, h, "CF-1002", name="Rahmsauce", category="SAUCES",
                           allergens=["MILK"], sample_available=False),
            create_product(client, h, "CF-1003", name="Gemüsefond", category="BASES_AND_BOUILLONS"),
            create_product(client, h, "CF-1004", name="Spätzle", category="SIDE_DISHES",
                           allergens=["EGGS", "CEREALS_CONTAINING_GLUTEN"]),
        ]

    def _skus(self, client, h, params=None):
        r = client.get(PRODUCTS, params=params or {}, headers=h)
        assert r.status_code == 200, r.text
        return [p["sku"] for p in r.json()["items"]]

    def test_filters(self, client, auth, catalogue):
        h = auth("sales_rep")
        assert self._skus(client, h) == ["CF-1001", "CF-1002", "CF-1003", "CF-1004"]
        assert self._skus(client, h, {"category": "SAUCES"}) == ["CF-1002"]
        assert self._skus(client, h, {"q": "sauce"}) == ["CF-1002"]
        assert self._skus(client, h, {"q": "cf-1003"}) == ["CF-1003"]
        assert self._skus(client, h, {"sample_available": "false"}) == ["CF-1002"]
        assert self._skus(client, h, {"sample_available": "true"}) == ["CF-1001", "CF-1003", "CF-1004"]
        assert self._skus(client, h, {"allergen_free": "MILK"}) == ["CF-1001", "CF-1003", "CF-1004"]
        assert self._skus(client, h, [("allergen_free", "MILK"), ("allergen_free", "EGGS")]) == ["CF-1001", "CF-1003"]

    def test_every_role_reads_the_catalogue(self, client, auth, catalogue):
        for role in ("admin", "sales_manager", "sales_rep", "chain_manager", "integration"):
            assert len(self._skus(client, auth(role))) == 4

    def test_pages(self, client, auth, catalogue):
        h = auth("admin")
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get(PRODUCTS, params=params, headers=h).json()
            seen += [p["sku"] for p in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == ["CF-1001", "CF-1002", "CF-1003", "CF-1004"]

    def test_cursor_is_bound_to_its_filters(self, client, auth, catalogue):
        h = auth("admin")
        cursor = client.get(PRODUCTS, params={"limit": 1}, headers=h).json()["next_cursor"]
        r = client.get(PRODUCTS, params={"limit": 1, "cursor": cursor, "category": "SOUPS"}, headers=h)
        assert_problem(r, 400, "/problems/invalid-cursor")

    def test_unknown_allergen_filter_is_400(self, client, auth):
        assert_problem(client.get(PRODUCTS, params={"allergen_free": "GLUTEN"}, headers=auth("admin")), 400)


class TestGetProduct:
    def test_etag_and_not_modified(self, client, auth):
        h = auth("sales_rep")
        created = create_product(client, auth("admin"))
        r = client.get(f"{PRODUCTS}/{created['id']}", headers=h)
        assert r.status_code == 200
        assert r.headers["etag"] == created["etag"]
        r = client.get(f"{PRODUCTS}/{created['id']}", headers={**h, "If-None-Match": created["etag"]})
        assert r.status_code == 304

    def test_unknown_product_is_404(self, client, auth):
        assert_problem(client.get(f"{PRODUCTS}/00000000-0000-4000-8000-000000000000", headers=auth("admin")), 404)


class TestUpdateProduct:
    def test_merge_patch(self, client, auth):
        h = auth("admin")
        created = create_product(client, h, description="alt")
        r = client.patch(f"{PRODUCTS}/{created['id']}", headers={**h, "If-Match": created["etag"]},
                         json={"sample_available": False, "description": None, "allergens": ["CELERY"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["sample_available"] is False
        assert body["description"] is None
        assert body["allergens"] == ["CELERY"]
        assert body["name"] == created["name"]
        assert r.headers["etag"] == body["etag"] != created["etag"]

    def test_needs_a_current_if_match(self, client, auth, db):
        h = auth("admin")
        created = create_product(client, h)
        url = f"{PRODUCTS}/{created['id']}"
        assert_problem(client.patch(url, headers=h, json={"name": "Neu"}), 428)
        body = assert_problem(client.patch(url, headers={**h, "If-Match": '"stale"'}, json={"name": "Neu"}), 412)
        assert body["current_etag"] == created["etag"]
        assert db.execute("select name from product").fetchone()["name"] == created["name"]

    def test_sku_is_immutable(self, client, auth):
        h = auth("admin")
        created = create_product(client, h)
        r = client.patch(f"{PRODUCTS}/{created['id']}", headers={**h, "If-Match": created["etag"]},
                         json={"sku": "CF-9999"})
        assert_problem(r, 400)

    def test_sales_manager_may_not_change_products(self, client, auth):
        created = create_product(client, auth("admin"))
        r = client.patch(f"{PRODUCTS}/{created['id']}",
                         headers={**auth("sales_manager"), "If-Match": created["etag"]}, json={"name": "Neu"})
        assert_problem(r, 403)


class TestSeedCatalogue:
    def test_seed_loads_a_deterministic_catalogue_once(self, dsn, db):
        catalogue = "select sku, name, allergens::text[] as allergens from product order by sku"
        seed(dsn, customers=10)
        first = db.execute(catalogue).fetchall()
        assert 30 <= len(first) <= 50
        seed(dsn, customers=10)
        assert db.execute(catalogue).fetchall() == first
        assert {a for row in first for a in row["allergens"]} <= EU_ALLERGENS
        categories = {r["category"] for r in db.execute("select distinct category::text from product")}
        assert len(categories) >= 6
        assert db.execute("select count(*) as n from product where not sample_available").fetchone()["n"] >= 1
        assert db.execute("select count(distinct brand) as n from product").fetchone()["n"] == 1
