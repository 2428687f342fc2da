"""A real worker: a secret in a task's exception or return value is stored, logged and sent
nowhere — not in django-celery-results' row, the console's record, the worker's log or the
task events Flower shows."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django_celery_results.models import TaskResult

from myproject.celery import app as celery_app
from operations.testing import wait_for
from taskconsole.models import TaskRecord, TaskStatus

from .sample_tasks import echo_task, fail_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUEUE = "redaction_tests"


@pytest.fixture(scope="module")
def worker(start_module_worker):
    # -E: the worker sends task events, as it does for Flower.
    return start_module_worker(
        queues=QUEUE,
        concurrency=1,
        name="redact",
        extra_args=("-I", "taskconsole.tests.sample_tasks", "-E"),
    )


@pytest.fixture
def events() -> Iterator[list[dict]]:
    """The task events on the broker while the test runs, as Flower receives them."""
    received: list[dict] = []
    ready = threading.Event()

    class Receiver(celery_app.events.Receiver):
        def on_consume_ready(self, *args, **kwargs) -> None:
            super().on_consume_ready(*args, **kwargs)
            ready.set()  # its queue is bound: no event is missed from here on

    with celery_app.connection_for_read() as connection:
        receiver = Receiver(connection, handlers={"*": received.append})
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True
        )
        thread.start()
        assert ready.wait(10)
        yield received
        receiver.should_stop = True
        thread.join(10)


def _finished(task_id: str) -> TaskRecord | None:
    return TaskRecord.objects.filter(
        task_id=task_id, status__in=(TaskStatus.SUCCESS, TaskStatus.FAILURE)
    ).first()


def _stored(task_id: str) -> TaskResult | None:
    return TaskResult.objects.filter(task_id=task_id, status__in=("SUCCESS", "FAILURE")).first()


def test_secrets_in_an_exception_and_a_return_value_go_nowhere(worker, events) -> None:
    secrets = ("WRK-EXC-URL", "WRK-EXC-PW", "WRK-RES-URL", "WRK-RES-TOKEN")
    failed = fail_task.apply_async(
        (f"cannot reach postgres://u:{secrets[0]}@db.example/x (password={secrets[1]})",),
        queue=QUEUE,
    )
    returned = echo_task.apply_async((f"postgres://u:{secrets[2]}@db.example/x",), queue=QUEUE)
    returned_dict = echo_task.apply_async(({"token": secrets[3], "n": 1},), queue=QUEUE)

    # The console's records and django-celery-results' rows.
    failure = wait_for(lambda: _finished(failed.id), timeout=60)
    assert failure.status == TaskStatus.FAILURE
    assert failure.exception == (
        "ValueError: cannot reach postgres://u:********@db.example/x (password=********)"
    )
    assert "Traceback" in failure.traceback
    success = wait_for(lambda: _finished(returned.id), timeout=60)
    assert success.result == '"postgres://u:********@db.example/x"'
    assert wait_for(lambda: _finished(returned_dict.id), timeout=60).result == (
        '{"token": "********", "n": 1}'
    )
    rows = [wait_for(lambda i=i: _stored(i), timeout=60) for i in (failed.id, returned.id)]
    rows.append(wait_for(lambda: _stored(returned_dict.id), timeout=60))
    assert "password=********" in rows[0].result
    assert "postgres://u:********@db.example/x" in rows[0].traceback
    assert returned.get(timeout=10) == "postgres://u:********@db.example/x"
    assert returned_dict.get(timeout=10) == {"token": "********", "n": 1}

    # The worker's log: the outcome lines are there, redacted, and so is the traceback.
    worker.wait_for_output(f"[{returned_dict.id}] succeeded in", timeout=30)
    worker.wait_for_output(f"[{failed.id}] raised unexpected", timeout=30)
    output = worker.output
    assert "succeeded in" in output
    assert "'postgres://u:********@db.example/x'" in output
    assert "Traceback (most recent call last)" in output

    # The task events Flower shows.
    wait_for(
        lambda: (
            {e.get("uuid") for e in events if e["type"] in ("task-succeeded", "task-failed")}
            >= {failed.id, returned.id, returned_dict.id}
        ),
        timeout=30,
    )
    outcome = [e for e in events if e["type"] in ("task-succeeded", "task-failed")]
    assert any("password=********" in e.get("exception", "") for e in outcome)
    assert any(e.get("result") == "'postgres://u:********@db.example/x'" for e in outcome)

    stores = {
        "records": [
            str(r.__dict__) for r in TaskRecord.objects.filter(task_id__in=[failed.id, returned.id])
        ],
        "results": [str(r.__dict__) for r in rows],
        "log": output,
        "events": str(events),
    }
    for where, text in stores.items():
        for secret in secrets:
            assert secret not in str(text), f"{secret} in {where}"
