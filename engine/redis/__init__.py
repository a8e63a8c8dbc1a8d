"""The one Redis room: the connection and its error mapping (connection.py) and every key name
(keys.py). CheckpointStore, UploadLocks, Quotas, GrantUsage, SharedRequestBudget and the webhook
Outbox each hold a RedisConnection and spell no key themselves.

(The package is engine.redis; `import redis` anywhere still means redis-py: imports are absolute.)
"""
from __future__ import annotations

from engine.redis import keys
from engine.redis.connection import (
    AWAY_MESSAGE,
    AWAY_RETRY_AFTER_S,
    HoldsConnection,
    RedisConnection,
    RedisSource,
    StoreUnavailable,
    connection_of,
    store_away,
    text,
)

__all__ = ["AWAY_MESSAGE", "AWAY_RETRY_AFTER_S", "HoldsConnection", "RedisConnection", "RedisSource",
           "StoreUnavailable", "connection_of", "keys", "store_away", "text"]
