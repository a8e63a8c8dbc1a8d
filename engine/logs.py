"""Log lines: the seeds' event names, an upload id on every line, and never a secret.

Two formats, chosen by LOG_FORMAT: `text` (default) is logfmt, one `key=value` line per record;
`json` is one JSON object per line. Both carry the same keys: `ts`, `level`, `logger`, `event`
(for the service's events), `upload_id` (`-` / null when no upload applies), the event's own
fields, `msg`, and `exc` for a traceback.

    ts=2026-11-22T08:43:44.123Z level=INFO logger=relay.events event=PART_SUCCESS upload_id=3f0c… part=2
        size=10485760 duration_s=0.412 attempts=1   (one line in the log)

The seeds grep for `UPLOAD_START`, `PART_SUCCESS`, `PART_FAILURE`, `TIMEOUT_EVENT`,
`MEMORY_PRESSURE`, `Circuit breaker.*OPENED` and `Checkpoint`; those strings are in the lines.

A RedactingFilter on the one handler replaces every configured secret (the Notion token, the
upload tokens, the Redis password, the upload grant secret, the webhook secret and the webhook
URL's password and query) and every JWT (upload grants) with `***` in each record: message,
arguments, fields, exception and stack text, before any formatter sees it.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

EVENTS_LOGGER = "relay.events"
LOG_FORMATS = ("text", "json")
MASK = "***"
# Shorter values are not treated as secrets: masking "ab" everywhere would garble every line
# and protect nothing.
MIN_SECRET_CHARS = 6

WARNING_EVENTS = frozenset({"PART_FAILURE", "TIMEOUT_EVENT", "UPLOAD_FAILED", "LOCK_LOST", "CHECKPOINT_RETRY",
                            "MEMORY_PRESSURE", "CIRCUIT_BREAKER", "WEBHOOK_RETRY", "WEBHOOK_FAILED"})
_RESERVED = ("ts", "level", "logger", "event", "upload_id", "msg", "exc", "stack")
# Our upload ids are 32 lowercase hex digits (engine/uploads.py new_upload_id); Notion's ids
# are dashed UUIDs, so a bare 32-hex word in a message (a request path, say) is one of ours.
_UPLOAD_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_BARE = re.compile(r"[^\s=\"\\]+")


# --- secrets ---------------------------------------------------------------------------------

def configured_secrets(notion_token: str | None, upload_secrets: Iterable[str] = (),
                       redis_url: str | None = None, grant_secret: str | None = None,
                       webhook_secret: str | None = None, webhook_url: str | None = None) -> list[str]:
    """Every secret the relay is configured with: what the log redaction must hide. The webhook
    secret is hidden whole and as its key (the base64 after `whsec_`); a webhook URL's password
    and query (where receivers often put a token) too. Grant tokens are not configured: any JWT
    in a line is masked by the Redactor itself."""
    found = [notion_token or "", *upload_secrets, grant_secret or ""]
    if webhook_secret:
        found += [webhook_secret, webhook_secret.removeprefix("whsec_")]
    for url in (redis_url, webhook_url):
        if not url:
            continue
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            continue
        if password:
            found.append(unquote(password))
        if url is webhook_url and parts.query:
            found.append(parts.query)
    return [s for s in found if s]


# A JWT (an upload grant, whoever's it is): base64url `{"…` header, payload, signature.
JWT_PATTERN = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"


class Redactor:
    """Replaces each secret, and its URL-encoded forms, and every JWT (upload grants) with ***."""

    def __init__(self, secrets: Iterable[str], mask_jwts: bool = True) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_CHARS:
                variants.update({secret, quote(secret, safe=""), quote_plus(secret)})
        # Longest first, so a secret that contains another is masked whole.
        ordered = [re.escape(v) for v in sorted(variants, key=len, reverse=True)]
        if mask_jwts:
            ordered.append(JWT_PATTERN)
        self._pattern = re.compile("|".join(ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, (list, tuple)):
            return [self.redact_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.redact_value(v) for k, v in value.items()}
        return value


class RedactingFilter(logging.Filter):
    """Installed on the handler, so it sees every record, whichever logger it came from."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        if not r:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not turn a log call into a crash
            message = f"{record.msg} {record.args!r}"
        record.msg = r.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = r.redact_value(fields)
        return True


# --- formatting ------------------------------------------------------------------------------

