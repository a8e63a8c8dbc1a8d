"""GET /api/openapi.json: an OpenAPI 3.1 description of the relay's HTTP API.

Built here in Python so the shared pieces (the error body, the status document) are written
once. It describes what the handlers really answer — tests/test_openapi.py runs schemathesis
against it and fails on any response that does not match — so a handler that gains a status
code or a field must gain it here too.

tus 1.0 is described as far as OpenAPI can say it: its requests are headers and raw bytes, and
the protocol's rules (offsets, checksums, expiry) are in the descriptions.
"""
from __future__ import annotations

import json
from typing import Any

from engine.filetypes import EXTENSIONS
from handlers.base import TUS_VERSION, BaseHandler
from handlers.errors import ROWS

UPLOAD_STATES = ["created", "uploading", "finalizing", "completed", "failed", "expired", "terminated"]
RESOURCE_STATES = ["LOW_LOAD", "MEDIUM_LOAD", "HIGH_LOAD", "CRITICAL"]
BREAKER_STATES = ["CLOSED", "OPEN", "HALF_OPEN"]
# handlers/errors.py: every row's code (and `http_<status>` for a status of Tornado's with no row).
ERROR_CODES = [row.code for row in ROWS]

JSON = "application/json"
OCTETS = "application/octet-stream"
TUS_OCTETS = "application/offset+octet-stream"
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    schema["required"] = list(properties) if required is None else required
    return schema


# --- schemas ---------------------------------------------------------------------------------

ERROR = obj({
    "error": {**STRING, "description": "What went wrong, for people. Never a stack trace or a secret."},
    "code": {"anyOf": [{"enum": ERROR_CODES}, {"type": "string", "pattern": "^http_[0-9]{3}$"}],
             "description": "A stable short code (`http_<status>` for errors of the HTTP layer)."},
    "retry_after": {"type": "integer", "minimum": 1,
                    "description": "Seconds to wait before trying again (also in `Retry-After`)."},
    "can_resume": {**BOOLEAN, "description": "Whether the upload can continue from `offset`."},
    "offset": {**COUNT, "description": "The offset to continue from (offset mismatch, body ended early)."},
    "checkpoint_key": STRING,
    "progress_percent": NUMBER,
    "limit": {**COUNT, "description": "The limit that was hit: bytes (too large, quota) or uploads (quota)."},
    "reason": {**STRING, "description": "Which quota (429): `concurrent_uploads` or `bytes_per_hour`; why a new "
                                        "upload must wait (503): `circuit_breaker`, `checkpoint_store`, `memory`, "
                                        "`spool_disk`, `budget_backlog`, `upload_count`; what is wrong with an "
                                        "upload grant (401: `grant_…`) or what it does not allow (403)."},
    "budget_backlog_s": {**NUMBER, "description": "Seconds of Notion requests queued before a new upload's (503)."},
    "status": {"anyOf": [INTEGER, {"enum": ["expired", "terminated"]}],
               "description": "Notion's HTTP status when Notion refused the upload; for an upload that is "
                              "gone (410), its state."},
    "circuit_breaker_state": {"enum": BREAKER_STATES},
    "active_uploads": COUNT,
}, required=["error", "code"], description="The body of every error: the seeds' shape, with the fields that apply.")

SYSTEM_RESOURCES = obj({
    "memory_usage_mb": NUMBER, "memory_usage_percent": NUMBER, "optimal_workers": COUNT,
    "resource_state": {"enum": RESOURCE_STATES},
})

NOTION_REF = obj({
    "file_upload_id": nullable(STRING),
    "status": {"type": ["string", "null"],
               "description": "Notion's status of the file upload: pending, uploaded, expired, failed."},
    "block_id": {**nullable(STRING), "description": "The file block on the page, once attached."},
    "page_id": {**nullable(STRING), "description": "The page the file is attached to (NOTION_PARENT_PAGE_ID)."},
})

