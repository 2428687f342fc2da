"""Delivery scenarios: workers killed mid-run, poison pills, Redis visibility timeouts, a broker
restart under web traffic, injected messages.

Every figure is counted from data: the LedgerEntry rows the ledger tasks write (one per
execution), Delivery/DeadLetter rows, the broker's own queue lengths, the worker's log, and for
the restart scenario the product's Article rows and HTTP answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from chaos.common import BASE_DIR, ENV, Context, Worker, use_broker

DEFAULT = "product default (early ack + claim: AtMostOnceTask)"
# For comparison: what the tutorial's tasks would do without the product's task class.
PLAIN = "Celery's plain Task (early ack, no claim)"
POLICIES = {
    DEFAULT: "reliability.ledger.ledger_default",
    "acks_late": "reliability.ledger.ledger_acks_late",
    "acks_late + reject_on_worker_lost (IdempotentTask)": "reliability.ledger.ledger_idempotent",
    PLAIN: "reliability.ledger.ledger_plain",
}
# Redis only: kombu moves a message from the queue (BRPOP) to its unacked hash in a second
# command, so a worker killed between the two loses it, acks_late or not. The product's answer
# is the outbox: a message sent, never started and gone from its queue is sent again.
VIA_OUTBOX = "IdempotentTask dispatched through the outbox"
# Short on purpose, for the chaos workers only: an unacknowledged message on Redis comes back
# after this many seconds, scanned for every second.
CHAOS_VISIBILITY = 8
FAST_RESTORE = {"CELERY_UNACKED_RESTORE_INTERVAL": "1", "CELERY_UNACKED_RESTORE_THROTTLE": "1"}


class ChaosWorker(Worker):
    """A chaos.common.Worker of four processes by default, with its settings given as `env`."""

    def __init__(
        self,
        broker: str,
        queue: str,
        name: str,
        log: Path,
        concurrency: int = 4,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        super().__init__(
            broker, queue, name, log, extra_env=env, concurrency=concurrency, wait=wait
        )


def fast_database() -> dict[str, str]:
    """The chaos workers' commits do not wait for PostgreSQL's disk flush: what is measured
    here is the broker and Celery, and each ledger task commits several times."""
    url = ENV.get("DATABASE_URL", "")
    if url.startswith("postgres") and "?" not in url:
        return {"DATABASE_URL": url + "?options=-c%20synchronous_commit%3Doff"}
    return {}


def worker_env(broker_name: str, visibility: int = CHAOS_VISIBILITY) -> dict[str, str]:
    if broker_name != "Redis":
        return fast_database()
    return {"CELERY_VISIBILITY_TIMEOUT": str(visibility), **FAST_RESTORE, **fast_database()}


def backlog(broker: str, queue: str) -> int:
    """Messages of `queue` the broker still holds: ready, or (Redis) waiting to become visible."""
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker)
        try:
            ready = sum(client.llen(queue + suffix) for suffix in ("", "\x06\x163", "\x06\x166"))
            ready += client.llen(queue + "\x06\x169")
            unacked = sum(1 for raw in client.hvals("unacked") if json.loads(raw)[2] == queue)
            return ready + unacked
        finally:
            client.close()
    from kombu import Connection

    with Connection(broker) as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).message_count
        except Exception:
            return 0


def wait_settled(
    done, target: int, broker: str, queue: str, quiet: float, limit: float, tick=None
) -> None:
    """Until `done()` reaches target, or the broker holds nothing and no task finished lately.
    `tick()`, if given, runs on every round (the outbox sweeper)."""
    deadline = time.monotonic() + limit
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        count = done()
        if count >= target:
            return
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet and backlog(broker, queue) == 0:
            return
        time.sleep(0.3)


def ledger_figures(run: str, ids: list[str]) -> tuple[int, int]:
    """(lost, ran twice) of the tasks `ids` from the ledger of `run`."""
    from reliability.models import LedgerEntry

    started = dict.fromkeys(ids, 0)
    finished = set()
    for task_id, done in LedgerEntry.objects.filter(run=run).values_list("task_id", "done"):
        started[task_id] = started.get(task_id, 0) + 1
        if done:
            finished.add(task_id)
    lost = sum(1 for task_id in ids if task_id not in finished)
    return lost, sum(1 for count in started.values() if count > 1)


# 1. Worker killed with SIGKILL -----------------------------------------------------------------


def sigkill_scenario(broker_name: str, broker: str, policy: str, n: int, tmp: Path) -> dict:
    """Worker A's pool children are killed every 2 s, then A itself; worker B keeps running."""
    from myproject.celery import app
    from reliability.models import LedgerEntry

    started_at = time.monotonic()
    run = f"kill-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    task = app.tasks[POLICIES.get(policy, POLICIES[DEFAULT])]
    if policy == VIA_OUTBOX:
        task = app.tasks["reliability.ledger.ledger_idempotent"]
    log = tmp / f"{run}.log"
    env = worker_env(broker_name)
    sweep = None
    if policy == VIA_OUTBOX:
        # The outbox publishes through the app's broker: only this thread changes it.
        from django.db import transaction
        from django.test import override_settings

        from reliability import outbox

        use_broker(broker)
        with transaction.atomic():
            ids = [
                outbox.dispatch_with_options(
                    task, (run,), {"sleep": 0.01}, queue=queue, ignore_result=True
                )
                for _ in range(n)
            ]
        last_sweep = [time.monotonic()]

        def sweep() -> None:
            # What beat's reliability.tasks.sweep_outbox does, every 2 s here.
            if time.monotonic() - last_sweep[0] > 2:
                last_sweep[0] = time.monotonic()
                with override_settings(RELIABILITY_OUTBOX_CONFIRM_SECONDS=CHAOS_VISIBILITY + 2):
                    outbox.sweep(older_than=1)
    else:
        # A producer of our own, not the app's default broker: the brokers run side by side.
        with app.connection_for_write(broker) as conn, conn.Producer() as producer:
            ids = [
                task.apply_async(
                    (run,), {"sleep": 0.01}, queue=queue, ignore_result=True, producer=producer
                ).id
                for _ in range(n)
            ]
    # Started once every task is queued, so the kills happen while a third of the work is
    # done. A does most of the work and is killed; B stands for the other replicas.
    victim = ChaosWorker(broker, queue, "victim", log, concurrency=4, env=env, wait=False)
    spare = ChaosWorker(broker, queue, "spare", tmp / f"{run}-spare.log", 2, env, wait=False)
    victim.ready()
    spare.ready()
    entries = LedgerEntry.objects.filter(run=run)

    def busy_child() -> int | None:
        """A pool child of the victim that is running a task now (polled for up to 2 s)."""
        deadline = time.monotonic() + 2
        # Listed once: reading /proc takes longer than a task runs.
        children = victim.children()
        while time.monotonic() < deadline:
            busy = list(
                entries.filter(done=False, worker_pid__in=children).values_list(
                    "worker_pid", flat=True
                )
            )
            if busy:
                return random.choice(busy)
            time.sleep(0.005)
        return None

    killed: list[int] = []
    while entries.filter(done=True).count() < n // 3:
        time.sleep(2)
        child = busy_child()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
                killed.append(child)
    # Then the main process, at a moment when one of its children is running a task.
    pids = victim.children()
    busy_child()
    killed_at = time.monotonic()
    victim.kill_all()
    victim.handle.close()
    before = set(entries.values_list("id", flat=True))
    in_flight = set(
        entries.filter(done=False, worker_pid__in=pids).values_list("task_id", flat=True)
    ) - set(entries.filter(done=True).values_list("task_id", flat=True))

    recovery: float | None = None

    def done() -> int:
        nonlocal recovery
        if recovery is None and in_flight:
            again = entries.filter(task_id__in=in_flight).exclude(id__in=before).exists()
            if again:
                recovery = time.monotonic() - killed_at
        finished = entries.filter(done=True).values("task_id").distinct().count()
        # Complete only once the in-flight tasks had their chance to come back too.
        return finished if (recovery is not None or not in_flight) else min(finished, n - 1)

    # Through the outbox, give a lost message time to be noticed and sent again.
    quiet = 2.5 if sweep is None else CHAOS_VISIBILITY + 8
    wait_settled(done, n, broker, queue, quiet=quiet, limit=150, tick=sweep)
    spare.stop()
    lost, twice = ledger_figures(run, ids)
    mid_task = entries.filter(done=False, worker_pid__in=killed).count()
    return {
        "scenario": "1 worker SIGKILL",
        "broker": broker_name,
        "policy": policy,
        "tasks": n,
        "lost": lost,
        "ran twice": twice,
        "recovery s": "-" if recovery is None else f"{recovery:.1f}",
        "note": f"{len(killed)} child kills ({mid_task} mid-task), {len(in_flight)} tasks running "
        "at main kill; "
        f"{time.monotonic() - started_at:.0f} s",
    }


