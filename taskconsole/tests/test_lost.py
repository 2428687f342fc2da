"""Records a killed worker left running: which are failed when it starts again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskconsole import lost
from taskconsole.models import LOST, Origin, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db


def running(task_id: str, name: str = "tc_tests.sleep", **fields) -> TaskRecord:
    defaults = {
        "status": TaskStatus.STARTED,
        "worker": "w@host",
        "started_at": timezone.now() - timedelta(minutes=1),
    }
    return TaskRecord.objects.create(
        task_id=task_id, name=name, origin=Origin.CODE, **{**defaults, **fields}
    )


def test_only_what_no_live_worker_holds_is_failed(monkeypatch) -> None:
    running("gone")
    running("held")  # a live worker of the same name runs it
    running("other", worker="x@host")
    running("later", started_at=timezone.now() + timedelta(minutes=1))
    running("again", name="imports.tasks.process_import_file")  # acks_late: delivered again
    monkeypatch.setattr(lost, "_held_by_live_workers", lambda ids: {"held"})
    assert lost.fail_left_running("w@host", timezone.now()) == 1
    states = dict(TaskRecord.objects.values_list("task_id", "status"))
    assert states == {
        "gone": TaskStatus.FAILURE,
        "held": TaskStatus.STARTED,
        "other": TaskStatus.STARTED,
        "later": TaskStatus.STARTED,
        "again": TaskStatus.STARTED,
    }
    assert TaskRecord.objects.get(task_id="gone").exception == LOST


def test_nothing_is_failed_when_the_workers_cannot_be_asked(monkeypatch) -> None:
    running("gone")
    monkeypatch.setattr(lost, "_held_by_live_workers", lambda ids: None)
    assert lost.fail_left_running("w@host", timezone.now()) == 0
    assert TaskRecord.objects.get(task_id="gone").status == TaskStatus.STARTED