UPLOAD_STATUS = obj({
    "upload_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "status": {"enum": UPLOAD_STATES},
    "filename": STRING,
    "content_type": STRING,
    "file_size": {"type": "integer", "minimum": 1},
    "bytes_uploaded": {**COUNT, "description": "Bytes the relay received and holds or passed on."},
    "bytes_confirmed": {**COUNT, "description": "Bytes of parts Notion accepted (and that are checkpointed)."},
    "offset": {**COUNT, "description": "Where a client continues (tus `Upload-Offset`); until Notion holds "
                                       "the whole file at most `file_size - 1`."},
    "durable_offset": {**COUNT, "description": "The end of the run of parts Notion holds, from part 1."},
    "progress_percent": NUMBER,
    "confirmed_percent": NUMBER,
    "is_multipart": BOOLEAN,
    "part_size": COUNT,
    "total_parts": {"type": "integer", "minimum": 1},
    "parts_confirmed": COUNT,
    "created_at": {**NUMBER, "description": "Unix time (seconds)."},
    "expires_at": {"type": ["string", "null"], "format": "date-time",
                   "description": "Notion's upload window ends (null once completed)."},
    "upload_url": {**STRING, "description": "The same upload at the tus endpoint."},
    "notion": NOTION_REF,
    "system_resources": SYSTEM_RESOURCES,
    "circuit_breaker": obj({"state": {"enum": BREAKER_STATES}, "success_rate": NUMBER}),
    "error": STRING,
    "can_resume": BOOLEAN,
    "checkpoint_key": STRING,
}, required=["upload_id", "status", "filename", "content_type", "file_size", "bytes_uploaded", "bytes_confirmed",
             "offset", "durable_offset", "progress_percent", "confirmed_percent", "is_multipart", "part_size",
             "total_parts", "parts_confirmed", "created_at", "expires_at", "upload_url", "notion",
             "system_resources", "circuit_breaker"],
    description="An upload's status document. `error`, `can_resume` and `checkpoint_key` appear when something "
                "went wrong.")

CREATED_UPLOAD = {"allOf": [ref("UploadStatus"), obj({"put_url": STRING})]}

MAX_FILE_BYTES = 5 * 2**30  # Notion's largest (paid plan); a workspace may allow less (413)
ACCEPTED_NAME = r"[^.\s/\\]\.(" + "|".join(sorted(EXTENSIONS)) + ")$"

CREATE_SESSION = obj({
    "filename": {"type": "string", "minLength": 1, "pattern": ACCEPTED_NAME,
                 "description": "Notion accepts a file by its extension (README: supported file types); other "
                                "names are refused with 415. A name without an extension gets the one of "
                                "`contentType`."},
    "fileSize": {"type": "integer", "minimum": 1, "maximum": MAX_FILE_BYTES,
                 "description": "Bytes; at most what the workspace accepts (413 beyond)."},
    "contentType": {**STRING, "description": "The file's MIME type; the extension's type wins when they disagree."},
}, required=["filename", "fileSize"], description="`file_size` and `content_type` are accepted as aliases.")

BREAKER = obj({
    "name": STRING, "state": {"enum": BREAKER_STATES}, "success_rate": NUMBER, "total_calls": COUNT,
    "failures": COUNT, "times_opened": COUNT, "retry_after": NUMBER,
    "consecutive_failures": COUNT, "failure_threshold": COUNT,
    "opened_by": {"type": ["string", "null"], "enum": ["failure_rate", "consecutive", "probe", None],
                  "description": "Why it last opened: the window's failure rate, a run of failures in a row, "
                                 "or a failed probe while half-open."},
    "window": obj({"seconds": NUMBER, "calls": COUNT, "failures": COUNT, "failure_rate_percent": NUMBER,
                   "opens_at_percent": NUMBER, "minimum_calls": COUNT},
                  description="The notion breaker's sliding window (CB_NOTION_WINDOW; absent when 0)."),
}, required=["name", "state", "success_rate", "total_calls", "failures", "times_opened", "retry_after",
             "consecutive_failures", "failure_threshold", "opened_by"])

