"""Verifying a grant: the keys (settings), the Grant value, GrantVerifier (PyJWT)."""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from engine.errors import Unauthorized
from engine.filetypes import base_type

DEFAULT_AUDIENCE = "notion-upload-relay"
DEFAULT_LEEWAY_S = 30.0
MIN_SECRET_CHARS = 32
HMAC_ALGORITHM = "HS256"
# How long after its `exp` a grant still identifies its holder for the uploads it created. Notion
# ends an upload 1 hour after its creation, and no grant creates after its exp: a day is ample,
# and a leaked, long-expired token opens nothing.
FINISH_WINDOW_S = 24 * 3600
MAX_SUB_CHARS = 256
# The name the default destination (NOTION_PARENT_PAGE_ID) answers to in a grant's destinations.
DEFAULT_DESTINATION = "default"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)$")


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated segments (a JWS in compact form); PyJWT says the rest."""
    return token.count(".") == 2


# --- keys ------------------------------------------------------------------------------------

def parse_grant_secret(text: str) -> str | None:
    """UPLOAD_GRANT_SECRET: at least 32 characters (HS256 with a shorter key is guessable)."""
    secret = text.strip()
    if not secret:
        return None
    if len(secret) < MIN_SECRET_CHARS or any(c in secret for c in " \t\r\n"):
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters, no spaces "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return secret


@dataclass(frozen=True)
class PublicKey:
    """UPLOAD_GRANT_PUBLIC_KEY, loaded: the PEM text and the one algorithm its kind signs with."""
    pem: str
    algorithm: str

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm})"


def parse_public_key(text: str) -> PublicKey | None:
    """A PEM public key (the text itself, `\\n` escapes allowed, or a path to a file). A private
    key is refused: the relay must hold nothing able to mint grants."""
    # Why imported here: PyJWT and cryptography cost ~10 MiB of RSS, paid only when grants are on.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    text = text.strip()
    if not text:
        return None
    if "-----BEGIN" not in text:
        try:
            with open(text, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            raise ValueError("expected a PEM public key (-----BEGIN PUBLIC KEY-----…) or the path of a file "
                             "holding one") from None
    text = text.replace("\\n", "\n")
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key: give the relay only the PUBLIC key (the app keeps the "
                         "private one to mint grants)")
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("not a PEM public key the relay can read (Ed25519, Ed448, RSA or EC P-256)") from None
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        algorithm = "EdDSA"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("an RSA key must have at least 2048 bits")
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        algorithm = "ES256"
    else:
        raise ValueError("unsupported key type: use Ed25519 (EdDSA), RSA (RS256) or EC P-256 (ES256)")
    return PublicKey(text, algorithm)


# --- the grant -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """What a verified grant allows. `expired`: past exp (+ leeway) when it was verified."""
    sub: str
    expires_at: float
    grant_id: str  # the jti, else a hash of the token: names the grant for max_uploads
    destinations: tuple[str, ...] | None = None
    max_bytes: int | None = None
    content_types: tuple[str, ...] | None = None
    max_uploads: int | None = None
    expired: bool = False


def _claim_error(name: str, what: str) -> Unauthorized:
    return Unauthorized(f"the upload grant's {name} claim is invalid: {what}", reason="grant_invalid")


def _string_list(claims: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _claim_error(name, "expected a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _count(claims: dict[str, Any], name: str, low: int) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _claim_error(name, f"expected an integer >= {low}")
    return value


def _content_types(claims: dict[str, Any]) -> tuple[str, ...] | None:
    types = _string_list(claims, "content_types")
    if types is None:
        return None
    lowered = tuple(base_type(t) for t in types)
    bad = [t for t in lowered if not _MIME.match(t) and t != "*/*"]
    if bad:
        raise _claim_error("content_types", "expected MIME types such as application/pdf or image/*")
    return lowered


class GrantVerifier:
    """Verifies grant tokens; holds the secret and/or the public key (never shown)."""

    def __init__(self, clock: Clock, *, secret: str | None = None, public_key: PublicKey | None = None,
                 audience: str = DEFAULT_AUDIENCE, leeway_s: float = DEFAULT_LEEWAY_S) -> None:
        from cryptography.hazmat.primitives import serialization  # only when grants are on (see above)

        if not secret and public_key is None:
            raise ValueError("a grant verifier needs UPLOAD_GRANT_SECRET or UPLOAD_GRANT_PUBLIC_KEY")
        self.clock = clock
        self.audience = audience
        self.leeway_s = leeway_s
        # The algorithm in the token's header picks the key, and each key takes only its own
        # algorithm: an HS256 token "signed" with the public key's text is never accepted.
        self._keys: dict[str, Any] = {}
        if secret:
            self._keys[HMAC_ALGORITHM] = secret
        if public_key is not None:
            self._keys[public_key.algorithm] = serialization.load_pem_public_key(public_key.pem.encode("ascii"))

    def __repr__(self) -> str:
        return f"GrantVerifier(algorithms={sorted(self._keys)}, audience={self.audience!r})"

    @property
    def algorithms(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str) -> Grant:
        """The grant, or Unauthorized with the reason. An expired grant is returned with
        `expired=True` for up to FINISH_WINDOW_S past its exp (creation refuses it)."""
        import jwt  # only when grants are on: see parse_public_key

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the upload grant is not a well-formed JWT", reason="grant_malformed") from None
        algorithm = header.get("alg")
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            raise Unauthorized(f"the upload grant's algorithm must be one of {', '.join(self.algorithms)}",
                               reason="grant_algorithm")
        try:
            claims = jwt.decode(
                token, key, algorithms=[str(algorithm)], audience=self.audience,
                # exp and nbf are checked below, on our clock, so that an expired grant can still
                # finish its uploads; iat says nothing a grant needs.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "sub", "aud"]})
        except jwt.InvalidSignatureError:
            raise Unauthorized("the upload grant's signature does not verify", reason="grant_signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the upload grant has no {exc.claim} claim", reason="grant_invalid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the upload grant is for another audience (this relay is {self.audience!r})",
                               reason="grant_audience") from None
        except jwt.DecodeError:
            raise Unauthorized("the upload grant is not a well-formed JWT", reason="grant_malformed") from None
        except jwt.PyJWTError:
            raise Unauthorized("the upload grant is not valid", reason="grant_invalid") from None
        return self._grant(claims, token)

    def _grant(self, claims: dict[str, Any], token: str) -> Grant:
        now = self.clock.wall()
        raw_exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _is_time(raw_exp):
            raise _claim_error("exp", "expected seconds since the epoch")
        exp = float(raw_exp or 0)  # _is_time checked it is a number
        if nbf is not None:
            if not _is_time(nbf):
                raise _claim_error("nbf", "expected seconds since the epoch")
            nbf = float(nbf)
            if now + self.leeway_s < nbf:
                raise Unauthorized(f"the upload grant is not valid yet (valid from {int(nbf)}, "
                                   f"{math.ceil(nbf - now)} s from now)", reason="grant_not_yet_valid")
        expired = now - self.leeway_s >= exp
        if now - self.leeway_s >= exp + FINISH_WINDOW_S:
            raise Unauthorized("the upload grant has expired", reason="grant_expired")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_CHARS or _CONTROL.search(sub):
            raise _claim_error("sub", f"expected a non-empty string of at most {MAX_SUB_CHARS} characters")
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > 200):
            raise _claim_error("jti", "expected a non-empty string")
        grant_id = ("jti:" + hashlib.sha256(jti.encode()).hexdigest()[:32] if jti
                    else "tok:" + hashlib.sha256(token.encode()).hexdigest()[:32])
        return Grant(
            sub=sub, expires_at=float(exp), grant_id=grant_id, expired=expired,
            destinations=_string_list(claims, "destinations"),
            max_bytes=_count(claims, "max_bytes", 1),
            content_types=_content_types(claims),
            max_uploads=_count(claims, "max_uploads", 0),
        )


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
