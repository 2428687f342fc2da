"""Where a task came from, for publishers that stamp nothing of their own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from celery.beat import ScheduleEntry, Scheduler

from taskconsole import buffer
from taskconsole.models import Origin, TaskRecord

pytestmark = pytest.mark.django_db


def test_a_run_sent_by_celerys_own_beat_scheduler_is_beats(sent) -> None:
    # CELERY_BEAT_SCHEDULE under Celery's default scheduler: no periodic_task_name header.
    entry = ScheduleEntry(
        name="add every 30 s",
        task="app.tasks.add",
        schedule=timedelta(seconds=30),
        args=(1, 2),
        app=current_app,
    )
    with current_app.producer_or_acquire() as producer:
        Scheduler(current_app, lazy=True).apply_entry(entry, producer=producer)
    buffer.flush()
    [message] = sent
    record = TaskRecord.objects.get(task_id=message["headers"]["id"])
    assert (record.origin, record.origin_detail) == (Origin.BEAT, "add every 30 s")
    assert "periodic_task_name" not in message["headers"]
