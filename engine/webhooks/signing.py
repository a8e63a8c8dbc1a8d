"""Standard Webhooks signing, and the webhook settings (secret, URL)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # the spec's bounds for the secret's key


# --- settings --------------------------------------------------------------------------------

def webhook_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    body = secret.strip()
    if body.startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX):]
    return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)


def parse_webhook_secret(text: str) -> str | None:
    secret = text.strip()
    if not secret:
        return None
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("expected whsec_ followed by base64 (e.g. python -c \"import base64, secrets; "
                         "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\")")
    try:
        key = webhook_key(secret)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"the key after whsec_ must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return secret


def parse_webhook_url(text: str) -> str | None:
    url = text.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return url


def receiver_name(url: str) -> str:
    """What logs and health may say about the receiver: scheme, host and port, nothing else
    (a URL may carry credentials in its user part or query)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


# --- signing ---------------------------------------------------------------------------------

def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, event_id, timestamp, body)}
