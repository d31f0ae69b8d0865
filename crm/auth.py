"""Bearer-token authentication and role-based scopes.

Tokens are JWTs. Locally they are HS256-signed with ``JWT_SECRET``; in production
``JWT_JWKS_URL`` names a JWKS whose RS256/ES256 keys are fetched and cached (rotation by ``kid``)
and HS256 tokens are refused. Claims: ``sub``, ``roles``, ``chain_ids`` (chain managers),
optional ``scope`` (space-separated; narrows what the roles grant).

Roles grant scopes; every operation in the spec names the scope it needs. Connexion ignores the
scopes of ``type: http`` schemes, so :class:`JWTBearerHandler` enforces them (passed to
``add_api`` through ``security_map``). Row scope (which chains) is enforced by PostgreSQL
row-level security from :attr:`Principal.db_scope` and :attr:`Principal.chain_ids`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from functools import cache

import jwt
from connexion.exceptions import OAuthProblem, OAuthScopeProblem
from connexion.security import BearerSecurityHandler

from crm.context import request_info
from crm.errors import ServiceUnavailable
from crm.settings import Settings, get_settings

ROLES = ("admin", "sales_manager", "sales_rep", "chain_manager", "integration")

_READ = {"chains:read", "customers:read", "contacts:read"}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(_READ | {"chains:write", "customers:write", "customers:delete", "contacts:write"}),
    "sales_manager": frozenset(
        _READ | {"chains:write", "customers:write", "customers:delete", "contacts:write"}
    ),
    "sales_rep": frozenset(_READ | {"customers:write", "customers:delete", "contacts:write"}),
    # Read-mostly: may keep the outlets and contacts of their own chains current.
    "chain_manager": frozenset(_READ | {"customers:write", "contacts:write"}),
    "integration": frozenset(),
}
# Cook&Fresh products and sample requests. Who may move a request to which state is decided per
# transition in db/samples.py: samples:approve (approve, reject, quota override), samples:ship
# (ship, deliver); submit, cancel and close need the requester or samples:approve.
_SAMPLES = frozenset({"products:read", "samples:read", "samples:write", "samples:transition"})
_SAMPLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": _SAMPLES | {"products:write", "samples:approve", "samples:ship"},
    "sales_manager": _SAMPLES | {"samples:approve"},
    "sales_rep": _SAMPLES,
    "chain_manager": _SAMPLES,
    "integration": frozenset({"products:read", "samples:read", "samples:transition", "samples:ship"}),
}
ROLE_SCOPES = {role: scopes | _SAMPLE_SCOPES.get(role, frozenset()) for role, scopes in ROLE_SCOPES.items()}
# Custom fields: definitions are read by every customer role and changed by admins and sales
# managers only; values and the search need the customer scopes (customers:read / customers:write).
_FIELD_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({"fields:read", "fields:write"}),
    "sales_manager": frozenset({"fields:read", "fields:write"}),
    "sales_rep": frozenset({"fields:read"}),
    "chain_manager": frozenset({"fields:read"}),
}
ROLE_SCOPES = {role: scopes | _FIELD_SCOPES.get(role, frozenset()) for role, scopes in ROLE_SCOPES.items()}
# Events: the feed and consumer checkpoints (events:read), webhook subscriptions. Integrations
# manage their own subscriptions (row-level security by owner), admins every subscription.
_EVENT_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({"events:read", "webhooks:read", "webhooks:write"}),
    "integration": frozenset({"events:read", "webhooks:read", "webhooks:write"}),
}
ROLE_SCOPES = {role: scopes | _EVENT_SCOPES.get(role, frozenset()) for role, scopes in ROLE_SCOPES.items()}
# Activities (calls, visits) and the customer timeline: reps and managers read and write them;
# chain managers read those of their chains' outlets (row-level security); integrations nothing.
_ACTIVITY_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({"activities:read", "activities:write"}),
    "sales_manager": frozenset({"activities:read", "activities:write"}),
    "sales_rep": frozenset({"activities:read", "activities:write"}),
    "chain_manager": frozenset({"activities:read"}),
}
ROLE_SCOPES = {role: scopes | _ACTIVITY_SCOPES.get(role, frozenset()) for role, scopes in ROLE_SCOPES.items()}
# Operations: feature flags (admins; docs/deploy.md) and the erasure of a contact's personal data
# on request (admins and sales managers; the retention section of the README).
_OPS_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({"flags:read", "flags:write", "contacts:erase"}),
    "sales_manager": frozenset({"contacts:erase"}),
}
ROLE_SCOPES = {role: scopes | _OPS_SCOPES.get(role, frozenset()) for role, scopes in ROLE_SCOPES.items()}
ALL_CHAINS_ROLES = frozenset({"admin", "sales_manager", "sales_rep"})


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[str, ...]
    chain_ids: tuple[str, ...] = ()
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def db_scope(self) -> str:
        """``all`` rows, the rows of ``chains`` in :attr:`chain_ids`, ``fulfilment`` (the
        integration role: approved sample requests, nothing of customers), or ``none``."""
        if ALL_CHAINS_ROLES & set(self.roles):
            return "all"
        if "chain_manager" in self.roles:
            return "chains"
        return "fulfilment" if "integration" in self.roles else "none"


SYSTEM = Principal(sub="system", roles=("admin",), scopes=ROLE_SCOPES["admin"])


def scopes_for(roles: tuple[str, ...], scope_claim: str | None) -> frozenset[str]:
    granted = frozenset().union(*(ROLE_SCOPES[r] for r in roles)) if roles else frozenset()
    if scope_claim:
        granted &= frozenset(scope_claim.split())
    return granted


def issue_token(
    sub: str,
    roles: list[str],
    chain_ids: list[str] | None = None,
    expires_in: int = 8 * 3600,
    scope: str | None = None,
) -> str:
    """A signed HS256 token for local use (``crm token``, tests)."""
    settings = get_settings()
    now = int(time.time())
    claims = {
        "sub": sub,
        "roles": roles,
        "chain_ids": chain_ids or [],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in,
    }
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


@cache
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # The key set is cached for 5 minutes and refetched for an unknown kid. No per-kid cache
    # (cache_keys): it never expires, so a key withdrawn from the JWKS would stay trusted.
    return jwt.PyJWKClient(url, cache_keys=False, lifespan=300)


def _invalid(detail: str) -> OAuthProblem:
    return OAuthProblem(detail=detail)


# Verified tokens, briefly: a client sends the same token with every request, and verifying it
# costs more than the rest of a simple read. Entries live until the token's `exp`, at most
# TOKEN_CACHE_SECONDS (so a key withdrawn from the JWKS stops working within that time), and are
# keyed by the settings too (another issuer, audience or key source never sees old entries).
TOKEN_CACHE_SECONDS = 60
TOKEN_CACHE_SIZE = 10_000
_verified: dict[tuple[str, object], tuple[float, Principal]] = {}


async def decode_token(token: str) -> Principal:
    """Verify a token and return its principal; any defect raises a 401 problem."""
    settings = get_settings()
    now = time.time()
    hit = _verified.get((token, settings))
    if hit is not None and hit[0] > now:
        return hit[1]
    principal, expires = await _verify(token, settings)
    if len(_verified) >= TOKEN_CACHE_SIZE:
        _verified.clear()
    _verified[(token, settings)] = (min(expires, now + TOKEN_CACHE_SECONDS), principal)
    return principal


async def _verify(token: str, settings: Settings) -> tuple[Principal, float]:
    try:
        if settings.jwt_jwks_url:
            # The JWKS fetch blocks; keep it off the event loop.
            client = _jwks_client(settings.jwt_jwks_url)
            key = (await asyncio.to_thread(client.get_signing_key_from_jwt, token)).key
            algorithms = ["RS256", "ES256"]
        else:
            key, algorithms = settings.jwt_secret, ["HS256"]
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iss", "aud"]},
            leeway=30,
        )
    except jwt.PyJWKClientConnectionError:
        # The key server is down: the token may be fine, so this is not the client's fault.
        raise ServiceUnavailable("The signing keys cannot be fetched right now.", retry_after=10) from None
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _invalid(f"The bearer token is not valid: {exc}") from None
    roles = claims.get("roles", [])
    chain_ids = claims.get("chain_ids", [])
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise _invalid("The token's sub claim must be a non-empty string.")
    if not isinstance(roles, list) or not all(r in ROLES for r in roles):
        raise _invalid(f"The token's roles claim must be a list of {', '.join(ROLES)}.")
    if not isinstance(chain_ids, list):
        raise _invalid("The token's chain_ids claim must be a list of chain ids.")
    try:
        chain_ids = [str(uuid.UUID(str(c))) for c in chain_ids]
    except ValueError:
        raise _invalid("The token's chain_ids claim must hold UUIDs.") from None
    scope_claim = claims.get("scope")
    if scope_claim is not None and not isinstance(scope_claim, str):
        raise _invalid("The token's scope claim must be a space-separated string.")
    principal = Principal(
        sub=sub,
        roles=tuple(roles),
        chain_ids=tuple(chain_ids),
        scopes=scopes_for(tuple(roles), scope_claim),
    )
    return principal, float(claims["exp"])


class JWTBearerHandler(BearerSecurityHandler):
    """Connexion security handler: verifies the JWT and enforces the operation's scopes."""

    def get_fn(self, security_scheme, required_scopes):
        required = frozenset(required_scopes or ())

        async def verify(request):
            header = request.headers.get("Authorization")
            if not header:
                raise OAuthProblem(detail="No bearer token was sent.")
            kind, _, token = header.partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                raise OAuthProblem(detail="The Authorization header must be 'Bearer <token>'.")
            principal = await decode_token(token.strip())
            missing = required - principal.scopes
            if missing:
                problem = OAuthScopeProblem(
                    token_scopes=sorted(principal.scopes), required_scopes=sorted(required)
                )
                problem.detail = f"The token's roles do not grant {', '.join(sorted(missing))}."
                raise problem
            info = request_info.get(None)
            if info is not None:
                info["sub"] = principal.sub
            return {"sub": principal.sub, "principal": principal}

        return verify