def run_sigkill(ctx: Context) -> list[dict]:
    """Each broker's runs in a thread of its own: Redis and RabbitMQ at the same time."""
    import threading
    import traceback

    from django.db import connections

    results: dict[str, list[dict]] = {name: [] for name, _ in ctx.brokers}

    def runs(name: str, url: str) -> None:
        try:
            policies = [*POLICIES, VIA_OUTBOX] if name == "Redis" else list(POLICIES)
            for policy in policies:
                row = sigkill_scenario(name, url, policy, ctx.tasks, ctx.tmp)
                print(f"   {row}", flush=True)
                results[name].append(row)
        except Exception:
            traceback.print_exc()
            results[name].append(
                {"scenario": "1 worker SIGKILL", "broker": name, "note": "FAILED: see traceback"}
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runs, args=broker) for broker in ctx.brokers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [row for name, _ in ctx.brokers for row in results[name]]


# 2. Poison pill --------------------------------------------------------------------------------


def poison_scenario(broker_name: str, broker: str, tmp: Path, others: int = 100) -> dict:
    """An IdempotentTask that SIGKILLs its own worker process on every delivery."""
    from django.conf import settings

    from reliability.ledger import ledger_idempotent
    from reliability.models import DeadLetter, Delivery, LedgerEntry

    run = f"poison-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    worker = ChaosWorker(
        broker, queue, "poison", tmp / f"{run}.log", 2, worker_env(broker_name), wait=False
    )
    pill = ledger_idempotent.apply_async((run + "-pill",), {"kill": True}, queue=queue).id
    ids = [
        ledger_idempotent.apply_async((run,), {"sleep": 0.02}, queue=queue).id
        for _ in range(others)
    ]
    worker.ready()
    entries = LedgerEntry.objects.filter(run=run)

    def finished() -> int:
        letter = DeadLetter.objects.filter(task_id=pill).exists()
        return entries.filter(done=True).values("task_id").distinct().count() + letter

    # A redelivered pill is out of the queue while its worker's child is replaced (RabbitMQ:
    # 5 s apart): a quiet 10 s with an empty queue ended a run before its last delivery.
    wait_settled(finished, others + 1, broker, queue, quiet=30, limit=150)
    worker.stop()
    lost, twice = ledger_figures(run, ids)
    letters = DeadLetter.objects.filter(task_id=pill)
    delivery = Delivery.objects.filter(task_id=pill).first()
    reason = letters[0].reason if letters else "not dead-lettered"
    return {
        "scenario": "2 poison pill",
        "broker": broker_name,
        "policy": "IdempotentTask",
        "tasks": others + 1,
        "executed": LedgerEntry.objects.filter(run=run + "-pill").count(),
        "dead-lettered": letters.count(),
        "lost": lost,
        "ran twice": twice,
        "note": f"pill delivered {delivery.count if delivery else 0} times "
        f"(RELIABILITY_MAX_DELIVERIES={settings.RELIABILITY_MAX_DELIVERIES}); "
        f"DeadLetter reason: {reason}",
    }


