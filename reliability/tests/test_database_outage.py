"""A worker that loses its database waits for it, then runs its tasks and records them.

The worker reaches the test database through a path the test can cut: a TCP proxy for
PostgreSQL (the chaos suite's PgProxy), a symbolic link for SQLite. Nothing else is faked.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection, transaction
from django_celery_results.models import TaskResult

from chaos.database import PgProxy, proxied_url
from operations.testing import database_url, wait_for
from reliability import apps
from reliability.ledger import ledger_default, ledger_plain
from reliability.models import LedgerEntry
from reliability.results import RetryingDatabaseBackend
from taskconsole.models import TaskRecord, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def cuttable_database(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable]]:
    """(DATABASE_URL for the worker, cut, restore)."""
    url = database_url()
    if connection.vendor == "sqlite":
        real = Path(urlsplit(url).path)
        link = tmp_path / "db" / real.name
        link.parent.mkdir()
        link.symlink_to(real)

        def point(target: Path) -> None:
            # Swapped in one rename, so the worker never sees the link missing.
            staged = link.with_suffix(".next")
            staged.symlink_to(target)
            os.replace(staged, link)

        # New connections fail: the link leads into a directory that does not exist.
        yield f"sqlite:///{link}", lambda: point(tmp_path / "gone" / real.name), lambda: point(real)
        return
    parts = urlsplit(url)
    proxy = PgProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield proxied_url(url, proxy.port), proxy.cut, proxy.restore
    finally:
        proxy.close()


@contextlib.contextmanager
def worker_through_cuttable_database(
    start_worker: Callable, tmp_path: Path, queue: str, concurrency: int
) -> Iterator[tuple[Any, Callable[[], None], Callable]]:
    """(a worker of `queue` that reaches the test database through the cuttable path, cut,
    restore)."""
    with cuttable_database(tmp_path) as (url, cut, restore):
        worker = start_worker(
            queues=queue,
            concurrency=concurrency,
            name=queue.split("-")[0],
            extra_env={"DATABASE_URL": url, "CONN_MAX_AGE": "60"},
        )
        yield worker, cut, restore


def test_the_result_backend_retries_database_errors_in_tasks_only() -> None:
    from django.db import InterfaceError, OperationalError

    from myproject.celery import app

    assert isinstance(app.backend, RetryingDatabaseBackend)
    assert app.backend.always_retry
    # Outside a task (a web page reading a result) a dropped connection fails at once; the
    # worker's side, inside its tasks, is the real-worker test below.
    assert not app.backend.exception_safe_to_retry(OperationalError("server closed the connection"))
    assert not app.backend.exception_safe_to_retry(ValueError("not a database error"))
    # django-celery-results' own case stays retried.
    assert app.backend.exception_safe_to_retry(InterfaceError("connection already closed"))


def test_tasks_wait_for_the_database_then_run_and_are_recorded(start_worker, tmp_path) -> None:
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    run = queue
    with worker_through_cuttable_database(start_worker, tmp_path, queue, 2) as (
        worker,
        cut,
        restore,
    ):
        cut()
        # In a transaction, so the console's publish records are written by this thread, not
        # by the publish buffer's (whose connection would outlive the test database).
        with transaction.atomic():
            ids = [ledger_default.apply_async((run,), queue=queue).id for _ in range(6)]
        # The worker holds the tasks: taking their claim fails and is retried.
        worker.wait_for_output("Database unreachable", timeout=30)
        assert not LedgerEntry.objects.filter(run=run).exists()
        restore()
        wait_for(
            lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == 6,
            timeout=60,
        )
        wait_for(
            lambda: (
                TaskRecord.objects.filter(task_id__in=ids, status=TaskStatus.SUCCESS).count() == 6
            ),
            timeout=30,
        )
        # Before the proxy goes: the worker's sessions end with it, not as broken links.
        worker.stop()
    entries = LedgerEntry.objects.filter(run=run)
    assert sorted(entries.values_list("task_id", flat=True)) == sorted(ids)
    assert all(entries.values_list("done", flat=True))


def test_a_task_outcome_is_written_once_the_database_answers_again(monkeypatch) -> None:
    """Unit test of the console's outcome write (the chaos suite cuts a real database)."""
    from django.db import OperationalError

    from taskconsole import capture

    TaskRecord.objects.create(
        task_id="t-1", name="x", status=TaskStatus.STARTED, origin="code", queue="q"
    )
    real_update, failures = capture._update, []

    def flaky_update(task_id, **fields):
        if len(failures) < 2:
            failures.append(task_id)
            raise OperationalError("server closed the connection unexpectedly")
        return real_update(task_id, **fields)

    monkeypatch.setattr(capture, "_update", flaky_update)
    monkeypatch.setattr(capture.time, "sleep", lambda seconds: None)
    assert capture._finish("t-1", status=TaskStatus.SUCCESS) == 1
    assert failures == ["t-1", "t-1"]
    assert TaskRecord.objects.get(task_id="t-1").status == TaskStatus.SUCCESS


def test_a_connection_broken_between_two_tasks_is_replaced_before_the_next_one(
    start_worker, tmp_path
) -> None:
    """On PostgreSQL the proxy closes the worker's open connections between two tasks, and
    every next task still runs: one started at once whose first query is its claim (which
    retries on a new connection), one started at once without a claim (Celery's own Task:
    Django checks the connection first), and one without a claim after a second's wait. On
    SQLite the link only stops new connections, so this is the PostgreSQL pass's test."""
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    with worker_through_cuttable_database(start_worker, tmp_path, queue, 1) as (
        worker,
        cut,
        restore,
    ):

        def run(task, wait: float = 0.0) -> None:
            cut()
            restore()
            time.sleep(wait)
            sent = task.apply_async((queue,), queue=queue)
            wait_for(
                lambda: TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").exists(),
                timeout=60,
            )

        run(ledger_plain)  # the first task of the child: its connection opens
        run(ledger_default)
        run(ledger_plain)
        run(ledger_plain, wait=apps.IDLE_CHECK_SECONDS + 0.5)
        worker.stop()
    assert LedgerEntry.objects.filter(run=queue).count() == 4


def test_a_connection_used_a_moment_ago_is_not_checked_again(monkeypatch) -> None:
    """Unit test of the two signal handlers on the real connection: the liveness check that
    Django runs before the next query is kept only for a connection idle for a while."""
    from django.db import connection as conn

    conn.ensure_connection()
    apps.replace_broken_connections(task=ledger_default)
    assert conn.connection is not None
    assert conn.health_check_done  # no SELECT 1 before the next task's first query
    apps.check_idle_connections(task=ledger_default)
    assert conn.health_check_done  # used a moment ago, and the task's claim comes first
    apps.check_idle_connections(task=ledger_plain)
    assert not conn.health_check_done  # no claim: Django checks it before using it
    conn.health_check_done = True
    monkeypatch.setattr(apps._idle, "since", time.monotonic() - apps.IDLE_CHECK_SECONDS - 1)
    apps.check_idle_connections(task=ledger_default)
    assert not conn.health_check_done  # idle: Django checks it before using it
    # A connection that raised an error during the task is checked at once, as Django does.
    conn.errors_occurred = True
    apps.replace_broken_connections(task=ledger_default)
    assert not conn.errors_occurred
    assert conn.connection is not None
