"""The crm command: token, seed."""

from __future__ import annotations

import jwt

from crm.cli import main
from crm.settings import get_settings
from db.seed import seed


def test_token_prints_a_verifiable_jwt(capsys):
    chain = "7d9dcea7-68b5-4ae4-8f64-20a4be9386c4"
    assert main(["token", "--sub", "anna", "--role", "chain_manager", "--role", "sales_rep",
                 "--chain", chain, "--expires-in", "60"]) == 0
    token = capsys.readouterr().out.strip()
    s = get_settings()
    claims = jwt.decode(token, s.jwt_secret, algorithms=["HS256"], audience=s.jwt_audience, issuer=s.jwt_issuer)
    assert claims["sub"] == "anna"
    assert claims["roles"] == ["chain_manager", "sales_rep"]
    assert claims["chain_ids"] == [chain]
    assert claims["exp"] - claims["iat"] == 60


def test_token_is_accepted_by_the_api(client, capsys):
    main(["token", "--sub", "ops", "--role", "admin"])
    token = capsys.readouterr().out.strip()
    assert client.get("/api/v1/chains", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_seed_is_idempotent_and_builds_chains_with_outlets(dsn, db):
    first = seed(dsn, customers=200)
    assert first == {"chains": 3, "customers": 200, "contacts": 200}
    assert seed(dsn, customers=200) == first
    outlets = db.execute("select count(*) as n from customer where chain_id is not null").fetchone()["n"]
    assert outlets == 50
    types = {r["type"] for r in db.execute("select distinct type::text from customer")}
    assert types == {"RESTAURANT", "HOTEL", "CANTEEN", "CATERING", "OTHER"}
