"""Database scenario: PostgreSQL unreachable from the worker for 30 s while it works.

The system PostgreSQL is shared, so it is never stopped: the worker reaches it through a small
TCP proxy (PgProxy) that the scenario cuts (open connections closed, new ones closed on
accept) and restores. The publisher keeps its direct connection. The ledger that decides
whether a task ran lives in Redis, since the database is what is being broken here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

from celery import shared_task

from chaos.common import REDIS_URL, Context, Worker, use_broker

TASKS = 500
OUTAGE_SECONDS = 30
TASK_SLEEP = 0.1
CATCH_UP_LIMIT = 180
LEDGER_URL = os.environ.get("CHAOS_LEDGER_URL", REDIS_URL)
# A Redis database of its own: the other scenarios' workers (20 s visibility timeout) would hand
# this worker's prefetched messages, unacknowledged while it waits, to it a second time.
BROKER_URL = os.environ.get("CHAOS_DB_REDIS_URL", "redis://127.0.0.1:6379/14")


@shared_task(bind=True, name="chaos.database.redis_ledger")
def redis_ledger(self, run: str, sleep: float = 0.0) -> str:
    """Record this execution in Redis (started, then done): nothing here touches the database."""
    import redis

    client = redis.Redis.from_url(LEDGER_URL)
    client.hincrby(f"chaos:{run}:started", self.request.id, 1)
    if sleep:
        time.sleep(sleep)
    client.hincrby(f"chaos:{run}:done", self.request.id, 1)
    return "ok"


class PgProxy:
    """A TCP proxy to PostgreSQL that can be cut (every connection closed, new ones refused)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.cut_now = False
        self.refused = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_now:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)

    def cut(self) -> int:
        """Refuse new connections and close the open ones; returns how many were open."""
        self.cut_now = True
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(open_sockets) // 2

    def restore(self) -> None:
        self.cut_now = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


def proxied_url(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return parts._replace(netloc=netloc).geturl()


def pg_outage(ctx: Context, broker_name: str, broker: str) -> dict:
    import redis
    from django_celery_results.models import TaskResult

    from taskconsole import buffer
    from taskconsole.models import TaskRecord, TaskStatus

    parts = urlsplit(ctx.database_url)
    proxy = PgProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    run = f"pg-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    ledger = redis.Redis.from_url(LEDGER_URL)
    worker = Worker(
        broker,
        queue,
        "pg",
        ctx.tmp / f"{run}.log",
        # The production visibility timeout: the suite's 20 s one would hand the worker's
        # prefetched (unacknowledged) messages to it again while it waits for the database.
        extra_env={
            "DATABASE_URL": proxied_url(ctx.database_url, proxy.port),
            "CELERY_VISIBILITY_TIMEOUT": "3600",
        },
        extra_args=("--include", "chaos.database"),
    )
    try:
        n = min(ctx.tasks, TASKS)
        ids = [
            redis_ledger.apply_async((run,), {"sleep": TASK_SLEEP}, queue=queue).id
            for _ in range(n)
        ]
        buffer.flush()

        def done() -> int:
            return ledger.hlen(f"chaos:{run}:done")

        # Cut once a fifth of the work is done: tasks are running, queued and finishing then.
        deadline = time.monotonic() + 120
        while done() < n // 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        closed = proxy.cut()
        done_at_cut = done()
        time.sleep(OUTAGE_SECONDS)
        done_in_outage = done() - done_at_cut
        proxy.restore()
        restored = time.monotonic()

        stuck_states = [TaskStatus.QUEUED, TaskStatus.STARTED, TaskStatus.PROGRESS]

        def caught_up() -> bool:
            return (
                done() >= n
                and TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() >= n
                and not TaskRecord.objects.filter(task_id__in=ids, status__in=stuck_states).exists()
            )

        catch_up = resumed = None
        while time.monotonic() - restored < CATCH_UP_LIMIT:
            if resumed is None and done() > done_at_cut + done_in_outage:
                resumed = time.monotonic() - restored
            if caught_up():
                catch_up = time.monotonic() - restored
                break
            time.sleep(1)
    finally:
        worker.stop()
        proxy.close()
    finished = {key.decode() for key in ledger.hkeys(f"chaos:{run}:done")}
    started = {
        key.decode(): int(count) for key, count in ledger.hgetall(f"chaos:{run}:started").items()
    }
    ledger.delete(f"chaos:{run}:done", f"chaos:{run}:started")
    results = set(
        TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").values_list(
            "task_id", flat=True
        )
    )
    records = dict(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", "status"))
    stuck = sum(1 for status in records.values() if status in stuck_states)
    output = (ctx.tmp / f"{run}.log").read_text(errors="replace")
    return {
        "scenario": "5 PostgreSQL cut 30 s",
        "broker": broker_name,
        "policy": "product default (AtMostOnceTask)",
        "tasks": n,
        "lost": sum(1 for task_id in ids if task_id not in finished),
        "ran twice": sum(1 for count in started.values() if count > 1),
        "recovery s": "-" if catch_up is None else f"{catch_up:.1f}",
        "stores": n - len(results),
        "errors": stuck + (n - len(records)),
        "note": (
            "recovery s = catch-up after restore; stores = results missing; errors = task "
            f"records stuck QUEUED/STARTED or missing; {closed} connection(s) cut, "
            f"{proxy.refused} refused, {done_in_outage} task(s) finished during the cut, "
            f"worker resumed {'-' if resumed is None else f'{resumed:.0f}'} s after restore, "
            f"{output.count('Traceback')} traceback(s) in the worker log"
        ),
    }


def run_pg_outage(ctx: Context) -> list[dict]:
    if not ctx.database_url.startswith("postgres"):
        return [{"scenario": "5 PostgreSQL cut 30 s", "note": "needs PostgreSQL: skipped"}]
    redis_up = any(name == "Redis" for name, _ in ctx.brokers)
    broker = ("Redis", BROKER_URL) if redis_up else (ctx.brokers[0] if ctx.brokers else None)
    if broker is None:
        return [{"scenario": "5 PostgreSQL cut 30 s", "note": "no broker reachable: skipped"}]
    return [pg_outage(ctx, *broker)]


SCENARIOS = {"pg-outage": run_pg_outage}