def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _upload_id(record: logging.LogRecord, message: str) -> str | None:
    upload_id = getattr(record, "upload_id", None)
    if upload_id:
        return str(upload_id)
    found = _UPLOAD_ID.search(message)
    return found.group(0) if found else None


def record_items(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The keys of one line, in order (shared by both formats)."""
    message = record.getMessage()
    event = getattr(record, "event", None)
    items: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname,
        "logger": record.name,
    }
    if event:
        items["event"] = event
    items["upload_id"] = _upload_id(record, message)
    for key, value in (getattr(record, "fields", None) or {}).items():
        items[f"field_{key}" if key in _RESERVED else key] = value
    if message and message != event:
        items["msg"] = message
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        items["exc"] = record.exc_text
    if record.stack_info:
        items["stack"] = record.stack_info
    return items


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = str(value)
    if text and _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


class KeyValueFormatter(logging.Formatter):
    """LOG_FORMAT=text: logfmt (`key=value`, values with spaces quoted), one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        items = record_items(record, self)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in items.items())


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_items(record, self), default=str, ensure_ascii=False, separators=(",", ":"))


def configure_logging(log_format: str, secrets: Iterable[str], stream: Any = None,
                      level: int = logging.INFO) -> logging.Handler:
    """One handler on the root logger, with the chosen format and the redaction filter."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings go through the same filter, not straight to stderr
    return handler


# --- the service's events --------------------------------------------------------------------

def event_message(event: str, fields: Mapping[str, Any]) -> str:
    """The human part of an event's line: the seeds' wording where their runbooks grep for it."""
    if event == "CHECKPOINT_SAVED":
        return f"Checkpoint saved (part {fields.get('part')})"
    if event == "CHECKPOINT_RETRY":
        return f"Checkpoint retry (part {fields.get('part')}): the store is unavailable"
    if event == "CIRCUIT_BREAKER":
        state = fields.get("state")
        shown = "OPENED" if state == "OPEN" else state
        return f"Circuit breaker {fields.get('breaker')} {shown} (was {fields.get('previous')})"
    if event == "MEMORY_PRESSURE":
        return (f"MEMORY_PRESSURE: {fields.get('memory_used_mb')}MB used of {fields.get('memory_limit_mb')}MB "
                f"({fields.get('resource_state')})")
    if event == "WEBHOOK_DELIVERED":
        return f"Webhook {fields.get('type')} delivered (attempt {fields.get('attempt')})"
    if event == "WEBHOOK_RETRY":
        return (f"Webhook {fields.get('type')} attempt {fields.get('attempt')} failed ({fields.get('error')}); "
                f"retrying in {fields.get('retry_in_s')} s")
    if event == "WEBHOOK_FAILED":
        return f"Webhook {fields.get('type')} not delivered: {fields.get('reason')}"
    return event


class EventLog:
    """A listener for UploadService.emit and the relay's own events: one log line each."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(EVENTS_LOGGER)

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        level = logging.WARNING if event in WARNING_EVENTS else logging.INFO
        if event == "CIRCUIT_BREAKER" and fields.get("state") == "CLOSED":
            level = logging.INFO  # recovered
        if not self.log.isEnabledFor(level):
            return
        rest = dict(fields)
        upload_id = rest.pop("upload_id", None)
        self.log.log(level, "%s", event_message(event, fields),
                     extra={"event": event, "upload_id": upload_id, "fields": rest})


def breaker_fields(name: str, old: str, new: str) -> dict[str, Any]:
    """CIRCUIT_BREAKER's fields, from CircuitBreaker.on_change(name, old, new)."""
    return {"breaker": name, "state": new, "previous": old}


class PressureWatch:
    """MEMORY_PRESSURE once per change into HIGH_LOAD or CRITICAL (fed by the limiter's tick)."""

    PRESSURE_STATES = ("HIGH_LOAD", "CRITICAL")

    def __init__(self, emit: Callable[..., None]) -> None:
        self.emit = emit
        self.last_state: str | None = None

    def observe(self, state: str, used_mb: float, limit_mb: float, workers: int) -> bool:
        changed = state != self.last_state
        self.last_state = state
        if changed and state in self.PRESSURE_STATES:
            self.emit("MEMORY_PRESSURE", resource_state=state, memory_used_mb=round(used_mb, 1),
                      memory_limit_mb=round(limit_mb, 1), workers=workers)
            return True
        return False
