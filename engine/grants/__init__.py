"""Upload grants: short-lived JWTs an app mints for one of its users (README "Integrating an app").

The app signs a grant with HS256 (UPLOAD_GRANT_SECRET, shared with the relay) or with a private
key whose public half is UPLOAD_GRANT_PUBLIC_KEY (EdDSA, RS256 or ES256: the relay then holds
nothing able to mint). PyJWT checks the signature and `aud`; `exp` and `nbf` are checked here
against our Clock with a small leeway, because an expired grant still identifies its holder for
the uploads it already created (they belong to `sub`): only creation needs an unexpired grant.

Claims:
  sub            the owner (required): ownership of the uploads and the per-owner quotas
  exp            required; nbf optional
  aud            UPLOAD_GRANT_AUDIENCE (default notion-upload-relay)
  destinations   names or ids of the destinations the holder may upload to; absent = the default
  max_bytes      the largest file the holder may upload
  content_types  MIME types, `type/*` or `*/*`; absent = any type Notion accepts
  max_uploads    how many uploads this grant may create (counted per grant: its `jti`, else the
                 token itself); absent = no limit but the quotas
  jti            optional: names the grant for max_uploads

Anything outside the grant is refused at creation with 403 and the reason, before a byte is
read. A grant token is never logged, stored or echoed: only a hash of it names the grant.
"""
from __future__ import annotations

from engine.grants.scope import (
    GrantScope,
    GrantUsage,
    check_creation,
    check_destination,
    grant_access,
    resolve_destination,
    type_allowed,
)
from engine.grants.verify import (
    DEFAULT_AUDIENCE,
    DEFAULT_DESTINATION,
    DEFAULT_LEEWAY_S,
    FINISH_WINDOW_S,
    Grant,
    GrantVerifier,
    PublicKey,
    looks_like_jwt,
    parse_grant_secret,
    parse_public_key,
)

__all__ = [
    "DEFAULT_AUDIENCE", "DEFAULT_DESTINATION", "DEFAULT_LEEWAY_S", "FINISH_WINDOW_S", "Grant", "GrantScope",
    "GrantUsage", "GrantVerifier", "PublicKey", "check_creation", "check_destination", "grant_access",
    "looks_like_jwt", "parse_grant_secret", "parse_public_key", "resolve_destination", "type_allowed",
]