HEALTH_COMPONENTS = obj({
    "resource_manager": obj({
        "status": {"enum": ["healthy", "critical"]},
        "memory_usage_mb": NUMBER, "memory_usage_percent": NUMBER, "rss_mb": NUMBER, "cpu_usage_percent": NUMBER,
        "active_uploads": COUNT, "optimal_workers": COUNT, "resource_state": {"enum": RESOURCE_STATES},
        "thresholds_mb": obj({"low_mb": NUMBER, "medium_mb": NUMBER, "high_mb": NUMBER, "critical_mb": NUMBER}),
        "intake": obj({"paced": BOOLEAN, "rate_mib_per_s": nullable(NUMBER), "cpu_share": NUMBER,
                       "paced_windows": COUNT},
                      description="Reads from clients, paced while the CPU quota is nearly used up "
                                  "(engine/pacer.py IntakePacer); `cpu_share` is of the usable CPU."),
    }, required=["status", "memory_usage_mb", "memory_usage_percent", "rss_mb", "cpu_usage_percent",
                 "active_uploads", "optimal_workers", "resource_state", "thresholds_mb"]),
    "circuit_breakers": obj({"status": {"enum": ["healthy", "degraded"]},
                             "breakers": {"type": "array", "items": ref("Breaker")}}),
    "checkpoint_manager": obj({
        "status": {"enum": ["healthy", "unhealthy"]}, "storage_type": STRING, "checkpoint_interval": COUNT,
        "last_error": nullable(STRING),
    }),
    "request_budget": obj({
        "capacity": COUNT, "per_second": NUMBER, "tokens": NUMBER, "paused_for_s": NUMBER, "rate_limited": COUNT,
        "shared": BOOLEAN,
    }, required=["capacity", "per_second", "tokens", "paused_for_s", "rate_limited"]),
    "backpressure_manager": obj({
        "parts_running": COUNT, "parts_queued": COUNT, "uploads_with_parts_pending": COUNT,
        "max_concurrent_uploads": nullable(COUNT), "queue_size_limit": nullable(COUNT),
    }, description="`max_concurrent_uploads` and `queue_size_limit` are null when unset (no count limit)."),
    "admission": obj({
        "status": {"enum": ["admitting", "refusing"]},
        "reason": {"enum": [None, "circuit_breaker", "checkpoint_store", "memory", "spool_disk", "budget_backlog",
                            "upload_count"]},
        "message": nullable(STRING), "retry_after": nullable(COUNT), "uploads_in_progress": COUNT,
        "max_uploads": nullable(COUNT), "budget_backlog_requests": COUNT, "budget_backlog_s": nullable(NUMBER),
        "budget_backlog_limit_s": NUMBER, "refused": {"type": "object", "additionalProperties": COUNT},
    }, description="Whether a new upload would be admitted now (engine/admission.py), and why not."),
    "spool_disk": obj({
        "status": {"enum": ["healthy", "low", "unknown"]},
        "free_bytes": nullable(COUNT), "free_mb": nullable(NUMBER), "total_bytes": nullable(COUNT),
        "reserved_bytes": COUNT, "available_bytes": nullable(INTEGER), "min_free_mb": NUMBER, "min_free_bytes": COUNT,
        "checked": BOOLEAN,
        "sampled_s_ago": nullable(NUMBER), "last_error": nullable(STRING),
    }, description="Free space on the spool's disk (sampled every METRICS_INTERVAL), what running uploads may "
                   "still write there, and the floor kept free (SPOOL_MIN_FREE_MB); `low` refuses new uploads."),
    "event_loop": obj({
        "status": {"enum": ["healthy", "lagging"]},
        "lag_ms": NUMBER, "max_lag_ms": NUMBER, "p99_lag_ms": NUMBER, "window_s": NUMBER, "interval_ms": NUMBER,
        "samples": COUNT, "monitoring": BOOLEAN,
    }, description="How late the loop runs a timer (engine/looplag.py): last, and max/p99 over the window."),
}, required=["resource_manager", "circuit_breakers", "checkpoint_manager", "request_budget", "backpressure_manager"])

HEALTH = obj({
    "timestamp": {**NUMBER, "description": "Unix time (seconds)."},
    "status": {"enum": ["healthy", "degraded", "unhealthy"],
               "description": "`degraded` while a breaker is not closed, the spool's disk is low or the "
                              "Notion budget's backlog refuses new uploads; `unhealthy` (HTTP 503) when Redis "
                              "is away or memory is critical."},
    "components": HEALTH_COMPONENTS,
    "performance": obj({"active_upload_sessions": COUNT, "total_memory_limit_mb": NUMBER, "total_cpu_limit": NUMBER}),
}, required=["timestamp", "status"],
    description="Without access to details (OBSERVABILITY_ACCESS=token and no token), only `timestamp` and `status`.")


