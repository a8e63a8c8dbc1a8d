"""The relay's configuration: one typed, validated, frozen object read from the environment.

Every variable, its default and its unit is listed in README.md ("Configuration"). A bad value
raises SettingsError with one line naming the variable; only server.py decides to exit.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.access import parse_upload_tokens
from engine.destinations import parse_destinations
from engine.grants import DEFAULT_AUDIENCE, DEFAULT_LEEWAY_S, PublicKey, parse_grant_secret, parse_public_key
from engine.webhooks import parse_webhook_secret, parse_webhook_url

MIB = 2**20
# The seeds' defaults, used for the other one when only one of the two is set.
SEED_MAX_CONCURRENT_UPLOADS = 10
SEED_QUEUE_SIZE_LIMIT = 10
# Never echoed in an error (WEBHOOK_URL may carry a receiver's credentials; a public key is no
# secret, but a pasted private key would be).
SECRET_VARIABLES = frozenset({"NOTION_TOKEN", "UPLOAD_TOKENS", "REDIS_URL", "UPLOAD_GRANT_SECRET",
                              "UPLOAD_GRANT_PUBLIC_KEY", "WEBHOOK_SECRET", "WEBHOOK_URL"})


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def _env(name: str, default: Any, parse: Callable[[str], Any], check: Callable[[Any], str | None] | None = None):
    """A dataclass field read from environment variable `name` (metadata used by from_env)."""
    return field(default=default, metadata={"env": name, "parse": parse, "check": check})


def _int(text: str) -> int:
    return int(text.strip())


def _float(text: str) -> float:
    return float(text.strip())


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _str(text: str) -> str:
    return text.strip()


def _optional_str(text: str) -> str | None:
    return text.strip() or None


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _optional_int(text: str) -> int | None:
    return int(text.strip()) if text.strip() else None


def _page_id(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    # Notion accepts ids with or without dashes, and users often paste a page URL's tail.
    tail = re.sub(r"[^0-9a-fA-F]", "", text.rsplit("-", 1)[-1] if len(text) > 36 else text)
    return str(uuid.UUID(hex=tail[-32:]))


def _rate(text: str) -> tuple[int, float]:
    count, _, window = text.strip().partition("/")
    n, w = int(count), float(window or "60")
    if n <= 0 or w <= 0:
        raise ValueError("both numbers must be positive")
    return n, w


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


@dataclass(frozen=True)
class Settings:
    # Network
    host: str = _env("HOST", "127.0.0.1", _str)
    port: int = _env("PORT", 8888, _int, _between(0, 65535))  # 0 picks a free port
    environment: str = _env("ENVIRONMENT", "development", _str, _one_of("development", "production", "test"))
    # text = logfmt key=value lines; json = one object per line
    log_format: str = _env("LOG_FORMAT", "text", lambda t: t.strip().lower(), _one_of("text", "json"))

    # Notion
    notion_token: str | None = _env("NOTION_TOKEN", None, _optional_str)
    notion_api_base: str = _env("NOTION_API_BASE", "https://api.notion.com", _str)
    notion_version: str = _env("NOTION_VERSION", "2025-09-03", _str)
    notion_parent_page_id: str | None = _env("NOTION_PARENT_PAGE_ID", None, _page_id)
    # Where uploads may go besides NOTION_PARENT_PAGE_ID: `name=ID_OR_URL, …` (engine/destinations.py).
    notion_destinations: tuple[tuple[str, str], ...] = _env("NOTION_DESTINATIONS", (), parse_destinations)
    # A database destination's row: the files property (default: the first of type files) and a
    # text property for the caption (default: none; the caption becomes the file's name).
    notion_files_property: str | None = _env("NOTION_FILES_PROPERTY", None, _optional_str)
    notion_caption_property: str | None = _env("NOTION_CAPTION_PROPERTY", None, _optional_str)
    notion_rate_limit: tuple[int, float] = _env("NOTION_RATE_LIMIT", (180, 60.0), _rate)
    # 20 MiB parts carry the most bytes per Notion request (bench/README.md, "partsize").
    part_size_mb: int = _env("PART_SIZE_MB", 20, _int, _between(5, 20))

    # Disk
    data_dir: Path = _env("DATA_DIR", Path("./data"), lambda t: Path(t.strip()))
    spool_dir_override: Path | None = _env("SPOOL_DIR", None, lambda t: Path(t.strip()) if t.strip() else None)

    # Memory and concurrency (the seeds' names)
    max_upload_memory_mb: int = _env("MAX_UPLOAD_MEMORY_MB", 100, _int, _at_least(1))
    memory_low_threshold_mb: int = _env("MEMORY_LOW_THRESHOLD", 200, _int, _at_least(1))
    memory_medium_threshold_mb: int = _env("MEMORY_MEDIUM_THRESHOLD", 350, _int, _at_least(1))
    memory_high_threshold_mb: int = _env("MEMORY_HIGH_THRESHOLD", 450, _int, _at_least(1))
    memory_critical_threshold_mb: int = _env("MEMORY_CRITICAL_THRESHOLD", 500, _int, _at_least(1))
    min_workers: int = _env("MIN_WORKERS", 1, _int, _at_least(1))
    max_workers: int = _env("MAX_WORKERS", 3, _int, _between(1, 64))
    default_workers: int = _env("DEFAULT_WORKERS", 2, _int, _at_least(1))
    # The seeds' count of uploads (in progress + queued). Unset = no count limit: uploads stream
    # through spool files, and admission refuses on what runs out (memory, spool disk, Notion
    # budget backlog). Set either and the limit is their sum, the other one at the seeds' 10.
    max_concurrent_uploads: int | None = _env("MAX_CONCURRENT_UPLOADS", None, _optional_int, _at_least(1))
    queue_size_limit: int | None = _env("QUEUE_SIZE_LIMIT", None, _optional_int, _at_least(0))
    # Free space kept on the spool's disk beyond what running uploads may still write; 0 = off.
    spool_min_free_mb: int = _env("SPOOL_MIN_FREE_MB", 256, _int, _at_least(0))
    # New uploads wait while the Notion request budget is more than this many seconds behind
    # (Notion expires an upload 1 hour after it was created).
    notion_backlog_limit_s: float = _env("NOTION_BACKLOG_LIMIT", 3000.0, _float, _between(1, 86400))
    total_memory_mb: float | None = _env("TOTAL_MEMORY_MB", None, _optional_float)
    total_cpu_cores: float | None = _env("TOTAL_CPU_CORES", None, _optional_float)
    metrics_interval_s: float = _env("METRICS_INTERVAL", 5.0, _float, _between(0.05, 3600))

    # Timeouts (seconds)
    connection_timeout_s: float = _env("CONNECTION_TIMEOUT", 30.0, _float, _between(0.01, 3600))
    read_timeout_s: float = _env("READ_TIMEOUT", 300.0, _float, _between(1, 3600))
    total_timeout_s: float = _env("TOTAL_TIMEOUT", 450.0, _float, _between(0.1, 7200))
    # How long Notion may still act on a request after we stopped waiting for it (its own
    # server-side limit is 60 s): an append whose outcome is unknown is not repeated before then.
    notion_settle_s: float = _env("NOTION_SETTLE_TIME", 60.0, _float, _between(0, 600))
    # Files finishing for the same page within this window are appended in one request (Notion
    # takes 100 children per append): fewer requests of the shared budget per small file. 0: off.
    append_batch_window_ms: int = _env("APPEND_BATCH_WINDOW_MS", 400, _int, _between(0, 5000))
    # ... stretched up to this as Notion's request budget empties: a request saved then is a
    # token for bytes, and every request waits for one anyway (bench/README.md, small).
    append_batch_max_window_ms: int = _env("APPEND_BATCH_MAX_WINDOW_MS", 3000, _int, _between(0, 10000))

    # Retries
    max_retries: int = _env("MAX_RETRIES", 5, _int, _between(0, 100))
    initial_retry_delay_s: float = _env("INITIAL_RETRY_DELAY", 1.0, _float, _between(0, 3600))
    max_retry_delay_s: float = _env("MAX_RETRY_DELAY", 120.0, _float, _between(0, 3600))
    retry_exponential_base: float = _env("RETRY_EXPONENTIAL_BASE", 2.0, _float, _between(1, 10))
    retry_jitter_percent: float = _env("RETRY_JITTER_PERCENT", 25.0, _float, _between(0, 100))

    # Circuit breakers: "upload" guards whole uploads, "notion" every Notion request
    cb_upload_failure_threshold: int = _env("CB_UPLOAD_FAILURE_THRESHOLD", 5, _int, _at_least(1))
    cb_upload_timeout_duration_s: float = _env("CB_UPLOAD_TIMEOUT_DURATION", 60.0, _float, _between(0.01, 3600))
    cb_notion_failure_threshold: int = _env("CB_NOTION_FAILURE_THRESHOLD", 3, _int, _at_least(1))
    cb_notion_timeout_duration_s: float = _env("CB_NOTION_TIMEOUT_DURATION", 30.0, _float, _between(0.01, 3600))
    # The notion breaker opens on a failure rate over a window (engine/breaker.py says why):
    # at least CB_NOTION_FAILURE_RATE % of the last CB_NOTION_WINDOW seconds' calls failed, and
    # either the window holds CB_NOTION_MINIMUM_CALLS calls and CB_NOTION_FAILURE_THRESHOLD
    # failures, or the failures in a row reached CB_NOTION_FAILURE_THRESHOLD (the threshold is a
    # floor both ways). CB_NOTION_WINDOW=0: consecutive failures only (the seeds').
    cb_notion_window_s: float = _env("CB_NOTION_WINDOW", 10.0, _float, _between(0, 3600))
    cb_notion_failure_rate_percent: float = _env("CB_NOTION_FAILURE_RATE", 50.0, _float, _between(1, 100))
    cb_notion_minimum_calls: int = _env("CB_NOTION_MINIMUM_CALLS", 20, _int, _between(1, 1000))
    cb_half_open_max_calls: int = _env("CB_HALF_OPEN_MAX_CALLS", 3, _int, _at_least(1))

    # Checkpoints
    checkpoint_enabled: bool = _env("CHECKPOINT_ENABLED", True, _bool)
    checkpoint_interval_parts: int = _env("CHECKPOINT_INTERVAL_PARTS", 1, _int, _at_least(1))
    checkpoint_storage_backend: str = _env("CHECKPOINT_STORAGE_BACKEND", "redis", _str, _one_of("redis"))
    checkpoint_expiration_hours: float = _env("CHECKPOINT_EXPIRATION_HOURS", 24.0, _float, _between(0.001, 24 * 365))
    redis_url: str | None = _env("REDIS_URL", None, _optional_str)

    # Several instances, housekeeping, shutdown (seconds)
    instance_id: str | None = _env("INSTANCE_ID", None, _optional_str)
    lock_ttl_s: float = _env("LOCK_TTL", 15.0, _float, _between(0.5, 3600))
    owner_idle_timeout_s: float = _env("OWNER_IDLE_TIMEOUT", 300.0, _float, _between(1, 86400))
    cleanup_interval_s: float = _env("CLEANUP_INTERVAL", 60.0, _float, _between(0.1, 86400))
    shutdown_timeout_s: float = _env("SHUTDOWN_TIMEOUT", 25.0, _float, _between(0, 3600))

    # Access and hostile input (see README "Security")
    upload_tokens: tuple[tuple[str, str], ...] = _env("UPLOAD_TOKENS", (), parse_upload_tokens)
    observability_access: str | None = _env("OBSERVABILITY_ACCESS", None, _optional_str,
                                            lambda v: None if v in ("public", "token") else "must be public or token")
    quota_concurrent_uploads: int = _env("QUOTA_CONCURRENT_UPLOADS", 5, _int, _between(1, 10000))
    quota_mb_per_hour: int = _env("QUOTA_MB_PER_HOUR", 20480, _int, _between(1, 10**9))
    cors_origins: tuple[str, ...] = _env(
        "CORS_ORIGINS", (), lambda t: tuple(o.strip().rstrip("/") for o in t.split(",") if o.strip()))
    max_connections: int = _env("MAX_CONNECTIONS", 200, _int, _between(1, 100000))
    max_header_bytes: int = _env("MAX_HEADER_BYTES", 16384, _int, _between(1024, 1048576))
    max_url_bytes: int = _env("MAX_URL_BYTES", 2048, _int, _between(64, 65536))
    header_timeout_s: float = _env("HEADER_TIMEOUT", 30.0, _float, _between(0.5, 3600))
    body_idle_timeout_s: float = _env("BODY_IDLE_TIMEOUT", 30.0, _float, _between(0.5, 3600))
    body_min_rate_bps: int = _env("BODY_MIN_RATE", 1024, _int, _between(0, 10**9))

    # Upload grants: JWTs an app mints for its users (README "Integrating an app")
    upload_grant_secret: str | None = _env("UPLOAD_GRANT_SECRET", None, parse_grant_secret)  # HS256
    upload_grant_public_key: PublicKey | None = _env("UPLOAD_GRANT_PUBLIC_KEY", None, parse_public_key)
    upload_grant_audience: str = _env("UPLOAD_GRANT_AUDIENCE", DEFAULT_AUDIENCE, _str,
                                      lambda v: None if v else "must not be empty")
    upload_grant_leeway_s: float = _env("UPLOAD_GRANT_LEEWAY", DEFAULT_LEEWAY_S, _float, _between(0, 300))

    # Webhooks out (Standard Webhooks) when an upload ends; delivered from an outbox in Redis
    webhook_url: str | None = _env("WEBHOOK_URL", None, parse_webhook_url)
    webhook_secret: str | None = _env("WEBHOOK_SECRET", None, parse_webhook_secret)  # whsec_<base64>
    webhook_timeout_s: float = _env("WEBHOOK_TIMEOUT", 10.0, _float, _between(0.1, 120))
    webhook_concurrency: int = _env("WEBHOOK_CONCURRENCY", 4, _int, _between(1, 64))
    webhook_retry_initial_s: float = _env("WEBHOOK_RETRY_INITIAL", 5.0, _float, _between(0.01, 86400))
    webhook_retry_max_s: float = _env("WEBHOOK_RETRY_MAX", 3600.0, _float, _between(0.01, 86400))
    webhook_max_age_s: float = _env("WEBHOOK_MAX_AGE", 86400.0, _float, _between(1, 7 * 86400))
    webhook_poll_interval_s: float = _env("WEBHOOK_POLL_INTERVAL", 1.0, _float, _between(0.01, 60))
    webhook_failing_after: int = _env("WEBHOOK_FAILING_AFTER", 5, _int, _between(1, 10000))

    @property
    def spool_dir(self) -> Path:
        return self.spool_dir_override or self.data_dir / "spool"

    @property
    def max_active_uploads(self) -> int | None:
        """The seeds' MAX_CONCURRENT_UPLOADS + QUEUE_SIZE_LIMIT when either is set, else None."""
        if self.max_concurrent_uploads is None and self.queue_size_limit is None:
            return None
        running = SEED_MAX_CONCURRENT_UPLOADS if self.max_concurrent_uploads is None else self.max_concurrent_uploads
        queued = SEED_QUEUE_SIZE_LIMIT if self.queue_size_limit is None else self.queue_size_limit
        return running + queued

    @property
    def part_size_bytes(self) -> int:
        return self.part_size_mb * MIB

    @property
    def observability_public(self) -> bool:
        """Detailed health and /metrics without a token: by default only when no tokens and no
        upload grants are set (a grant never opens them: they are for an upload token's holder)."""
        if self.observability_access is None:
            return not self.upload_tokens and not self.grants_enabled
        return self.observability_access == "public"

    @property
    def grants_enabled(self) -> bool:
        return self.upload_grant_secret is not None or self.upload_grant_public_key is not None

    @property
    def webhook_lease_s(self) -> float:
        """How long a claimed webhook event is left to its instance before another retries it:
        longer than a delivery may take."""
        return 2 * self.webhook_timeout_s + 1

    @property
    def loopback_only(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def demo_mode(self) -> bool:
        return self.notion_token is None

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets hidden: safe to log."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "notion_token" and value:
                value = "***"
            elif f.name == "upload_tokens":
                value = [f"{name}:***" for name, _ in value]
            elif f.name == "redis_url" and value:
                value = re.sub(r"//[^@/]*@", "//***@", value)
            elif f.name in ("upload_grant_secret", "webhook_secret") and value:
                value = "***"
            elif f.name == "upload_grant_public_key" and value:
                value = value.algorithm
            elif f.name == "webhook_url" and value:
                value = re.sub(r"//[^@/]*@", "//***@", value).split("?", 1)[0]
            out[f.metadata["env"]] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = environ.get(name)
            if raw is None:
                continue
            shown = f"{name}" if name in SECRET_VARIABLES else f"{name}={raw!r}"  # never echo a secret
            try:
                value = f.metadata["parse"](raw)
            except (ValueError, TypeError) as exc:
                raise SettingsError(f"{shown} is invalid: {exc or 'wrong format'}") from None
            check = f.metadata["check"]
            problem = check(value) if check and value is not None else None
            if problem:
                raise SettingsError(f"{shown} is invalid: {problem}")
            values[f.name] = value
        settings = cls(**values)
        settings._check_relations()
        return settings

    def _check_relations(self) -> None:
        if not (self.min_workers <= self.default_workers <= self.max_workers):
            raise SettingsError(
                f"MIN_WORKERS ({self.min_workers}) <= DEFAULT_WORKERS ({self.default_workers}) "
                f"<= MAX_WORKERS ({self.max_workers}) does not hold"
            )
        thresholds = [self.memory_low_threshold_mb, self.memory_medium_threshold_mb,
                      self.memory_high_threshold_mb, self.memory_critical_threshold_mb]
        if thresholds != sorted(thresholds):
            raise SettingsError("MEMORY_LOW_THRESHOLD < MEDIUM < HIGH < CRITICAL must hold, got "
                                + "/".join(map(str, thresholds)))
        if self.initial_retry_delay_s > self.max_retry_delay_s:
            raise SettingsError("INITIAL_RETRY_DELAY must not exceed MAX_RETRY_DELAY")
        if not self.checkpoint_enabled:
            raise SettingsError("CHECKPOINT_ENABLED=false is not supported: resume and the durable offset depend "
                                "on checkpoints")
        if not re.match(r"^https?://[^\s/]+", self.notion_api_base):
            raise SettingsError(f"NOTION_API_BASE={self.notion_api_base!r} is invalid: must be an http(s) URL")
        if self.total_memory_mb is not None and self.total_memory_mb <= 0:
            raise SettingsError("TOTAL_MEMORY_MB must be positive")
        if not self.upload_tokens and not self.grants_enabled and not self.loopback_only:
            raise SettingsError(
                f"HOST={self.host} serves beyond this machine, but UPLOAD_TOKENS is empty and no upload grants "
                "are configured: anyone could upload into the Notion workspace. Set UPLOAD_TOKENS=name:secret,..., "
                "UPLOAD_GRANT_SECRET or UPLOAD_GRANT_PUBLIC_KEY, or HOST=127.0.0.1")
        if self.webhook_url and not self.webhook_secret:
            raise SettingsError("WEBHOOK_URL is set but WEBHOOK_SECRET is not: webhooks are always signed "
                                "(WEBHOOK_SECRET=whsec_<base64 of 24 to 64 random bytes>)")
        if self.webhook_secret and not self.webhook_url:
            raise SettingsError("WEBHOOK_SECRET is set but WEBHOOK_URL is not")
        if self.webhook_retry_initial_s > self.webhook_retry_max_s:
            raise SettingsError("WEBHOOK_RETRY_INITIAL must not exceed WEBHOOK_RETRY_MAX")
        if self.total_cpu_cores is not None and self.total_cpu_cores <= 0:
            raise SettingsError("TOTAL_CPU_CORES must be positive")
