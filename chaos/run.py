"""The chaos suite: break the stack on purpose and count, from a ledger, what was lost or doubled.

    .venv/bin/python chaos/run.py [--tasks 1000] [--only sigkill,inject,sentinel]

Runs against the services on localhost: Redis (127.0.0.1:6379, database 13), RabbitMQ
(amqp://guest:guest@127.0.0.1:5672//) and PostgreSQL (postgres://postgres@127.0.0.1:5432,
database myproject_chaos) when they answer, SQLite otherwise. Each run uses its own queue name,
so nothing else on those brokers is touched. Every task writes (task id, attempt, worker pid)
to reliability's LedgerEntry table at start and marks it done at the end, so:

- lost: tasks with no finished execution;
- ran twice: tasks started more than once (the promise for a non-idempotent task: 0);
- recovery s: seconds from the worker's SIGKILL until a task that was running then runs again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

REDIS_URL = os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("CHAOS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_URL = os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/myproject_chaos")
VISIBILITY = 20  # seconds, Redis only: how long an unacknowledged message waits to come back
SENTINEL = "chaos-sentinel-" + uuid.uuid4().hex


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def choose_database(tmp: Path) -> str:
    if listening("127.0.0.1", 5432):
        try:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = 'myproject_chaos'"
                ).fetchone()
                if not exists:
                    conn.execute("CREATE DATABASE myproject_chaos")
            return PG_URL
        except Exception as exc:
            print(f"PostgreSQL unusable ({exc}); using SQLite.")
    return f"sqlite:///{tmp / 'chaos.sqlite3'}"


ENV: dict[str, str] = {}


def setup_django(database_url: str) -> None:
    ENV.update(
        os.environ,
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="myproject.settings",
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY),
        # Scan for expired unacknowledged messages on every 10 s tick, not every tenth.
        CELERY_UNACKED_RESTORE_THROTTLE="1",
        PYTHONUNBUFFERED="1",
        DJANGO_LOG_LEVEL="INFO",
    )
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")


class Worker:
    def __init__(self, broker: str, queue: str, name: str, log: Path) -> None:
        self.log = log
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "myproject",
            "worker",
            "-l",
            "info",
            "-Q",
            queue,
            "-c",
            "2",
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--without-mingle",
            "--without-gossip",
            "--prefetch-multiplier=1",
        ]
        self.handle = log.open("a")
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env={**ENV, "CELERY_BROKER_URL": broker},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while " ready." not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"worker did not start; see {log}")
            time.sleep(0.2)

    def children(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill_all()
        self.handle.close()


def use_broker(url: str) -> None:
    from myproject.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


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


def print_table(rows: list[dict]) -> None:
    columns = [
        "scenario",
        "broker",
        "policy",
        "tasks",
        "lost",
        "ran twice",
        "recovery s",
        "executed",
        "logged",
        "stores",
        "note",
    ]
    columns = [c for c in columns if any(c in row for row in rows)]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--only", default="sigkill,inject,sentinel")
    args = parser.parse_args()
    only = set(args.only.split(","))
    tmp = BASE_DIR / "chaos" / "runs" / time.strftime("%Y%m%d-%H%M%S")
    tmp.mkdir(parents=True, exist_ok=True)
    database = choose_database(tmp)
    setup_django(database)
    print(f"database: {database.split('@')[-1]}; logs in {tmp}", flush=True)
    brokers = []
    if listening("127.0.0.1", 6379):
        brokers.append(("Redis", REDIS_URL))
    if listening("127.0.0.1", 5672):
        brokers.append(("RabbitMQ", AMQP_URL))
    rows: list[dict] = []
    for name, url in (("Redis", REDIS_URL), ("RabbitMQ", AMQP_URL)):
        if (name, url) not in brokers:
            rows.append({"scenario": "all", "broker": name, "note": "not reachable: skipped"})
    started = time.monotonic()
    for name, url in brokers:
        if "sigkill" in only:
            for policy in POLICIES:
                row = sigkill_scenario(name, url, policy, args.tasks, tmp)
                print(row, flush=True)
                rows.append(row)
        if "inject" in only:
            rows += inject_scenario(name, url, tmp)
        if "sentinel" in only:
            rows.append(sentinel_scenario(name, url, tmp))
    rows.append(
        {
            "scenario": "not yet automated",
            "note": "2 poison pill (see reliability tests), 3-8, 10, 12",
        }
    )
    print()
    print_table(rows)
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