def run_poison(ctx: Context) -> list[dict]:
    return [poison_scenario(name, url, ctx.tmp) for name, url in ctx.brokers]


# 3. Redis visibility timeout versus countdowns ----------------------------------------------


def visibility_scenario(broker_name: str, broker: str, tmp: Path, n: int = 20) -> list[dict]:
    """Countdown 12 s, visibility timeout 5 s, two workers: each policy's runs per task."""
    from myproject.celery import app

    visibility, countdown = 5, 12
    run = f"vis-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    env = worker_env(broker_name, visibility)
    workers = [
        ChaosWorker(broker, queue, f"vis{i}", tmp / f"{run}-{i}.log", 2, env, wait=False)
        for i in range(2)
    ]
    for worker in workers:
        worker.ready()
    policies = {DEFAULT: POLICIES[DEFAULT], PLAIN: POLICIES[PLAIN]}
    sent = {
        policy: [
            app.tasks[name]
            .apply_async((f"{run}-{i}",), queue=queue, countdown=countdown, ignore_result=True)
            .id
            for _ in range(n)
        ]
        for i, (policy, name) in enumerate(policies.items())
    }
    from reliability.models import LedgerEntry

    entries = LedgerEntry.objects.filter(run__startswith=run)
    time.sleep(countdown)
    # Done when every task ran and the broker holds no copy that could still come back.
    wait_settled(
        lambda: entries.filter(done=True).values("task_id").distinct().count(),
        10**9,
        broker,
        queue,
        quiet=visibility + 3,
        limit=90,
    )
    for worker in workers:
        worker.stop()
    rows = []
    for i, (policy, ids) in enumerate(sent.items()):
        lost, twice = ledger_figures(f"{run}-{i}", ids)
        runs = LedgerEntry.objects.filter(run=f"{run}-{i}").count()
        rows.append(
            {
                "scenario": "3 countdown > visibility timeout",
                "broker": broker_name,
                "policy": policy,
                "tasks": n,
                "lost": lost,
                "ran twice": twice,
                "executed": runs,
                "note": f"countdown {countdown} s, visibility_timeout {visibility} s, 2 workers",
            }
        )
    return rows


