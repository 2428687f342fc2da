"""The completion counter every benchmark task bumps, the same in every variant.

One INCR per task on the bench's private Redis tells the runner how many tasks have run,
whatever the result backend; it costs bare Celery and the product alike.
"""

from __future__ import annotations

import os
import time

import redis

_client: redis.Redis | None = None
_pid = 0


def client() -> redis.Redis:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        _pid = os.getpid()
    return _client


def done(key: str) -> None:
    client().incr(key)


def started(key: str, sent_at: float) -> None:
    """Enqueue-to-start latency, in ms, appended to a list (the task's first statement)."""
    client().rpush(key, (time.time() - sent_at) * 1000)
