"""A task message the worker refuses ends its record FAILURE instead of leaving it QUEUED.

Celery sends task_unknown (a task name the worker does not know) and task_rejected (a message
refused as invalid, a pickle body among them) from the worker's main process. With a real
worker: reliability/tests/test_refused_messages.py.
"""

from __future__ import annotations

import pickle

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.message import Message

from taskconsole import capture
from taskconsole.models import Origin, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db


def _message(task_id: str, name: str, body: bytes, content_type: str = "application/json"):
    return Message(
        body=body,
        content_type=content_type,
        content_encoding="utf-8" if content_type == "application/json" else "binary",
        delivery_info={"exchange": "", "routing_key": "default"},
        headers={"task": name, "id": task_id, "root_id": task_id, "lang": "py"},
        accept=["application/json"],
    )


BODY = b'[[2], {"x": 1, "password": "PW-1"}, {}]'


def test_unknown_task_fails_its_queued_record() -> None:
    TaskRecord.objects.create(task_id="u-1", name="app.tasks.addd", status=TaskStatus.QUEUED)
    capture.on_task_unknown(
        message=_message("u-1", "app.tasks.addd", BODY),
        exc=KeyError("app.tasks.addd"),
        name="app.tasks.addd",
        id="u-1",
    )
    record = TaskRecord.objects.get(task_id="u-1")
    assert record.status == TaskStatus.FAILURE
    assert record.exception == "NotRegistered('app.tasks.addd')"
    assert record.finished_at is not None


def test_unknown_task_without_a_record_yet_gets_one_with_redacted_arguments() -> None:
    # The publisher's buffer has not written its QUEUED row: the worker's row is the one kept.
    capture.on_task_unknown(
        message=_message("u-2", "app.tasks.addd", BODY),
        exc=KeyError("app.tasks.addd"),
        name="app.tasks.addd",
        id="u-2",
    )
    record = TaskRecord.objects.get(task_id="u-2")
    assert record.status == TaskStatus.FAILURE
    assert record.name == "app.tasks.addd"
    assert record.args == [2]
    assert record.kwargs == {"x": 1, "password": "********"}
    assert record.redacted
    assert record.origin == Origin.CODE
    assert record.queue == "default"


def test_a_finished_record_is_left_alone() -> None:
    TaskRecord.objects.create(task_id="u-3", name="app.tasks.addd", status=TaskStatus.SUCCESS)
    capture.on_task_unknown(
        message=_message("u-3", "app.tasks.addd", BODY), name="app.tasks.addd", id="u-3"
    )
    assert TaskRecord.objects.get(task_id="u-3").status == TaskStatus.SUCCESS


def test_refused_pickle_fails_its_record_without_loading_the_body(monkeypatch) -> None:
    from kombu.serialization import registry

    # kombu's own pickle decoder, watched: it must never be called for a refused body.
    loaded = []
    decoders = registry._decoders
    real_loads = decoders["application/x-python-serialize"]
    monkeypatch.setitem(
        decoders,
        "application/x-python-serialize",
        lambda *a, **k: loaded.append(1) or real_loads(*a, **k),
    )
    TaskRecord.objects.create(task_id="p-1", name="app.tasks.add", status=TaskStatus.QUEUED)
    message = _message(
        "p-1",
        "app.tasks.add",
        pickle.dumps(((), {"password": "PW-2"}, {})),
        "application/x-python-serialize",
    )
    exc = ContentDisallowed("Refusing to deserialize untrusted content of type pickle")
    capture.on_task_rejected(message=message, exc=exc)
    record = TaskRecord.objects.get(task_id="p-1")
    assert record.status == TaskStatus.FAILURE
    assert record.exception == (
        "ContentDisallowed: Refusing to deserialize untrusted content of type pickle"
    )
    assert loaded == []
    assert record.args == []


def test_a_rejected_message_that_is_not_a_task_is_ignored() -> None:
    message = Message(body=b"{}", content_type="application/json", headers=None)
    capture.on_task_rejected(message=message, exc=None)
    capture.on_task_rejected(message=message, exc=ValueError("bad"))
    assert not TaskRecord.objects.exists()
