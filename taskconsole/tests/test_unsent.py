"""A publish that fails leaves no record waiting for ever: it is marked failed, "Not published"."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.db import transaction
from django.test import override_settings
from kombu.exceptions import EncodeError

from app.tasks import add
from taskconsole import actions, buffer
from taskconsole.models import AuditAction, AuditEntry, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)


class Unserializable:
    """What the tutorial's bad example passes: an object JSON cannot carry."""


def _status(task_id: str) -> tuple[str, str]:
    buffer.flush()
    return TaskRecord.objects.values_list("status", "exception").get(task_id=task_id)


def test_an_argument_json_cannot_carry_fails_the_record_and_the_error_goes_up() -> None:
    task_id = str(uuid.uuid4())
    with pytest.raises(EncodeError):
        add.apply_async((3, Unserializable()), task_id=task_id)
    status, exception = _status(task_id)
    assert status == TaskStatus.FAILURE
    assert exception.startswith("Not published: EncodeError: ")


def test_a_publish_that_went_out_stays_queued(broker_url: str) -> None:
    task_id = add.apply_async((3, 5), task_id=str(uuid.uuid4()), queue="tc-unsent-idle").id
    try:
        assert _status(task_id) == (TaskStatus.QUEUED, "")
    finally:
        redis.Redis.from_url(broker_url).delete("tc-unsent-idle")


def test_a_record_made_inside_a_transaction_is_failed_in_it() -> None:
    # Inside atomic() the record is saved straight away, not buffered: it is failed in the same
    # transaction, and kept with the caller's other writes.
    task_id = str(uuid.uuid4())
    with transaction.atomic(), pytest.raises(EncodeError):
        add.apply_async((Unserializable(), 1), task_id=task_id)
    assert _status(task_id)[0] == TaskStatus.FAILURE


def test_a_broker_that_refuses_the_send_fails_the_record(monkeypatch) -> None:
    def refused(self, *args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(redis.Redis, "lpush", refused)
    task_id = str(uuid.uuid4())
    with pytest.raises(Exception, match="Connection refused"):
        add.apply_async((3, 5), task_id=task_id, retry=False)
    monkeypatch.undo()
    status, exception = _status(task_id)
    assert status == TaskStatus.FAILURE
    assert "Connection refused" in exception


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=3600)
def test_a_failed_publish_in_a_transaction_leaves_the_buffer_alone(make_user) -> None:
    # Another request's audit entry waits in this process's buffer. A publish that fails inside
    # a transaction must not write it there: the transaction is rolled back with the error.
    user = make_user("launch", "view")
    actions.audit_publish(user, AuditAction.LAUNCH, "other-request", task="app.tasks.add")
    assert buffer.pending() == 1
    task_id = str(uuid.uuid4())
    with pytest.raises(EncodeError), transaction.atomic():
        add.apply_async((Unserializable(), 1), task_id=task_id)
    assert buffer.pending() == 1
    assert buffer.flush() == 1
    assert AuditEntry.objects.filter(target="other-request").count() == 1
    assert not TaskRecord.objects.filter(task_id=task_id).exists()


def test_a_task_its_publisher_sends_again_stays_waiting(monkeypatch) -> None:
    from taskconsole.unsent import SENT_AGAIN_HEADER

    def refused(self, *args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(redis.Redis, "lpush", refused)
    task_id = str(uuid.uuid4())
    with pytest.raises(Exception, match="Connection refused"):
        add.apply_async((3, 5), task_id=task_id, retry=False, headers={SENT_AGAIN_HEADER: 1})
    monkeypatch.undo()
    # An outbox sends it again later: no "failed", and so no retry that would run it twice.
    assert _status(task_id) == (TaskStatus.QUEUED, "")