def check_figure() -> dict:
    """Does the system check warn about these settings (a Redis broker, visibility 5 s)?"""
    from types import SimpleNamespace

    from django.test import override_settings

    from myproject.celery import app
    from reliability import checks

    conf = SimpleNamespace(
        broker_url="redis://127.0.0.1:6379/0",
        broker_transport_options={"visibility_timeout": 5},
        task_time_limit=app.conf.task_time_limit,
    )
    with override_settings(RELIABILITY_MAX_COUNTDOWN=12):
        warnings = checks.check_visibility_timeout(conf, checks._tasks())
    found = [w for w in warnings if w.id == "reliability.W001"]
    return {
        "scenario": "3 system check",
        "broker": "Redis",
        "policy": "-",
        "logged": len(found),
        "note": found[0].msg.split(":")[0] if found else "no reliability.W001 warning",
    }


def run_visibility(ctx: Context) -> list[dict]:
    rows = [check_figure()]
    for name, url in ctx.brokers:
        if name == "Redis":
            rows += visibility_scenario(name, url, ctx.tmp)
    return rows


# 4. Broker restart during a burst of dispatches from the web -----------------------------------

ARTICLE_TASK = "articles.tasks.expand_abbreviations"


def free_port() -> int:
    from operations.embedded_redis import free_port as port

    return port()


