"""A process that forks while a batcher's thread writes gives the child a database it can use.

That is what a Celery prefork parent does: it records a lost worker's failure through the
worker-writes thread, and forks the replacement child meanwhile. On SQLite a child forked in
the middle of the parent's write transaction inherited the parent's lock bookkeeping, and every
write it tried afterwards failed with "database is locked", whatever it waited.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from operations.testing import wait_for
from taskconsole import buffer
from taskconsole.models import TaskRecord

pytestmark = pytest.mark.django_db(transaction=True)

#: How long the thread's write transaction stays open: the fork comes in the middle of it.
WRITE_LASTS = 0.5


class SlowWrites(buffer.Batcher):
    """Writes one TaskRecord per entry, keeping its transaction open for WRITE_LASTS."""

    thread_name = "test-slow-writes"

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()

    def _clear(self) -> None:
        self._ids: list[str] = []

    def _keep(self, entries: list[str]) -> int:
        self._ids.extend(entries)
        return len(self._ids)

    def _take_all(self) -> list[str]:
        ids, self._ids = self._ids, []
        return ids

    def interval(self) -> float:
        return 0.0

    def _write(self, ids: list[str]) -> int:
        with transaction.atomic():
            for task_id in ids:
                TaskRecord.objects.create(task_id=task_id, name="tests.fork")
            self.writing.set()
            time.sleep(WRITE_LASTS)
        return len(ids)


def run_in_child(work) -> tuple[int, str]:
    """Fork; the child runs `work()` and reports its error, if any, through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code, message = 0, b""
        try:
            work()
        except BaseException as exc:
            code, message = 1, f"{type(exc).__name__}: {exc}".encode()
        os.write(write_end, message)
        os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    return os.waitstatus_to_exitcode(status), message


def test_a_child_forked_while_the_thread_writes_can_write_itself() -> None:
    slow = SlowWrites()
    parents = uuid.uuid4().hex
    slow.add_many([parents])
    assert slow.writing.wait(timeout=30)
    # The parent's main thread has a connection open too, as a Celery parent's has.
    assert TaskRecord.objects.filter(name="nothing").count() == 0

    children = uuid.uuid4().hex
    code, error = run_in_child(
        lambda: TaskRecord.objects.create(task_id=children, name="tests.fork")
    )

    assert (code, error) == (0, "")
    assert set(TaskRecord.objects.values_list("task_id", flat=True)) == {parents, children}
    # The parent goes on: its thread reconnects for the next batch.
    later = uuid.uuid4().hex
    slow.add_many([later])
    wait_for(lambda: TaskRecord.objects.filter(task_id=later).exists(), timeout=30)


def test_before_a_fork_sqlite_connections_are_closed_and_others_kept() -> None:
    TaskRecord.objects.exists()
    assert connection.connection is not None

    code, error = run_in_child(lambda: None)

    assert (code, error) == (0, "")
    if connection.vendor == "sqlite":
        assert connection.connection is None
    else:
        assert connection.connection is not None
    assert not TaskRecord.objects.exists()
