"""Who may upload: bearer upload tokens, compared in constant time.

UPLOAD_TOKENS="alice:<secret>,bob:<secret>" names each token; an upload belongs to the name
whose token created it. Secrets never leave this module except for log redaction.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

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
class Access:
    """The relay's access rules. Without tokens, uploads are anonymous (loopback only)."""

    tokens: tuple[tuple[str, str], ...] = ()
    observability_public: bool = True  # detailed health and /metrics without a token
    cors_origins: tuple[str, ...] = ()  # besides our own origin; "*" for any
    max_url_bytes: int = 2048

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

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
