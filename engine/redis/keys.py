"""Every Redis key the relay writes, and what each holds for how long.

The one place a `relay:*` name is spelled. The names are on the wire: instances of different
versions share one Redis, and what an older one wrote must stay readable, so a name here never
changes. Values are stored as bytes (the client does not decode); `engine.redis.text` reads them.

Uploads (engine/store.py: CheckpointStore)
  relay:upload:{id}            JSON upload record; CHECKPOINT_EXPIRATION_HOURS after the last write
  relay:upload:{id}:parts      set of part numbers Notion accepted; as its record
  relay:gone:{id}              JSON {state, owner} of an expired or terminated upload (410); 1 h
  relay:notion-claim:{fid}     the upload id owning a Notion file upload; 2 h (Notion's window)
  relay:epoch                  random token set once; gone or changed = Redis lost its data; no TTL
Ownership (engine/locks.py: UploadLocks)
  relay:lock:{id}              instance id allowed to write the upload; LOCK_TTL, refreshed each second
  relay:handoff:{id}           instance id asking the holder to let go; LOCK_TTL
Quotas (engine/quotas.py: Quotas) and grants (engine/grants/scope.py: GrantUsage)
  relay:quota:{owner}:active   set of the owner's upload ids in progress; no TTL (pruned on admit)
  relay:quota:{owner}:bytes:{hour}  bytes reserved in that hour (unix time // 3600); 2 h
  relay:grant:{gid}:uploads    uploads a grant created; until it can create no more, + 60 s
Notion's request budget (engine/budget.py: SharedRequestBudget)
  relay:budget                 hash tokens, stamp, paused_until (Redis's clock); 1 h after last use
  relay:budget:in-flight       zset request ticket → when it stops counting as in flight (Redis's
                               clock); 1 h after last use (members leave when settled or expired)
Webhooks (engine/webhooks/outbox.py: Outbox)
  relay:webhook:event:{id}     hash body, type, upload, created, attempts, last_status, last_error;
                               WEBHOOK_MAX_AGE + 1 h
  relay:webhook:due            zset id → when it may be (re)tried; no TTL (members removed when done)
  relay:webhook:pending        zset id → when it happened; no TTL (members removed when done)
  relay:webhook:done:{id}      marker of a finished event (adding it again is a no-op); 2 days
  relay:webhook:stats          hash delivered, failed, consecutive_failures, last_success,
                               last_failure, last_error (all instances); no TTL
"""
from __future__ import annotations

HOUR_S = 3600

# --- uploads ---------------------------------------------------------------------------------

UPLOAD_PREFIX = "relay:upload:"
UPLOAD_PATTERN = UPLOAD_PREFIX + "*"  # SCAN match: records and their parts sets
_PARTS_SUFFIX = ":parts"
EPOCH = "relay:epoch"
"""A random token set once (SET NX); when it is gone or changed, Redis lost its data. No TTL."""
NOTION_CLAIM_TTL_S = 2 * HOUR_S
"""A claim outlives Notion's window for its file upload (one hour), so every use of it."""


def record(upload_id: str) -> str:
    """The upload's JSON record; expires CHECKPOINT_EXPIRATION_HOURS after the last write."""
    return f"{UPLOAD_PREFIX}{upload_id}"


def parts(upload_id: str) -> str:
    """Set of part numbers Notion accepted (the per-part checkpoints); expires with its record."""
    return f"{UPLOAD_PREFIX}{upload_id}{_PARTS_SUFFIX}"


def upload_id_of(key: str | bytes) -> str | None:
    """The upload id of a record key found by SCAN over UPLOAD_PATTERN; None for a parts set."""
    name = key.decode() if isinstance(key, bytes) else key
    if name.endswith(_PARTS_SUFFIX):
        return None
    return name.rsplit(":", 1)[-1]


def gone(upload_id: str) -> str:
    """JSON {state, owner} left by an upload that expired or was terminated, so clients get 410
    rather than 404; lives TOMBSTONE_TTL_S (engine/upload/records.py, an hour)."""
    return f"relay:gone:{upload_id}"


def notion_claim(file_upload_id: str) -> str:
    """The upload id owning a Notion file upload (a create whose answer was lost is adopted by
    exactly one upload); dashes dropped from the id; lives NOTION_CLAIM_TTL_S."""
    return f"relay:notion-claim:{file_upload_id.replace('-', '')}"


# --- ownership -------------------------------------------------------------------------------

def lock(upload_id: str) -> str:
    """Instance id of the one instance that may write the upload; PX LOCK_TTL, refreshed every
    second by its holder."""
    return f"relay:lock:{upload_id}"


def handoff(upload_id: str) -> str:
    """Instance id of one that wants the upload; the holder lets go when its parts are done.
    PX LOCK_TTL; deleted when the lock changes hands."""
    return f"relay:handoff:{upload_id}"


# --- quotas and grants -----------------------------------------------------------------------

QUOTA_BYTES_TTL_S = 2 * HOUR_S
"""An hour's byte count outlives its hour."""


def quota_active(owner: str) -> str:
    """Set of the owner's upload ids in progress; no TTL: finished or vanished ids are dropped
    whenever the owner starts another upload."""
    return f"relay:quota:{owner}:active"


def quota_bytes(owner: str, hour: int) -> str:
    """Bytes the owner's uploads created in `hour` (unix time // 3600) declared; QUOTA_BYTES_TTL_S."""
    return f"relay:quota:{owner}:bytes:{hour}"


def grant_uploads(grant_id: str) -> str:
    """How many uploads a grant created; lives until the grant can create nothing (expiry +
    leeway) plus a minute, at least a minute."""
    return f"relay:grant:{grant_id}:uploads"


# --- Notion's request budget -----------------------------------------------------------------

BUDGET = "relay:budget"
"""Hash tokens, stamp, paused_until (seconds on Redis's clock), shared by every instance using one
Notion token; the bucket's script sets it to expire an hour after each use."""
BUDGET_IN_FLIGHT = "relay:budget:in-flight"
"""Zset request ticket → when it stops counting as in flight (Redis's clock), beside BUDGET; the
same script removes members when settled or expired and sets the same expiry."""

# --- webhooks --------------------------------------------------------------------------------

WEBHOOK_PREFIX = "relay:webhook:"
WEBHOOK_EVENT_PREFIX = WEBHOOK_PREFIX + "event:"  # the claim script appends the id itself
WEBHOOK_DUE = WEBHOOK_PREFIX + "due"
"""Zset event id → when it may be (re)tried (a claim pushes it by the lease); no TTL."""
WEBHOOK_PENDING = WEBHOOK_PREFIX + "pending"
"""Zset event id → when it happened (the count and the oldest age); no TTL."""
WEBHOOK_STATS = WEBHOOK_PREFIX + "stats"
"""Hash delivered, failed, consecutive_failures, last_success, last_failure, last_error; no TTL."""
WEBHOOK_DONE_TTL_S = 2 * 86400
"""A finished event's marker outlives any retry of the write that added it."""


def webhook_event(event_id: str) -> str:
    """Hash body, type, upload, created, attempts, last_status, last_error; WEBHOOK_MAX_AGE + 1 h."""
    return f"{WEBHOOK_EVENT_PREFIX}{event_id}"


def webhook_done(event_id: str) -> str:
    """Marker (its outcome) of a finished event, so adding it again is a no-op; WEBHOOK_DONE_TTL_S."""
    return f"{WEBHOOK_PREFIX}done:{event_id}"
