"""Who may upload: bearer upload tokens, compared in constant time, and signed upload grants.

UPLOAD_TOKENS="alice:<secret>,bob:<secret>" names each token; an upload belongs to the name
whose token created it. A grant (engine/grants.py) names its owner in `sub`: a grant with
`sub` alice and the token named alice are the same owner. Secrets never leave this module
except for log redaction.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from engine.errors import Unauthorized
from engine.grants import Grant, GrantScope, GrantVerifier, looks_like_jwt

MISSING_TOKEN = "a valid upload token is required: send Authorization: Bearer <token>"
MISSING = "a valid upload token or grant is required: send Authorization: Bearer <token or grant>"

MIN_SECRET_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def parse_upload_tokens(text: str) -> tuple[tuple[str, str], ...]:
    """`name:secret,...` → ((name, secret), ...); raises ValueError with a reason."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not _NAME.match(name):
            raise ValueError("expected name:secret pairs separated by commas (names: letters, digits, _.@-)")
        if len(secret) < MIN_SECRET_LENGTH or any(c in secret for c in " \t\r\n"):
            raise ValueError(f"the secret of {name!r} must be at least {MIN_SECRET_LENGTH} characters, no spaces")
        if any(name == n for n, _ in pairs):
            raise ValueError(f"the name {name!r} appears twice")
        if any(hmac.compare_digest(secret, s) for _, s in pairs):
            raise ValueError("two names share one secret")
        pairs.append((name, secret))
    return tuple(pairs)


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: the owner's name, and the grant when it came with one."""
    owner: str
    grant: Grant | None = None


@dataclass(frozen=True)
class Access:
    """The relay's access rules. Without tokens, uploads are anonymous (loopback only)."""

    tokens: tuple[tuple[str, str], ...] = ()
    observability_public: bool = True  # detailed health and /metrics without a token
    cors_origins: tuple[str, ...] = ()  # besides our own origin; "*" for any
    max_url_bytes: int = 2048
    grants: GrantVerifier | None = None  # upload grants (JWT), when configured
    grant_scope: GrantScope | None = None  # what a grant may create (claims, max_uploads)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens) or self.grants is not None

    def authenticate(self, authorization: str | None, creating: bool = False) -> Identity:
        """The request's owner, from a static token or an upload grant; Unauthorized with the
        reason otherwise. An expired grant still identifies its owner (for the uploads it created:
        `creating` needs an unexpired one, checked by engine.grants.check_creation)."""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        missing = MISSING if self.grants is not None else MISSING_TOKEN
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized(missing)
        name = self.identify(authorization)
        if name is not None:
            return Identity(name)
        token = presented.strip()
        if self.grants is not None and looks_like_jwt(token):
            grant = self.grants.verify(token)
            if creating and grant.expired:
                raise Unauthorized("the upload grant has expired; ask the app for a new one",
                                   reason="grant_expired")
            return Identity(grant.sub, grant)
        raise Unauthorized(missing)

    def identify(self, authorization: str | None) -> str | None:
        """The token's name, or None. Every configured secret is compared, whatever matches,
        so the time taken does not tell which (or whether a prefix) matched."""
        if not authorization:
            return None
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        given = presented.strip().encode("utf-8", "replace")
        found = None
        for name, secret in self.tokens:
            if hmac.compare_digest(given, secret.encode("utf-8")):
                found = name
        return found

    def secrets(self) -> list[str]:
        return [secret for _, secret in self.tokens]
