"""Delivery scenarios: workers killed mid-run, injected messages."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from pathlib import Path

from chaos.common import VISIBILITY, Context, Worker, use_broker

POLICIES = {
    "default (early ack)": "reliability.tasks.ledger_default",
    "acks_late": "reliability.tasks.ledger_acks_late",
    "acks_late + reject_on_worker_lost": "reliability.tasks.ledger_idempotent",
}


def sigkill_scenario(broker_name: str, broker: str, policy: str, n: int, tmp: Path) -> dict:
    from myproject.celery import app
    from reliability.models import LedgerEntry

    run = f"kill-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    task = app.tasks[POLICIES[policy]]
    log = tmp / f"{run}.log"
    worker = Worker(broker, queue, "chaos", log)
    ids = [task.apply_async((run,), {"sleep": 0.05}, queue=queue).id for _ in range(n)]
    entries = LedgerEntry.objects.filter(run=run)

    # Pool children killed every 2 s while a third of the work gets done.
    kills = 0
    while entries.filter(done=True).count() < n // 3:
        time.sleep(2)
        children = worker.children()
        if children:
            os.kill(random.choice(children), signal.SIGKILL)
            kills += 1
    # Then the whole worker, main process included, with tasks in flight.
    in_flight = set(entries.filter(done=False).values_list("task_id", flat=True))
    done_ids = set(entries.filter(done=True).values_list("task_id", flat=True))
    in_flight -= done_ids
    killed_at = time.monotonic()
    before = set(entries.values_list("id", flat=True))
    worker.kill_all()
    worker.handle.close()
    worker = Worker(broker, queue, "chaos2", log)
    recovery = None
    last_progress, last_count = time.monotonic(), -1
    quiet_for = VISIBILITY + 30 if broker_name == "Redis" else 20
    while True:
        count = entries.filter(done=True).values("task_id").distinct().count()
        if recovery is None and in_flight:
            again = entries.filter(task_id__in=in_flight).exclude(id__in=before).exists()
            if again:
                recovery = time.monotonic() - killed_at
        if count >= n and (recovery is not None or not in_flight):
            break
        if count != last_count:
            last_progress, last_count = time.monotonic(), count
        elif time.monotonic() - last_progress > quiet_for:
            break
        time.sleep(0.5)
    worker.stop()
    started = dict.fromkeys(ids, 0)
    finished = set()
    for task_id, done in entries.values_list("task_id", "done"):
        started[task_id] = started.get(task_id, 0) + 1
        if done:
            finished.add(task_id)
    return {
        "scenario": "1 worker SIGKILL",
        "broker": broker_name,
        "policy": policy,
        "tasks": n,
        "lost": sum(1 for task_id in ids if task_id not in finished),
        "ran twice": sum(1 for count in started.values() if count > 1),
        "recovery s": "-" if recovery is None else f"{recovery:.1f}",
        "note": f"{kills} child kills, {len(in_flight)} in flight at main kill",
    }


def inject_scenario(broker_name: str, broker: str, tmp: Path) -> list[dict]:
    """A pickle payload and an unknown task name, put straight onto the queue."""
    import pickle

    from kombu import Connection, Exchange, Queue

    run = f"inject-{uuid.uuid4().hex[:8]}"
    queue_name = f"chaos-{run}"
    marker = tmp / f"{run}.pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    log = tmp / f"{run}.log"
    worker = Worker(broker, queue_name, "inject", log)
    queue = Queue(queue_name, Exchange(queue_name), routing_key=queue_name)
    pickle_id, unknown_id = str(uuid.uuid4()), str(uuid.uuid4())
    with Connection(broker) as conn:
        producer = conn.Producer()
        producer.publish(
            pickle.dumps(((Evil(),), {}, {})),
            exchange=queue.exchange,
            routing_key=queue_name,
            declare=[queue],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": "app.tasks.add", "id": pickle_id, "lang": "py"},
        )
        producer.publish(
            [[1, 2], {}, {}],
            exchange=queue.exchange,
            routing_key=queue_name,
            declare=[queue],
            serializer="json",
            headers={"task": "nope.not_a_task", "id": unknown_id, "lang": "py"},
        )
    time.sleep(8)
    worker.stop()
    output = log.read_text(errors="replace")
    return [
        {
            "scenario": "9 injected pickle",
            "broker": broker_name,
            "policy": "-",
            "tasks": 1,
            "executed": int(marker.exists()),
            "logged": output.count("Refusing to deserialize") or output.count("ContentDisallowed"),
        },
        {
            "scenario": "9 unknown task name",
            "broker": broker_name,
            "policy": "-",
            "tasks": 1,
            "executed": 0,
            "logged": output.count("Received unregistered task of type 'nope.not_a_task'"),
        },
    ]


def run_sigkill(ctx: Context) -> list[dict]:
    rows = []
    for name, url in ctx.brokers:
        for policy in POLICIES:
            row = sigkill_scenario(name, url, policy, ctx.tasks, ctx.tmp)
            print(row, flush=True)
            rows.append(row)
    return rows


def run_inject(ctx: Context) -> list[dict]:
    rows = []
    for name, url in ctx.brokers:
        rows += inject_scenario(name, url, ctx.tmp)
    return rows


SCENARIOS = {"sigkill": run_sigkill, "inject": run_inject}
