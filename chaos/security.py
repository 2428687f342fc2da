"""Security scenarios: where secrets end up, what refuses strangers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from chaos.common import Context, Worker, use_broker

SENTINEL = "chaos-sentinel-" + uuid.uuid4().hex


def sentinel_scenario(broker_name: str, broker: str, tmp: Path) -> dict:
    """A secret in task kwargs: where does it end up?"""
    from django.apps import apps
    from django.db import models

    from myproject.celery import app
    from reliability.models import LedgerEntry

    run = f"secret-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    log = tmp / f"{run}.log"
    worker = Worker(broker, queue, "secret", log)
    result = app.tasks["reliability.tasks.ledger_default"].apply_async(
        (run,), {"api_token": SENTINEL}, queue=queue
    )
    deadline = time.monotonic() + 60
    while not LedgerEntry.objects.filter(task_id=result.id, done=True).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    time.sleep(2)
    worker.stop()
    found = []
    for model in apps.get_models():
        text_fields = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        for row in model.objects.values_list(*text_fields) if text_fields else []:
            if any(SENTINEL in str(value) for value in row):
                found.append(f"db:{model._meta.db_table}")
                break
    if SENTINEL in log.read_text(errors="replace"):
        found.append("worker log")
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker)
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key)]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "hash":
                values = list(client.hgetall(key).values())
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            else:
                values = []
            if any(SENTINEL.encode() in (v or b"") for v in values):
                found.append(f"redis:{key.decode()}")
    return {
        "scenario": "11 secret sentinel",
        "broker": broker_name,
        "policy": "-",
        "tasks": 1,
        "stores": len(found),
        "note": ", ".join(found) or "found nowhere (Flower not run: skipped)",
    }


def run_sentinel(ctx: Context) -> list[dict]:
    return [sentinel_scenario(name, url, ctx.tmp) for name, url in ctx.brokers]


SCENARIOS = {"sentinel": run_sentinel}
