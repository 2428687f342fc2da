"""The product's result backend writes what django-celery-results writes, in one statement."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from celery import states
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from myproject.celery import app
from reliability.results import RetryingDatabaseBackend

pytestmark = pytest.mark.django_db

COMPARED = [
    "status",
    "result",
    "traceback",
    "meta",
    "content_encoding",
    "content_type",
    "periodic_task_name",
    "task_name",
    "task_args",
    "task_kwargs",
    "worker",
]


def request(task_id: str) -> SimpleNamespace:
    return SimpleNamespace(
        id=task_id,
        task="app.tasks.add",
        argsrepr="(3, 5)",
        kwargsrepr="{'api_token': '********'}",
        hostname="main-1@host",
        periodic_task_name="every minute",
        children=[],
        meta={"note": "kept"},
        ignore_result=False,
        group=None,
        parent_id=None,
        delivery_info={},
    )


def lifecycle(backend: DatabaseBackend, task_id: str, outcome: tuple) -> TaskResult:
    backend.store_result(task_id, {"pid": 1}, states.STARTED, request=request(task_id))
    result, state, traceback = outcome
    backend.store_result(task_id, result, state, traceback=traceback, request=request(task_id))
    return TaskResult.objects.get(task_id=task_id)


@pytest.mark.parametrize(
    "outcome",
    [(8, states.SUCCESS, None), (ValueError("bad row"), states.FAILURE, "Traceback: bad row")],
)
def test_the_upsert_stores_the_same_row_as_the_library(outcome) -> None:
    ours = lifecycle(RetryingDatabaseBackend(app=app), str(uuid.uuid4()), outcome)
    theirs = lifecycle(DatabaseBackend(app=app), str(uuid.uuid4()), outcome)
    assert {f: getattr(ours, f) for f in COMPARED} == {f: getattr(theirs, f) for f in COMPARED}
    assert ours.status == outcome[1]
    assert ours.task_args == theirs.task_args == '"(3, 5)"'
    assert ours.date_created <= ours.date_started <= ours.date_done
    # (The library's date_started is SQL NOW(), millisecond-rounded on SQLite.)
    assert None not in (theirs.date_created, theirs.date_started, theirs.date_done)


def test_started_never_replaces_a_finished_state_but_a_retry_starts_again() -> None:
    backend = RetryingDatabaseBackend(app=app)
    task_id = str(uuid.uuid4())
    done = lifecycle(backend, task_id, (8, states.SUCCESS, None))
    # A second delivery of the finished run: Celery writes STARTED before the task can tell.
    backend.store_result(task_id, {"pid": 2}, states.STARTED, request=request(task_id))
    again = TaskResult.objects.get(task_id=task_id)
    assert (again.status, again.result, again.date_done) == ("SUCCESS", "8", done.date_done)

    retried = str(uuid.uuid4())
    backend.store_result(retried, {"pid": 1}, states.STARTED, request=request(retried))
    backend.store_result(retried, None, states.RETRY, request=request(retried))
    backend.store_result(retried, {"pid": 1}, states.STARTED, request=request(retried))
    assert TaskResult.objects.get(task_id=retried).status == states.STARTED