# --- responses and parameters ----------------------------------------------------------------

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
TUS_RESUMABLE_OUT = {"Tus-Resumable": {"required": True, "schema": {"const": TUS_VERSION}}}

ERROR_TEXT = {
    400: "Bad request: a missing or malformed field or header, or Notion refused the file as described.",
    401: "A valid upload token or upload grant is required (only when UPLOAD_TOKENS or upload grants are set); "
         "`reason` says what is wrong with a grant (`grant_expired`, `grant_signature`, …).",
    403: "The upload grant does not allow this upload: `reason` is `grant_max_bytes`, `grant_content_type`, "
         "`grant_destination` or `grant_max_uploads`.",
    404: "No such upload (or it belongs to another token).",
    405: "Method not allowed on an upload.",
    409: "Offset mismatch: `offset` in the body is where to continue.",
    410: "The upload can never go on (expired: Notion's 1-hour window; terminated; or refused by Notion for "
         "good): start a new upload. `can_resume` is false; the status endpoint says why.",
    412: f"`Tus-Resumable: {TUS_VERSION}` is required.",
    413: "Larger than the workspace accepts, more parts than Notion allows, or more bytes than declared.",
    414: "The URL is too long.",
    415: "Wrong Content-Type, or a file type Notion does not accept.",
    423: "Another request or instance holds this upload right now; retry after `Retry-After`.",
    429: "The token's quota (uploads at once, or bytes per hour) is used up.",
    460: "Checksum mismatch: nothing of this request was kept.",
    503: "Temporarily unavailable (Notion's breaker, Redis, memory, too many uploads, restarting); the "
         "upload stays resumable. `Retry-After` says when to try again.",
}


def error_response(status: int, tus: bool = False, body: bool = True) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if status in (409, 423, 429, 503, 413, 404, 401, 400):
        headers.update(RETRY_AFTER)  # present only when waiting helps
    if tus:
        headers.update(TUS_RESUMABLE_OUT)
    response: dict[str, Any] = {"description": ERROR_TEXT[status]}
    if headers:
        response["headers"] = headers
    if body:
        response["content"] = {JSON: {"schema": ref("Error")}}
    return response


def errors(*statuses: int, tus: bool = False, body: bool = True) -> dict[str, Any]:
    return {str(s): error_response(s, tus, body) for s in statuses}


