"""Runtime settings, read from the environment once.

| variable | default | meaning |
|---|---|---|
| ``DATABASE_URL`` | unset | an external PostgreSQL 14+; unset starts the embedded one |
| ``CRM_DATA_DIR`` | ``.data`` | embedded database files and the generated dev secret |
| ``CRM_PG_PORT`` | ``54329`` | port of the embedded PostgreSQL |
| ``HOST`` / ``PORT`` | ``127.0.0.1`` / ``8080`` | where the API listens |
| ``WEB_CONCURRENCY`` | ``2`` | gunicorn worker processes |
| ``JWT_SECRET`` | generated into the data dir | HS256 key for local tokens |
| ``JWT_ISSUER`` / ``JWT_AUDIENCE`` | ``kundenmanagement`` / ``kundenmanagement-api`` | required claims |
| ``JWT_JWKS_URL`` | unset | production: RS256/ES256 keys from this JWKS, HS256 refused |
| ``DB_POOL_MIN`` / ``DB_POOL_MAX`` | ``2`` / ``10`` | connections per worker |
| ``DATABASE_READ_URL`` | unset | a streaming replica for read-only operations (docs/scaling.md) |
| ``READ_YOUR_WRITES_SECONDS`` | ``60`` | how long a client's reads check the replica has its last write |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    pg_port: int
    host: str
    port: int
    workers: int
    jwt_issuer: str
    jwt_audience: str
    jwt_jwks_url: str | None
    pool_min: int
    pool_max: int
    database_read_url: str | None = None
    read_your_writes_seconds: int = 60

    @property
    def jwt_secret(self) -> str:
        return jwt_secret(self.data_dir)


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@cache
def get_settings() -> Settings:
    data_dir = Path(os.environ.get("CRM_DATA_DIR") or PROJECT_DIR / ".data").resolve()
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        data_dir=data_dir,
        pg_port=_int("CRM_PG_PORT", 54329),
        host=os.environ.get("HOST") or "127.0.0.1",
        port=_int("PORT", 8080),
        workers=_int("WEB_CONCURRENCY", 2),
        jwt_issuer=os.environ.get("JWT_ISSUER") or "kundenmanagement",
        jwt_audience=os.environ.get("JWT_AUDIENCE") or "kundenmanagement-api",
        jwt_jwks_url=os.environ.get("JWT_JWKS_URL") or None,
        pool_min=_int("DB_POOL_MIN", 2),
        pool_max=_int("DB_POOL_MAX", 10),
        database_read_url=os.environ.get("DATABASE_READ_URL") or None,
        read_your_writes_seconds=_int("READ_YOUR_WRITES_SECONDS", 60),
    )


@cache
def jwt_secret(data_dir: Path) -> str:
    """``JWT_SECRET``, or a random dev secret generated once into the data dir."""
    if os.environ.get("JWT_SECRET"):
        return os.environ["JWT_SECRET"]
    path = data_dir / "jwt-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