def writer_session() -> tuple[str, str]:
    """(cookie name, session key) of a user allowed to write articles, logged in."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Permission, User

    user, _ = User.objects.get_or_create(username="chaos-writer")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="articles", codename__in=["add_article", "change_article"]
        )
    )
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return settings.SESSION_COOKIE_NAME, store.session_key


class WebServer:
    """gunicorn serving the product on a free port, publishing to `broker`."""

    def __init__(self, broker: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.handle = log.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "myproject.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
            cwd=BASE_DIR,
            env={**ENV, "CELERY_BROKER_URL": broker},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        from operations.embedded_redis import is_listening

        deadline = time.monotonic() + 60
        while not is_listening("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"gunicorn did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.handle.close()


class PrivateRedis:
    """A redis-server of our own without persistence, so restarting it touches nobody else."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        from operations import embedded_redis

        self.process = embedded_redis.start(
            self.port, self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


class LostCounter(logging.Handler):
    """Counts the outbox's 'sent but never started' re-sends (reliability.outbox.resend_lost)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "never started" in record.getMessage():
            self.count += 1


def rabbit(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def fire(url: str, cookie: tuple[str, str], prefix: str, outcomes: list, lock, stop) -> None:
    """One browser: fetch the form (CSRF token), then save articles until `stop` is set,
    waiting 10 s at most for each answer."""
    import httpx

    with httpx.Client(base_url=url, timeout=10, cookies={cookie[0]: cookie[1]}) as client:
        form = client.get("/articles/new/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        number = 0
        while not stop.is_set():
            number += 1
            title = f"{prefix}-{number}"
            started = time.monotonic()
            try:
                response = client.post(
                    "/articles/new/",
                    data={"title": title, "body": "MyCorp chaos", "csrfmiddlewaretoken": token},
                )
                outcome = response.status_code
            except httpx.TimeoutException:
                outcome = "hung"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes.append((outcome, time.monotonic() - started))


def restart_scenario(
    broker_name: str, tmp: Path, before: int = 50, browsers: int = 12, outage: float = 4
) -> dict:
    """Browsers save articles (each save dispatches on commit) while the broker restarts."""
    from django.test import override_settings

    from articles.models import Abbreviation, Article, ExpansionStatus
    from reliability import outbox

    run = f"restart-{uuid.uuid4().hex[:8]}"
    Abbreviation.objects.get_or_create(short_form="MyCorp", defaults={"expansion": "My Corp"})
    vhost = None
    if broker_name == "Redis":
        redis = PrivateRedis(tmp)
        broker = redis.url
        restart_note = "private redis-server without persistence, killed (SIGKILL) and restarted"
    else:
        vhost = f"chaos-{run}"
        rabbit("add_vhost", vhost)
        rabbit("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        restart_note = "rabbitmqctl stop_app / start_app"
    use_broker(broker)
    web = WebServer(broker, tmp / f"{run}-web.log")
    worker = None
    resent = LostCounter()
    logging.getLogger("reliability.outbox").addHandler(resent)
    try:
        cookie = writer_session()
        outcomes: list = []
        lock, stop = threading.Lock(), threading.Event()
        threads = [
            threading.Thread(
                target=fire, args=(web.url, cookie, f"{run}-{i}", outcomes, lock, stop)
            )
            for i in range(browsers)
        ]
        for thread in threads:
            thread.start()
        # The burst runs before, during and for 2 s after the outage.
        while len(outcomes) < before and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        down_at = time.monotonic()
        if vhost is None:
            redis.crash()
        else:
            rabbit("stop_app")
        time.sleep(outage)
        if vhost is None:
            redis.start()
        else:
            rabbit("start_app")
        up_at = time.monotonic()
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join()
        articles = Article.objects.filter(title__startswith=run + "-")
        committed = articles.count()
        not_queued = articles.filter(expansion_status=ExpansionStatus.NOT_QUEUED).count()
        # The worker comes after the restart: whatever the broker held then was in its queues.
        worker = ChaosWorker(broker, "default", "restart", tmp / f"{run}-worker.log", 2)
        # The sweeper, as beat runs it (reliability.tasks.sweep_outbox), every 2 s here.
        with override_settings(RELIABILITY_OUTBOX_CONFIRM_SECONDS=5):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                outbox.sweep(older_than=1)
                expanded = articles.filter(expansion_status=ExpansionStatus.EXPANDED).count()
                if expanded >= committed:
                    break
                time.sleep(2)
        caught_up = time.monotonic() - up_at
        expanded = articles.filter(expansion_status=ExpansionStatus.EXPANDED).count()
    finally:
        if worker is not None:
            worker.stop()
        web.stop()
        logging.getLogger("reliability.outbox").removeHandler(resent)
        if vhost is None:
            redis.crash()
        else:
            with contextlib.suppress(Exception):
                rabbit("start_app")
            with contextlib.suppress(Exception):
                rabbit("delete_vhost", vhost)
    codes = [outcome for outcome, _ in outcomes]
    slowest = max(seconds for _, seconds in outcomes)
    answered = sum(1 for code in codes if code in (302, 503))
    return {
        "scenario": "4 broker restart during web burst",
        "broker": broker_name,
        "policy": "outbox (dispatch on commit)",
        "tasks": len(outcomes),
        "published": committed - not_queued,
        "errors": len(codes) - answered,
        "lost": committed - expanded,
        "recovery s": f"{caught_up:.1f}",
        "note": f"{restart_note} for {up_at - down_at:.0f} s; {committed} saved, "
        f"{codes.count(302)} answered 302 ({not_queued} with 'not queued yet'), "
        f"{codes.count(503)} answered 503, {codes.count('hung')} hung > 10 s, "
        f"slowest answer {slowest:.1f} s; the sweeper re-sent {resent.count} messages the "
        "broker had taken and lost",
    }


def run_restart(ctx: Context) -> list[dict]:
    rows = []
    for name, _url in ctx.brokers:
        row = restart_scenario(name, ctx.tmp)
        print(f"   {row}", flush=True)
        rows.append(row)
    return rows


# 9. Injected messages --------------------------------------------------------------------------

LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: (ERROR|WARNING|CRITICAL)/", re.M)


def log_records(output: str, text: str) -> int:
    """Log records (not traceback lines) whose first line mentions `text`."""
    return sum(1 for line in output.splitlines() if LOG_RECORD.match(line) and text in line)


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
    worker = ChaosWorker(broker, queue_name, "inject", log, concurrency=1)
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

    def seen() -> bool:
        output = log.read_text(errors="replace")
        return "Refusing to deserialize" in output and "nope.not_a_task" in output

    deadline = time.monotonic() + 30
    while not seen() and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1)  # a second record of the same message would come right after the first
    worker.stop()
    output = log.read_text(errors="replace")
    ran_unknown = output.count(f"Task nope.not_a_task[{unknown_id}] succeeded")
    return [
        {
            "scenario": "9 injected pickle",
            "broker": broker_name,
            "policy": "-",
            "tasks": 1,
            "executed": int(marker.exists()),
            "logged": log_records(output, "Refusing to deserialize"),
        },
        {
            "scenario": "9 unknown task name",
            "broker": broker_name,
            "policy": "-",
            "tasks": 1,
            "executed": ran_unknown,
            "logged": log_records(output, "Received unregistered task of type 'nope.not_a_task'"),
        },
    ]


def run_inject(ctx: Context) -> list[dict]:
    rows = []
    for name, url in ctx.brokers:
        rows += inject_scenario(name, url, ctx.tmp)
    return rows


SCENARIOS = {
    "sigkill": run_sigkill,
    "poison": run_poison,
    "visibility": run_visibility,
    "restart": run_restart,
    "inject": run_inject,
}
