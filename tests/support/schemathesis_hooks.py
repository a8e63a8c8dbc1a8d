"""Schemathesis hooks for tests/test_openapi.py (loaded through SCHEMATHESIS_HOOKS)."""
from __future__ import annotations

import schemathesis

# tus bodies are raw bytes under their own media type; send them as application/octet-stream is sent.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

