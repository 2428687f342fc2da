"""Queued records whose message left the broker without reaching a worker (a purge, a broker
that lost its data): failed by the sweep, against a real Redis and real workers."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from celery import current_app
from celery.result import AsyncResult
from django.utils import timezone

from operations.testing import wait_for
from taskconsole import lost, vanished
from taskconsole.models import VANISHED, Origin, TaskRecord, TaskStatus

from .sample_tasks import echo_task, sleep_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

INCLUDE = ("-I", "taskconsole.tests.sample_tasks")


def queue_name(label: str) -> str:
    return f"tc_vanish_{label}_{uuid.uuid4().hex[:6]}"


def aged(*task_ids: str, minutes: int = 10) -> None:
    """As if published `minutes` ago (TASKCONSOLE_LOST_AFTER is 300 s)."""
    ids = list(task_ids)
    wait_for(lambda: TaskRecord.objects.filter(task_id__in=ids).count() == len(ids))
    TaskRecord.objects.filter(task_id__in=ids).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


def purge(queue: str) -> int:
    with current_app.connection_for_write() as conn:
        return conn.default_channel.queue_purge(queue)


def status(task_id: str) -> str | None:
    # None until the publisher's buffer has written the record.
    return TaskRecord.objects.filter(task_id=task_id).values_list("status", flat=True).first()


@pytest.mark.smoke
def test_a_purged_task_is_failed_and_one_still_in_its_queue_waits() -> None:
    purged_queue, full_queue = queue_name("purged"), queue_name("full")
    purged = echo_task.apply_async((1,), queue=purged_queue)
    waiting = echo_task.apply_async((2,), queue=full_queue)
    recent = echo_task.apply_async((3,), queue=purged_queue)
    aged(purged.id, waiting.id)
    wait_for(lambda: TaskRecord.objects.filter(task_id=recent.id).exists())
    assert purge(purged_queue) == 2

    assert vanished.sweep() == 1

    row = TaskRecord.objects.get(task_id=purged.id)
    assert (row.status, row.exception) == (TaskStatus.FAILURE, VANISHED)
    assert row.finished_at is not None
    assert row.exception_display.startswith("Vanished: its message left the queue")
    # AsyncResult(id) no longer says PENDING for ever.
    assert AsyncResult(purged.id).state == "FAILURE"
    assert "Vanished" in str(AsyncResult(purged.id).result)
    # Its queue still holds messages: finding it there would mean reading them all.
    assert status(waiting.id) == TaskStatus.QUEUED
    # Published less than TASKCONSOLE_LOST_AFTER ago: not looked at yet.
    assert status(recent.id) == TaskStatus.QUEUED
    purge(full_queue)


def test_a_purged_retry_is_failed_once_its_countdown_is_long_past() -> None:
    queue = queue_name("retry")
    retried = echo_task.apply_async((5,), queue=queue)
    aged(retried.id, minutes=60)
    soon = timezone.now() - timedelta(minutes=1)
    TaskRecord.objects.filter(task_id=retried.id).update(status=TaskStatus.RETRY, eta=soon)
    purge(queue)
    # Due a minute ago: its worker may hold it yet.
    assert vanished.sweep() == 0
    TaskRecord.objects.filter(task_id=retried.id).update(eta=soon - timedelta(minutes=10))
    assert vanished.sweep() == 1
    assert status(retried.id) == TaskStatus.FAILURE


def test_a_task_a_busy_worker_has_reserved_is_not_vanished(start_worker) -> None:
    queue = queue_name("held")
    worker = start_worker(queues=queue, concurrency=1, name="vanish", extra_args=INCLUDE)
    busy = sleep_task.apply_async((30,), queue=queue)
    wait_for(lambda: status(busy.id) == TaskStatus.STARTED, timeout=60)
    # The only child is busy: the worker reserves this one, off the queue and unacknowledged.
    reserved = echo_task.apply_async((4,), queue=queue)
    aged(reserved.id)
    wait_for(lambda: vanished.queue_is_empty(queue), timeout=30)
    with current_app.connection_for_read() as connection:
        assert vanished._unacknowledged([reserved.id], connection) == ({reserved.id}, True)
    assert vanished.sweep() == 0
    assert status(reserved.id) == TaskStatus.QUEUED
    worker.discard()


@pytest.mark.smoke
def test_a_task_a_worker_too_busy_to_answer_has_reserved_is_not_vanished(start_worker) -> None:
    queue = queue_name("solo")
    worker = start_worker(queues=queue, pool="solo", name="vanish-solo", extra_args=INCLUDE)
    busy = sleep_task.apply_async((30,), queue=queue)
    wait_for(lambda: status(busy.id) == TaskStatus.STARTED, timeout=60)
    reserved = echo_task.apply_async((6,), queue=queue)
    aged(reserved.id)
    if current_app.conf.broker_url.startswith("amqp"):
        # RabbitMQ has handed it to the worker: out of the queue, unacknowledged, and nothing
        # but the broker's count of the queue's consumers tells of it.
        wait_for(lambda: vanished.queue_is_empty(queue), timeout=30)
        with current_app.connection_for_read() as connection:
            assert vanished._unacknowledged([reserved.id], connection) == (set(), False)
    # The solo worker runs the sleep in its only thread: it answers nobody meanwhile.
    assert lost.held_by_live_workers([reserved.id]) == set()
    assert vanished.sweep() == 0
    assert status(reserved.id) == TaskStatus.QUEUED
    worker.discard()


class Replies:
    """What `inspect(...).active_queues()` gives (or raises)."""

    def __init__(self, replies: dict | Exception) -> None:
        self.replies = replies

    def active_queues(self) -> dict:
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies


def test_only_workers_that_said_what_they_hold_count_as_consumers_that_answered(
    monkeypatch,
) -> None:
    replies = {
        "w1@h": [{"name": "a"}, {"name": "b"}],
        "w2@h": None,
        "odd@h": [{"nom": "a"}, "a"],
        "late@h": [{"name": "c"}],  # missed the question about the tasks: it may hold one
    }
    asked = []

    def inspect(timeout: float, destination: list[str]) -> Replies:
        asked.append(destination)
        return Replies(replies)

    monkeypatch.setattr(current_app.control, "inspect", inspect)
    # Counted again after the question: b gained a consumer meanwhile.
    counts = {"a": 1, "b": 2, "c": 1, "d": 0}
    monkeypatch.setattr(vanished, "queue_state", lambda queue, connection: (0, counts[queue]))
    before = {"a": 1, "b": 1, "c": 1, "d": 0}
    assert vanished._silent_consumers(before, {"w1@h", "w2@h", "odd@h"}, None) == {"b", "c"}
    assert asked == [["odd@h", "w1@h", "w2@h"]]


def test_queues_with_consumers_are_silent_when_nobody_answered_or_the_question_failed(
    monkeypatch,
) -> None:
    counts = {"a": 1, "b": 0}
    monkeypatch.setattr(vanished, "queue_state", lambda queue, connection: (0, counts[queue]))
    monkeypatch.setattr(current_app.control, "inspect", lambda **kw: Replies(OSError("down")))
    assert vanished._silent_consumers({"a": 1}, {"w1@h"}, None) is None
    assert vanished._silent_consumers({"a": 1, "b": 0}, set(), None) == {"a"}
    monkeypatch.setattr(vanished, "queue_state", lambda queue, connection: None)
    assert vanished._silent_consumers({"b": 0}, set(), None) == {"b"}


def test_messages_taken_and_not_acknowledged_are_read_from_redis() -> None:
    with current_app.connection_for_write() as conn:
        channel = conn.default_channel
        tag = f"test-{uuid.uuid4().hex}"
        message = {"headers": {"id": "taken-1"}, "body": "", "properties": {}}
        channel.client.hset(channel.unacked_key, tag, json.dumps([message, "", "default"]))
        try:
            assert vanished._unacknowledged(["taken-1", "other"], conn) == ({"taken-1"}, True)
        finally:
            channel.client.hdel(channel.unacked_key, tag)


def test_nothing_is_failed_when_the_broker_cannot_say(monkeypatch) -> None:
    record = TaskRecord.objects.create(
        task_id="lost-in-a-down-broker",
        name="tc_tests.echo",
        origin=Origin.CODE,
        queue=queue_name("down"),
        created_at=timezone.now() - timedelta(hours=1),
    )
    monkeypatch.setattr(vanished, "_unacknowledged", lambda ids, connection: None)
    assert vanished.sweep() == 0
    monkeypatch.undo()
    monkeypatch.setattr(vanished, "queue_state", lambda queue, connection: None)
    assert vanished.sweep() == 0
    assert status(record.task_id) == TaskStatus.QUEUED