def upload_id_param() -> dict[str, Any]:
    return {"name": "upload_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "description": "The upload's id (the same at /api/upload/… and /files/…)."}


def header(name: str, schema: dict[str, Any], required: bool = False, description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "header", "required": required, "schema": schema}
    if description:
        param["description"] = description
    return param


TUS_RESUMABLE_IN = header("Tus-Resumable", {"const": TUS_VERSION}, required=True)
DIGITS = {"type": "string", "pattern": "^[0-9]{1,19}$"}
CHECKSUM = header("Upload-Checksum", {"type": "string", "pattern": "^(sha1|md5|sha256) [A-Za-z0-9+/=]+$"},
                  description="`<algorithm> <base64 digest>` of this request's body (sha1, md5, sha256).")
UPLOAD_HEADERS = {
    "Upload-Offset": {"required": True, "schema": DIGITS},
    "Upload-Length": {"required": True, "schema": DIGITS},
    "Upload-Expires": {"description": "When Notion's upload window closes (absent once completed).",
                       "schema": STRING},
    "Upload-Status": {"description": "`completed` once Notion holds the file.", "schema": {"const": "completed"}},
    "Notion-File-Upload-Id": {"description": "Notion's id of the file upload, once completed.", "schema": STRING},
    **TUS_RESUMABLE_OUT,
}

TUS_NOTE = (f"tus {TUS_VERSION} (https://tus.io/protocols/resumable-upload). Every request but OPTIONS needs "
            f"`Tus-Resumable: {TUS_VERSION}`. `X-HTTP-Method-Override` turns a POST into PATCH, DELETE or HEAD.")


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict each call)."""
    json_errors = errors(400, 401, 403, 413, 415, 429, 503)
    paths: dict[str, Any] = {
        "/api/upload/create-session": {"post": {
            "operationId": "createSession",
            "summary": "Create an upload (the seeds' JSON API)",
            "description": "Creates the file upload in Notion, then answers with the status document and "
                           "`put_url`. The same id works at `/files/{upload_id}` (tus).",
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("CreateSession")}}},
            "responses": {
                "201": {"description": "Created.",
                        "headers": {"Location": {"required": True, "schema": STRING,
                                                 "description": "The upload's status URL."}},
                        "content": {JSON: {"schema": ref("CreatedUpload")}},
                        "links": {
                            "GetStatus": {"operationId": "getStatus",
                                          "parameters": {"upload_id": "$response.body#/upload_id"}},
                            "PutFile": {"operationId": "putFile",
                                        "parameters": {"upload_id": "$response.body#/upload_id"}},
                            "TusHead": {"operationId": "tusHead",
                                        "parameters": {"upload_id": "$response.body#/upload_id"}},
                            "TusPatch": {"operationId": "tusPatch",
                                         "parameters": {"upload_id": "$response.body#/upload_id",
                                                        "header.Upload-Offset": "0"}},
                            "TusDelete": {"operationId": "tusDelete",
                                          "parameters": {"upload_id": "$response.body#/upload_id"}},
                        }},
                **json_errors,
            },
        }},
        "/api/upload/status/{upload_id}": {"get": {
            "operationId": "getStatus",
            "summary": "An upload's status",
            "parameters": [upload_id_param()],
            "responses": {
                "200": {"description": "The status document.", "content": {JSON: {"schema": ref("UploadStatus")}}},
                **errors(401, 404, 410, 414, 503),
            },
        }},
        "/api/upload/{upload_id}": {"put": {
            "operationId": "putFile",
            "summary": "Send the whole file as one streamed body",
            "description": "`Content-Length` or `Transfer-Encoding: chunked`. Answers 200 only once Notion "
                           "holds the whole file (and it is attached). After a dropped PUT, send "
                           "`Upload-Offset: <offset from status>` and the rest of the file.",
            "parameters": [
                upload_id_param(),
                header("Upload-Offset", DIGITS, description="Continue from this offset (default 0)."),
                CHECKSUM,
            ],
            "requestBody": {"required": True, "content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "200": {"description": "Notion holds the file.", "content": {JSON: {"schema": ref("UploadStatus")}}},
                **errors(400, 401, 404, 409, 410, 413, 423, 460, 503),
            },
        }},
        "/api/system/health": {"get": {
            "operationId": "getHealth",
            "summary": "Health of the relay and what it depends on",
            "responses": {
                "200": {"description": "Healthy or degraded.", "content": {JSON: {"schema": ref("Health")}}},
                "503": {"description": "Unhealthy: Redis is away or memory is critical.",
                        "content": {JSON: {"schema": ref("Health")}}},
            },
        }},
        "/metrics": {"get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics (text format 0.0.4)",
            "responses": {
                "200": {"description": "Metrics: the Prometheus text format, or OpenMetrics when `Accept` asks "
                                       "for it.",
                        "content": {"text/plain": {"schema": STRING},
                                    "application/openmetrics-text": {"schema": STRING}}},
                **errors(401),
            },
        }},
        "/api/openapi.json": {"get": {
            "operationId": "getOpenAPI",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
        "/files/": {
            "options": {
                "operationId": "tusOptions",
                "summary": "tus: what the server supports",
                "tags": ["tus"],
                "responses": {"204": {"description": "Capabilities.", "headers": {
                    "Tus-Version": {"required": True, "schema": {"const": TUS_VERSION}},
                    "Tus-Extension": {"required": True, "schema": STRING},
                    "Tus-Checksum-Algorithm": {"required": True, "schema": STRING},
                }}},
            },
            "post": {
                "operationId": "tusCreate",
                "summary": "tus: create an upload (creation, creation-with-upload)",
                "description": TUS_NOTE + " `Upload-Metadata` keys `filename`/`name` and `filetype`/`type` name "
                               "the file. An optional body (`application/offset+octet-stream`) is the first bytes. "
                               "`Upload-Defer-Length` and `Upload-Concat` are refused (400).",
                "tags": ["tus"],
                "parameters": [
                    TUS_RESUMABLE_IN,
                    header("Upload-Length", DIGITS, required=True, description="The file's size in bytes."),
                    header("Upload-Metadata", STRING, description="`key base64value` pairs, comma-separated."),
                    CHECKSUM,
                ],
                "requestBody": {"required": False,
                                "content": {TUS_OCTETS: {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "201": {"description": "Created.", "headers": {
                        "Location": {"required": True, "schema": STRING, "description": "`…/files/{upload_id}`."},
                        "Upload-Offset": {"required": True, "schema": DIGITS},
                        "Upload-Expires": {"schema": STRING},
                        **TUS_RESUMABLE_OUT}},
                    **errors(400, 401, 403, 410, 412, 413, 414, 415, 429, 460, 503, tus=True),
                },
            },
        },
        "/files/{upload_id}": {
            "parameters": [upload_id_param()],
            "head": {
                "operationId": "tusHead",
                "summary": "tus: the upload's offset",
                "description": "`Upload-Offset` is at most `Upload-Length - 1` until Notion holds the file. "
                               "HEAD answers carry no body, errors included.",
                "tags": ["tus"],
                "parameters": [TUS_RESUMABLE_IN],
                "responses": {
                    "200": {"description": "The upload.", "headers": {
                        **UPLOAD_HEADERS,
                        "Upload-Metadata": {"description": "As sent at creation.", "schema": STRING}}},
                    **errors(401, 404, 410, 412, 414, 503, tus=True, body=False),
                },
            },
            "patch": {
                "operationId": "tusPatch",
                "summary": "tus: append bytes at Upload-Offset",
                "description": "For the request that completes the upload, the 204 comes only once Notion holds "
                               "the file (`Upload-Status: completed`).",
                "tags": ["tus"],
                "parameters": [
                    TUS_RESUMABLE_IN,
                    header("Upload-Offset", DIGITS, required=True),
                    CHECKSUM,
                ],
                "requestBody": {"required": True,
                                "content": {TUS_OCTETS: {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "204": {"description": "Bytes taken.", "headers": UPLOAD_HEADERS},
                    **errors(400, 401, 404, 409, 410, 412, 413, 414, 415, 423, 460, 503, tus=True),
                },
            },
            "delete": {
                "operationId": "tusDelete",
                "summary": "tus: terminate the upload (termination)",
                "tags": ["tus"],
                "parameters": [TUS_RESUMABLE_IN],
                "responses": {
                    "204": {"description": "Terminated; spool files and checkpoints are removed.",
                            "headers": TUS_RESUMABLE_OUT},
                    **errors(401, 404, 410, 412, 414, 423, 503, tus=True),
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notion-upload-relay",
            "version": "1.0.0",
            "description": "A resilient upload relay for Notion: tus 1.0 at `/files/`, the seeds' JSON API at "
                           "`/api/`, health and metrics. Every error has a JSON body "
                           "`{error, code, retry_after?, can_resume?, offset?, …}` (HEAD answers have no body).",
        },
        "tags": [{"name": "tus", "description": TUS_NOTE}],
        "security": [{}, {"uploadToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"uploadToken": {
                "type": "http", "scheme": "bearer",
                "description": "An upload token from UPLOAD_TOKENS, or an upload grant (a JWT the app mints: "
                               "README \"Integrating an app\"); required when either is configured."}},
            "schemas": {
                "Error": ERROR,
                "UploadStatus": UPLOAD_STATUS,
                "CreatedUpload": CREATED_UPLOAD,
                "CreateSession": CREATE_SESSION,
                "Breaker": BREAKER,
                "Health": HEALTH,
            },
        },
    }


class OpenAPIHandler(BaseHandler):
    _body: bytes | None = None

    def get(self) -> None:
        cls = type(self)
        if cls._body is None:  # the document never changes while the process runs
            cls._body = json.dumps(build_document(), separators=(",", ":")).encode()
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(cls._body)
