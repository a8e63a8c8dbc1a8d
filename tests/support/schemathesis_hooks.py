"""Schemathesis hooks for tests/test_openapi.py (loaded through SCHEMATHESIS_HOOKS)."""
from __future__ import annotations

from typing import Any

import schemathesis

# tus bodies are raw bytes under their own media type; send them as application/octet-stream is sent.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    """Known emulator bug (reported, not ours to fix here): a multipart filename with characters
    outside Latin-1 crashes the emulator's form parser (python_multipart encodes option values
    as latin-1), so the relay sees broken transfers, retries, and the notion_api breaker opens
    for every upload. Until the emulator takes UTF-8 filenames, keep generated names in Latin-1."""
    operation = context.operation
    if (operation is not None and operation.path == "/api/upload/create-session" and isinstance(body, dict)
            and isinstance(body.get("filename"), str)):
        name = body["filename"]
        safe = "".join(c if ord(c) < 256 else "_" for c in name)
        if safe != name:
            body = {**body, "filename": safe}
    return body
